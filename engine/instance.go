package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/store"
)

// An instance is a persistent sandbox: it lives until deleted, runs commands and
// code (a session kernel keeps python and javascript state between execs), keeps
// processes started in the background, can be reached over SSH and through exposed
// ports, and can be paused (checkpointed to disk, memory freed) and resumed with
// its state intact, or stopped (processes end, files kept) and started again.
// At shutdown the server pauses running instances and resumes them at the next
// start; after a crash they are marked stopped.
type instance struct {
	// mu is held shared by what uses a running instance (execs, files, SSH and
	// proxy connections as they start) and exclusively by what changes it
	// (pause, resume, stop, start, delete, settings).
	mu      sync.RWMutex
	rec     store.Instance
	b       *box // nil unless running
	release func()
	gone    bool

	// Guarded by e.instances.mu.
	lastUsed time.Time
	running  map[*Live]bool // its execs in progress
	// Guarded by mu: usage accrued up to these.
	meteredAt  time.Time
	meteredCPU time.Duration
}

type instances struct {
	mu sync.Mutex
	m  map[string]*instance
}

// Exposure is a port of an instance reachable through the server's proxy.
type Exposure struct {
	Name   string `json:"name"`
	Port   int    `json:"port"`
	Public bool   `json:"public"`
	// KeepPrefix passes the proxy's path prefix on (for servers configured to
	// serve under it); otherwise it is cut off.
	KeepPrefix bool `json:"keep_prefix,omitempty"`
}

// InstanceRequest creates an instance.
type InstanceRequest struct {
	Account    string
	KeyID      string
	Name       string
	Image      string
	Language   string
	SnapshotID string // start from this snapshot (its memory, processes and files)
	CPUCores   float64
	MemoryMB   int
	DiskMB     int
	EnableSSH  bool
	Network    bool
	IdleTTL    time.Duration // pause when idle this long; 0: never
}

// InstanceInfo describes an instance to clients.
type InstanceInfo struct {
	store.Instance
	Exposures []Exposure
}

func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "i-" + hex.EncodeToString(b[:])
}

func (e *Engine) instanceDir(id string) string { return filepath.Join(e.cfg.InstanceDir, id) }

func (in *instance) info() InstanceInfo {
	var ex []Exposure
	_ = json.Unmarshal([]byte(in.rec.Exposures), &ex)
	if ex == nil {
		ex = []Exposure{}
	}
	return InstanceInfo{Instance: in.rec, Exposures: ex}
}

func (in *instance) spec() sandbox.Spec {
	return sandbox.Spec{Image: in.rec.Image, MemoryMB: int(in.rec.MemoryMB), CPUCores: float64(in.rec.CPUMilli) / 1000, DiskMB: int(in.rec.DiskMB)}
}

