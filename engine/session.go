package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/store"
)

// A session is a sandbox kept for one account with a live interpreter (the agent's
// session kernel) whose globals, imports and open files carry over from one
// execution to the next, like a notebook kernel. Checkpointed executions run in
// sessions; a snapshot is a checkpoint of one; a branch is a session restored from
// a snapshot. Sessions end when deleted, when idle for SessionIdleTimeout, or with
// the server.
type session struct {
	id       string
	account  string
	language string // the request language it was made for (python, javascript, typescript)
	kernel   string // the agent's kernel: python or javascript
	spec     sandbox.Spec
	b        *box
	parent   string // snapshot it was restored from; "" if it started fresh
	branch   bool
	created  time.Time
	release  func() // gives back the account's quota

	// run is held by an execution or checkpoint for its whole length: one at a time.
	run sync.Mutex
	// Guarded by sessions.mu.
	lastUsed   time.Time
	lastChange time.Time // end of the last execution
	busy       int       // executions and checkpoints holding or waiting for run
	ended      bool
	execs      []string // executions that ran in it
}

// SessionInfo describes a session to clients.
type SessionInfo struct {
	ID             string
	Language       string
	ParentSnapshot string
	Branch         bool
	CreatedAt      time.Time
	LastUsedAt     time.Time
	Executions     int
	MemoryMB       int
	CPUCores       float64
	// MemoryUsedBytes is what the session's sandbox holds now (host accounting).
	MemoryUsedBytes int64
}

type sessions struct {
	mu     sync.Mutex
	m      map[string]*session // by account + "/" + id
	byExec map[string]*session // executions that ran in a live session
}

func sessionKey(account, id string) string { return account + "/" + id }

func (e *Engine) sessionInfo(s *session) SessionInfo {
	e.sessions.mu.Lock()
	info := SessionInfo{ID: s.id, Language: s.language, ParentSnapshot: s.parent, Branch: s.branch, CreatedAt: s.created,
		LastUsedAt: s.lastUsed, Executions: len(s.execs), MemoryMB: s.spec.MemoryMB, CPUCores: s.spec.CPUCores}
	b, ended := s.b, s.ended
	e.sessions.mu.Unlock()
	if b != nil && !ended {
		ctx, cancel := context.WithTimeout(e.ctx, time.Second)
		if st, err := b.Stats(ctx); err == nil {
			info.MemoryUsedBytes = st.MemoryBytes
		}
		cancel()
	}
	return info
}

// Sessions lists the account's live sessions, oldest first.
func (e *Engine) Sessions(account string) []SessionInfo {
	e.sessions.mu.Lock()
	var list []*session
	for _, s := range e.sessions.m {
		if s.account == account {
			list = append(list, s)
		}
	}
	e.sessions.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].created.Before(list[j].created) })
	out := make([]SessionInfo, 0, len(list))
	for _, s := range list {
		out = append(out, e.sessionInfo(s))
	}
	return out
}

// Session describes one of the account's live sessions.
func (e *Engine) Session(account, id string) (SessionInfo, error) {
	s, err := e.lookupSession(account, id)
	if err != nil {
		return SessionInfo{}, err
	}
	return e.sessionInfo(s), nil
}

func (e *Engine) lookupSession(account, id string) (*session, error) {
	e.sessions.mu.Lock()
	defer e.sessions.mu.Unlock()
	s := e.sessions.m[sessionKey(account, id)]
	if s == nil {
		return nil, errorf(ErrNotFound, "no session %q (sessions end when deleted, after %s idle, or when the server restarts)", id, e.cfg.SessionIdleTimeout)
	}
	return s, nil
}

// DeleteSession ends one of the account's sessions, waiting for an execution in
// it to finish first.
func (e *Engine) DeleteSession(ctx context.Context, account, id string) error {
	s, err := e.lookupSession(account, id)
	if err != nil {
		return err
	}
	e.sessions.mu.Lock()
	execs := slices.Clone(s.execs)
	e.sessions.mu.Unlock()
	e.endSession(s)
	// An execution running in it is stopped (as on request), rather than run on
	// to its end in a session that no longer exists.
	e.lives.mu.Lock()
	var running []*Live
	for _, x := range execs {
		if l := e.lives.m[x]; l != nil {
			running = append(running, l)
		}
	}
	e.lives.mu.Unlock()
	for _, l := range running {
		l.Stop()
	}
	return nil
}

