package engine

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/faas-platform/faas/sandbox"
)

// poolKey identifies a warm pool: sandboxes are only ever reused by the account
// that first used them, for the same image.
type poolKey struct {
	account  string
	image    string
	memoryMB int // what the sandbox booted with: its /proc/meminfo and disk sizes follow it
}

// pooled is an idle sandbox in a warm pool.
type pooled struct {
	b        *box
	key      poolKey
	idleFrom time.Time
	memBytes int64 // memory use when it went idle
}

// PoolStats describes one account's warm pool for one image.
type PoolStats struct {
	Account  string
	Image    string
	MemoryMB int // the memory limit its sandboxes have (one pool per limit)
	Idle     int
	InUse    int
	Hits     int64 // executions served by an idle warm sandbox
	Misses   int64 // executions that needed a fresh one
	Boots    int64 // fresh sandboxes taken into the pool (from the stock or booted)
	Retired  int64 // destroyed after an execution that crashed or broke a limit
	Reaped   int64 // destroyed after idling too long
	Evicted  int64 // destroyed to make room (sandbox cap or warm memory cap)
	// IdleMemoryBytes is the memory the idle sandboxes held (host cgroup usage)
	// when they went idle, together.
	IdleMemoryBytes int64
}

// pool keeps each account's idle warm sandboxes for cached executions.
type pool struct {
	e     *Engine
	mu    sync.Mutex
	idle  map[poolKey][]*pooled // most recently used last
	stats map[poolKey]*PoolStats
	// returning counts the healthy sandboxes being reset after an execution,
	// about to be idle; changed is closed (and replaced) when one arrives or is
	// dropped. A request finding none idle waits for one of those (a reset takes
	// milliseconds) rather than boot another.
	returning map[poolKey]int
	changed   chan struct{}
	done      chan struct{}
}

// returnWait bounds how long a request waits for a returning warm sandbox.
const returnWait = time.Second

// idleCheckAfter is how long a sandbox may idle before take checks that its
// agent still answers; a dead agent is noticed sooner by its closed channel.
const idleCheckAfter = time.Second

func newPool(e *Engine) *pool {
	p := &pool{e: e, idle: make(map[poolKey][]*pooled), stats: make(map[poolKey]*PoolStats),
		returning: make(map[poolKey]int), changed: make(chan struct{}), done: make(chan struct{})}
	go p.reapLoop()
	return p
}

