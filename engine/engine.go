// Package engine runs executions: it validates what a request asks for, chooses
// the sandbox that serves its mode, runs the code through the in-sandbox agent,
// records the execution and its usage in the store, and owns the lifecycle of every
// sandbox it creates (nothing outlives Close).
package engine

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/store"
)

// UserUID and UserGID are the identity user code runs as inside a sandbox.
const (
	UserUID = 1000
	UserGID = 1000
)

// Config configures an Engine.
type Config struct {
	Limits Limits
	// StockSize is how many pre-booted, never-used sandboxes are kept ready for
	// ephemeral executions; 0 boots one per request.
	StockSize int
	// StockLanguages are the languages whose zygote stocked sandboxes start ahead.
	StockLanguages []string
	// StockTargets are further stocks, per image: StockSize and StockLanguages
	// make the host image's.
	StockTargets []StockTarget
	// StockDemandWindow is how long after a request takes a stocked sandbox for
	// a language whose zygote its stock does not start ahead, the sandboxes
	// that stock boots start that zygote too; 0: never.
	StockDemandWindow time.Duration
	// MaxSandboxes caps the sandboxes alive at once; a request beyond it is answered
	// ErrBusy (after evicting an idle warm sandbox, if there is one). 0: no cap.
	MaxSandboxes int
	// PoolIdleTimeout destroys a warm sandbox idle for longer; 0 keeps them.
	PoolIdleTimeout time.Duration
	// Quota bounds what each account may run at once.
	Quota Quota
	// MaxWarmMemoryMB caps the memory held by idle warm sandboxes together; the
	// least recently used go first. 0: no cap.
	MaxWarmMemoryMB int
	// Images provides images other than the host image; nil: host only.
	Images ImageSource
	// LanguageImages maps a language to the image its code runs in when a
	// request names none (default: the host image).
	LanguageImages map[string]string
	// SnapshotDir holds snapshot images (see RecoverSnapshots).
	SnapshotDir string
	// SnapshotCompressAfter compresses the image of a snapshot not restored for
	// this long (0: DefaultSnapshotCompressAfter; negative: never).
	SnapshotCompressAfter time.Duration
	// InstanceDir holds what instances keep on disk (paused state, saved files).
	InstanceDir string
	// InstanceMeterInterval is how often running instances' usage is recorded
	// (and idle ones paused); 0 means a minute.
	InstanceMeterInterval time.Duration
	// BranchStock is how many sandboxes are restored ahead of demand from each new
	// snapshot (see branchStock); BranchStockMax bounds them over all snapshots.
	BranchStock    int
	BranchStockMax int
	// SessionIdleTimeout ends a session (and its sandbox) idle for longer;
	// 0 means DefaultSessionIdleTimeout.
	SessionIdleTimeout time.Duration
	Logger             *slog.Logger
}

// DefaultSnapshotCompressAfter is how long a snapshot stays uncompressed after
// its last use.
const DefaultSnapshotCompressAfter = 10 * time.Minute

// DefaultSessionIdleTimeout is how long an idle session lives by default.
const DefaultSessionIdleTimeout = 10 * time.Minute

// Engine runs executions. It is safe for concurrent use.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	driver sandbox.Driver
	store  *store.Store
	stock  *stock
	pool   *pool
	boots  boots
	quotas *quotas
	lives  *lives

	sessions  sessions
	branches  *branchStock
	snapQuota sync.Map // account → *sync.Mutex: snapshot quota checks one at a time
	instances instances
	verified  sync.Map // ids of snapshots whose image this process has hashed
	snapLocks snapshotLocks

	ctx    context.Context // cancelled by Close; bounds background work
	cancel context.CancelFunc
	bg     sync.WaitGroup // background sandbox destruction
	runs   sync.WaitGroup // executions in flight
	mu     sync.Mutex
	closed bool
}

