package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/faas-platform/faas/sandbox"
)

// stock keeps pre-booted, never-used sandboxes of the default spec so an ephemeral
// execution skips the boot. Each is handed out once and destroyed after its one
// execution; the stock refills in the background.
type stock struct {
	e      *Engine
	size   int
	mu     sync.Mutex
	ready  []sandbox.Sandbox
	kick   chan struct{}
	done   chan struct{}
	closed bool
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

// take returns a never-used sandbox for spec: from the stock when one is ready
// (resized to spec's limits), otherwise a newly created one.
func (s *stock) take(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	if max := s.e.cfg.MaxSandboxes; max > 0 && s.e.driver.Live() >= max {
		return nil, fmt.Errorf("%w: all %d sandboxes are in use", ErrBusy, max)
	}
	for {
		s.mu.Lock()
		var sb sandbox.Sandbox
		if n := len(s.ready); n > 0 && spec.Image == "host" {
			sb = s.ready[n-1]
			s.ready = s.ready[:n-1]
		}
		s.mu.Unlock()
		if sb == nil {
			break
		}
		s.signal()
		select {
		case <-sb.Agent().Done():
			s.e.destroyLater(sb) // died while waiting; take another
			continue
		default:
		}
		if r, ok := sb.(sandbox.Resizer); ok {
			if err := r.Resize(ctx, spec.CPUCores, spec.MemoryMB); err == nil {
				return sb, nil
			} else {
				s.e.log.Warn("resizing stocked sandbox", "sandbox", sb.ID(), "err", err)
			}
		}
		s.e.destroyLater(sb)
		break
	}
	sb, err := s.e.driver.Create(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("creating sandbox: %w", err)
	}
	return sb, nil
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
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				s.e.destroyLater(sb)
				return
			}
			s.ready = append(s.ready, sb)
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
	for _, sb := range ready {
		s.e.destroyLater(sb)
	}
}
