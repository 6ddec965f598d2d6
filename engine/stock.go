package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/faas-platform/faas/sandbox"
)

// stock keeps pre-booted, never-used sandboxes of the default spec, with the
// zygotes of StockLanguages already running, so a request skips the boot and the
// interpreter start. A stocked sandbox is handed out once: to an ephemeral
// execution (destroyed after) or to an account's warm pool (never to another
// account). The stock refills in the background.
type stock struct {
	e      *Engine
	size   int
	mu     sync.Mutex
	ready  []*box
	kick   chan struct{}
	done   chan struct{}
	closed bool
	booted int64
}

func newStock(e *Engine, size int) *stock {
	s := &stock{e: e, size: size, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if size > 0 {
		go s.refill()
		s.signal()
	} else {
		close(s.done)
	}
	return s
}

func (s *stock) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ready)
}

func (s *stock) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// stockRefillDelay is how long after a stocked sandbox is taken its
// replacement starts booting (at the latest).
const stockRefillDelay = 200 * time.Millisecond

// pop returns a stocked sandbox, or nil.
func (s *stock) pop() *box {
	for {
		s.mu.Lock()
		var b *box
		if len(s.ready) > 0 { // the oldest: the most settled
			b = s.ready[0]
			s.ready = s.ready[1:]
		}
		s.mu.Unlock()
		if b == nil {
			return nil
		}
		// Booting the replacement takes a core for a quarter of a second: it
		// starts once the request that took this one has most likely finished
		// (an ephemeral sandbox's destruction signals too), not under it.
		time.AfterFunc(stockRefillDelay, s.signal)
		if !s.e.alive(b) {
			s.e.destroyLater(b) // died while waiting; take another
			continue
		}
		return b
	}
}

// alive asks a sandbox's agent to answer (well under a millisecond when it is
// there): a sandbox killed from outside can look alive to its pipes.
func (e *Engine) alive(b *box) bool {
	if !agentUp(b) {
		return false
	}
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
	defer cancel()
	_, err := b.Agent().Hello(ctx)
	if err != nil {
		e.log.Warn("a waiting sandbox does not answer; destroying it", "sandbox", b.ID(), "err", err)
	}
	return err == nil
}

// agentUp reports whether b's agent channel is still open.
func agentUp(b *box) bool {
	select {
	case <-b.Agent().Done():
		return false
	default:
		return true
	}
}

// fresh returns a never-used sandbox for spec: from the stock when one is ready
// (resized to spec's limits), otherwise a newly created one. At the sandbox cap it
// evicts an idle pooled sandbox, or fails with ErrBusy.
func (e *Engine) fresh(ctx context.Context, spec sandbox.Spec) (*box, error) {
	if spec.Image == "host" {
		if b := e.stock.pop(); b != nil {
			r, ok := b.Sandbox.(sandbox.Resizer)
			if !ok {
				return b, nil
			}
			err := r.Resize(ctx, spec.CPUCores, spec.MemoryMB)
			if err == nil {
				return b, nil
			}
			e.log.Warn("resizing stocked sandbox", "sandbox", b.ID(), "err", err)
			e.destroyLater(b)
		}
	}
	cfg, release, err := e.withImage(&spec)
	if err != nil {
		return nil, err
	}
	booted, err := e.reserve(ctx, true)
	if err != nil {
		release()
		return nil, err
	}
	sb, err := e.driver.Create(ctx, spec)
	booted()
	if err != nil {
		release()
		return nil, fmt.Errorf("creating sandbox: %w", err)
	}
	return &box{Sandbox: sb, image: cfg, release: release}, nil
}

// boots counts the sandboxes being created (the driver counts them only once
// they run), so that the sandbox cap holds however many boot at once, and bounds
// how many boot at a time: a boot takes a core for a fraction of a second, and
// dozens at once on a small machine each take many seconds. It also counts the
// sandboxes about to make room: being destroyed (the driver counts them until
// they are gone) or being reset to go idle in a warm pool (where they can be
// evicted), so that a request at the cap waits for them rather than being
// refused.
type boots struct {
	mu      sync.Mutex
	booting int
	leaving int
	waiting int           // requests waiting for a leaving sandbox
	left    chan struct{} // closed (and replaced) when a leaving sandbox has left
	slots   chan struct{}
}

// maxConcurrentBoots is how many sandboxes boot at once: one per core, at least
// two (one boot waits on I/O part of the time).
func maxConcurrentBoots() int { return max(2, runtime.NumCPU()) }

