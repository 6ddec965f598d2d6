package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faas-platform/faas/internal/testserver"
)

// call sends a JSON request with key and decodes the JSON answer.
func call(t *testing.T, s *testserver.Server, key, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	status, b, _ := s.DoWithKey(ctx, key, method, path, raw)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d, not a JSON object: %q", method, path, status, b)
	}
	return status, out
}

// mustCall is call that fails the test unless the status is want.
func mustCall(t *testing.T, s *testserver.Server, want int, method, path string, body any) map[string]any {
	t.Helper()
	status, out := call(t, s, s.Key, method, path, body)
	if status != want {
		t.Fatalf("%s %s: %d %v (want %d)", method, path, status, out, want)
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

// run runs code in a session (mode checkpointed) and returns the response; it
// fails the test unless the code succeeded.
func runIn(t *testing.T, s *testserver.Server, body map[string]any) map[string]any {
	t.Helper()
	out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", body)
	if out["exit_code"].(float64) != 0 {
		t.Fatalf("execution %v failed: %v", body, out)
	}
	return out
}

// TestSessionsSnapshotsBranches is the signature feature end to end: a Python
// session builds state (a variable, an imported module, an open file), is
// checkpointed, 8 branches each change it their own way at once, each sees only
// its own change, the parent is untouched, a branch's snapshot restores with both
// generations of state, and snapshots survive a server restart.
func TestSessionsSnapshotsBranches(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})

	// A session keeps its interpreter between executions.
	runIn(t, s, map[string]any{"session_id": "nb", "language": "python", "code": "import json, collections\nx = 41\nlog = open('/workspace/log.txt', 'w')\nlog.write('parent\\n'); log.flush()"})
	out := runIn(t, s, map[string]any{"session_id": "nb", "code": "print(x, json.dumps({'a': 1}), collections.__name__)"})
	if got := str(out["stdout"]); got != "41 {\"a\": 1} collections\n" || str(out["session_id"]) != "nb" || str(out["mode"]) != "checkpointed" {
		t.Fatalf("second execution in the session: %v", out)
	}
	// checkpoint_after snapshots the session once the code ran.
	out = runIn(t, s, map[string]any{"session_id": "nb", "code": "x = 41", "checkpoint_after": true})
	snap := str(out["snapshot_id"])
	if snap == "" {
		t.Fatalf("no snapshot_id: %v", out)
	}
	info := mustCall(t, s, http.StatusOK, "GET", "/api/v1/snapshots/"+snap, nil)
	if info["language"] != "python" || info["size_bytes"].(float64) <= 0 || len(str(info["sha256"])) != 64 || info["status"] != "ready" || info["session_id"] != "nb" {
		t.Fatalf("snapshot manifest: %v", info)
	}

	// 8 branches at once, each with its own change to memory and files.
	const n = 8
	start := time.Now()
	var wg sync.WaitGroup
	branches := make([]map[string]any, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := fmt.Sprintf("x += %d\nlog.write('branch %d\\n'); log.flush()\nopen('/workspace/b%d.txt', 'w').write('mine')\nimport os\nprint(x, sorted(f for f in os.listdir('/workspace')), open('/workspace/log.txt').read().split())", i, i, i)
			status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"mode": "branched", "parent_snapshot": snap, "code": code})
			if status != http.StatusOK {
				t.Errorf("branch %d: %d %v", i, status, out)
				return
			}
			branches[i] = out
		}()
	}
	wg.Wait()
	t.Logf("8 concurrent branches took %v", time.Since(start))
	if t.Failed() {
		t.FailNow()
	}
	for i, b := range branches {
		want := fmt.Sprintf("%d ['b%d.txt', 'log.txt'] ['parent', 'branch', '%d']\n", 41+i, i, i)
		if str(b["stdout"]) != want || str(b["branch_id"]) == "" || b["mode"] != "branched" {
			t.Errorf("branch %d saw %q (want %q): %v", i, b["stdout"], want, b)
		}
	}
	// The parent session is unchanged.
	out = runIn(t, s, map[string]any{"session_id": "nb", "code": "import os\nprint(x, sorted(os.listdir('/workspace')), open('/workspace/log.txt').read().split())"})
	if got := str(out["stdout"]); got != "41 ['log.txt'] ['parent']\n" {
		t.Errorf("parent after branching: %q", got)
	}

	// A branch goes on as a session of its own, and can be snapshotted: a tree.
	b3 := str(branches[3]["branch_id"])
	runIn(t, s, map[string]any{"mode": "branched", "session_id": b3, "code": "y = x * 2"})
	child := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/snapshots", map[string]any{"branch_id": b3, "name": "branch 3"})
	if child["parent_id"] != snap || child["name"] != "branch 3" {
		t.Fatalf("branch snapshot: %v", child)
	}
	childID := str(child["id"])
	info = mustCall(t, s, http.StatusOK, "GET", "/api/v1/snapshots/"+snap, nil)
	if kids, _ := info["children"].([]any); len(kids) != 1 || kids[0] != childID {
		t.Errorf("children of the root: %v", info["children"])
	}
	checkGenerations := func() {
		t.Helper()
		out := runIn(t, s, map[string]any{"snapshot_id": childID, "code": "import os\nprint(x, y, sorted(os.listdir('/workspace')))"})
		if got := str(out["stdout"]); got != "44 88 ['b3.txt', 'log.txt']\n" {
			t.Errorf("restored branch snapshot sees %q", got)
		}
		mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/sessions/"+str(out["session_id"]), nil)
	}
	checkGenerations()

	// Snapshot storage is metered (GB-months, from sizes and lifetimes).
	usage := mustCall(t, s, http.StatusOK, "GET", "/api/v1/usage", nil)
	if snaps := usage["snapshots"].(map[string]any); snaps["gb_months"].(float64) <= 0 {
		t.Errorf("snapshot storage not metered: %v", usage["snapshots"])
	}
	// Storage is billed up to now, whatever range is asked for: these few MB
	// kept for seconds are far below a GB-month.
	whole := mustCall(t, s, http.StatusOK, "GET", "/api/v1/usage?from=2000-01-01&to=9999-12-31", nil)
	if snaps := whole["snapshots"].(map[string]any); snaps["gb_months"].(float64) > 0.001 {
		t.Errorf("snapshot storage billed into the future: %v", snaps)
	}

	// Another account sees none of it.
	other := s.NewKey(context.Background(), "execute", "snapshots")
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/v1/snapshots/" + snap, nil},
		{"POST", "/api/v1/snapshots/" + snap + "/restore", nil},
		{"POST", "/api/v1/execute", map[string]any{"snapshot_id": snap, "code": "print(x)"}},
		{"POST", "/api/v1/execute", map[string]any{"mode": "branched", "parent_snapshot": snap, "code": "print(x)"}},
		{"POST", "/api/v1/snapshots", map[string]any{"session_id": "nb"}},
		{"POST", "/api/v1/execute", map[string]any{"mode": "branched", "session_id": b3, "code": "print(x)"}},
		{"DELETE", "/api/v1/snapshots/" + snap, nil},
		{"GET", "/api/v1/sessions/nb", nil},
	} {
		if status, out := call(t, s, other, c.method, c.path, c.body); status != http.StatusNotFound {
			t.Errorf("other account: %s %s: %d %v", c.method, c.path, status, out)
		}
	}
	if _, out := call(t, s, other, "GET", "/api/v1/snapshots", nil); len(out["snapshots"].([]any)) != 0 {
		t.Errorf("other account lists %v", out)
	}

	// Snapshots survive a restart (sessions do not).
	s.Restart()
	if status, _ := call(t, s, s.Key, "GET", "/api/v1/sessions/nb", nil); status != http.StatusNotFound {
		t.Errorf("session after restart: %d", status)
	}
	checkGenerations()
	restored := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/snapshots/"+snap+"/restore", nil)
	out = runIn(t, s, map[string]any{"session_id": str(restored["session_id"]), "code": "print(x)"})
	if str(out["stdout"]) != "41\n" {
		t.Errorf("restore of the root after restart: %v", out)
	}

	// Deleting a snapshot removes its image; its child stays restorable.
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/snapshots/"+snap, nil)
	if _, err := os.Stat(filepath.Join(s.DataDir, "snapshots", snap)); !os.IsNotExist(err) {
		t.Errorf("image of a deleted snapshot: %v", err)
	}
	if status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"snapshot_id": snap, "code": "1"}); status != http.StatusNotFound {
		t.Errorf("deleted snapshot: %d %v", status, out)
	}
	checkGenerations()
}

