package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faas-platform/faas/sandbox"
)

// StockTarget is how many pre-booted, never-used sandboxes of an image the stock
// keeps, with the zygotes of Languages already running.
type StockTarget struct {
	Image     string // HostImage or an image reference the image store holds
	Languages []string
	Size      int
}

// ParseStockTargets reads stock targets written as comma-separated
// LANGUAGE[+LANGUAGE]@IMAGE=SIZE items, e.g.
// "python@python:3.12-slim=2,javascript@node:20=1" ("" is none).
func ParseStockTargets(s string) ([]StockTarget, error) {
	var out []StockTarget
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		bad := func(why string) error {
			return fmt.Errorf("stock target %q: %s (want LANGUAGE[+LANGUAGE]@IMAGE=SIZE, e.g. python@python:3.12-slim=2)", item, why)
		}
		langs, rest, ok := strings.Cut(item, "@")
		i := strings.LastIndex(rest, "=")
		if !ok || i < 0 {
			return nil, bad("malformed")
		}
		t := StockTarget{Image: strings.TrimSpace(rest[:i])}
		n, err := strconv.Atoi(strings.TrimSpace(rest[i+1:]))
		if err != nil || n < 1 || n > 64 {
			return nil, bad("the size must be a number from 1 to 64")
		}
		t.Size = n
		if t.Image == "" || strings.ContainsAny(t.Image, " \t") {
			return nil, bad("no image")
		}
		for _, l := range strings.Split(langs, "+") {
			canon, ok := languages[strings.ToLower(strings.TrimSpace(l))]
			if !ok {
				return nil, bad(fmt.Sprintf("unknown language %q", strings.TrimSpace(l)))
			}
			t.Languages = append(t.Languages, canon)
		}
		out = append(out, t)
	}
	return out, nil
}

// stock keeps pre-booted, never-used sandboxes, one shelf per StockTarget, so a
// request skips the boot and the interpreter start. A stocked sandbox is handed
// out once: to an ephemeral execution (destroyed after) or to an account's warm
// pool (never to another account). The stock refills in the background.
type stock struct {
	e       *Engine
	mu      sync.Mutex
	shelves []*shelf
	kick    chan struct{}
	done    chan struct{}
	closed  bool
}

// shelf holds the stocked sandboxes of one target.
type shelf struct {
	StockTarget
	ready  []*box
	booted int64
	// demand holds when a request last took one of the shelf's sandboxes for a
	// language whose zygote the shelf's target does not start ahead (JavaScript, say,
	// on the default python,bash stock): for Config.StockDemandWindow after, the
	// sandboxes it boots start that zygote too. Guarded by stock.mu.
	demand map[string]time.Time
	// retryAt holds off refilling after a failure to resolve the image (not
	// pulled yet, or being removed); failing is that error, logged once.
	retryAt time.Time
	failing string
}

// stockRetry is how long a shelf whose image cannot be resolved waits before
// trying again.
const stockRetry = 30 * time.Second

// languagesLocked returns the languages whose zygotes the shelf's next sandbox
// starts: the target's, and those asked for within window (see shelf.demand).
// Called with stock.mu held.
func (sh *shelf) languagesLocked(now time.Time, window time.Duration) []string {
	var demanded []string
	for lang, at := range sh.demand {
		if now.Sub(at) > window {
			delete(sh.demand, lang)
		} else if !sh.warms(lang) {
			demanded = append(demanded, lang)
		}
	}
	slices.Sort(demanded)
	return append(slices.Clip(sh.Languages), demanded...)
}

func newStock(e *Engine, targets []StockTarget) *stock {
	s := &stock{e: e, kick: make(chan struct{}, 1), done: make(chan struct{})}
	for _, t := range targets {
		if t.Size > 0 {
			s.shelves = append(s.shelves, &shelf{StockTarget: t})
		}
	}
	if len(s.shelves) > 0 {
		go s.refill()
		s.signal()
	} else {
		close(s.done)
	}
	return s
}

// len is how many sandboxes are stocked, over every shelf.
func (s *stock) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sh := range s.shelves {
		n += len(sh.ready)
	}
	return n
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