// CreateInstance starts a new instance.
func (e *Engine) CreateInstance(ctx context.Context, r InstanceRequest) (InstanceInfo, error) {
	if r.Network {
		return InstanceInfo{}, unavailable("instances with a network are not available yet: instances reach the outside through exposed ports and the SSH gateway only")
	}
	if len(r.Name) > 100 {
		return InstanceInfo{}, invalid("name is longer than 100 bytes")
	}
	if r.IdleTTL < 0 {
		return InstanceInfo{}, invalid("idle_ttl_seconds must not be negative")
	}
	req := Request{Account: r.Account, Language: r.Language, Image: r.Image, Code: "1", CPUCores: r.CPUCores, MemoryMB: r.MemoryMB}
	if req.Language == "" {
		req.Language = "python"
	}
	if err := e.normalize(&req); err != nil {
		return InstanceInfo{}, err
	}
	// The writable layer (and /tmp, as large) live in the sandbox's memory: they
	// must leave room for the processes.
	maxDisk := (req.MemoryMB - 64) / 2
	switch {
	case r.DiskMB < 0:
		return InstanceInfo{}, invalid("disk_mb must not be negative")
	case r.DiskMB == 0:
		r.DiskMB = req.MemoryMB / 4
	case r.DiskMB < 16 || r.DiskMB > maxDisk:
		return InstanceInfo{}, invalid(fmt.Sprintf("disk_mb must be between 16 and %d: the instance's files (and /tmp, as large) are held in its memory (memory_mb %d); ask for more memory_mb for more disk", maxDisk, req.MemoryMB))
	}
	rec := store.Instance{ID: newInstanceID(), Account: r.Account, KeyID: r.KeyID, Name: r.Name, Image: req.Image, Language: req.Language,
		MemoryMB: int64(req.MemoryMB), CPUMilli: int64(req.CPUCores*1000 + 0.5), DiskMB: int64(r.DiskMB), EnableSSH: r.EnableSSH,
		State: store.InstanceRunning, IdleTTL: r.IdleTTL, Exposures: "[]"}
	rec.CreatedAt = time.Now().UTC().Truncate(time.Microsecond) // as the store keeps it
	rec.UpdatedAt = rec.CreatedAt
	var snap *store.Snapshot
	if r.SnapshotID != "" {
		sn, err := e.store.GetSnapshot(ctx, r.Account, r.SnapshotID)
		if errors.Is(err, store.ErrNotFound) {
			return InstanceInfo{}, errorf(ErrNotFound, "snapshot %q not found", r.SnapshotID)
		} else if err != nil {
			return InstanceInfo{}, err
		}
		snap = &sn
		rec.Image, rec.Language, rec.MemoryMB, rec.CPUMilli = sn.Image, sn.Language, sn.MemoryMB, sn.CPUMilli
	}
	in := &instance{rec: rec}
	release, err := e.quotas.acquire(r.Account, float64(rec.CPUMilli)/1000, int(rec.MemoryMB))
	if err != nil {
		return InstanceInfo{}, err
	}
	in.release = release
	var b *box
	if snap != nil {
		// A restored sandbox keeps the writable layer size it was checkpointed with.
		b, err = e.restore(ctx, snap)
	} else {
		b, err = e.fresh(ctx, in.spec(), "")
	}
	if err != nil {
		release()
		return InstanceInfo{}, err
	}
	if err := e.store.CreateInstance(ctx, rec); err != nil {
		release()
		e.destroyLater(b)
		return InstanceInfo{}, fmt.Errorf("recording instance: %w", err)
	}
	in.b = b
	in.meteredAt = time.Now()
	e.instances.mu.Lock()
	e.instances.m[rec.ID] = in
	in.lastUsed = time.Now()
	e.instances.mu.Unlock()
	return in.info(), nil
}

// lookupInstance returns the account's instance (any account's if account is "").
func (e *Engine) lookupInstance(account, id string) (*instance, error) {
	e.instances.mu.Lock()
	defer e.instances.mu.Unlock()
	in := e.instances.m[id]
	if in == nil || (account != "" && in.rec.Account != account) {
		return nil, errorf(ErrNotFound, "instance %q not found", id)
	}
	return in, nil
}

// rlockInstance takes an instance shared, to use it; it fails if it was deleted
// meanwhile. The caller must RUnlock.
func (e *Engine) rlockInstance(account, id string) (*instance, error) {
	in, err := e.lookupInstance(account, id)
	if err != nil {
		return nil, err
	}
	in.mu.RLock()
	if in.gone {
		in.mu.RUnlock()
		return nil, errorf(ErrNotFound, "instance %q not found", id)
	}
	e.touch(in)
	return in, nil
}

// lockInstance takes an instance exclusively, to change it; it fails if it was
// deleted meanwhile.
func (e *Engine) lockInstance(account, id string) (*instance, error) {
	in, err := e.lookupInstance(account, id)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	if in.gone {
		in.mu.Unlock()
		return nil, errorf(ErrNotFound, "instance %q not found", id)
	}
	e.touch(in)
	return in, nil
}

func (e *Engine) touch(in *instance) {
	e.instances.mu.Lock()
	in.lastUsed = time.Now()
	e.instances.mu.Unlock()
}

// Instance describes one of the account's instances.
func (e *Engine) Instance(account, id string) (InstanceInfo, error) {
	in, err := e.lookupInstance(account, id)
	if err != nil {
		return InstanceInfo{}, err
	}
	in.mu.RLock()
	defer in.mu.RUnlock()
	return in.info(), nil
}