// TestJavaScriptSession checks Node sessions keep their variables, and survive a
// checkpoint and restore.
func TestJavaScriptSession(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	runIn(t, s, map[string]any{"session_id": "js", "language": "javascript", "code": "let counter = 1; const fs = require('fs'); function bump() { return ++counter; }"})
	out := runIn(t, s, map[string]any{"session_id": "js", "language": "javascript", "code": "bump(); console.log(counter)", "checkpoint_after": true})
	if str(out["stdout"]) != "2\n" || str(out["snapshot_id"]) == "" {
		t.Fatalf("js session: %v", out)
	}
	out = runIn(t, s, map[string]any{"mode": "branched", "parent_snapshot": out["snapshot_id"], "language": "typescript", "code": "const n: number = bump(); console.log(n)"})
	if str(out["stdout"]) != "3\n" {
		t.Errorf("typescript branch of a js session: %v", out)
	}
	// A failing cell reports its error and the session goes on.
	status, bad := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"session_id": "js", "language": "javascript", "code": "throw new Error('boom')"})
	if status != http.StatusOK || bad["exit_code"].(float64) != 1 || !strings.Contains(str(bad["stderr"]), "boom") {
		t.Errorf("failing cell: %d %v", status, bad)
	}
	if out := runIn(t, s, map[string]any{"session_id": "js", "language": "javascript", "code": "console.log(counter)"}); str(out["stdout"]) != "2\n" {
		t.Errorf("after the failing cell: %v", out)
	}
}