// returned records that a returning sandbox of k is idle or gone, and wakes the
// requests waiting for one. Called with p.mu held.
func (p *pool) returnedLocked(k poolKey) {
	if p.returning[k]--; p.returning[k] <= 0 {
		delete(p.returning, k)
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *pool) statsFor(k poolKey) *PoolStats {
	st := p.stats[k]
	if st == nil {
		st = &PoolStats{Account: k.account, Image: k.image, MemoryMB: k.memoryMB}
		p.stats[k] = st
	}
	return st
}

// take returns a warm sandbox of the account for spec: an idle one (a hit) or a
// fresh one (a miss), for language. hit reports which.
func (p *pool) take(ctx context.Context, k poolKey, spec sandbox.Spec, language string) (b *box, hit bool, err error) {
	p.mu.Lock()
	st := p.statsFor(k)
	var deadline <-chan time.Time
	for {
		list := p.idle[k]
		if len(list) == 0 {
			if p.returning[k] == 0 {
				break
			}
			if deadline == nil {
				t := time.NewTimer(returnWait)
				defer t.Stop()
				deadline = t.C
			}
			changed := p.changed
			p.mu.Unlock()
			select {
			case <-changed:
				p.mu.Lock()
				continue
			case <-deadline:
			case <-ctx.Done():
			}
			p.mu.Lock()
			break
		}
		w := list[len(list)-1]
		p.idle[k] = list[:len(list)-1]
		st.InUse++
		p.mu.Unlock()
		if !agentUp(w.b) || time.Since(w.idleFrom) > idleCheckAfter && !p.e.alive(w.b) {
			p.count(k, func(st *PoolStats) { st.InUse--; st.Retired++ })
			p.e.destroyLater(w.b)
			p.mu.Lock()
			continue
		}
		p.count(k, func(st *PoolStats) { st.Hits++ })
		if r, ok := w.b.Sandbox.(sandbox.Resizer); ok {
			if err := r.Resize(ctx, spec.CPUCores, spec.MemoryMB); err != nil {
				p.release(k)
				p.e.destroyLater(w.b)
				return nil, false, fmt.Errorf("resizing warm sandbox: %w", err)
			}
		}
		return w.b, true, nil
	}
	if err := ctx.Err(); err != nil {
		p.mu.Unlock()
		return nil, false, err
	}
	st.Misses++
	st.InUse++
	p.mu.Unlock()
	b, err = p.e.fresh(ctx, spec, language)
	if err != nil {
		p.release(k)
		return nil, false, err
	}
	p.mu.Lock()
	st.Boots++
	p.mu.Unlock()
	return b, false, nil
}

// forgetUnused drops the figures of k's pool if it never had a sandbox (its
// first boot failed: an image that cannot be run, say), so it is not listed.
func (p *pool) forgetUnused(k poolKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.stats[k]; st != nil && *st == (PoolStats{Account: k.account, Image: k.image, MemoryMB: k.memoryMB}) && len(p.idle[k]) == 0 {
		delete(p.stats, k)
	}
}

func (p *pool) release(k poolKey) {
	p.mu.Lock()
	p.statsFor(k).InUse--
	p.mu.Unlock()
}

// willReturn announces that a healthy sandbox of k will be put back (put must
// follow), so requests wait for it rather than boot another.
func (p *pool) willReturn(k poolKey) {
	p.mu.Lock()
	p.returning[k]++
	p.mu.Unlock()
}

// put returns a sandbox after an execution. A healthy one (announced by
// willReturn) is reset (user processes killed, user-writable directories
// emptied) and kept idle; one whose execution crashed or broke a limit is
// destroyed. The sandbox counts as in use until it is idle again or destroyed.
// It returns the reset's reaped peak memory in KiB (see agent.Conn.Reset; 0 if
// the sandbox was not reset).
func (p *pool) put(k poolKey, b *box, healthy bool) (reapedPeakKB int64) {
	retire := func() {
		p.mu.Lock()
		st := p.statsFor(k)
		st.Retired++
		st.InUse--
		if healthy {
			p.returnedLocked(k)
		}
		p.mu.Unlock()
		p.e.destroyLater(b)
	}
	if !healthy {
		retire()
		return 0
	}
	ctx, cancel := context.WithTimeout(p.e.ctx, 10*time.Second)
	defer cancel()
	reapedPeakKB, err := b.Agent().Reset(ctx)
	if err != nil {
		if p.e.ctx.Err() == nil { // not the server shutting down
			p.e.log.Warn("resetting warm sandbox; destroying it", "sandbox", b.ID(), "err", err)
		}
		retire()
		return reapedPeakKB
	}
	w := &pooled{b: b, key: k, idleFrom: time.Now()}
	if st, err := b.Stats(ctx); err == nil {
		w.memBytes = st.MemoryBytes
	}
	p.mu.Lock()
	p.statsFor(k).InUse--
	p.returnedLocked(k)
	if p.e.ctx.Err() != nil {
		p.mu.Unlock()
		p.e.destroyLater(b)
		return reapedPeakKB
	}
	p.idle[k] = append(p.idle[k], w)
	var evicted []*box
	if limit := int64(p.e.cfg.MaxWarmMemoryMB) << 20; limit > 0 {
		for p.idleMemory() > limit {
			old := p.oldestLocked()
			if old == nil {
				break
			}
			evicted = append(evicted, old.b)
		}
	}
	p.mu.Unlock()
	for _, b := range evicted {
		p.e.destroyLater(b)
	}
	return reapedPeakKB
}

func (p *pool) count(k poolKey, f func(*PoolStats)) {
	p.mu.Lock()
	f(p.statsFor(k))
	p.mu.Unlock()
}

func (p *pool) idleMemory() int64 {
	var n int64
	for _, list := range p.idle {
		for _, w := range list {
			n += w.memBytes
		}
	}
	return n
}

// oldestLocked removes and returns the idle sandbox idle the longest (counted as
// evicted). Called with p.mu held.
func (p *pool) oldestLocked() *pooled {
	var oldest *pooled
	for _, list := range p.idle {
		if len(list) > 0 && (oldest == nil || list[0].idleFrom.Before(oldest.idleFrom)) {
			oldest = list[0]
		}
	}
	if oldest != nil {
		p.idle[oldest.key] = p.idle[oldest.key][1:]
		p.statsFor(oldest.key).Evicted++
	}
	return oldest
}

// evictOldest removes the least recently used idle sandbox of any account and
// returns it for the caller to destroy (nil if none is idle).
func (p *pool) evictOldest() *box {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.oldestLocked(); w != nil {
		return w.b
	}
	return nil
}

func (p *pool) reapLoop() {
	defer close(p.done)
	timeout := p.e.cfg.PoolIdleTimeout
	if timeout <= 0 {
		return
	}
	tick := time.NewTicker(max(timeout/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.e.ctx.Done():
			return
		case <-tick.C:
		}
		var reaped []*box
		p.mu.Lock()
		for k, list := range p.idle {
			keep := list[:0]
			for _, w := range list {
				if time.Since(w.idleFrom) > timeout {
					reaped = append(reaped, w.b)
					p.statsFor(k).Reaped++
				} else {
					keep = append(keep, w)
				}
			}
			p.idle[k] = keep
		}
		p.mu.Unlock()
		for _, b := range reaped {
			p.e.destroyLater(b)
		}
	}
}

// close destroys every idle sandbox. Called after the engine's context is cancelled.
func (p *pool) close() {
	<-p.done
	p.mu.Lock()
	var all []*box
	for k, list := range p.idle {
		for _, w := range list {
			all = append(all, w.b)
		}
		delete(p.idle, k)
	}
	p.mu.Unlock()
	for _, b := range all {
		p.e.destroyLater(b)
	}
}

// snapshot returns the stats of the account's pools ("" for every account).
func (p *pool) snapshot(account string) []PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []PoolStats
	for k, st := range p.stats {
		if account != "" && k.account != account {
			continue
		}
		s := *st
		s.Idle = len(p.idle[k])
		for _, w := range p.idle[k] {
			s.IdleMemoryBytes += w.memBytes
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Account != out[j].Account {
			return out[i].Account < out[j].Account
		}
		if out[i].Image != out[j].Image {
			return out[i].Image < out[j].Image
		}
		return out[i].MemoryMB < out[j].MemoryMB
	})
	return out
}

// evictImages destroys the idle warm sandboxes of images other than the host
// image (so an image can be removed from the store), waiting for them to go.
func (p *pool) evictImages(ctx context.Context) {
	var out []*box
	p.mu.Lock()
	for k, list := range p.idle {
		if k.image == HostImage {
			continue
		}
		for _, w := range list {
			out = append(out, w.b)
			p.statsFor(k).Evicted++
		}
		p.idle[k] = nil
	}
	p.mu.Unlock()
	p.e.destroyNow(ctx, out)
}
