package engine

import (
	"context"
	"crypto/sha256"
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
	"syscall"
	"time"

	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/store"
)

// ErrNoSpace: the server's storage is full; nothing was written.
var ErrNoSpace = errors.New("no space")

// noSpace reports whether err (or the output of a command it carries) says the
// disk is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(strings.ToLower(err.Error()), "no space left on device")
}

// ErrBroken: the snapshot's image cannot be restored (truncated, corrupt or
// missing); the snapshot is marked broken.
var ErrBroken = errors.New("snapshot broken")

// A snapshot is a directory under Config.SnapshotDir named by its id: the files of
// the runsc checkpoint image plus manifest.json. It is written as <id>.tmp and
// renamed into place once complete, then recorded in the store; a directory
// without a record, or a .tmp one, is debris of a crash and removed at start-up.
const manifestName = "manifest.json"

// Manifest describes a snapshot's image on disk.
type Manifest struct {
	ID        string         `json:"id"`
	Parent    string         `json:"parent,omitempty"`
	Session   string         `json:"session"`
	Image     string         `json:"image"`
	Language  string         `json:"language"`
	MemoryMB  int            `json:"memory_mb"`
	CPUCores  float64        `json:"cpu_cores"`
	CreatedAt time.Time      `json:"created_at"`
	SizeBytes int64          `json:"size_bytes"`
	SHA256    string         `json:"sha256"`
	Files     []ManifestFile `json:"files"`
}

// ManifestFile is one file of a snapshot's image.
type ManifestFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// SnapshotRequest asks for a snapshot of a session: named by SessionID, or by
// ExecutionID (the session that execution ran in).
type SnapshotRequest struct {
	Account     string
	KeyID       string
	SessionID   string
	ExecutionID string
	InstanceID  string
	Name        string
}

// CreateSnapshot checkpoints a live session (memory, processes and files) into a
// new snapshot, leaving the session running. It waits for an execution running in
// the session to finish first.
func (e *Engine) CreateSnapshot(ctx context.Context, r SnapshotRequest) (store.Snapshot, error) {
	var s *session
	var err error
	switch {
	case (r.SessionID != "") && (r.ExecutionID != "" || r.InstanceID != "") || r.ExecutionID != "" && r.InstanceID != "":
		return store.Snapshot{}, invalid("give one of session_id, execution_id or instance_id")
	case r.InstanceID != "":
		return e.snapshotInstance(ctx, r)
	case r.SessionID != "":
		s, err = e.lookupSession(r.Account, r.SessionID)
	case r.ExecutionID != "":
		s, err = e.sessionOf(r.Account, r.ExecutionID)
	default:
		return store.Snapshot{}, invalid("execution_id, session_id or instance_id is required: what to snapshot")
	}
	if err != nil {
		return store.Snapshot{}, err
	}
	if len(r.Name) > 200 {
		return store.Snapshot{}, invalid("name is longer than 200 bytes")
	}
	if err := e.hold(ctx, s); err != nil {
		return store.Snapshot{}, err
	}
	defer e.unhold(s)
	return e.checkpoint(ctx, s, r.KeyID, r.ExecutionID, r.Name)
}