// TestSessionTimeout: a cell that runs out of time is interrupted and the
// session's state survives (KeyboardInterrupt in Python, an interrupted script
// or an abandoned promise in JavaScript); only an interpreter that will not stop
// is ended, and every such execution says "timeout".
func TestSessionTimeout(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	for _, tc := range []struct {
		language, set, get string
		cells              []string
		stderr             string
	}{
		{"python", "kept = 41", "print(kept)", []string{
			"while True: pass",
			"import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print('interrupted')\n    raise",
		}, "KeyboardInterrupt"},
		{"javascript", "globalThis.kept = 41", "console.log(kept)", []string{
			"while (true) {}",
			"new Promise((resolve) => setTimeout(resolve, 30000))",
		}, "interrupted"},
	} {
		session := "timeout-" + tc.language
		runIn(t, s, map[string]any{"session_id": session, "language": tc.language, "code": tc.set})
		for _, code := range tc.cells {
			status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"session_id": session, "language": tc.language, "code": code, "timeout_ms": 1000})
			if status != http.StatusOK || out["status"] != "timeout" || out["timed_out"] != true || !strings.Contains(str(out["stderr"]), tc.stderr) || out["error"] != "timed out after 1000 ms" {
				t.Errorf("%s: %q: %d %v", tc.language, code, status, out)
			}
			if got := runIn(t, s, map[string]any{"session_id": session, "language": tc.language, "code": tc.get}); got["stdout"] != "41\n" {
				t.Errorf("%s: the session after %q: %v", tc.language, code, got)
			}
		}
	}
	// An interpreter that ignores the interrupt is ended after its grace.
	status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"session_id": "timeout-python", "code": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass", "timeout_ms": 1000})
	if status != http.StatusOK || out["status"] != "timeout" || !strings.Contains(str(out["error"]), "state is lost") {
		t.Errorf("an interpreter ignoring the interrupt: %d %v", status, out)
	}
}

// TestDeleteBusySession: deleting a session stops the execution running in it
// (which ran on to its end, and its sandbox with it, in a session that no longer
// existed).
func TestDeleteBusySession(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	runIn(t, s, map[string]any{"session_id": "busy", "code": "x = 1"})
	type answer struct {
		status int
		out    map[string]any
		took   time.Duration
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"session_id": "busy", "code": "import time\nprint('started', flush=True)\ntime.sleep(60)\nprint('finished')", "timeout_ms": 120000})
		done <- answer{status, out, time.Since(start)}
	}()
	time.Sleep(2 * time.Second)
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/sessions/busy", nil)
	select {
	case a := <-done:
		if a.status != http.StatusOK || a.out["status"] == "succeeded" || strings.Contains(str(a.out["stdout"]), "finished") || a.took > 30*time.Second {
			t.Errorf("the execution in the deleted session: %d after %v: %v", a.status, a.took, a.out)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the execution in the deleted session was not stopped")
	}
}

