package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/sandbox"
)

// fakeDriver makes sandboxes whose agent is an in-process peer that answers Hello
// and Reset: enough to measure the pool's own bookkeeping, nothing of gVisor.
// Acceptance tests never use it.
type fakeDriver struct {
	live atomic.Int64
	// bootTime, when set, is how long Create takes; creating and maxCreating
	// count the creations under way (now and at most).
	bootTime              time.Duration
	creating, maxCreating atomic.Int64
	created               atomic.Int64 // sandboxes created in all
	// destroyTime, when set, is how long Destroy takes (the sandbox counts as
	// live until it is over, as with gVisor).
	destroyTime time.Duration
}

type fakeSandbox struct {
	id   string
	conn *agent.Conn
	d    *fakeDriver
	once sync.Once
	stop func()
}

func (d *fakeDriver) Name() string                            { return "fake" }
func (d *fakeDriver) Version(context.Context) (string, error) { return "0", nil }
func (d *fakeDriver) Sweep(context.Context) (int, error)      { return 0, nil }
func (d *fakeDriver) Live() int                               { return int(d.live.Load()) }
func (d *fakeDriver) Close() error                            { return nil }
func (s *fakeSandbox) ID() string                             { return s.id }
func (s *fakeSandbox) Spec() sandbox.Spec                     { return sandbox.Spec{} }
func (s *fakeSandbox) Agent() *agent.Conn                     { return s.conn }
func (s *fakeSandbox) Stats(context.Context) (sandbox.Stats, error) {
	return sandbox.Stats{MemoryBytes: 30 << 20}, nil
}
func (s *fakeSandbox) Destroy(context.Context) error {
	s.once.Do(func() { time.Sleep(s.d.destroyTime); s.stop(); s.d.live.Add(-1) })
	return nil
}

func (d *fakeDriver) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	d.created.Add(1)
	if d.bootTime > 0 {
		n := d.creating.Add(1)
		for m := d.maxCreating.Load(); n > m && !d.maxCreating.CompareAndSwap(m, n); m = d.maxCreating.Load() {
		}
		time.Sleep(d.bootTime)
		d.creating.Add(-1)
	}
	hostR, agentW := io.Pipe()
	agentR, hostW := io.Pipe()
	go func() { // the peer
		fr, fw := agent.NewFrameReader(agentR), agent.NewFrameWriter(agentW)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				agentW.Close()
				return
			}
			switch f.Type {
			case agent.FrameHello:
				var h agent.Hello
				_ = json.Unmarshal(f.Payload, &h)
				b, _ := json.Marshal(agent.Ready{Nonce: h.Nonce})
				_ = fw.WriteFrame(agent.FrameReady, 0, b)
			case agent.FrameReset, agent.FrameWarm:
				_ = fw.WriteFrame(agent.FrameDone, f.ID, []byte(`{}`))
			}
		}
	}()
	n := d.live.Add(1)
	return &fakeSandbox{id: fmt.Sprint("fake-", n), conn: agent.NewConn(hostR, hostW), d: d,
		stop: func() { hostW.Close(); agentR.Close() }}, nil
}

// BenchmarkPoolTakePut measures taking an idle warm sandbox and putting it back
// (with its reset), through the in-process fake agent.
func BenchmarkPoolTakePut(b *testing.B) {
	e := New(Config{}, &fakeDriver{}, nil)
	defer e.Close(context.Background())
	k := poolKey{account: "a", image: "host"}
	spec := sandbox.Spec{Image: "host"}
	ctx := context.Background()
	box, _, err := e.pool.take(ctx, k, spec, "python")
	if err != nil {
		b.Fatal(err)
	}
	e.pool.willReturn(k)
	e.pool.put(k, box, true)
	b.ResetTimer()
	for range b.N {
		box, hit, err := e.pool.take(ctx, k, spec, "python")
		if err != nil || !hit {
			b.Fatalf("take: hit %v, %v", hit, err)
		}
		e.pool.willReturn(k)
		e.pool.put(k, box, true)
	}
}