// New returns an engine that creates sandboxes with driver and records executions in
// st. It starts filling the stock in the background.
func New(cfg Config, driver sandbox.Driver, st *store.Store) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{cfg: cfg, log: cfg.Logger, driver: driver, store: st, ctx: ctx, cancel: cancel}
	e.boots.slots = make(chan struct{}, maxConcurrentBoots())
	e.stock = newStock(e, append([]StockTarget{{Image: HostImage, Languages: cfg.StockLanguages, Size: cfg.StockSize}}, cfg.StockTargets...))
	e.pool = newPool(e)
	e.quotas = newQuotas(cfg.Quota)
	e.lives = &lives{m: make(map[string]*Live)}
	if e.cfg.SessionIdleTimeout <= 0 {
		e.cfg.SessionIdleTimeout = DefaultSessionIdleTimeout
	}
	e.sessions = sessions{m: make(map[string]*session), byExec: make(map[string]*session)}
	e.branches = newBranchStock(e)
	e.instances = instances{m: make(map[string]*instance)}
	if e.cfg.InstanceMeterInterval <= 0 {
		e.cfg.InstanceMeterInterval = time.Minute
	}
	e.every(max(min(e.cfg.SessionIdleTimeout/4, 30*time.Second), 10*time.Millisecond), e.reapSessions)
	e.every(e.cfg.InstanceMeterInterval, e.superviseInstances)
	if e.cfg.SnapshotCompressAfter == 0 {
		e.cfg.SnapshotCompressAfter = DefaultSnapshotCompressAfter
	}
	if after := e.cfg.SnapshotCompressAfter; after > 0 {
		e.every(max(after/4, 100*time.Millisecond), e.compressCold)
	}
	return e
}

// every calls tick every d, in the background, until the engine closes.
func (e *Engine) every(d time.Duration, tick func()) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-e.ctx.Done():
				return
			case <-t.C:
				tick()
			}
		}
	}()
}

// Limits returns the engine's limits.
func (e *Engine) Limits() Limits { return e.cfg.Limits }

// Close stops accepting work, waits for executions in flight (until ctx ends), and
// destroys every sandbox the engine holds.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.runs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	e.pauseAllInstances(ctx)
	e.cancel()
	e.closeSessions()
	e.branches.close()
	e.stock.close()
	e.pool.close()
	e.bg.Wait()
	return nil
}

// Pools returns the warm pool statistics of an account ("" for every account).
func (e *Engine) Pools(account string) []PoolStats { return e.pool.snapshot(account) }

// StockStats describes the stock of never-used sandboxes: Target, Ready and
// Booted over every shelf, Languages those of the host image's; Shelves one by one.
type StockStats struct {
	Target    int
	Ready     int
	Booted    int64
	Languages []string
	Shelves   []ShelfStats
}

// ShelfStats describes the stock of one StockTarget.
type ShelfStats struct {
	StockTarget
	Ready  int
	Booted int64
	// Demanded are the languages, beyond the target's, whose zygotes the
	// shelf's new sandboxes start because requests asked for them lately
	// (see Config.StockDemandWindow); Warm counts the ready sandboxes running each
	// zygote ("python", "node", "bash").
	Demanded []string
	Warm     map[string]int
	// Error is why the image cannot be stocked now ("" when it can).
	Error string
}

// Stock returns the stock's statistics.
func (e *Engine) Stock() StockStats {
	e.stock.mu.Lock()
	defer e.stock.mu.Unlock()
	st := StockStats{Languages: e.cfg.StockLanguages}
	for _, sh := range e.stock.shelves {
		st.Target += sh.Size
		st.Ready += len(sh.ready)
		st.Booted += sh.booted
		langs := sh.languagesLocked(time.Now(), e.cfg.StockDemandWindow)
		warm := make(map[string]int)
		for _, b := range sh.ready {
			b.mu.Lock()
			for _, z := range b.warm {
				warm[z]++
			}
			b.mu.Unlock()
		}
		st.Shelves = append(st.Shelves, ShelfStats{StockTarget: sh.StockTarget, Ready: len(sh.ready), Booted: sh.booted,
			Demanded: langs[len(sh.Languages):], Warm: warm, Error: sh.failing})
	}
	return st
}