// TestBranchStockMakesRoom: sandboxes restored ahead of demand for branches are
// idle and make room at the sandbox cap, as warm ones do: requests are not
// refused for them.
func TestBranchStockMakesRoom(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_MAX_SANDBOXES=3", "FAAS_STOCK=0", "FAAS_BRANCH_STOCK=2"}})
	runIn(t, s, map[string]any{"session_id": "full", "code": "x = 1", "checkpoint_after": true})
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/sessions/full", nil)
	stocked := func() int {
		sandboxes, _ := mustCall(t, s, http.StatusOK, "GET", "/health", nil)["sandboxes"].(map[string]any)
		n, _ := sandboxes["branch_stocked"].(float64)
		return int(n)
	}
	for i := 0; stocked() < 2; i++ {
		if i == 300 {
			t.Fatalf("the snapshot was never restored ahead of demand twice: %v", mustCall(t, s, http.StatusOK, "GET", "/health", nil))
		}
		time.Sleep(100 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"code": "import time\ntime.sleep(2)\nprint(1)"})
			if status != http.StatusOK || out["stdout"] != "1\n" {
				t.Errorf("request %d at the cap with 2 sandboxes restored ahead of demand: %d %v", i, status, out)
			}
		}()
	}
	wg.Wait()
}

// TestSnapshotErrors covers bad input and broken images.
func TestSnapshotErrors(t *testing.T) {
	// No restores ahead of demand: each restore here must read the image.
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_BRANCH_STOCK=0"}})
	for _, c := range []struct {
		body   any
		path   string
		status int
	}{
		{map[string]any{"snapshot_id": "snap_nope", "code": "1"}, "/api/v1/execute", 404},
		{map[string]any{"mode": "branched", "parent_snapshot": "snap_nope", "code": "1"}, "/api/v1/execute", 404},
		{map[string]any{"mode": "branched", "code": "1"}, "/api/v1/execute", 400},
		{map[string]any{"mode": "ephemeral", "checkpoint_after": true, "code": "1"}, "/api/v1/execute", 400},
		{map[string]any{"session_id": "s", "command": "ls"}, "/api/v1/execute", 400},
		{map[string]any{"session_id": "s", "language": "bash", "code": "ls"}, "/api/v1/execute", 400},
		{map[string]any{"session_id": "../x", "code": "1"}, "/api/v1/execute", 400},
		{map[string]any{"execution_id": "exec_nope"}, "/api/v1/snapshots", 404},
		{map[string]any{}, "/api/v1/snapshots", 400},
		{map[string]any{"parent_snapshot": "snap_nope", "code": "1", "count": 2}, "/api/v1/branches", 404},
		{map[string]any{"parent_snapshot": "snap_nope", "code": "1", "count": 99}, "/api/v1/branches", 400},
	} {
		if status, out := call(t, s, s.Key, "POST", c.path, c.body); status != c.status || str(out["error"]) == "" {
			t.Errorf("%s %v: %d %v (want %d)", c.path, c.body, status, out, c.status)
		}
	}
	// An ephemeral execution has no session to snapshot: a clear 404.
	eph := runIn(t, s, map[string]any{"code": "print(1)"})
	if status, out := call(t, s, s.Key, "POST", "/api/v1/snapshots", map[string]any{"execution_id": eph["execution_id"]}); status != 404 || !strings.Contains(str(out["error"]), "checkpointed") {
		t.Errorf("snapshot of an ephemeral execution: %d %v", status, out)
	}

	// A truncated image: a clear error, the snapshot marked broken, nothing crashes.
	out := runIn(t, s, map[string]any{"session_id": "c", "code": "z = 1", "checkpoint_after": true})
	snap := str(out["snapshot_id"])
	// A restore into a session that exists: a conflict with its state.
	if status, out := call(t, s, s.Key, "POST", "/api/v1/snapshots/"+snap+"/restore", map[string]any{"session_id": "c"}); status != http.StatusConflict {
		t.Errorf("restore into a live session: %d %v", status, out)
	}
	dir := filepath.Join(s.DataDir, "snapshots", snap)
	entries, _ := os.ReadDir(dir)
	var biggest string
	var size int64
	for _, e := range entries {
		if fi, _ := e.Info(); fi.Size() > size && e.Name() != "manifest.json" {
			biggest, size = e.Name(), fi.Size()
		}
	}
	if err := os.Truncate(filepath.Join(dir, biggest), size/2); err != nil {
		t.Fatal(err)
	}
	status, bad := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"snapshot_id": snap, "code": "print(z)"})
	if status != http.StatusConflict || bad["code"] != "snapshot_broken" || !strings.Contains(str(bad["error"]), biggest) {
		t.Errorf("restore of a truncated snapshot: %d %v", status, bad)
	}
	info := mustCall(t, s, http.StatusOK, "GET", "/api/v1/snapshots/"+snap, nil)
	if info["status"] != "broken" || str(info["error"]) == "" {
		t.Errorf("truncated snapshot: %v", info)
	}
	// A corrupt (same size) image is caught by its hash after a restart.
	out = runIn(t, s, map[string]any{"session_id": "c", "code": "z = 2", "checkpoint_after": true})
	snap2 := str(out["snapshot_id"])
	s.Restart()
	f := filepath.Join(s.DataDir, "snapshots", snap2, "checkpoint.img")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+64 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	status, bad = call(t, s, s.Key, "POST", "/api/v1/snapshots/"+snap2+"/restore", nil)
	if status != http.StatusConflict || !strings.Contains(str(bad["error"]), "sha256") {
		t.Errorf("restore of a corrupt snapshot: %d %v", status, bad)
	}
	// Still listed, as broken; the server is fine.
	list := mustCall(t, s, http.StatusOK, "GET", "/api/v1/snapshots", nil)
	var statuses []string
	for _, sn := range list["snapshots"].([]any) {
		statuses = append(statuses, str(sn.(map[string]any)["status"]))
	}
	sort.Strings(statuses)
	if strings.Join(statuses, ",") != "broken,broken" {
		t.Errorf("statuses: %v", statuses)
	}
	runIn(t, s, map[string]any{"code": "print(1)"})
}

