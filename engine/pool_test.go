package engine

import (
	"context"
	"testing"
	"time"

	"github.com/faas-platform/faas/sandbox"
)

// TestPoolWaitsForReturningSandbox checks the pool's bookkeeping (with the
// in-process fake agent): a request that finds the account's only sandbox being
// put back waits for it instead of booting another. The same behaviour with real
// sandboxes is e2e's TestCachedBackToBack.
func TestPoolWaitsForReturningSandbox(t *testing.T) {
	e := New(Config{}, &fakeDriver{}, nil)
	defer e.Close(context.Background())
	k := poolKey{account: "a", image: "host"}
	spec := sandbox.Spec{Image: "host"}
	ctx := context.Background()
	first, hit, err := e.pool.take(ctx, k, spec)
	if err != nil || hit {
		t.Fatalf("first take: hit %v, %v", hit, err)
	}
	e.pool.willReturn(k)
	go func() {
		time.Sleep(100 * time.Millisecond) // a reset in progress
		e.pool.put(k, first, true)
	}()
	start := time.Now()
	second, hit, err := e.pool.take(ctx, k, spec)
	if err != nil || !hit || second != first {
		t.Fatalf("second take: hit %v, same sandbox %v, %v", hit, second == first, err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("the second take did not wait for the returning sandbox (%v)", waited)
	}
	st := e.pool.snapshot("a")
	if len(st) != 1 || st[0].Boots != 1 || st[0].Hits != 1 || st[0].Misses != 1 {
		t.Errorf("stats %+v", st)
	}
	// Nothing returning: the next take boots at once.
	third, hit, err := e.pool.take(ctx, k, spec)
	if err != nil || hit || third == first {
		t.Fatalf("third take: hit %v, %v", hit, err)
	}
}