// checkpoint snapshots s, which the caller holds.
func (e *Engine) checkpoint(ctx context.Context, s *session, keyID, executionID, name string) (store.Snapshot, error) {
	cp, ok := s.b.Sandbox.(sandbox.Checkpointer)
	if !ok {
		return store.Snapshot{}, unavailable(fmt.Sprintf("the %s sandbox runtime cannot checkpoint", e.driver.Name()))
	}
	if q := e.cfg.Quota.SnapshotMB; q > 0 {
		// One snapshot at a time per account, from the check to the record:
		// snapshots made at once all passed the check and together went past
		// the quota.
		mu, _ := e.snapQuota.LoadOrStore(s.account, &sync.Mutex{})
		mu.(*sync.Mutex).Lock()
		defer mu.(*sync.Mutex).Unlock()
		used, err := e.store.SnapshotBytes(ctx, s.account)
		if err != nil {
			return store.Snapshot{}, err
		}
		if used >= int64(q)<<20 {
			return store.Snapshot{}, fmt.Errorf("%w: the account's snapshots take %d MB, its limit of %d MB; delete some first", ErrQuota, used>>20, q)
		}
	}
	id := newID("snap_")
	final := filepath.Join(e.cfg.SnapshotDir, id)
	tmp := final + ".tmp"
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return store.Snapshot{}, fmt.Errorf("preparing snapshot: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
			os.RemoveAll(final)
		}
	}()
	began := time.Now()
	if err := cp.Checkpoint(ctx, tmp); err != nil {
		if noSpace(err) {
			return store.Snapshot{}, errorf(ErrNoSpace, "no snapshot was written: the server's snapshot storage is full")
		}
		return store.Snapshot{}, fmt.Errorf("checkpointing session %s: %w", s.id, err)
	}
	checkpointed := time.Now()
	defer func() {
		e.log.Debug("snapshot", "snapshot", id, "session", s.id, "checkpoint", checkpointed.Sub(began), "total", time.Since(began))
	}()
	m := Manifest{ID: id, Parent: s.parent, Session: s.id, Image: s.spec.Image, Language: s.language,
		MemoryMB: s.spec.MemoryMB, CPUCores: s.spec.CPUCores, CreatedAt: time.Now().UTC()}
	files, sum, size, err := hashImage(tmp)
	if err != nil {
		return store.Snapshot{}, err
	}
	m.Files, m.SHA256, m.SizeBytes = files, sum, size
	mb, _ := json.MarshalIndent(m, "", "  ")
	// Not fsynced, like runsc's own image files: after a crash a torn image fails
	// verification at restore and the snapshot is marked broken.
	if err := os.WriteFile(filepath.Join(tmp, manifestName), mb, 0o600); err != nil {
		if noSpace(err) {
			return store.Snapshot{}, errorf(ErrNoSpace, "no snapshot was written: the server's snapshot storage is full")
		}
		return store.Snapshot{}, fmt.Errorf("writing snapshot manifest: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return store.Snapshot{}, fmt.Errorf("storing snapshot: %w", err)
	}
	rec := store.Snapshot{ID: id, Account: s.account, KeyID: keyID, Name: name, ParentID: s.parent, SessionID: s.id,
		ExecutionID: executionID, Image: s.spec.Image, Language: s.language, MemoryMB: int64(s.spec.MemoryMB),
		CPUMilli: int64(s.spec.CPUCores*1000 + 0.5), SizeBytes: size, SHA256: sum, Status: store.SnapshotReady, CreatedAt: m.CreatedAt}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.store.CreateSnapshot(wctx, rec); err != nil {
		return store.Snapshot{}, fmt.Errorf("recording snapshot: %w", err)
	}
	e.verified.Store(id, true) // just written and hashed
	e.snapLocks.get(id)        // used now: not compressed for a while
	done = true
	e.branches.demand(rec, e.cfg.BranchStock)
	return rec, nil
}

// hashImage lists a checkpoint image's files with their sizes and hashes, and the
// hash of the whole (over each file's name and hash, in name order).
func hashImage(dir string) ([]ManifestFile, string, int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", 0, err
	}
	var files []ManifestFile
	var total int64
	whole := sha256.New()
	for _, ent := range entries {
		if ent.Name() == manifestName || !ent.Type().IsRegular() || strings.HasSuffix(ent.Name(), zstSuffix) || strings.HasSuffix(ent.Name(), ".part") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, ent.Name()))
		if err != nil {
			return nil, "", 0, err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, "", 0, fmt.Errorf("reading snapshot file %s: %w", ent.Name(), err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		files = append(files, ManifestFile{Name: ent.Name(), Size: n, SHA256: sum})
		fmt.Fprintf(whole, "%s %s\n", ent.Name(), sum)
		total += n
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, hex.EncodeToString(whole.Sum(nil)), total, nil
}

// verify checks a snapshot's image against its manifest: sizes every time, hashes
// the first time this process restores it.
func (e *Engine) verify(sn *store.Snapshot) error {
	dir := filepath.Join(e.cfg.SnapshotDir, sn.ID)
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return fmt.Errorf("its manifest is unreadable: %v", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("its manifest is corrupt: %v", err)
	}
	if m.ID != sn.ID || m.SHA256 != sn.SHA256 {
		return errors.New("its manifest does not match its record")
	}
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil {
			return fmt.Errorf("image file %s is missing", f.Name)
		}
		if st.Size() != f.Size {
			return fmt.Errorf("image file %s has %d bytes, not %d (truncated or overwritten)", f.Name, st.Size(), f.Size)
		}
	}
	if _, ok := e.verified.Load(sn.ID); ok {
		return nil
	}
	files, sum, _, err := hashImage(dir)
	if err != nil {
		return err
	}
	if sum != m.SHA256 {
		for i, f := range files {
			if i < len(m.Files) && m.Files[i].SHA256 != f.SHA256 {
				return fmt.Errorf("image file %s does not match its sha256 (corrupt)", f.Name)
			}
		}
		return errors.New("the image does not match its sha256 (corrupt)")
	}
	e.verified.Store(sn.ID, true)
	return nil
}