// Prewarm readies count warm sandboxes (with the language's zygote running) in the
// account's pool for image ("" for the language's configured image, else the host
// image) and memory limit (0 for the default), and returns the image, the memory
// limit and how many it added. It stops early, without error, when the sandbox
// cap leaves no room.
func (e *Engine) Prewarm(ctx context.Context, account, wantImage, language string, wantMemoryMB, count int) (image string, memoryMB, added int, err error) {
	r := Request{Account: account, Image: wantImage, Language: language, Code: "pass", Mode: ModeCached, MemoryMB: wantMemoryMB}
	if err := e.normalize(&r); err != nil {
		return "", 0, 0, err
	}
	if count < 1 || count > 32 {
		return "", 0, 0, invalid("count must be between 1 and 32")
	}
	k := poolKey{account: r.Account, image: r.Image, memoryMB: r.MemoryMB}
	spec := sandbox.Spec{Image: r.Image, CPUCores: r.CPUCores, MemoryMB: r.MemoryMB}
	for range count {
		// At the cap, a fresh sandbox would make room by evicting an idle warm
		// one, perhaps one this prewarm just made: stop instead.
		if max := e.cfg.MaxSandboxes; added > 0 && max > 0 && e.driver.Live()-e.stock.len() >= max {
			break
		}
		p := e.pool
		p.mu.Lock()
		st := p.statsFor(k)
		st.InUse++
		p.mu.Unlock()
		b, err := e.fresh(ctx, spec, r.Language)
		if err != nil {
			p.release(k)
			p.forgetUnused(k) // a pool that never had a sandbox is not listed
			if errors.Is(err, ErrBusy) && added > 0 {
				break
			}
			return r.Image, r.MemoryMB, added, err
		}
		p.count(k, func(st *PoolStats) { st.Boots++ })
		e.warmUp(ctx, b, []string{r.Language})
		p.willReturn(k)
		p.put(k, b, true)
		added++
	}
	return r.Image, r.MemoryMB, added, nil
}

// Health reports whether the sandbox runtime works, and its version.
type Health struct {
	Runtime string
	Version string
	Ready   bool
	Error   string
	Live    int // sandboxes alive now
	Stocked int // pre-booted sandboxes ready
	// Sessions counts live sessions (each holds a sandbox); BranchStocked the
	// sandboxes restored ahead of demand.
	Sessions      int
	BranchStocked int
	// Instances counts running instances (each holds a sandbox).
	Instances int
}

// Health checks the sandbox runtime.
func (e *Engine) Health(ctx context.Context) Health {
	h := Health{Runtime: e.driver.Name(), Live: e.driver.Live(), Stocked: e.stock.len(), BranchStocked: e.branches.held()}
	e.sessions.mu.Lock()
	h.Sessions = len(e.sessions.m)
	e.sessions.mu.Unlock()
	h.Instances = e.runningInstances()
	v, err := e.driver.Version(ctx)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	h.Version, h.Ready = v, true
	return h
}

// Result is the outcome of one execution.
type Result struct {
	ExecutionID     string
	Mode            string
	Language        string
	Status          string // store.Status*
	ExitCode        int
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	TimedOut        bool
	OOMKilled       bool
	Error           string // what went wrong, for the client, when Status is error or timeout
	Duration        time.Duration
	CPUTime         time.Duration
	MemoryPeakBytes int64
	CostMicroUSD    int64
	// Warm reports that a cached execution reused an idle warm sandbox.
	Warm bool
	// SessionID is the session (or branch) the execution ran in, if any.
	SessionID string
	Branch    bool
	// SnapshotID is the snapshot taken after the execution (checkpoint_after);
	// SnapshotError says why none was taken when one was asked for.
	SnapshotID    string
	SnapshotError string
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Execute runs one request to completion. Errors wrap ErrInvalid, ErrUnavailable,
// ErrQuota or ErrBusy for the client's mistakes and limits; anything else is the
// platform's fault. A program that fails, times out or exceeds its memory is not
// an error: the Result says so. If ctx ends first, the execution is stopped.
func (e *Engine) Execute(ctx context.Context, req Request) (*Result, error) {
	l, err := e.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	select {
	case <-l.Done():
	case <-ctx.Done():
		l.Stop()
	}
	return l.Result()
}

// Start validates a request, takes its sandbox and records it, then runs it in the
// background and returns it live: its output can be followed as it is written.
// ctx bounds only the start; the execution runs until it ends (its timeout
// bounds it) or is stopped. Errors are those of Execute.
func (e *Engine) Start(ctx context.Context, req Request) (*Live, error) {
	if err := e.normalize(&req); err != nil {
		return nil, err
	}
	var argv []string
	if !req.inSession() {
		var err error
		if argv, err = command(&req); err != nil {
			return nil, err
		}
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: the server is shutting down", ErrBusy)
	}
	e.runs.Add(1)
	e.mu.Unlock()
	started := false
	defer func() {
		if !started {
			e.runs.Done()
		}
	}()

	if req.inSession() {
		l, err := e.startInSession(ctx, &req)
		started = err == nil
		return l, err
	}
	release, err := e.quotas.acquire(req.Account, req.CPUCores, req.MemoryMB)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !started {
			release()
		}
	}()
	// The sandbox comes first: a request refused for capacity leaves no record.
	spec := sandbox.Spec{Image: req.Image, CPUCores: req.CPUCores, MemoryMB: req.MemoryMB}
	key := poolKey{account: req.Account, image: req.Image, memoryMB: req.MemoryMB}
	var b *box
	var warm bool
	switch req.Mode {
	case ModeCached:
		b, warm, err = e.pool.take(ctx, key, spec, req.Language)
	default:
		b, err = e.fresh(ctx, spec, req.Language)
	}
	if err != nil {
		return nil, err
	}

	rec := store.Execution{
		ID: newID("exec_"), Account: req.Account, KeyID: req.KeyID, Mode: req.Mode,
		Language: req.Language, Image: req.Image, Status: store.StatusRunning, CreatedAt: time.Now(),
	}
	if err := e.store.CreateExecution(ctx, rec); err != nil {
		e.giveBack(key, &req, b, nil, nil)
		return nil, fmt.Errorf("recording execution: %w", err)
	}
	l := newLive(rec.ID, req.Account, req.Mode, req.Interactive)
	e.lives.add(l)
	started = true
	go func() {
		defer e.runs.Done()
		defer release()
		res, err := e.run(l, rec, key, &req, b, warm, argv)
		l.finish(res, err)
		e.lives.ended(l)
	}()
	return l, nil
}