// hold marks s busy (so the reaper leaves it) and locks it for one execution or
// checkpoint; it fails if the session ended meanwhile. The caller must call
// unhold.
func (e *Engine) hold(ctx context.Context, s *session) error {
	e.sessions.mu.Lock()
	if s.ended {
		e.sessions.mu.Unlock()
		return errorf(ErrNotFound, "session %q has ended", s.id)
	}
	s.busy++
	e.sessions.mu.Unlock()
	locked := make(chan struct{})
	go func() { s.run.Lock(); close(locked) }()
	select {
	case <-locked:
	case <-ctx.Done():
		go func() { <-locked; s.run.Unlock() }()
		e.unbusy(s)
		return fmt.Errorf("%w: session %q is busy with another execution", ErrBusy, s.id)
	}
	e.sessions.mu.Lock()
	ended := s.ended
	e.sessions.mu.Unlock()
	if ended {
		s.run.Unlock()
		e.unbusy(s)
		return errorf(ErrNotFound, "session %q has ended", s.id)
	}
	return nil
}

func (e *Engine) unbusy(s *session) {
	e.sessions.mu.Lock()
	s.busy--
	s.lastUsed = time.Now()
	e.sessions.mu.Unlock()
}

func (e *Engine) unhold(s *session) {
	s.run.Unlock()
	e.unbusy(s)
}

// newSession makes a session for the account: restored from snap when given,
// otherwise in a never-used sandbox. id "" gets a generated one; a taken id is
// ErrConflict-like ErrInvalid.
func (e *Engine) newSession(ctx context.Context, account, id, language string, spec sandbox.Spec, snap *store.Snapshot, branch bool) (*session, error) {
	if snap != nil {
		spec = sandbox.Spec{Image: snap.Image, MemoryMB: int(snap.MemoryMB), CPUCores: float64(snap.CPUMilli) / 1000}
		language = snap.Language
	}
	if id == "" {
		id = newID(map[bool]string{true: "br_", false: "ses_"}[branch])
	}
	release, err := e.quotas.acquire(account, spec.CPUCores, spec.MemoryMB)
	if err != nil {
		return nil, err
	}
	s := &session{id: id, account: account, language: language, kernel: sessionLanguages[language], spec: spec,
		branch: branch, created: time.Now(), release: release}
	s.lastUsed = s.created
	// Reserve the id before the (slow) boot, so two requests cannot both make it.
	e.sessions.mu.Lock()
	if _, taken := e.sessions.m[sessionKey(account, id)]; taken {
		e.sessions.mu.Unlock()
		release()
		return nil, errorf(ErrConflict, "session %q already exists", id)
	}
	s.busy = 1
	e.sessions.m[sessionKey(account, id)] = s
	e.sessions.mu.Unlock()
	fail := func(err error) (*session, error) {
		e.sessions.mu.Lock()
		delete(e.sessions.m, sessionKey(account, id))
		s.ended = true
		e.sessions.mu.Unlock()
		release()
		return nil, err
	}
	if snap != nil {
		s.parent = snap.ID
		b := e.branches.take(snap.ID)
		if b == nil {
			if b, err = e.restore(ctx, snap); err != nil {
				return fail(err)
			}
		}
		s.b = b
	} else {
		b, err := e.fresh(ctx, spec, language)
		if err != nil {
			return fail(err)
		}
		s.b = b
	}
	e.unbusy(s)
	return s, nil
}

// endSession removes s and destroys its sandbox once no execution holds it.
func (e *Engine) endSession(s *session) {
	e.sessions.mu.Lock()
	if s.ended {
		e.sessions.mu.Unlock()
		return
	}
	s.ended = true
	delete(e.sessions.m, sessionKey(s.account, s.id))
	for _, x := range s.execs {
		delete(e.sessions.byExec, x)
	}
	e.sessions.mu.Unlock()
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		s.run.Lock() // an execution in it finishes first
		defer s.run.Unlock()
		if s.b != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := s.b.Destroy(ctx); err != nil {
				e.log.Warn("destroying session sandbox", "session", s.id, "err", err)
			}
			cancel()
		}
		s.release()
		e.stock.signal()
	}()
}

// sessionOf returns the live session an execution ran in.
func (e *Engine) sessionOf(account, executionID string) (*session, error) {
	e.sessions.mu.Lock()
	defer e.sessions.mu.Unlock()
	s := e.sessions.byExec[executionID]
	if s == nil || s.account != account {
		return nil, errorf(ErrNotFound, "execution %q did not run in a live session: only executions in mode checkpointed or branched can be snapshotted, while their session lives", executionID)
	}
	return s, nil
}

// reapSessions ends sessions idle for longer than the idle timeout.
func (e *Engine) reapSessions() {
	var idle []*session
	e.sessions.mu.Lock()
	for _, s := range e.sessions.m {
		if s.busy == 0 && time.Since(s.lastUsed) > e.cfg.SessionIdleTimeout {
			idle = append(idle, s)
		}
	}
	e.sessions.mu.Unlock()
	for _, s := range idle {
		e.log.Info("ending idle session", "session", s.id, "account", s.account)
		e.endSession(s)
	}
}

// closeSessions ends every session (at shutdown).
func (e *Engine) closeSessions() {
	e.sessions.mu.Lock()
	var all []*session
	for _, s := range e.sessions.m {
		all = append(all, s)
	}
	e.sessions.mu.Unlock()
	for _, s := range all {
		e.endSession(s)
	}
}