// restore starts a sandbox from a snapshot's image. A bad image marks the snapshot
// broken and fails with ErrBroken.
func (e *Engine) restore(ctx context.Context, sn *store.Snapshot) (*box, error) {
	if sn.Status == store.SnapshotBroken {
		return nil, errorf(ErrBroken, "snapshot %s cannot be restored: %s", sn.ID, sn.Error)
	}
	r, ok := e.driver.(sandbox.Restorer)
	if !ok {
		return nil, unavailable(fmt.Sprintf("the %s sandbox runtime cannot restore snapshots", e.driver.Name()))
	}
	broken := func(reason string) error {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := e.store.MarkSnapshotBroken(wctx, sn.ID, reason); err != nil {
			e.log.Warn("marking snapshot broken", "snapshot", sn.ID, "err", err)
		}
		return errorf(ErrBroken, "snapshot %s cannot be restored: %s", sn.ID, reason)
	}
	release, err := e.prepareImage(sn.ID)
	if err != nil {
		return nil, broken("its compressed image cannot be read: " + err.Error())
	}
	defer release()
	if err := e.verify(sn); err != nil {
		return nil, broken(err.Error())
	}
	spec := sandbox.Spec{Image: sn.Image, MemoryMB: int(sn.MemoryMB), CPUCores: float64(sn.CPUMilli) / 1000}
	cfg, releaseImage, err := e.withImage(&spec)
	if err != nil {
		return nil, err
	}
	booted, err := e.reserve(ctx, requestBoot)
	if err != nil {
		releaseImage()
		return nil, err
	}
	sb, err := r.Restore(ctx, spec, filepath.Join(e.cfg.SnapshotDir, sn.ID))
	booted()
	if err != nil {
		releaseImage()
	}
	if errors.Is(err, sandbox.ErrBadCheckpoint) {
		e.log.Warn("restoring snapshot failed", "snapshot", sn.ID, "err", err)
		return nil, broken("runsc could not restore the image")
	}
	if err != nil {
		return nil, fmt.Errorf("restoring snapshot %s: %w", sn.ID, err)
	}
	return &box{Sandbox: sb, image: cfg, release: releaseImage}, nil
}

// SnapshotInfo is a snapshot with its place in the tree.
type SnapshotInfo struct {
	store.Snapshot
	Children []string
}

// Snapshots lists the account's snapshots, oldest first.
func (e *Engine) Snapshots(ctx context.Context, account string) ([]SnapshotInfo, error) {
	list, err := e.store.ListSnapshots(ctx, account)
	if err != nil {
		return nil, err
	}
	children := map[string][]string{}
	for _, sn := range list {
		if sn.ParentID != "" {
			children[sn.ParentID] = append(children[sn.ParentID], sn.ID)
		}
	}
	out := make([]SnapshotInfo, len(list))
	for i, sn := range list {
		out[i] = SnapshotInfo{Snapshot: sn, Children: children[sn.ID]}
	}
	return out, nil
}