// maxLeavingWait bounds how long a request at the sandbox cap waits for leaving
// sandboxes (a destroy or a reset takes a fraction of a second).
const maxLeavingWait = 10 * time.Second

// leave counts one sandbox about to make room; the function it returns counts it
// gone (destroyed, or idle in a pool).
func (bs *boots) leave() (left func()) {
	bs.mu.Lock()
	bs.leaving++
	bs.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			bs.mu.Lock()
			bs.leaving--
			if bs.left != nil {
				close(bs.left)
				bs.left = nil
			}
			bs.mu.Unlock()
		})
	}
}

// reserve makes sure one more sandbox may be created below the cap, counting
// those booting. For a request (request set) at the cap, it waits for leaving
// sandboxes (see boots), then evicts the least recently used idle pooled
// sandbox; background work (request unset) does neither, and leaves a slot
// freed to a request waiting for one. It fails with ErrBusy at the cap. It then
// waits for a turn to boot. The caller creates the sandbox and calls booted
// (whether or not the creation succeeded).
func (e *Engine) reserve(ctx context.Context, request bool) (booted func(), err error) {
	if err := e.countBoot(ctx, request); err != nil {
		return nil, err
	}
	uncount := func() {
		e.boots.mu.Lock()
		e.boots.booting--
		e.boots.mu.Unlock()
	}
	select {
	case e.boots.slots <- struct{}{}:
	case <-ctx.Done():
		uncount()
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.boots.slots
			uncount()
		})
	}, nil
}

// countBoot counts one more sandbox booting if the cap allows it; see reserve.
func (e *Engine) countBoot(ctx context.Context, request bool) error {
	limit := e.cfg.MaxSandboxes
	busy := fmt.Errorf("%w: all %d sandboxes are in use", ErrBusy, limit)
	bs := &e.boots
	bs.mu.Lock()
	defer bs.mu.Unlock()
	waiting := false // counted in bs.waiting
	defer func() {
		if waiting {
			bs.waiting--
		}
	}()
	var deadline <-chan time.Time
	for evicted := false; ; {
		free := limit <= 0 || e.driver.Live()+bs.booting < limit
		if free && (request || bs.waiting == 0) {
			bs.booting++
			return nil
		}
		if !request {
			return busy
		}
		if bs.leaving > 0 {
			if bs.left == nil {
				bs.left = make(chan struct{})
			}
			left := bs.left
			if !waiting {
				waiting = true
				bs.waiting++
			}
			if deadline == nil {
				t := time.NewTimer(maxLeavingWait)
				defer t.Stop()
				deadline = t.C
			}
			bs.mu.Unlock()
			var err error
			select {
			case <-left:
			case <-ctx.Done():
				err = ctx.Err()
			case <-deadline:
				err = busy
			}
			bs.mu.Lock()
			if err != nil {
				return err
			}
			continue
		}
		if evicted {
			return busy
		}
		b := e.pool.evictOldest()
		if b == nil {
			return busy
		}
		evicted = true
		bs.mu.Unlock()
		_ = b.Destroy(ctx)
		bs.mu.Lock()
	}
}

func (s *stock) refill() {
	defer close(s.done)
	l := s.e.cfg.Limits
	spec := sandbox.Spec{Image: "host", CPUCores: l.DefaultCPUCores, MemoryMB: l.DefaultMemoryMB}
	for {
		select {
		case <-s.e.ctx.Done():
			return
		case <-s.kick:
		}
		for s.len() < s.size {
			booted, err := s.e.reserve(s.e.ctx, false) // never evicts a warm sandbox
			if err != nil {
				break // at the cap (or closing)
			}
			sb, err := s.e.driver.Create(s.e.ctx, spec)
			booted()
			if err != nil {
				if s.e.ctx.Err() != nil {
					return
				}
				s.e.log.Warn("filling sandbox stock", "err", err)
				select {
				case <-s.e.ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			b := &box{Sandbox: sb}
			s.e.warmUp(s.e.ctx, b, s.e.cfg.StockLanguages)
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				s.e.destroyLater(b)
				return
			}
			s.ready = append(s.ready, b)
			s.booted++
			s.mu.Unlock()
		}
	}
}

// close stops refilling and destroys what is in stock. Called after the engine's
// context is cancelled.
func (s *stock) close() {
	<-s.done
	s.mu.Lock()
	s.closed = true
	ready := s.ready
	s.ready = nil
	s.mu.Unlock()
	for _, b := range ready {
		s.e.destroyLater(b)
	}
}