// pop returns a stocked sandbox with spec's root filesystem (the resolved image:
// "" for the host image), preferably with language's zygote running, or nil.
func (s *stock) pop(spec sandbox.Spec, language string) *box {
	for {
		s.mu.Lock()
		var from *shelf
		for _, sh := range s.shelves {
			// A sandbox's memory size is set at boot for what the code sees of it
			// (/proc/meminfo, and the sizes of its writable layer and /tmp, which
			// are held in it): only a request for the same takes it.
			if len(sh.ready) == 0 || sh.ready[0].Spec().RootFS != spec.RootFS || sh.ready[0].Spec().MemoryMB != spec.MemoryMB ||
				spec.DiskMB != 0 && sh.ready[0].Spec().DiskMB != spec.DiskMB {
				continue
			}
			if from == nil || !from.warms(language) && sh.warms(language) {
				from = sh
			}
		}
		var b *box
		if from != nil { // the oldest (the most settled) running language's zygote, else the oldest
			i := max(slices.IndexFunc(from.ready, func(b *box) bool { return b.isWarm(language) }), 0)
			b = from.ready[i]
			from.ready = slices.Delete(from.ready, i, i+1)
			if zygoteLanguage(language) != "" && !from.warms(language) && s.e.cfg.StockDemandWindow > 0 {
				if from.demand == nil {
					from.demand = make(map[string]time.Time)
				}
				from.demand[language] = time.Now()
			}
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

// warms reports whether the shelf's sandboxes run language's zygote.
func (sh *shelf) warms(language string) bool {
	z := zygoteLanguage(language)
	return z != "" && slices.ContainsFunc(sh.Languages, func(l string) bool { return zygoteLanguage(l) == z })
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

// fresh returns a never-used sandbox for spec: from the stock when one of its
// image is ready (resized to spec's limits; preferably one running language's
// zygote), otherwise a newly created one. At the sandbox cap it evicts an idle
// pooled sandbox, or fails with ErrBusy.
func (e *Engine) fresh(ctx context.Context, spec sandbox.Spec, language string) (*box, error) {
	cfg, release, err := e.withImage(&spec)
	if err != nil {
		return nil, err
	}
	var booted func()
	for {
		if b := e.stock.pop(spec, language); b != nil {
			release() // the stocked sandbox holds its image
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
			if cfg, release, err = e.withImage(&spec); err != nil {
				return nil, err
			}
		}
		if booted, err = e.reserve(ctx, freshBoot); !errors.Is(err, errStockLanded) {
			break
		}
	}
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
	// stocking counts the stock's sandboxes from their reservation until they
	// are on the shelf (or failed); landed counts those that made it.
	stocking, landed int
	waiting          int           // requests waiting for a leaving or stocking sandbox
	left             chan struct{} // closed (and replaced) when one has left or landed
	slots            chan struct{}
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
			bs.wakeLocked()
			bs.mu.Unlock()
		})
	}
}

// stocked counts a stock sandbox that was being made as on the shelf (ok) or
// failed.
func (bs *boots) stocked(ok bool) {
	bs.mu.Lock()
	bs.stocking--
	if ok {
		bs.landed++
	}
	bs.wakeLocked()
	bs.mu.Unlock()
}

// wakeLocked wakes the requests waiting at the cap.
func (bs *boots) wakeLocked() {
	if bs.left != nil {
		close(bs.left)
		bs.left = nil
	}
}

// errStockLanded tells fresh a stocked sandbox is ready: take it.
var errStockLanded = errors.New("a stocked sandbox is ready")

// booter is who reserves a boot (see reserve).
type booter int

const (
	stockBoot   booter = iota // the stock's background refill
	requestBoot               // a request that needs a sandbox of its own (a restore)
	freshBoot                 // a request a stocked sandbox would serve as well
)

// reserve makes sure one more sandbox may be created below the cap, counting
// those booting. For a request at the cap, it waits for leaving sandboxes and
// for the stock's sandboxes on their way (see boots), then evicts the least
// recently used idle pooled sandbox, or else a stocked one; when one the stock
// was booting is ready, a freshBoot gets errStockLanded (take it instead). The
// stock's refill does none of that, and leaves a slot freed to a request
// waiting for one. It fails with ErrBusy at the cap. It then waits for a turn
// to boot. The caller creates the sandbox and calls booted (whether or not the
// creation succeeded).
func (e *Engine) reserve(ctx context.Context, who booter) (booted func(), err error) {
	if err := e.countBoot(ctx, who); err != nil {
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

// busyError is the answer at the sandbox cap (made only when it is given).
type busyError struct{ limit int }

func (b busyError) Error() string {
	return fmt.Sprintf("%v: all %d sandboxes are in use", ErrBusy, b.limit)
}

func (b busyError) Unwrap() error { return ErrBusy }

// countBoot counts one more sandbox booting if the cap allows it; see reserve.
func (e *Engine) countBoot(ctx context.Context, who booter) error {
	request := who != stockBoot
	limit := e.cfg.MaxSandboxes
	busy := busyError{limit}
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
			if !request {
				bs.stocking++ // until stocked
			}
			return nil
		}
		if !request {
			return busy
		}
		if bs.leaving > 0 || bs.stocking > 0 {
			landed := bs.landed
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
			if who == freshBoot && bs.landed != landed {
				return errStockLanded
			}
			continue
		}
		if evicted {
			return busy
		}
		bs.mu.Unlock() // the pool's and the stock's locks are never taken under this one
		b := e.pool.evictOldest()
		if b == nil {
			b = e.stock.evictOldest() // of another image, or it would have been taken
		}
		if b == nil {
			b = e.branches.evictOldest()
		}
		if b != nil {
			_ = b.Destroy(ctx)
		}
		bs.mu.Lock()
		if b == nil {
			return busy
		}
		evicted = true
	}
}

func (s *stock) refill() {
	defer close(s.done)
	retry := time.NewTicker(stockRetry)
	defer retry.Stop()
	for {
		select {
		case <-s.e.ctx.Done():
			return
		case <-s.kick:
		case <-retry.C:
		}
		for {
			sh := s.neediest()
			if sh == nil || !s.fill(sh) {
				break
			}
		}
	}
}

// neediest returns the shelf furthest below its target (relative to its size)
// that may be refilled now, or nil.
func (s *stock) neediest() *shelf {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *shelf
	now := time.Now()
	for _, sh := range s.shelves {
		if len(sh.ready) >= sh.Size || now.Before(sh.retryAt) {
			continue
		}
		if best == nil || len(sh.ready)*best.Size < len(best.ready)*sh.Size {
			best = sh
		}
	}
	return best
}

// fill boots one sandbox for sh and readies its zygotes. It returns false when
// refilling should stop for now: at the sandbox cap, or the engine closing.
func (s *stock) fill(sh *shelf) bool {
	e := s.e
	l := e.cfg.Limits
	spec := sandbox.Spec{Image: sh.Image, CPUCores: l.DefaultCPUCores, MemoryMB: l.DefaultMemoryMB}
	cfg, release, err := e.withImage(&spec)
	s.mu.Lock()
	if err != nil {
		sh.retryAt = time.Now().Add(stockRetry)
		if msg := err.Error(); msg != sh.failing {
			sh.failing = msg
			e.log.Warn("stocking sandboxes: image not available; trying again later", "image", sh.Image, "err", err)
		}
		s.mu.Unlock()
		return true
	}
	sh.failing = ""
	languages := sh.languagesLocked(time.Now(), e.cfg.StockDemandWindow)
	var stale []*box // of an earlier image under the same name
	sh.ready = slices.DeleteFunc(sh.ready, func(b *box) bool {
		if b.Spec().RootFS != spec.RootFS {
			stale = append(stale, b)
			return true
		}
		return false
	})
	s.mu.Unlock()
	for _, b := range stale {
		e.destroyLater(b)
	}
	booted, err := e.reserve(e.ctx, stockBoot) // never evicts a warm sandbox
	if err != nil {
		release()
		return false // at the cap (or closing)
	}
	stocked := false
	defer func() { e.boots.stocked(stocked) }()
	sb, err := e.driver.Create(e.ctx, spec)
	booted()
	if err != nil {
		release()
		if e.ctx.Err() != nil {
			return false
		}
		e.log.Warn("filling sandbox stock", "image", sh.Image, "err", err)
		select {
		case <-e.ctx.Done():
			return false
		case <-time.After(time.Second):
		}
		return true
	}
	b := &box{Sandbox: sb, image: cfg, release: release}
	e.warmUp(e.ctx, b, languages)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		e.destroyLater(b)
		return false
	}
	sh.ready = append(sh.ready, b)
	sh.booted++
	s.mu.Unlock()
	stocked = true
	return true
}