// run runs a started execution and records its result.
func (e *Engine) run(l *Live, rec store.Execution, key poolKey, req *Request, b *box, warm bool, argv []string) (*Result, error) {
	log := e.log.With("execution", rec.ID, "sandbox", b.ID())
	// Python runs in a process forked from the sandbox's zygote when one is ready
	// (always for a warm pool, which keeps its zygote; for a never-used sandbox only
	// if the stock started it, since starting one costs more than it saves once).
	useZygote := zygoteLanguage(req.Language) != "" && req.Command == "" && (req.Mode == ModeCached || b.isWarm(req.Language))
	res, runErr := e.runIn(e.ctx, log, l, b, req, argv, useZygote)
	if useZygote && runErr == nil {
		b.mu.Lock()
		if !b.isWarmLocked(req.Language) {
			b.warm = append(b.warm, zygoteLanguage(req.Language))
		}
		b.mu.Unlock()
	}
	// A standby reports its own end (and memory peak, which its code can forge)
	// before the kernel has torn it down; the sandbox's reset, after the answer,
	// tells the true peak, and the record is mended if it was understated.
	var reaped chan int64
	if req.Mode == ModeCached && useZygote && res != nil {
		reaped = make(chan int64, 1)
	}
	e.giveBack(key, req, b, res, reaped)
	if runErr != nil {
		res = &Result{Status: store.StatusError, ExitCode: -1, Error: "the platform failed to run the execution"}
		log.Error("execution failed", "err", runErr)
	}
	res.Warm = warm
	out, err := e.record(rec, req, res, runErr)
	if err == nil && reaped != nil {
		e.mendMemory(rec, res, req, reaped)
	}
	return out, err
}

// mendMemory raises the recorded memory peak (and cost) of a finished
// execution to the peak reaped reports, when that is higher; off the
// answer's path.
func (e *Engine) mendMemory(rec store.Execution, res *Result, req *Request, reaped <-chan int64) {
	recorded, cpu, d, mode, limitMB := res.MemoryPeakBytes, res.CPUTime, res.Duration, req.Mode, req.MemoryMB
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		var kb int64
		select {
		case kb = <-reaped:
		case <-time.After(30 * time.Second):
			return
		}
		peak := reportedMemory(kb, limitMB)
		if peak <= recorded {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.store.RaiseExecutionMemory(ctx, rec.ID, (peak+(1<<20-1))>>20, Price(mode, cpu, peak, d)); err != nil {
			e.log.Warn("recording the reaped memory peak", "execution", rec.ID, "err", err)
		}
	}()
}

