package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/agent/files"
	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/store"
)

// Merge strategies.
const (
	MergeUnion        = "union"        // every branch's changes; a path changed differently by two branches is a conflict
	MergeIntersection = "intersection" // only the changes every branch made, identically
	MergeLatest       = "latest"       // every branch's changes; on a path changed by several, the last-run branch wins
)

// MergeRoots are the directories a merge compares and carries: where user code
// keeps its files. Memory is not merged (two live heaps cannot be): the merged
// snapshot carries the memory of the branches' common parent snapshot.
var MergeRoots = []string{"/workspace", "/home/user"}

// ErrConflict: the request conflicts with the state of things (see ConflictError).
var ErrConflict = errors.New("conflict")

// ConflictError lists the paths branches changed in different ways.
type ConflictError struct{ Paths []string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("merge conflict: %d path(s) changed differently by more than one branch: %s; merge with strategy %q or %q, or merge fewer branches",
		len(e.Paths), strings.Join(e.Paths, ", "), MergeLatest, MergeIntersection)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// MergeRequest asks to merge branches of one snapshot.
type MergeRequest struct {
	Account   string
	KeyID     string
	BranchIDs []string
	Strategy  string
	Name      string
}

// MergeChange is one change a merge carried into its snapshot.
type MergeChange struct {
	Path     string
	Action   string // "write" or "delete"
	BranchID string
}

// MergeResult is the snapshot a merge made and what went into it.
type MergeResult struct {
	Snapshot store.Snapshot
	Strategy string
	Base     string // the common parent snapshot
	Changes  []MergeChange
}

// maxMergeBytes bounds the file content one merge copies.
const maxMergeBytes = 1 << 30

type change struct {
	entry  files.Entry // the new state; zero for a delete
	delete bool
	branch string
	at     time.Time // when the branch last ran code
}

func (c change) same(o change) bool {
	if c.delete || o.delete {
		return c.delete == o.delete
	}
	return sameEntry(c.entry, o.entry)
}

func sameEntry(a, b files.Entry) bool {
	return a.Type == b.Type && a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID && a.SHA256 == b.SHA256 && a.Target == b.Target
}

// Merge merges the filesystem changes (under MergeRoots) that branches of one
// snapshot made, relative to that snapshot, into a new snapshot whose parent is
// it. The branches run on, unchanged.
func (e *Engine) Merge(ctx context.Context, r MergeRequest) (*MergeResult, error) {
	if r.Strategy == "" {
		r.Strategy = MergeUnion
	}
	if !slices.Contains([]string{MergeUnion, MergeIntersection, MergeLatest}, r.Strategy) {
		return nil, invalid(fmt.Sprintf("unknown strategy %q; strategies are %s, %s, %s", r.Strategy, MergeUnion, MergeIntersection, MergeLatest))
	}
	if len(r.BranchIDs) < 2 || len(r.BranchIDs) > MaxBranches {
		return nil, invalid(fmt.Sprintf("branch_ids must name 2 to %d branches", MaxBranches))
	}
	if len(r.Name) > 200 {
		return nil, invalid("name is longer than 200 bytes")
	}
	ids := slices.Clone(r.BranchIDs)
	slices.Sort(ids) // a fixed order to hold them in: no deadlock between merges
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		return nil, invalid("branch_ids names a branch twice")
	}
	var branches []*session
	for _, id := range ids {
		s, err := e.lookupSession(r.Account, id)
		if err != nil {
			return nil, err
		}
		branches = append(branches, s)
	}
	base := branches[0].parent
	for _, s := range branches {
		if s.parent == "" {
			return nil, invalid(fmt.Sprintf("session %q is not a branch of a snapshot", s.id))
		}
		if s.parent != base {
			return nil, invalid(fmt.Sprintf("branches %q and %q come from different snapshots (%s, %s): only branches of one snapshot can be merged", branches[0].id, s.id, base, s.parent))
		}
	}
	snap, err := e.store.GetSnapshot(ctx, r.Account, base)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(ErrNotFound, "the branches' snapshot %s was deleted; there is nothing to merge into", base)
	} else if err != nil {
		return nil, err
	}
	for i, s := range branches {
		if err := e.hold(ctx, s); err != nil {
			for _, held := range branches[:i] {
				e.unhold(held)
			}
			return nil, err
		}
	}
	defer func() {
		for _, s := range branches {
			e.unhold(s)
		}
	}()

	// The result starts as the common parent, restored.
	result, err := e.newSession(ctx, r.Account, "", "", sandbox.Spec{}, &snap, false)
	if err != nil {
		return nil, err
	}
	defer e.endSession(result)
	if err := e.hold(ctx, result); err != nil {
		return nil, err
	}
	defer e.unhold(result)

	baseManifest, err := e.manifest(ctx, result.b)
	if err != nil {
		return nil, fmt.Errorf("listing the files of snapshot %s: %w", base, err)
	}
	byPath := map[string][]change{}
	for _, s := range branches {
		m, err := e.manifest(ctx, s.b)
		if err != nil {
			return nil, fmt.Errorf("listing the files of branch %s: %w", s.id, err)
		}
		e.sessions.mu.Lock()
		at := s.lastChange
		e.sessions.mu.Unlock()
		for _, c := range diff(baseManifest, m) {
			c.branch, c.at = s.id, at
			byPath[pathOf(c)] = append(byPath[pathOf(c)], c)
		}
	}
	chosen, conflicts := choose(byPath, r.Strategy, len(branches))
	if len(conflicts) > 0 {
		return nil, &ConflictError{Paths: conflicts}
	}
	if err := e.apply(ctx, result.b, branches, chosen); err != nil {
		return nil, fmt.Errorf("applying the merged changes: %w", err)
	}
	name := r.Name
	if name == "" {
		name = r.Strategy + " merge of " + strings.Join(r.BranchIDs, ", ")
	}
	sn, err := e.checkpoint(ctx, result, r.KeyID, "", name)
	if err != nil {
		return nil, err
	}
	out := &MergeResult{Snapshot: sn, Strategy: r.Strategy, Base: base}
	for _, c := range chosen {
		action := "write"
		if c.delete {
			action = "delete"
		}
		out.Changes = append(out.Changes, MergeChange{Path: pathOf(c), Action: action, BranchID: c.branch})
	}
	return out, nil
}

