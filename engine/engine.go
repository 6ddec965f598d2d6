// Package engine runs executions: it validates what a request asks for, chooses
// the sandbox that serves its mode, runs the code through the in-sandbox agent,
// records the execution and its usage in the store, and owns the lifecycle of every
// sandbox it creates (nothing outlives Close).
package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
	// MaxSandboxes caps the sandboxes alive at once; a request beyond it is answered
	// ErrBusy. 0 means no cap.
	MaxSandboxes int
	Logger       *slog.Logger
}

// Engine runs executions. It is safe for concurrent use.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	driver sandbox.Driver
	store  *store.Store
	stock  *stock

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
	e.stock = newStock(e, cfg.StockSize)
	return e
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
	e.cancel()
	e.stock.close()
	e.bg.Wait()
	return nil
}

// Health reports whether the sandbox runtime works, and its version.
type Health struct {
	Runtime string
	Version string
	Ready   bool
	Error   string
	Live    int // sandboxes alive now
	Stocked int // pre-booted sandboxes ready
}

// Health checks the sandbox runtime.
func (e *Engine) Health(ctx context.Context) Health {
	h := Health{Runtime: e.driver.Name(), Live: e.driver.Live(), Stocked: e.stock.len()}
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
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Execute runs one request to completion. Errors wrap ErrInvalid, ErrUnavailable or
// ErrBusy for the client's mistakes and limits; anything else is the platform's
// fault. A program that fails, times out or exceeds its memory is not an error: the
// Result says so.
func (e *Engine) Execute(ctx context.Context, req Request) (*Result, error) {
	if err := req.normalize(e.cfg.Limits); err != nil {
		return nil, err
	}
	argv, err := command(&req)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: the server is shutting down", ErrBusy)
	}
	e.runs.Add(1)
	e.mu.Unlock()
	defer e.runs.Done()

	rec := store.Execution{
		ID: newID("exec_"), Account: req.Account, KeyID: req.KeyID, Mode: req.Mode,
		Language: req.Language, Image: req.Image, Status: store.StatusRunning, CreatedAt: time.Now(),
	}
	if err := e.store.CreateExecution(ctx, rec); err != nil {
		return nil, fmt.Errorf("recording execution: %w", err)
	}
	log := e.log.With("execution", rec.ID)
	res, runErr := e.runEphemeral(ctx, log, &req, argv)
	if runErr != nil {
		res = &Result{Status: store.StatusError, ExitCode: -1, Error: "the platform failed to run the execution"}
		log.Error("execution failed", "err", runErr)
	}
	res.ExecutionID, res.Mode, res.Language = rec.ID, req.Mode, req.Language
	res.CostMicroUSD = Price(req.Mode, res.CPUTime, res.MemoryPeakBytes, res.Duration)

	// The record is written even if the client went away: billed work is never lost.
	fin := rec
	now := time.Now()
	fin.Status, fin.ExitCode, fin.Error = res.Status, res.ExitCode, res.Error
	fin.DurationMS, fin.CPUMS = res.Duration.Milliseconds(), res.CPUTime.Milliseconds()
	fin.MemoryPeakMB = (res.MemoryPeakBytes + (1<<20 - 1)) >> 20
	fin.CostMicroUSD = res.CostMicroUSD
	fin.StdoutBytes, fin.StderrBytes = int64(len(res.Stdout)), int64(len(res.Stderr))
	fin.FinishedAt = &now
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.store.FinishExecution(wctx, fin); err != nil {
		return nil, fmt.Errorf("recording execution result: %w", err)
	}
	if runErr != nil {
		return nil, runErr
	}
	return res, nil
}

// runEphemeral runs argv in a never-used sandbox and destroys the sandbox after.
func (e *Engine) runEphemeral(ctx context.Context, log *slog.Logger, req *Request, argv []string) (*Result, error) {
	spec := sandbox.Spec{Image: req.Image, CPUCores: req.CPUCores, MemoryMB: req.MemoryMB}
	sb, err := e.stock.take(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer e.destroyLater(sb)
	log = log.With("sandbox", sb.ID())
	return e.runIn(ctx, log, sb, req, argv)
}

// destroyLater destroys a sandbox off the request's path.
func (e *Engine) destroyLater(sb sandbox.Sandbox) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sb.Destroy(ctx); err != nil {
			e.log.Warn("destroying sandbox", "sandbox", sb.ID(), "err", err)
		}
	}()
}

// runIn runs one process in sb and collects its result.
func (e *Engine) runIn(ctx context.Context, log *slog.Logger, sb sandbox.Sandbox, req *Request, argv []string) (*Result, error) {
	l := e.cfg.Limits
	stdout := &cappedBuffer{max: l.MaxOutputBytes}
	stderr := &cappedBuffer{max: l.MaxOutputBytes}
	start := time.Now()
	ex, err := sb.Agent().Start(agent.ExecRequest{
		Argv:           argv,
		Env:            environment(req),
		Dir:            req.WorkingDir,
		UID:            UserUID,
		GID:            UserGID,
		Stdin:          req.HasStdin,
		TimeoutMS:      req.Timeout.Milliseconds(),
		MaxOutputBytes: l.MaxOutputBytes,
		MaxProcs:       l.MaxProcs,
		MaxOpenFiles:   l.MaxOpenFiles,
		MaxFileBytes:   l.MaxFileBytes,
	}, agent.Output{Stdout: stdout, Stderr: stderr})
	if err != nil {
		return nil, fmt.Errorf("starting process: %w", err)
	}
	if req.HasStdin {
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
	st, waitErr := ex.Wait(waitCtx)
	elapsed := time.Since(start)
	stats, statsErr := sb.Stats(context.WithoutCancel(ctx))
	if statsErr != nil {
		log.Warn("reading sandbox stats", "err", statsErr)
	}
	res := &Result{
		ExitCode:        st.ExitCode,
		Stdout:          stdout.Bytes(),
		Stderr:          stderr.Bytes(),
		StdoutTruncated: st.StdoutTruncated || stdout.truncated,
		StderrTruncated: st.StderrTruncated || stderr.truncated,
		TimedOut:        st.TimedOut,
		OOMKilled:       stats.OOMKilled,
		Duration:        elapsed,
		CPUTime:         time.Duration(st.UserMS+st.SystemMS) * time.Millisecond,
		MemoryPeakBytes: max(stats.MemoryPeakBytes, st.MaxRSSKB<<10),
	}
	if st.DurationMS > 0 {
		res.Duration = time.Duration(st.DurationMS) * time.Millisecond
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
		res.Error = "the request was cancelled"
	case waitErr != nil:
		res.TimedOut = true
		res.Status = store.StatusTimeout
		res.Error = fmt.Sprintf("timed out after %d ms", req.Timeout.Milliseconds())
	case st.Error != "":
		res.Status = store.StatusFailed
		res.Error = st.Error
		if res.ExitCode == 0 {
			res.ExitCode = 127
		}
	case st.TimedOut:
		res.Status = store.StatusTimeout
		res.Error = fmt.Sprintf("timed out after %d ms", req.Timeout.Milliseconds())
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

// cappedBuffer keeps at most max bytes (the agent already caps what it sends; this is
// the host's own bound).
type cappedBuffer struct {
	bytes.Buffer
	max       int64
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - int64(b.Len()); b.max > 0 && int64(len(p)) > room {
		b.truncated = true
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return n, nil
}
