package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
	first, hit, err := e.pool.take(ctx, k, spec, "python")
	if err != nil || hit {
		t.Fatalf("first take: hit %v, %v", hit, err)
	}
	e.pool.willReturn(k)
	go func() {
		time.Sleep(100 * time.Millisecond) // a reset in progress
		e.pool.put(k, first, true)
	}()
	start := time.Now()
	second, hit, err := e.pool.take(ctx, k, spec, "python")
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
	third, hit, err := e.pool.take(ctx, k, spec, "python")
	if err != nil || hit || third == first {
		t.Fatalf("third take: hit %v, %v", hit, err)
	}
}

// TestCapHoldsWhileBooting checks the sandbox cap counts sandboxes still booting
// (the driver counts a sandbox only once it runs): of many requests at once, only
// as many as the cap get a sandbox and the rest are refused as busy; and no more
// than maxConcurrentBoots boot at a time. With the in-process fake driver, whose
// boots take a while.
func TestCapHoldsWhileBooting(t *testing.T) {
	d := &fakeDriver{bootTime: 50 * time.Millisecond}
	e := New(Config{MaxSandboxes: 5}, d, nil)
	defer e.Close(context.Background())
	const n = 20
	var wg sync.WaitGroup
	var got, busy atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := e.fresh(context.Background(), sandbox.Spec{Image: "host"}, "python")
			switch {
			case err == nil:
				got.Add(1)
				t.Cleanup(func() { _ = b.Destroy(context.Background()) })
			case errors.Is(err, ErrBusy):
				busy.Add(1)
			default:
				t.Errorf("fresh: %v", err)
			}
		}()
	}
	wg.Wait()
	if got.Load() != 5 || busy.Load() != n-5 || d.Live() != 5 {
		t.Errorf("%d requests at once under a cap of 5: %d got a sandbox, %d were busy, %d sandboxes live", n, got.Load(), busy.Load(), d.Live())
	}
	if m := d.maxCreating.Load(); m > int64(maxConcurrentBoots()) {
		t.Errorf("%d sandboxes booted at once; at most %d should", m, maxConcurrentBoots())
	}
}

// waitStock waits (at most 5 s) until the stock holds n sandboxes.
func waitStock(t *testing.T, e *Engine, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.stock.len() < n {
		if time.Now().After(deadline) {
			t.Fatal("the stock did not fill")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCapWaitsForStock: a request at the cap while the stock boots a sandbox
// waits for it and takes it, rather than being refused.
func TestCapWaitsForStock(t *testing.T) {
	d := &fakeDriver{bootTime: 300 * time.Millisecond}
	e := New(Config{MaxSandboxes: 2, StockSize: 1}, d, nil)
	defer e.Close(context.Background())
	ctx := context.Background()
	waitStock(t, e, 1)
	a, err := e.fresh(ctx, sandbox.Spec{Image: "host"}, "python") // the stocked one
	if err != nil {
		t.Fatal(err)
	}
	defer a.Destroy(ctx)
	// The stock starts its replacement stockRefillDelay later; a request
	// arriving as it boots finds the cap (2) reached.
	time.Sleep(stockRefillDelay + 50*time.Millisecond)
	b, err := e.fresh(ctx, sandbox.Spec{Image: "host"}, "python")
	if err != nil {
		t.Fatalf("at the cap while the stock boots: %v", err)
	}
	defer b.Destroy(ctx)
	if n := d.created.Load(); n != 2 {
		t.Errorf("the request did not take the sandbox the stock booted: %d created in all", n)
	}
}

// TestCapWaitsForLeaving: at the cap, a request waits for a sandbox being destroyed
// (an ephemeral one just used) rather than being refused, and the stock does not
// take the slot it frees from the request.
func TestCapWaitsForLeaving(t *testing.T) {
	d := &fakeDriver{destroyTime: 200 * time.Millisecond}
	e := New(Config{MaxSandboxes: 2, StockSize: 1}, d, nil)
	defer e.Close(context.Background())
	ctx := context.Background()
	waitStock(t, e, 1)
	for i := range 5 { // one client at a time, each sandbox used once then destroyed
		a, err := e.fresh(ctx, sandbox.Spec{Image: "host"}, "python") // from the stock, or booted
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := e.fresh(ctx, sandbox.Spec{Image: "host"}, "python")
		if err != nil {
			t.Fatalf("request %d, second sandbox: %v", i, err)
		}
		e.destroyLater(a)
		e.destroyLater(b)
		if live := d.Live(); live > 2 {
			t.Fatalf("%d sandboxes live under a cap of 2", live)
		}
	}
	// With nothing leaving, a request at the cap is refused at once.
	a, err := e.fresh(ctx, sandbox.Spec{Image: "host"}, "python")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Destroy(ctx)
	b, err := e.fresh(ctx, sandbox.Spec{Image: "host"}, "python")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(ctx)
	for leaving := 1; leaving > 0; {
		e.boots.mu.Lock()
		leaving = e.boots.leaving
		e.boots.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if _, err := e.fresh(ctx, sandbox.Spec{Image: "host"}, "python"); !errors.Is(err, ErrBusy) || time.Since(start) > 2*time.Second {
		t.Errorf("at the cap with nothing leaving: %v after %v", err, time.Since(start))
	}
}