func pathOf(c change) string { return c.entry.Path }

// diff lists how m differs from base: written (new or changed) and deleted paths.
// Under a deleted directory only the directory itself is listed.
func diff(base, m []files.Entry) []change {
	old := map[string]files.Entry{}
	for _, e := range base {
		old[e.Path] = e
	}
	now := map[string]bool{}
	var out []change
	for _, e := range m {
		now[e.Path] = true
		if o, ok := old[e.Path]; !ok || !sameEntry(o, e) {
			// A directory whose content changed but not itself is not a change;
			// its mode or owner changing is.
			out = append(out, change{entry: e})
		}
	}
	var gone []string
	for _, e := range base {
		if !now[e.Path] {
			gone = append(gone, e.Path)
		}
	}
	sort.Strings(gone)
	var last string
	for _, p := range gone {
		if last != "" && strings.HasPrefix(p, last+"/") {
			continue
		}
		last = p
		out = append(out, change{entry: files.Entry{Path: p}, delete: true})
	}
	return out
}

// choose applies a strategy to the changes of n branches, by path; it returns the
// changes to make in path order, or the conflicting paths.
func choose(byPath map[string][]change, strategy string, n int) ([]change, []string) {
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out []change
	var conflicts []string
	for _, p := range paths {
		cs := byPath[p]
		agree := true
		for _, c := range cs[1:] {
			agree = agree && c.same(cs[0])
		}
		switch strategy {
		case MergeUnion:
			if !agree {
				conflicts = append(conflicts, p)
				continue
			}
			out = append(out, cs[0])
		case MergeIntersection:
			if agree && len(cs) == n {
				out = append(out, cs[0])
			}
		case MergeLatest:
			latest := cs[0]
			for _, c := range cs[1:] {
				if c.at.After(latest.at) {
					latest = c
				}
			}
			out = append(out, latest)
		}
	}
	return out, conflicts
}

// apply makes the chosen changes in the result sandbox: deletions first, then
// each branch's writes, copied as a tar stream from the branch.
func (e *Engine) apply(ctx context.Context, result *box, branches []*session, chosen []change) error {
	var deletes []string
	writes := map[string][]string{}
	for _, c := range chosen {
		if c.delete {
			deletes = append(deletes, c.entry.Path)
		} else {
			writes[c.branch] = append(writes[c.branch], c.entry.Path)
		}
	}
	if len(deletes) > 0 {
		argv := append([]string{agentPath, "remove", "--root", "/"}, deletes...)
		if err := e.rootExec(ctx, result, argv, nil, io.Discard); err != nil {
			return err
		}
	}
	for _, s := range branches {
		paths := writes[s.id]
		if len(paths) == 0 {
			continue
		}
		pr, pw := io.Pipe()
		packErr := make(chan error, 1)
		go func() {
			err := e.rootExec(ctx, s.b, append([]string{agentPath, "pack"}, paths...), nil, pw)
			pw.CloseWithError(err)
			packErr <- err
		}()
		err := e.rootExec(ctx, result, []string{agentPath, "unpack", "--keep-owner", "--max-bytes", fmt.Sprint(maxMergeBytes), "/"}, pr, io.Discard)
		pr.CloseWithError(errors.New("unpack ended"))
		if perr := <-packErr; perr != nil && err == nil {
			err = fmt.Errorf("reading branch %s: %w", s.id, perr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// agentPath is where the agent binary is inside every sandbox.
const agentPath = "/.faas/agent"

// manifest lists the files under MergeRoots in a sandbox.
func (e *Engine) manifest(ctx context.Context, b *box) ([]files.Entry, error) {
	var out bytes.Buffer
	if err := e.rootExec(ctx, b, append([]string{agentPath, "manifest"}, MergeRoots...), nil, &out); err != nil {
		return nil, err
	}
	return files.ReadManifest(&out)
}

// rootExec runs a platform command (the agent's file operations) as root in a
// sandbox, with stdin from in (if not nil) and stdout to out, and fails with its
// stderr unless it exits 0.
func (e *Engine) rootExec(ctx context.Context, b *box, argv []string, in io.Reader, out io.Writer) error {
	var stderr cappedBuffer
	stderr.max = 64 << 10
	ex, err := b.Agent().Start(agent.ExecRequest{Argv: argv, Dir: "/", Env: []string{"PATH=/usr/bin:/bin"}, Stdin: in != nil, TimeoutMS: 10 * 60 * 1000},
		agent.Output{Stdout: out, Stderr: &stderr})
	if err != nil {
		return err
	}
	if in != nil {
		go func() {
			buf := make([]byte, 256<<10)
			for {
				n, rerr := in.Read(buf)
				if n > 0 && ex.WriteStdin(buf[:n]) != nil {
					break
				}
				if rerr != nil {
					break
				}
			}
			_ = ex.CloseStdin()
		}()
	}
	st, err := ex.Wait(ctx)
	if err != nil {
		return err
	}
	if st.ExitCode != 0 || st.Error != "" {
		msg, _ := stderr.Bytes()
		return fmt.Errorf("%s %s: exit %d: %s%s", path.Base(argv[0]), argv[1], st.ExitCode, bytes.TrimSpace(msg), st.Error)
	}
	return nil
}