// record completes an execution's result and writes it to the store.
func (e *Engine) record(rec store.Execution, req *Request, res *Result, runErr error) (*Result, error) {
	res.ExecutionID, res.Mode, res.Language = rec.ID, req.Mode, req.Language
	res.CostMicroUSD = Price(req.Mode, res.CPUTime, res.MemoryPeakBytes, res.Duration)
	if req.Mode == ModePersistent {
		res.CostMicroUSD = 0 // an instance is billed by the second it runs (see meter)
	}

	// The record is written before anyone hears of the end: billed work is never lost.
	fin := rec
	now := time.Now()
	fin.Status, fin.ExitCode, fin.Error = res.Status, res.ExitCode, res.Error
	fin.DurationMS, fin.CPUMS = res.Duration.Milliseconds(), res.CPUTime.Milliseconds()
	fin.MemoryPeakMB = (res.MemoryPeakBytes + (1<<20 - 1)) >> 20
	fin.CostMicroUSD = res.CostMicroUSD
	fin.StdoutBytes, fin.StderrBytes = int64(len(res.Stdout)), int64(len(res.Stderr))
	fin.FinishedAt = &now
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.store.FinishExecution(wctx, fin); err != nil {
		return nil, fmt.Errorf("recording execution result: %w", err)
	}
	if runErr != nil {
		return nil, runErr
	}
	return res, nil
}

// giveBack hands a sandbox back after an execution: an ephemeral one is destroyed;
// a cached one returns to its pool unless the execution crashed, broke a limit or
// lost the sandbox (res nil: it never ran).
// reaped, if not nil, is sent the reset's reaped peak memory (0 if the
// sandbox is not reset).
func (e *Engine) giveBack(k poolKey, req *Request, b *box, res *Result, reaped chan<- int64) {
	if req.Mode != ModeCached {
		e.destroyLater(b)
		return
	}
	healthy := res != nil && (res.Status == store.StatusSucceeded || res.Status == store.StatusFailed) &&
		!res.OOMKilled && !res.TimedOut && !res.StdoutTruncated && !res.StderrTruncated && res.ExitCode < 128
	select {
	case <-b.Agent().Done():
		healthy = false
	default:
	}
	if res == nil {
		e.pool.release(k)
		e.destroyLater(b)
		return
	}
	if healthy {
		e.pool.willReturn(k)
	}
	e.bg.Add(1)
	left := e.boots.leave() // idle (evictable) or destroyed once put is done
	go func() {
		defer e.bg.Done()
		defer left()
		kb := e.pool.put(k, b, healthy)
		if reaped != nil {
			reaped <- kb
		}
	}()
}

// destroyNow destroys sandboxes one after another and returns once they are gone.
func (e *Engine) destroyNow(ctx context.Context, boxes []*box) {
	for _, b := range boxes {
		if err := b.Destroy(ctx); err != nil {
			e.log.Warn("destroying sandbox", "sandbox", b.ID(), "err", err)
		}
	}
}

// destroyLater destroys a sandbox off the request's path.
func (e *Engine) destroyLater(sb sandbox.Sandbox) {
	e.bg.Add(1)
	left := e.boots.leave()
	go func() {
		defer e.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sb.Destroy(ctx); err != nil {
			e.log.Warn("destroying sandbox", "sandbox", sb.ID(), "err", err)
		}
		left()           // a request waiting for a slot gets it first,
		e.stock.signal() // then the stock may refill
	}()
}