// sessionFor resolves the session a request runs in, creating or restoring it as
// the request asks. The returned session is held (see hold).
func (e *Engine) sessionFor(ctx context.Context, req *Request) (*session, error) {
	var snap *store.Snapshot
	branch := req.Mode == ModeBranched
	if from := req.SnapshotID + req.ParentSnapshot; from != "" {
		sn, err := e.store.GetSnapshot(ctx, req.Account, from)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errorf(ErrNotFound, "snapshot %q not found", from)
		} else if err != nil {
			return nil, err
		}
		snap = &sn
	}
	var s *session
	if req.SessionID != "" && snap == nil {
		if existing, err := e.lookupSession(req.Account, req.SessionID); err == nil {
			s = existing
		}
	}
	if s == nil {
		if snap == nil && req.Mode == ModeBranched {
			return nil, errorf(ErrNotFound, "no branch %q: give parent_snapshot to start one", req.SessionID)
		}
		lang := req.Language
		if lang == "" {
			lang = "python"
		}
		spec := sandbox.Spec{Image: req.Image, CPUCores: req.CPUCores, MemoryMB: req.MemoryMB}
		var err error
		if s, err = e.newSession(ctx, req.Account, req.SessionID, lang, spec, snap, branch); err != nil {
			return nil, err
		}
	}
	if req.Language == "" {
		req.Language = s.language
	}
	if sessionLanguages[req.Language] != s.kernel {
		return nil, invalid(fmt.Sprintf("session %q runs %s; this request is %s", s.id, s.language, req.Language))
	}
	// The session's sandbox keeps the limits it was made with.
	req.CPUCores, req.MemoryMB, req.Image = s.spec.CPUCores, s.spec.MemoryMB, s.spec.Image
	if err := e.hold(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// startInSession starts a request that runs in a session (see Start).
func (e *Engine) startInSession(ctx context.Context, req *Request) (*Live, error) {
	s, err := e.sessionFor(ctx, req)
	if err != nil {
		return nil, err
	}
	req.kernel, req.kernelCode = s.kernel, req.Code
	if req.Language == "typescript" {
		if req.kernelCode, err = compileTypeScript(req.Code); err != nil {
			e.unhold(s)
			return nil, err
		}
	}
	rec := store.Execution{
		ID: newID("exec_"), Account: req.Account, KeyID: req.KeyID, Mode: req.Mode,
		Language: req.Language, Image: s.spec.Image, Status: store.StatusRunning, CreatedAt: time.Now(),
	}
	if err := e.store.CreateExecution(ctx, rec); err != nil {
		e.unhold(s)
		return nil, fmt.Errorf("recording execution: %w", err)
	}
	e.sessions.mu.Lock()
	if !s.ended {
		s.execs = append(s.execs, rec.ID)
		e.sessions.byExec[rec.ID] = s
	}
	e.sessions.mu.Unlock()
	l := newLive(rec.ID, req.Account, req.Mode, false)
	e.lives.add(l)
	go func() {
		defer e.runs.Done()
		res, err := e.runInSession(l, rec, req, s)
		l.finish(res, err)
		e.lives.ended(l)
	}()
	return l, nil
}

// runInSession runs a started execution in its held session, snapshots the
// session after when asked, and records the result.
func (e *Engine) runInSession(l *Live, rec store.Execution, req *Request, s *session) (*Result, error) {
	log := e.log.With("execution", rec.ID, "session", s.id, "sandbox", s.b.ID())
	res, runErr := e.runIn(e.ctx, log, l, s.b, req, nil, false)
	dead := false
	select {
	case <-s.b.Agent().Done():
		dead = true
	default:
	}
	if runErr != nil {
		res = &Result{Status: store.StatusError, ExitCode: -1, Error: "the platform failed to run the execution"}
		log.Error("execution failed", "err", runErr)
	}
	res.SessionID, res.Branch = s.id, s.branch
	if req.CheckpointAfter && !dead && runErr == nil {
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
		snap, err := e.checkpoint(ctx, s, req.KeyID, rec.ID, "")
		cancel()
		if err != nil {
			log.Warn("checkpoint after execution", "err", err)
			res.SnapshotError = "no snapshot was taken: " + err.Error()
		} else {
			res.SnapshotID = snap.ID
		}
	} else if req.CheckpointAfter {
		res.SnapshotError = "no snapshot was taken: the session's sandbox is gone"
	}
	e.sessions.mu.Lock()
	s.lastChange = time.Now()
	e.sessions.mu.Unlock()
	e.unhold(s)
	if dead || runErr != nil {
		e.endSession(s)
	}
	if (req.SnapshotID != "" || req.ParentSnapshot != "") && !req.fanOut {
		e.branches.refillLater()
	}
	return e.record(rec, req, res, runErr)
}