// evictOldest takes the oldest stocked sandbox of the fullest shelf off it, for
// the caller to destroy (nil if there is none).
func (s *stock) evictOldest() *box {
	s.mu.Lock()
	defer s.mu.Unlock()
	var from *shelf
	for _, sh := range s.shelves {
		if len(sh.ready) > 0 && (from == nil || len(sh.ready) > len(from.ready)) {
			from = sh
		}
	}
	if from == nil {
		return nil
	}
	b := from.ready[0]
	from.ready = from.ready[1:]
	return b
}

// dropImages destroys the stocked sandboxes of images other than the host image
// and holds off refilling them for a while (so that an image can be removed),
// waiting for them to go.
func (s *stock) dropImages(ctx context.Context) {
	var out []*box
	s.mu.Lock()
	for _, sh := range s.shelves {
		if sh.Image == HostImage {
			continue
		}
		out = append(out, sh.ready...)
		sh.ready = nil
		sh.retryAt = time.Now().Add(stockRetry)
	}
	s.mu.Unlock()
	s.e.destroyNow(ctx, out)
}

// close stops refilling and destroys what is in stock. Called after the engine's
// context is cancelled.
func (s *stock) close() {
	<-s.done
	s.mu.Lock()
	s.closed = true
	var ready []*box
	for _, sh := range s.shelves {
		ready = append(ready, sh.ready...)
		sh.ready = nil
	}
	s.mu.Unlock()
	for _, b := range ready {
		s.e.destroyLater(b)
	}
}