// TestMergeBranches merges the file changes of branches of one snapshot with each
// strategy, and checks what the merged snapshot holds.
func TestMergeBranches(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	out := runIn(t, s, map[string]any{"session_id": "m", "code": "x = 1\nopen('/workspace/shared.txt', 'w').write('base')\nopen('/workspace/del.txt', 'w').write('bye')", "checkpoint_after": true})
	snap := str(out["snapshot_id"])
	branch := func(code string) string {
		t.Helper()
		out := runIn(t, s, map[string]any{"parent_snapshot": snap, "code": "import os\nx = 99\n" + code})
		return str(out["branch_id"])
	}
	b1 := branch("open('/workspace/a.txt', 'w').write('a')\nopen('/workspace/shared.txt', 'w').write('one')")
	b2 := branch("open('/workspace/b.txt', 'w').write('b')\nos.remove('/workspace/del.txt')\nopen('/workspace/shared.txt', 'w').write('two')\nos.makedirs('/home/user/.config/tool')\nopen('/home/user/.config/tool/rc', 'w').write('rc')")
	b3 := branch("open('/workspace/a.txt', 'w').write('a')\nos.remove('/workspace/del.txt')")

	// What a merged snapshot holds: its files, and the parent's memory.
	contents := func(snapID string) string {
		t.Helper()
		out := runIn(t, s, map[string]any{"snapshot_id": snapID, "code": "import os\nfor root in ('/workspace', '/home/user'):\n    for d, _, fs in sorted(os.walk(root)):\n        for f in sorted(fs):\n            print(os.path.join(d, f), open(os.path.join(d, f)).read())\nprint('x', x)"})
		mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/sessions/"+str(out["session_id"]), nil)
		return str(out["stdout"])
	}
	merge := func(strategy string, ids ...string) map[string]any {
		t.Helper()
		out := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/branches/merge", map[string]any{"branch_ids": ids, "strategy": strategy})
		sn := out["snapshot"].(map[string]any)
		if sn["parent_id"] != snap || out["base_snapshot"] != snap || out["strategy"] != strategy {
			t.Errorf("%s merge: %v", strategy, out)
		}
		return out
	}

	// union: b1 and b2 both changed shared.txt, differently.
	status, conflict := call(t, s, s.Key, "POST", "/api/v1/branches/merge", map[string]any{"branch_ids": []string{b1, b2}, "strategy": "union"})
	if paths, _ := conflict["paths"].([]any); status != http.StatusConflict || conflict["code"] != "merge_conflict" || len(paths) != 1 || paths[0] != "/workspace/shared.txt" {
		t.Errorf("union conflict: %d %v", status, conflict)
	}
	// union without conflict: b1 and b3 agree on a.txt.
	m := merge("union", b1, b3)
	if got, want := contents(str(m["snapshot"].(map[string]any)["id"])), "/workspace/a.txt a\n/workspace/shared.txt one\nx 1\n"; got != want {
		t.Errorf("union of b1, b3:\n%s\nwant\n%s", got, want)
	}
	// latest: b2 ran after b1, so its shared.txt wins.
	m = merge("latest", b1, b2)
	if got, want := contents(str(m["snapshot"].(map[string]any)["id"])), "/workspace/a.txt a\n/workspace/b.txt b\n/workspace/shared.txt two\n/home/user/.config/tool/rc rc\nx 1\n"; got != want {
		t.Errorf("latest of b1, b2:\n%s\nwant\n%s", got, want)
	}
	// intersection: b2 and b3 both deleted del.txt, and nothing else alike.
	m = merge("intersection", b2, b3)
	if changes := m["changes"].([]any); len(changes) != 1 || changes[0].(map[string]any)["path"] != "/workspace/del.txt" || changes[0].(map[string]any)["action"] != "delete" {
		t.Errorf("intersection changes: %v", changes)
	}
	if got, want := contents(str(m["snapshot"].(map[string]any)["id"])), "/workspace/shared.txt base\nx 1\n"; got != want {
		t.Errorf("intersection of b2, b3:\n%s\nwant\n%s", got, want)
	}
	// The branches themselves are untouched.
	if out := runIn(t, s, map[string]any{"mode": "branched", "session_id": b1, "code": "print(x, open('/workspace/shared.txt').read())"}); str(out["stdout"]) != "99 one\n" {
		t.Errorf("b1 after merges: %v", out)
	}

	// Bad input.
	other := runIn(t, s, map[string]any{"session_id": "other", "code": "y = 1", "checkpoint_after": true})
	ob := runIn(t, s, map[string]any{"parent_snapshot": other["snapshot_id"], "code": "1"})
	for _, c := range []struct {
		body   map[string]any
		status int
	}{
		{map[string]any{"branch_ids": []string{b1}}, 400},
		{map[string]any{"branch_ids": []string{b1, b1}}, 400},
		{map[string]any{"branch_ids": []string{b1, b2}, "strategy": "rebase"}, 400},
		{map[string]any{"branch_ids": []string{b1, "br_nope"}}, 404},
		{map[string]any{"branch_ids": []string{b1, str(ob["branch_id"])}}, 400},
		{map[string]any{"branch_ids": []string{b1, "m"}}, 400},
	} {
		if status, out := call(t, s, s.Key, "POST", "/api/v1/branches/merge", c.body); status != c.status {
			t.Errorf("merge %v: %d %v (want %d)", c.body, status, out, c.status)
		}
	}
}