// Instances lists the account's instances, oldest first.
func (e *Engine) Instances(account string) []InstanceInfo {
	e.instances.mu.Lock()
	var list []*instance
	for _, in := range e.instances.m {
		if in.rec.Account == account {
			list = append(list, in)
		}
	}
	e.instances.mu.Unlock()
	out := make([]InstanceInfo, 0, len(list))
	for _, in := range list {
		in.mu.RLock()
		if !in.gone {
			out = append(out, in.info())
		}
		in.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// save writes the instance's record (under in.mu).
func (e *Engine) save(in *instance) error {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	in.rec.UpdatedAt = time.Now()
	return e.store.UpdateInstance(ctx, in.rec)
}

func notRunning(in *instance) error {
	return errorf(ErrConflict, "instance %s is %s; %s it first", in.rec.ID, in.rec.State,
		map[string]string{store.InstancePaused: "resume", store.InstanceStopped: "start"}[in.rec.State])
}

// InstanceExecRequest runs a command or code in an instance.
type InstanceExecRequest struct {
	Command    string
	Code       string
	Language   string
	Stdin      string
	HasStdin   bool
	Env        map[string]string
	WorkingDir string
	Timeout    time.Duration
	KeyID      string
}

// ExecInstance runs a command (sh -c) or code in a running instance and returns
// its result. Code runs in the instance's session kernel, so its state stays for
// the next exec; what a command starts in the background keeps running.
func (e *Engine) ExecInstance(ctx context.Context, account, id string, x InstanceExecRequest) (*Result, error) {
	in, err := e.rlockInstance(account, id)
	if err != nil {
		return nil, err
	}
	locked := true
	defer func() {
		if locked {
			in.mu.RUnlock()
		}
	}()
	if in.rec.State != store.InstanceRunning {
		return nil, notRunning(in)
	}
	req := Request{Account: account, KeyID: x.KeyID, Mode: ModePersistent, Command: x.Command, Code: x.Code, Language: x.Language,
		Stdin: x.Stdin, HasStdin: x.HasStdin, Env: x.Env, WorkingDir: x.WorkingDir, Timeout: x.Timeout, Image: in.rec.Image,
		CPUCores: float64(in.rec.CPUMilli) / 1000, MemoryMB: int(in.rec.MemoryMB)}
	if req.Code != "" && req.Language == "" {
		req.Language = in.rec.Language
	}
	if err := req.normalizeInstance(e.cfg.Limits); err != nil {
		return nil, err
	}
	var argv []string
	if req.Code != "" {
		kernel, ok := sessionLanguages[req.Language]
		if !ok {
			// bash code runs as a command
			if argv, err = command(&req); err != nil {
				return nil, err
			}
		} else {
			req.kernel, req.kernelCode = kernel, req.Code
			// The instance's own language runs in its main interpreter; another
			// gets an interpreter of its own, kept as long as the instance.
			if kernel != sessionLanguages[in.rec.Language] {
				req.kernelSession = "main-" + kernel
			}
			if req.Language == "typescript" {
				if req.kernelCode, err = compileTypeScript(req.Code); err != nil {
					return nil, err
				}
			}
		}
	} else if argv, err = command(&req); err != nil {
		return nil, err
	}
	req.keepBackground = true
	rec := store.Execution{ID: newID("exec_"), Account: account, KeyID: x.KeyID, Mode: ModePersistent, Language: req.Language,
		Image: in.rec.Image, Status: store.StatusRunning, CreatedAt: time.Now()}
	if err := e.store.CreateExecution(ctx, rec); err != nil {
		return nil, fmt.Errorf("recording execution: %w", err)
	}
	l := newLive(rec.ID, account, ModePersistent, false)
	e.lives.add(l)
	e.instances.mu.Lock()
	if in.running == nil {
		in.running = map[*Live]bool{}
	}
	in.running[l] = true
	e.instances.mu.Unlock()
	defer func() {
		e.instances.mu.Lock()
		delete(in.running, l)
		e.instances.mu.Unlock()
	}()
	log := e.log.With("execution", rec.ID, "instance", id)
	res, runErr := e.runIn(e.ctx, log, l, in.b, &req, argv, false)
	if runErr != nil {
		res = &Result{Status: store.StatusError, ExitCode: -1, Error: "the platform failed to run the execution"}
		log.Error("instance exec failed", "err", runErr)
	}
	select {
	case <-in.b.Agent().Done():
		// Recording it changes the instance: take it exclusively.
		b := in.b
		in.mu.RUnlock()
		locked = false
		in.mu.Lock()
		if in.b == b && !in.gone {
			e.instanceDied(in, "the instance's sandbox stopped unexpectedly (out of memory?)")
		}
		in.mu.Unlock()
	default:
	}
	out, err := e.record(rec, &req, res, runErr)
	l.finish(out, err)
	e.lives.ended(l)
	return out, err
}

// instanceDied records that a running instance's sandbox is gone (under in.mu).
func (e *Engine) instanceDied(in *instance, why string) {
	e.meter(in)
	if in.b != nil {
		e.destroyLater(in.b)
		in.b = nil
	}
	if in.release != nil {
		in.release()
		in.release = nil
	}
	in.rec.State, in.rec.Error = store.InstanceStopped, why
	if err := e.save(in); err != nil {
		e.log.Warn("recording instance state", "instance", in.rec.ID, "err", err)
	}
}

// StartProcess starts a process in a running instance for a caller that streams
// its I/O itself (SSH, terminals): it returns the agent's execution, which the
// caller must Wait for.
func (e *Engine) StartProcess(ctx context.Context, account, id string, req agent.ExecRequest, out agent.Output) (*agent.Exec, error) {
	in, err := e.rlockInstance(account, id)
	if err != nil {
		return nil, err
	}
	if in.rec.State == store.InstancePaused {
		// A login resumes a paused instance.
		in.mu.RUnlock()
		if _, err := e.ResumeInstance(ctx, account, id); err != nil && !errors.Is(err, ErrConflict) {
			return nil, err
		}
		if in, err = e.rlockInstance(account, id); err != nil {
			return nil, err
		}
	}
	defer in.mu.RUnlock()
	if in.rec.State != store.InstanceRunning {
		return nil, notRunning(in)
	}
	l := e.cfg.Limits
	if req.Env == nil {
		req.Env = environment(&Request{})
	}
	if req.Dir == "" {
		req.Dir = cmp.Or(in.b.image.WorkingDir, "/workspace")
	}
	req.UID, req.GID = userOf(in.b.image)
	req.MaxProcs, req.MaxOpenFiles, req.MaxFileBytes = l.MaxProcs, l.MaxOpenFiles, l.MaxFileBytes
	req.KeepBackground = true
	return in.b.Agent().Start(req, out)
}

// DialInstance opens a TCP connection to a port on a running instance's loopback
// (the proxy of exposed ports uses it). account "" skips the owner check.
func (e *Engine) DialInstance(ctx context.Context, account, id string, port int) (*agent.Tunnel, error) {
	in, err := e.rlockInstance(account, id)
	if err != nil {
		return nil, err
	}
	b, state := in.b, in.rec.State
	in.mu.RUnlock()
	if state != store.InstanceRunning || b == nil {
		return nil, notRunning(in)
	}
	t, err := b.Agent().Dial(ctx, port)
	if err != nil {
		return nil, errorf(ErrUnreachable, "instance %s: %v", id, err)
	}
	return t, nil
}

// ErrUnreachable: the instance is running but nothing answers on the port asked for.
var ErrUnreachable = errors.New("unreachable")

// PauseInstance checkpoints a running instance to disk and frees its memory.
func (e *Engine) PauseInstance(ctx context.Context, account, id string) (InstanceInfo, error) {
	in, err := e.lockInstance(account, id)
	if err != nil {
		return InstanceInfo{}, err
	}
	defer in.mu.Unlock()
	if in.rec.State != store.InstanceRunning {
		return InstanceInfo{}, notRunning(in)
	}
	if err := e.pauseLocked(ctx, in, false); err != nil {
		return InstanceInfo{}, err
	}
	return in.info(), nil
}

func (e *Engine) pauseLocked(ctx context.Context, in *instance, autoResume bool) error {
	cp, ok := in.b.Sandbox.(sandbox.Checkpointer)
	if !ok {
		return unavailable(fmt.Sprintf("the %s sandbox runtime cannot checkpoint", e.driver.Name()))
	}
	dir := filepath.Join(e.instanceDir(in.rec.ID), "paused")
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	if err := cp.Checkpoint(ctx, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("pausing instance %s: %w", in.rec.ID, err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	e.meter(in)
	b := in.b
	in.b = nil
	ctx2, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	_ = b.Destroy(ctx2)
	cancel()
	e.stock.signal()
	if in.release != nil {
		in.release()
		in.release = nil
	}
	in.rec.State, in.rec.Error, in.rec.AutoResume = store.InstancePaused, "", autoResume
	return e.save(in)
}

// ResumeInstance restores a paused instance, state intact.
func (e *Engine) ResumeInstance(ctx context.Context, account, id string) (InstanceInfo, error) {
	in, err := e.lockInstance(account, id)
	if err != nil {
		return InstanceInfo{}, err
	}
	defer in.mu.Unlock()
	if in.rec.State != store.InstancePaused {
		return InstanceInfo{}, errorf(ErrConflict, "instance %s is %s, not paused", id, in.rec.State)
	}
	if err := e.resumeLocked(ctx, in); err != nil {
		return InstanceInfo{}, err
	}
	return in.info(), nil
}

func (e *Engine) resumeLocked(ctx context.Context, in *instance) error {
	r, ok := e.driver.(sandbox.Restorer)
	if !ok {
		return unavailable(fmt.Sprintf("the %s sandbox runtime cannot restore", e.driver.Name()))
	}
	release, err := e.quotas.acquire(in.rec.Account, float64(in.rec.CPUMilli)/1000, int(in.rec.MemoryMB))
	if err != nil {
		return err
	}
	dir := filepath.Join(e.instanceDir(in.rec.ID), "paused")
	spec := in.spec()
	imageCfg, releaseImage, err := e.withImage(&spec)
	if err != nil {
		release()
		return err
	}
	booted, err := e.reserve(ctx, requestBoot)
	if err != nil {
		releaseImage()
		release()
		return err
	}
	sb, err := r.Restore(ctx, spec, dir)
	booted()
	if err != nil {
		releaseImage()
		release()
		if errors.Is(err, sandbox.ErrBadCheckpoint) {
			in.rec.State, in.rec.Error = store.InstanceStopped, "its paused state could not be restored; start it again (files and processes since the last stop are lost)"
			os.RemoveAll(dir)
			_ = e.save(in)
			return errorf(ErrBroken, "instance %s: %s", in.rec.ID, in.rec.Error)
		}
		return fmt.Errorf("resuming instance %s: %w", in.rec.ID, err)
	}
	os.RemoveAll(dir)
	in.b, in.release = &box{Sandbox: sb, image: imageCfg, release: releaseImage}, release
	in.meteredAt, in.meteredCPU = time.Now(), 0
	in.rec.State, in.rec.Error, in.rec.AutoResume = store.InstanceRunning, "", false
	return e.save(in)
}

// StopInstance ends a running (or paused) instance's processes and frees its
// sandbox; its files under /workspace and /home/user are kept for StartInstance.
func (e *Engine) StopInstance(ctx context.Context, account, id string) (InstanceInfo, error) {
	in, err := e.lockInstance(account, id)
	if err != nil {
		return InstanceInfo{}, err
	}
	defer in.mu.Unlock()
	switch in.rec.State {
	case store.InstanceStopped:
		return in.info(), nil
	case store.InstancePaused:
		if err := e.resumeLocked(ctx, in); err != nil {
			return InstanceInfo{}, err
		}
	}
	dir := e.instanceDir(in.rec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return InstanceInfo{}, err
	}
	f, err := os.Create(filepath.Join(dir, "files.tar.tmp"))
	if err != nil {
		return InstanceInfo{}, err
	}
	err = e.rootExec(ctx, in.b, append([]string{agentPath, "pack", "-r", "-missing-ok"}, MergeRoots...), nil, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return InstanceInfo{}, fmt.Errorf("saving the files of instance %s: %w", id, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, "files.tar")); err != nil {
		return InstanceInfo{}, err
	}
	e.meter(in)
	b := in.b
	in.b = nil
	_ = b.Destroy(context.WithoutCancel(ctx))
	e.stock.signal()
	if in.release != nil {
		in.release()
		in.release = nil
	}
	in.rec.State, in.rec.Error = store.InstanceStopped, ""
	if err := e.save(in); err != nil {
		return InstanceInfo{}, err
	}
	return in.info(), nil
}

// StartInstance boots a stopped instance in a new sandbox with the files it had.
func (e *Engine) StartInstance(ctx context.Context, account, id string) (InstanceInfo, error) {
	in, err := e.lockInstance(account, id)
	if err != nil {
		return InstanceInfo{}, err
	}
	defer in.mu.Unlock()
	switch in.rec.State {
	case store.InstanceRunning:
		return in.info(), nil
	case store.InstancePaused:
		if err := e.resumeLocked(ctx, in); err != nil {
			return InstanceInfo{}, err
		}
		return in.info(), nil
	}
	release, err := e.quotas.acquire(in.rec.Account, float64(in.rec.CPUMilli)/1000, int(in.rec.MemoryMB))
	if err != nil {
		return InstanceInfo{}, err
	}
	b, err := e.fresh(ctx, in.spec(), "")
	if err != nil {
		release()
		return InstanceInfo{}, err
	}
	saved := filepath.Join(e.instanceDir(in.rec.ID), "files.tar")
	if f, err := os.Open(saved); err == nil {
		err = e.rootExec(ctx, b, []string{agentPath, "unpack", "--keep-owner", "/"}, f, io.Discard)
		f.Close()
		if err != nil {
			release()
			e.destroyLater(b)
			return InstanceInfo{}, fmt.Errorf("restoring the files of instance %s: %w", id, err)
		}
	}
	in.b, in.release = b, release
	in.meteredAt, in.meteredCPU = time.Now(), 0
	in.rec.State, in.rec.Error = store.InstanceRunning, ""
	if err := e.save(in); err != nil {
		return InstanceInfo{}, err
	}
	return in.info(), nil
}

// DeleteInstance destroys an instance and everything it kept.
func (e *Engine) DeleteInstance(ctx context.Context, account, id string) error {
	// Its execs in progress are stopped (as on request): the deletion waits for
	// them to let go of the instance, not for them to run to their end.
	if in, err := e.lookupInstance(account, id); err == nil {
		e.instances.mu.Lock()
		running := make([]*Live, 0, len(in.running))
		for l := range in.running {
			running = append(running, l)
		}
		e.instances.mu.Unlock()
		for _, l := range running {
			l.Stop()
		}
	}
	in, err := e.lockInstance(account, id)
	if err != nil {
		return err
	}
	defer in.mu.Unlock()
	if in.b != nil {
		e.meter(in)
		e.destroyLater(in.b)
		in.b = nil
	}
	if in.release != nil {
		in.release()
		in.release = nil
	}
	in.gone = true
	e.instances.mu.Lock()
	delete(e.instances.m, id)
	e.instances.mu.Unlock()
	if err := os.RemoveAll(e.instanceDir(id)); err != nil {
		e.log.Warn("removing instance files", "instance", id, "err", err)
	}
	return e.store.DeleteInstance(context.WithoutCancel(ctx), account, id, time.Now())
}

// meter records the instance's usage since it was last metered, as an execution
// record of mode persistent (billed by the second it ran, its CPU and memory
// measured by the host). Called under in.mu while it runs.
func (e *Engine) meter(in *instance) {
	if in.b == nil || in.meteredAt.IsZero() {
		return
	}
	now := time.Now()
	d := now.Sub(in.meteredAt)
	if d <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	st, err := in.b.Stats(ctx)
	if err != nil {
		e.log.Warn("measuring instance", "instance", in.rec.ID, "err", err)
	}
	cpu := max(st.CPUTime-in.meteredCPU, 0)
	mem := st.MemoryBytes
	rec := store.Execution{ID: newID("use_"), Account: in.rec.Account, KeyID: in.rec.KeyID, Mode: ModePersistent, Language: in.rec.Language,
		Image: in.rec.Image, Status: store.StatusSucceeded, DurationMS: d.Milliseconds(), CPUMS: cpu.Milliseconds(),
		MemoryPeakMB: (mem + (1<<20 - 1)) >> 20, CostMicroUSD: Price(ModePersistent, cpu, mem, d), CreatedAt: in.meteredAt, FinishedAt: &now}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(e.ctx), 5*time.Second)
	defer wcancel()
	if err := e.store.CreateExecution(wctx, rec); err != nil {
		e.log.Warn("recording instance usage", "instance", in.rec.ID, "err", err)
		return
	}
	in.meteredAt, in.meteredCPU = now, st.CPUTime
}

// superviseInstances meters running instances and pauses those idle past their
// TTL (every InstanceMeterInterval).
func (e *Engine) superviseInstances() {
	all := e.allInstances()
	idle := map[*instance]bool{}
	e.instances.mu.Lock() // guards lastUsed
	for _, in := range all {
		if ttl := in.rec.IdleTTL; ttl > 0 && time.Since(in.lastUsed) > ttl {
			idle[in] = true
		}
	}
	e.instances.mu.Unlock()
	for _, in := range all {
		if !in.mu.TryLock() {
			continue // busy: not idle, and metered at its next tick
		}
		if !in.gone && in.rec.State == store.InstanceRunning {
			select {
			case <-in.b.Agent().Done():
				e.instanceDied(in, "the instance's sandbox stopped unexpectedly")
			default:
				if idle[in] {
					e.log.Info("pausing idle instance", "instance", in.rec.ID)
					if err := e.pauseLocked(e.ctx, in, false); err != nil {
						e.log.Warn("pausing idle instance", "instance", in.rec.ID, "err", err)
					}
				} else {
					e.meter(in)
				}
			}
		}
		in.mu.Unlock()
	}
}

// RecoverInstances loads the instances at start-up: those the last server paused
// at shutdown are resumed; those that were running when it died are marked
// stopped (their sandboxes died with it).
func (e *Engine) RecoverInstances(ctx context.Context) error {
	list, err := e.store.ListInstances(ctx, "")
	if err != nil {
		return err
	}
	for _, rec := range list {
		in := &instance{rec: rec}
		in.lastUsed = time.Now()
		e.instances.mu.Lock()
		e.instances.m[rec.ID] = in
		e.instances.mu.Unlock()
		in.mu.Lock()
		switch {
		case rec.State == store.InstanceRunning:
			in.rec.State = store.InstanceStopped
			in.rec.Error = "the server stopped unexpectedly while the instance ran: its processes ended, and files written since its last stop were lost"
			if err := e.save(in); err != nil {
				in.mu.Unlock()
				return err
			}
		case rec.State == store.InstancePaused && rec.AutoResume:
			if err := e.resumeLocked(ctx, in); err != nil {
				e.log.Warn("resuming instance paused at shutdown", "instance", rec.ID, "err", err)
			}
		}
		in.mu.Unlock()
	}
	// Directories of deleted or unknown instances are debris.
	entries, _ := os.ReadDir(e.cfg.InstanceDir)
	for _, ent := range entries {
		if _, err := e.lookupInstance("", ent.Name()); err != nil {
			os.RemoveAll(filepath.Join(e.cfg.InstanceDir, ent.Name()))
		}
	}
	return nil
}

// pauseAllInstances pauses every running instance (at shutdown), to be resumed
// by RecoverInstances at the next start.
func (e *Engine) pauseAllInstances(ctx context.Context) {
	all := e.allInstances()
	for _, in := range all {
		// An exec in flight holds the instance: wait for it, but not past ctx
		// (an instance that cannot be paused is found stopped at the next start).
		locked := in.mu.TryLock()
		for !locked && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			locked = in.mu.TryLock()
		}
		if !locked {
			e.log.Warn("instance still busy at shutdown; not paused", "instance", in.rec.ID)
			continue
		}
		if !in.gone && in.rec.State == store.InstanceRunning && in.b != nil {
			if err := e.pauseLocked(ctx, in, true); err != nil {
				e.log.Warn("pausing instance at shutdown", "instance", in.rec.ID, "err", err)
				e.instanceDied(in, "the server could not pause the instance at shutdown: "+err.Error())
			}
		}
		in.gone = true
		in.mu.Unlock()
	}
}

// Expose makes a port of an instance reachable through the server's proxy.
func (e *Engine) Expose(account, id string, x Exposure) (InstanceInfo, error) {
	if !validExposureName(x.Name) {
		return InstanceInfo{}, invalid("name must be 1 to 32 lowercase letters or digits")
	}
	if x.Port < 1 || x.Port > 65535 {
		return InstanceInfo{}, invalid("port must be between 1 and 65535")
	}
	in, err := e.lockInstance(account, id)
	if err != nil {
		return InstanceInfo{}, err
	}
	defer in.mu.Unlock()
	info := in.info()
	list := info.Exposures[:0:0]
	for _, ex := range info.Exposures {
		if ex.Name != x.Name {
			list = append(list, ex)
		}
	}
	list = append(list, x)
	b, _ := json.Marshal(list)
	in.rec.Exposures = string(b)
	if err := e.save(in); err != nil {
		return InstanceInfo{}, err
	}
	return in.info(), nil
}

// Unexpose removes an exposed port.
func (e *Engine) Unexpose(account, id, name string) error {
	in, err := e.lockInstance(account, id)
	if err != nil {
		return err
	}
	defer in.mu.Unlock()
	info := in.info()
	var list []Exposure
	found := false
	for _, ex := range info.Exposures {
		if ex.Name == name {
			found = true
			continue
		}
		list = append(list, ex)
	}
	if !found {
		return errorf(ErrNotFound, "instance %s exposes nothing named %q", id, name)
	}
	b, _ := json.Marshal(list)
	in.rec.Exposures = string(b)
	return e.save(in)
}

// Exposure finds an exposed port of an instance (of any account: the proxy
// checks access itself) and the instance's owner.
func (e *Engine) Exposure(id, name string) (Exposure, string, error) {
	in, err := e.lookupInstance("", id)
	if err != nil {
		return Exposure{}, "", err
	}
	in.mu.RLock()
	info := in.info()
	in.mu.RUnlock()
	for _, ex := range info.Exposures {
		if ex.Name == name {
			return ex, info.Account, nil
		}
	}
	return Exposure{}, "", errorf(ErrNotFound, "instance %s exposes nothing named %q", id, name)
}

func validExposureName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// AddSSHKey authorizes a public key (authorized_keys format) for SSH to an
// instance created with enable_ssh.
func (e *Engine) AddSSHKey(account, id, authorizedKey string) (InstanceInfo, error) {
	in, err := e.lockInstance(account, id)
	if err != nil {
		return InstanceInfo{}, err
	}
	defer in.mu.Unlock()
	if !in.rec.EnableSSH {
		return InstanceInfo{}, errorf(ErrConflict, "instance %s was created without enable_ssh", id)
	}
	keys := strings.Split(strings.TrimSpace(in.rec.SSHKeys), "\n")
	if len(keys) >= 64 {
		keys = keys[len(keys)-63:] // the oldest keys go
	}
	keys = append(keys, strings.TrimSpace(authorizedKey))
	in.rec.SSHKeys = strings.TrimSpace(strings.Join(keys, "\n"))
	if err := e.save(in); err != nil {
		return InstanceInfo{}, err
	}
	return in.info(), nil
}

// SSHKeys returns the keys authorized for SSH to an instance, and whether it
// allows SSH at all.
func (e *Engine) SSHKeys(id string) ([]string, bool) {
	in, err := e.lookupInstance("", id)
	if err != nil {
		return nil, false
	}
	in.mu.RLock()
	defer in.mu.RUnlock()
	if !in.rec.EnableSSH || in.gone {
		return nil, false
	}
	var out []string
	for _, k := range strings.Split(in.rec.SSHKeys, "\n") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out, true
}

// runningInstances counts the instances that hold a sandbox.
func (e *Engine) runningInstances() int {
	all := e.allInstances()
	n := 0
	for _, in := range all {
		if in.mu.TryLock() {
			if in.b != nil {
				n++
			}
			in.mu.Unlock()
		} else {
			n++ // busy with an operation: counted as holding one
		}
	}
	return n
}

// allInstances lists the instances (in no order), to work on outside the map's lock.
func (e *Engine) allInstances() []*instance {
	e.instances.mu.Lock()
	defer e.instances.mu.Unlock()
	all := make([]*instance, 0, len(e.instances.m))
	for _, in := range e.instances.m {
		all = append(all, in)
	}
	return all
}
