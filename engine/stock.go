package engine

import (
	"context"
	"fmt"
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
	if err := e.makeRoom(ctx); err != nil {
		return nil, err
	}
	cfg, release, err := e.withImage(&spec)
	if err != nil {
		return nil, err
	}
	sb, err := e.driver.Create(ctx, spec)
	if err != nil {
		release()
		return nil, fmt.Errorf("creating sandbox: %w", err)
	}
	return &box{Sandbox: sb, image: cfg, release: release}, nil
}

// makeRoom makes sure one more sandbox may be created: below the cap, or after
// evicting the least recently used idle pooled sandbox.
func (e *Engine) makeRoom(ctx context.Context) error {
	max := e.cfg.MaxSandboxes
	if max <= 0 || e.driver.Live() < max {
		return nil
	}
	if b := e.pool.evictOldest(); b != nil {
		_ = b.Destroy(ctx)
		if e.driver.Live() < max {
			return nil
		}
	}
	return fmt.Errorf("%w: all %d sandboxes are in use", ErrBusy, max)
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
			if max := s.e.cfg.MaxSandboxes; max > 0 && s.e.driver.Live() >= max {
				break // the stock never takes the last slots from requests
			}
			sb, err := s.e.driver.Create(s.e.ctx, spec)
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