// runIn runs one process in sb and collects its result; python code goes to the
// sandbox's zygote when useZygote is set.
func (e *Engine) runIn(ctx context.Context, log *slog.Logger, live *Live, sb *box, req *Request, argv []string, useZygote bool) (*Result, error) {
	l := e.cfg.Limits
	stdout := &cappedBuffer{max: l.MaxOutputBytes, tee: liveWriter{live, EventStdout}}
	stderr := &cappedBuffer{max: l.MaxOutputBytes, tee: liveWriter{live, EventStderr}}
	start := time.Now()
	uid, gid := userOf(sb.image)
	dir := cmp.Or(req.WorkingDir, sb.image.WorkingDir, "/workspace")
	er := agent.ExecRequest{
		Argv:           argv,
		Env:            environmentWith(req, sb.image.Env),
		Dir:            dir,
		UID:            uid,
		GID:            gid,
		Stdin:          req.HasStdin || req.Interactive,
		TimeoutMS:      req.Timeout.Milliseconds(),
		MaxOutputBytes: l.MaxOutputBytes,
		MaxProcs:       l.MaxProcs,
		MaxOpenFiles:   l.MaxOpenFiles,
		MaxFileBytes:   l.MaxFileBytes,
	}
	if useZygote {
		er.Zygote, er.Code = zygoteLanguage(req.Language), argv[len(argv)-1] // typescript: compiled
	}
	if req.kernel != "" {
		er.Session, er.Language, er.Code, er.Argv, er.Stdin = cmp.Or(req.kernelSession, "main"), req.kernel, req.kernelCode, nil, false
	}
	er.KeepBackground = req.keepBackground
	// In a sandbox that serves one execution after another (cached, or a
	// session's), the host measures the memory this one adds: what a process
	// reports of itself can be forged, and a session's kernel reports no peak.
	var meter sandbox.PeakMeter
	var memBase int64
	if req.Mode == ModeCached || (req.kernel != "" && req.Mode != ModePersistent) {
		if m, ok := sb.Sandbox.(sandbox.PeakMeter); ok {
			var err error
			if memBase, err = m.ResetMemoryPeak(); err == nil {
				meter = m
			} else {
				log.Warn("measuring memory", "err", err)
			}
		}
	}
	ex, err := sb.Agent().Start(er, agent.Output{Stdout: stdout, Stderr: stderr})
	if err != nil {
		return nil, fmt.Errorf("starting process: %w", err)
	}
	finished := make(chan struct{})
	defer close(finished)
	if req.Interactive {
		go func() {
			defer ex.CloseStdin()
			for {
				select {
				case b, ok := <-live.stdin:
					if !ok || ex.WriteStdin(b) != nil {
						return
					}
				case <-finished:
					return
				}
			}
		}()
	} else if req.HasStdin {
		go func() {
			data := []byte(req.Stdin)
			for len(data) > 0 {
				n := min(len(data), 256<<10)
				if ex.WriteStdin(data[:n]) != nil {
					return
				}
				data = data[n:]
			}
			_ = ex.CloseStdin()
		}()
	}
	// The agent enforces the timeout; this deadline is the host's backstop for an
	// agent that stops answering (the sandbox is destroyed after anyway).
	waitCtx, cancel := context.WithTimeout(ctx, req.Timeout+5*time.Second)
	defer cancel()
	var stopped atomic.Bool
	go func() {
		select {
		case <-live.stop:
			stopped.Store(true)
			_ = ex.Kill()
		case <-waitCtx.Done():
		}
	}()
	st, waitErr := ex.Wait(waitCtx)
	cancel()
	elapsed := time.Since(start)
	// The host's view of the sandbox (peak memory, OOM kills) matters when the
	// sandbox is the execution's own, died under it, or is a cached one whose
	// process was killed (the host's OOM killer kills a process of a warm
	// sandbox at its limit and may leave the sandbox running; a cached sandbox
	// that had one killed before was retired, so any OOM kill it counts is this
	// execution's); otherwise a warm one's is skipped.
	var stats sandbox.Stats
	reused := req.Mode == ModeCached || req.kernel != ""
	if !reused || waitErr != nil || req.Mode == ModeCached && st.Signal == "SIGKILL" {
		var statsErr error
		if stats, statsErr = sb.Stats(context.WithoutCancel(ctx)); statsErr != nil {
			log.Warn("reading sandbox stats", "err", statsErr)
		}
	}
	outBytes, outCut := stdout.Bytes()
	errBytes, errCut := stderr.Bytes()
	res := &Result{
		ExitCode:        st.ExitCode,
		Stdout:          outBytes,
		Stderr:          errBytes,
		StdoutTruncated: st.StdoutTruncated || outCut,
		StderrTruncated: st.StderrTruncated || errCut,
		TimedOut:        st.TimedOut,
		OOMKilled:       stats.OOMKilled,
		Duration:        elapsed,
		CPUTime:         reportedCPU(st.UserMS, st.SystemMS, elapsed),
		MemoryPeakBytes: reportedMemory(st.MaxRSSKB, req.MemoryMB),
	}
	if meter != nil {
		if peak, err := meter.MemoryPeak(); err == nil {
			res.MemoryPeakBytes = max(res.MemoryPeakBytes, peak-memBase)
		}
	}
	if !reused {
		// A never-used sandbox's peak is the execution's own (its writable layer
		// and the sandbox's kernel included); a warm one's spans earlier runs.
		res.MemoryPeakBytes = max(res.MemoryPeakBytes, stats.MemoryPeakBytes)
	}
	if st.DurationMS > 0 {
		res.Duration = time.Duration(min(st.DurationMS, elapsed.Milliseconds())) * time.Millisecond
	}
	switch {
	case waitErr != nil && errors.Is(waitErr, agent.ErrClosed):
		// The sandbox died under the process: the memory limit is the usual cause.
		res.ExitCode = 137
		if stats.OOMKilled {
			res.OOMKilled = true
			res.Status = store.StatusFailed
			res.Error = fmt.Sprintf("memory limit exceeded: the sandbox was killed at its limit of %d MB", req.MemoryMB)
		} else {
			log.Warn("sandbox died during execution", "err", waitErr)
			res.Status = store.StatusError
			res.Error = "the sandbox stopped unexpectedly during the execution"
		}
		res.CPUTime = max(res.CPUTime, stats.CPUTime)
	case waitErr != nil && ctx.Err() != nil:
		res.Status = store.StatusError
		res.Error = "the server stopped the execution (shutting down)"
	case waitErr != nil:
		res.TimedOut = true
		res.Status = store.StatusTimeout
		res.Error = fmt.Sprintf("timed out after %d ms", req.Timeout.Milliseconds())
	case st.TimedOut:
		res.Status = store.StatusTimeout
		res.Error = fmt.Sprintf("timed out after %d ms", req.Timeout.Milliseconds())
		if st.Error != "" { // a session's interpreter that would not stop
			res.Error += ": " + st.Error
		}
	case st.Error != "":
		res.Status = store.StatusFailed
		res.Error = st.Error
		if res.ExitCode == 0 {
			res.ExitCode = 127
		}
	case st.Killed && stopped.Load():
		res.Status = store.StatusFailed
		res.Error = "stopped on request"
	case stats.OOMKilled:
		res.Status = store.StatusFailed
		res.Error = fmt.Sprintf("memory limit exceeded (%d MB)", req.MemoryMB)
	case st.ExitCode == 0:
		res.Status = store.StatusSucceeded
	default:
		res.Status = store.StatusFailed
	}
	return res, nil
}

