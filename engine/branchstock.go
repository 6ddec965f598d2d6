package engine

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/faas-platform/faas/store"
)

// branchStock keeps sandboxes restored ahead of demand from snapshots that were
// just made or branched from, so a branch (or restore) takes one that is ready
// instead of waiting for a restore. Each is used once, by the snapshot's own
// account (only its owner can name the snapshot). Demand sets how many each
// snapshot keeps: Config.BranchStock after a checkpoint, and the count of the last
// branch request; all snapshots together keep at most Config.BranchStockMax, the
// most recently used first, and never the last free sandbox slots. Snapshots not
// used for the session idle timeout lose theirs.
type branchStock struct {
	e     *Engine
	mu    sync.Mutex
	snaps map[string]*stocked
	kick  chan struct{}
	done  chan struct{}
}

type stocked struct {
	snap   store.Snapshot
	want   int
	ready  []*box
	used   time.Time
	failed bool // a restore failed: stop trying until the next demand
}

func newBranchStock(e *Engine) *branchStock {
	bs := &branchStock{e: e, snaps: make(map[string]*stocked), kick: make(chan struct{}, 1), done: make(chan struct{})}
	go bs.refill()
	return bs
}

func (bs *branchStock) signal() {
	select {
	case bs.kick <- struct{}{}:
	default:
	}
}

// demand asks for n sandboxes of snap to be kept ready.
func (bs *branchStock) demand(snap store.Snapshot, n int) {
	max := bs.e.cfg.BranchStockMax
	if n <= 0 || max <= 0 {
		return
	}
	bs.mu.Lock()
	st := bs.snaps[snap.ID]
	if st == nil {
		st = &stocked{snap: snap}
		bs.snaps[snap.ID] = st
	}
	st.want, st.used, st.failed = min(n, max), time.Now(), false
	bs.mu.Unlock()
	bs.signal()
}

// take returns a ready sandbox restored from snapshot id, or nil.
func (bs *branchStock) take(id string) *box {
	for {
		bs.mu.Lock()
		st := bs.snaps[id]
		var b *box
		if st != nil && len(st.ready) > 0 {
			b = st.ready[len(st.ready)-1]
			st.ready = st.ready[:len(st.ready)-1]
			st.used = time.Now()
		}
		bs.mu.Unlock()
		if b == nil {
			return nil
		}
		// No refill yet: it would compete with the request for the CPU. The
		// request's end calls refillLater.
		if bs.e.alive(b) {
			return b
		}
		bs.e.destroyLater(b)
	}
}

// refillLater restores what was taken, once the request that took it is done.
func (bs *branchStock) refillLater() { bs.signal() }

// drop forgets a snapshot and destroys what was restored from it.
func (bs *branchStock) drop(id string) {
	bs.mu.Lock()
	st := bs.snaps[id]
	delete(bs.snaps, id)
	bs.mu.Unlock()
	if st != nil {
		for _, b := range st.ready {
			bs.e.destroyLater(b)
		}
	}
}

// evictOldest takes out of the stock (for the caller to destroy) the sandbox
// restored first of the snapshot used least recently, or returns nil: a request
// at the sandbox cap makes room with it, as with idle warm sandboxes. The
// snapshot keeps one fewer from then on, until its next demand.
func (bs *branchStock) evictOldest() *box {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var from *stocked
	for _, st := range bs.snaps {
		if len(st.ready) > 0 && (from == nil || st.used.Before(from.used)) {
			from = st
		}
	}
	if from == nil {
		return nil
	}
	b := from.ready[0]
	from.ready = from.ready[1:]
	from.want = max(0, from.want-1)
	return b
}

// held counts the sandboxes in stock.
func (bs *branchStock) held() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	n := 0
	for _, st := range bs.snaps {
		n += len(st.ready)
	}
	return n
}

// next picks the snapshot to restore one more sandbox of (the most recently used
// that is short), expiring idle ones on the way; nil when nothing is to be done.
func (bs *branchStock) next() *stocked {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var list []*stocked
	total := 0
	for id, st := range bs.snaps {
		if time.Since(st.used) > bs.e.cfg.SessionIdleTimeout {
			delete(bs.snaps, id)
			for _, b := range st.ready {
				bs.e.destroyLater(b)
			}
			continue
		}
		total += len(st.ready)
		list = append(list, st)
	}
	if total >= bs.e.cfg.BranchStockMax {
		return nil
	}
	sort.Slice(list, func(i, j int) bool { return list[i].used.After(list[j].used) })
	for _, st := range list {
		if len(st.ready) < st.want && !st.failed {
			return st
		}
	}
	return nil
}

func (bs *branchStock) refill() {
	defer close(bs.done)
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-bs.e.ctx.Done():
			return
		case <-bs.kick:
		case <-tick.C: // expiry
		}
		for {
			if max := bs.e.cfg.MaxSandboxes; max > 0 && bs.e.driver.Live() >= max-1 {
				break // never take the last slots from requests
			}
			st := bs.next()
			if st == nil {
				break
			}
			ctx, cancel := context.WithTimeout(bs.e.ctx, time.Minute)
			b, err := bs.e.restore(ctx, &st.snap)
			cancel()
			bs.mu.Lock()
			current := bs.snaps[st.snap.ID] == st
			if err != nil {
				st.failed = true
			} else if current && bs.e.ctx.Err() == nil {
				st.ready = append(st.ready, b)
				b = nil
			}
			bs.mu.Unlock()
			if err != nil {
				if bs.e.ctx.Err() != nil {
					return
				}
				bs.e.log.Warn("restoring a snapshot ahead of demand", "snapshot", st.snap.ID, "err", err)
			}
			if b != nil {
				bs.e.destroyLater(b) // dropped meanwhile
			}
		}
	}
}

// close stops refilling and destroys the stock. Called after the engine's context
// is cancelled.
func (bs *branchStock) close() {
	<-bs.done
	bs.mu.Lock()
	snaps := bs.snaps
	bs.snaps = map[string]*stocked{}
	bs.mu.Unlock()
	for _, st := range snaps {
		for _, b := range st.ready {
			bs.e.destroyLater(b)
		}
	}
}