// TestSnapshotStorageLimits: the account's snapshot quota, and a full disk while
// a snapshot is written (a clear error, nothing half-written listed or left).
func TestSnapshotStorageLimits(t *testing.T) {
	t.Run("quota", func(t *testing.T) {
		s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_QUOTA_SNAPSHOT_MB=1", "FAAS_BRANCH_STOCK=0"}})
		runIn(t, s, map[string]any{"session_id": "q", "code": "x = 1", "checkpoint_after": true})
		status, out := call(t, s, s.Key, "POST", "/api/v1/snapshots", map[string]any{"session_id": "q"})
		if status != http.StatusTooManyRequests || out["code"] != "quota_exceeded" || !strings.Contains(str(out["error"]), "snapshots") {
			t.Errorf("second snapshot over a 1 MB quota: %d %v", status, out)
		}
	})
	t.Run("quota, snapshots at once", func(t *testing.T) {
		s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_QUOTA_SNAPSHOT_MB=1", "FAAS_BRANCH_STOCK=0"}})
		const n = 3
		for i := range n {
			runIn(t, s, map[string]any{"session_id": fmt.Sprint("q", i), "code": "x = 1"})
		}
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i], _ = call(t, s, s.Key, "POST", "/api/v1/snapshots", map[string]any{"session_id": fmt.Sprint("q", i)})
			}()
		}
		wg.Wait()
		made := 0
		for _, status := range statuses {
			if status == http.StatusCreated {
				made++
			}
		}
		if made != 1 {
			t.Errorf("%d snapshots made at once under a 1 MB quota (statuses %v); one fits", made, statuses)
		}
	})
	t.Run("full disk", func(t *testing.T) {
		dataDir := t.TempDir()
		snapDir := filepath.Join(dataDir, "snapshots")
		if err := os.Mkdir(snapDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "faas-test-full", snapDir).CombinedOutput(); err != nil {
			t.Fatalf("mounting a small tmpfs: %v %s", err, out)
		}
		unmount := func() { exec.Command("umount", "-l", snapDir).Run() }
		s := testserver.Start(t, testserver.Options{DataDir: dataDir, Env: []string{"FAAS_BRANCH_STOCK=0"}})
		t.Cleanup(unmount) // runs before the server's own clean-up checks for mounts
		runIn(t, s, map[string]any{"session_id": "d", "code": "x = 1"})
		status, out := call(t, s, s.Key, "POST", "/api/v1/snapshots", map[string]any{"session_id": "d"})
		if status != http.StatusInsufficientStorage || out["code"] != "insufficient_storage" {
			t.Errorf("snapshot on a full disk: %d %v", status, out)
		}
		if list := mustCall(t, s, http.StatusOK, "GET", "/api/v1/snapshots", nil); len(list["snapshots"].([]any)) != 0 {
			t.Errorf("a failed snapshot is listed: %v", list)
		}
		if entries, _ := os.ReadDir(snapDir); len(entries) != 0 {
			t.Errorf("a failed snapshot left %d entries on disk", len(entries))
		}
		// The session is unharmed.
		if out := runIn(t, s, map[string]any{"session_id": "d", "code": "print(x)"}); str(out["stdout"]) != "1\n" {
			t.Errorf("session after the failed snapshot: %v", out)
		}
	})
}