// reportedMemory is the memory peak the sandbox's agent reports (in KiB), in
// bytes, bounded by what the execution could have used: nothing below zero,
// nothing above its memory limit. The agent runs in the sandbox, among the code
// it reports on, so its numbers are never taken unbounded into a bill.
func reportedMemory(kb int64, limitMB int) int64 {
	return min(max(kb, 0), int64(limitMB)<<10) << 10
}

// reportedCPU is the CPU time the agent reports, bounded as reportedMemory is:
// nothing below zero, and no more than every host core for the wall time the
// host saw the execution take (plus a clock tick).
func reportedCPU(userMS, systemMS int64, elapsed time.Duration) time.Duration {
	most := (elapsed.Milliseconds() + 10) * int64(runtime.NumCPU())
	ms := min(max(userMS, 0), most) + min(max(systemMS, 0), most)
	return time.Duration(min(ms, most)) * time.Millisecond
}

// cappedBuffer keeps at most max bytes (the agent already caps what it sends; this is
// the host's own bound).
// It is written by the agent connection's reader and read once the execution is
// over, which on abnormal ends (agent gone, host deadline) can overlap: hence mu.
type cappedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int64
	truncated bool
	tee       io.Writer // also gets what is kept
}

// Bytes returns what was kept, and whether some was dropped.
func (b *cappedBuffer) Bytes() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes()), b.truncated
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.max - int64(b.buf.Len()); b.max > 0 && int64(len(p)) > room {
		b.truncated = true
		p = p[:max(room, 0)]
	}
	if len(p) > 0 {
		b.buf.Write(p)
		if b.tee != nil {
			_, _ = b.tee.Write(p)
		}
	}
	return n, nil
}