// Snapshot returns one of the account's snapshots with its children.
func (e *Engine) Snapshot(ctx context.Context, account, id string) (SnapshotInfo, error) {
	list, err := e.Snapshots(ctx, account)
	if err != nil {
		return SnapshotInfo{}, err
	}
	for _, sn := range list {
		if sn.ID == id {
			return sn, nil
		}
	}
	return SnapshotInfo{}, errorf(ErrNotFound, "snapshot %q not found", id)
}

// DeleteSnapshot deletes one of the account's snapshots: its image goes at once;
// its record stays (marked deleted) for billing. Its children stay restorable.
func (e *Engine) DeleteSnapshot(ctx context.Context, account, id string) error {
	if err := e.store.DeleteSnapshot(ctx, account, id, time.Now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(ErrNotFound, "snapshot %q not found", id)
		}
		return err
	}
	e.verified.Delete(id)
	e.branches.drop(id)
	unlock := e.snapLocks.lock(id) // not while it is being compressed
	defer func() { unlock(); e.snapLocks.forget(id) }()
	if err := os.RemoveAll(filepath.Join(e.cfg.SnapshotDir, id)); err != nil {
		e.log.Warn("removing snapshot image", "snapshot", id, "err", err)
	}
	return nil
}

// RestoreSnapshot starts a new session from one of the account's snapshots and
// returns it; sessionID "" gets a generated id.
func (e *Engine) RestoreSnapshot(ctx context.Context, account, snapshotID, sessionID string) (SessionInfo, error) {
	if sessionID != "" && !validID(sessionID) {
		return SessionInfo{}, invalid("session_id must be 1 to 128 letters, digits, '-', '_' or '.'")
	}
	sn, err := e.store.GetSnapshot(ctx, account, snapshotID)
	if errors.Is(err, store.ErrNotFound) {
		return SessionInfo{}, errorf(ErrNotFound, "snapshot %q not found", snapshotID)
	} else if err != nil {
		return SessionInfo{}, err
	}
	s, err := e.newSession(ctx, account, sessionID, "", sandbox.Spec{}, &sn, false)
	if err != nil {
		return SessionInfo{}, err
	}
	return e.sessionInfo(s), nil
}

// RecoverSnapshots reconciles the snapshot directory with the store at start-up:
// unfinished images and images without a record are removed; records whose
// image is gone are marked broken.
func (e *Engine) RecoverSnapshots(ctx context.Context) error {
	if err := os.MkdirAll(e.cfg.SnapshotDir, 0o700); err != nil {
		return err
	}
	list, err := e.store.ListSnapshots(ctx, "")
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, sn := range list {
		known[sn.ID] = true
		if _, err := os.Stat(filepath.Join(e.cfg.SnapshotDir, sn.ID, manifestName)); err != nil && sn.Status != store.SnapshotBroken {
			e.log.Warn("snapshot image missing; marking it broken", "snapshot", sn.ID)
			if err := e.store.MarkSnapshotBroken(ctx, sn.ID, "its image is missing from the snapshot directory"); err != nil {
				return err
			}
		}
	}
	entries, err := os.ReadDir(e.cfg.SnapshotDir)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		if known[ent.Name()] {
			continue
		}
		e.log.Info("removing unfinished or unrecorded snapshot image", "dir", ent.Name())
		if err := os.RemoveAll(filepath.Join(e.cfg.SnapshotDir, ent.Name())); err != nil {
			return err
		}
	}
	return nil
}

// snapshotInstance checkpoints a running instance (which runs on) into a snapshot;
// restoring it gives a session (or, with POST /api/v1/instances, an instance)
// with the instance's memory, processes and files.
func (e *Engine) snapshotInstance(ctx context.Context, r SnapshotRequest) (store.Snapshot, error) {
	in, err := e.rlockInstance(r.Account, r.InstanceID)
	if err != nil {
		return store.Snapshot{}, err
	}
	defer in.mu.RUnlock()
	if in.rec.State != store.InstanceRunning {
		return store.Snapshot{}, notRunning(in)
	}
	spec := in.spec()
	s := &session{id: in.rec.ID, account: in.rec.Account, language: in.rec.Language, kernel: sessionLanguages[in.rec.Language], spec: spec, b: in.b}
	return e.checkpoint(ctx, s, r.KeyID, "", r.Name)
}