// TestSnapshotCompression: a snapshot not used for a while is compressed on disk
// (and billed by that size), and restores as before.
func TestSnapshotCompression(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_SNAPSHOT_COMPRESS_AFTER=1s", "FAAS_BRANCH_STOCK=0"}})
	out := runIn(t, s, map[string]any{"session_id": "z", "code": "import json\ndata = list(range(100000))", "checkpoint_after": true})
	snap := str(out["snapshot_id"])
	first := mustCall(t, s, http.StatusOK, "GET", "/api/v1/snapshots/"+snap, nil)
	full := first["size_bytes"].(float64)
	deadline := time.Now().Add(30 * time.Second)
	var now map[string]any
	for {
		now = mustCall(t, s, http.StatusOK, "GET", "/api/v1/snapshots/"+snap, nil)
		if now["size_bytes"].(float64) < full/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the snapshot was not compressed: %v bytes, then %v", full, now["size_bytes"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("snapshot %.1f MB, compressed %.1f MB", full/(1<<20), now["size_bytes"].(float64)/(1<<20))
	if _, err := os.Stat(filepath.Join(s.DataDir, "snapshots", snap, "pages.img.zst")); err != nil {
		t.Errorf("no compressed pages on disk: %v", err)
	}
	if now["sha256"] != first["sha256"] {
		t.Errorf("the manifest's hash changed: %v, then %v", first["sha256"], now["sha256"])
	}
	out = runIn(t, s, map[string]any{"snapshot_id": snap, "code": "print(len(data), json.dumps(data[-1]))"})
	if str(out["stdout"]) != "100000 99999\n" {
		t.Errorf("restored from a compressed snapshot: %v", out)
	}
}
