package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/faas-platform/faas/internal/testserver"
)

// instExec runs a command (or code, when language is set) in an instance.
func instExec(t *testing.T, s *testserver.Server, id string, body map[string]any) map[string]any {
	t.Helper()
	out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/instances/"+id+"/exec", body)
	if out["exit_code"].(float64) != 0 {
		t.Fatalf("exec %v in %s: %v", body, id, out)
	}
	return out
}

// httpGet sends a GET with optional headers and returns status and body.
func httpGet(t *testing.T, url string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestInstanceLifecycle: create, exec (commands and code), files, a background
// process, pause and resume with state intact, a web server through its exposed
// URL, SSH and scp with the system clients, a terminal over WebSocket, stop and
// start, another key seeing nothing, and a server restart.
func TestInstanceLifecycle(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	inst := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"language": "python", "enable_ssh": true, "name": "dev"})
	id := str(inst["id"])
	if inst["state"] != "running" || !strings.HasPrefix(id, "i-") {
		t.Fatalf("created: %v", inst)
	}
	instExec(t, s, id, map[string]any{"command": "echo hi > /workspace/f.txt"})
	instExec(t, s, id, map[string]any{"code": "counter = 1"})
	if out := instExec(t, s, id, map[string]any{"code": "counter += 1\nprint(counter)"}); str(out["stdout"]) != "2\n" || out["mode"] != "persistent" {
		t.Fatalf("code state: %v", out)
	}
	// Code of another language runs in an interpreter of its own, beside the
	// instance's.
	instExec(t, s, id, map[string]any{"code": "globalThis.js = 40", "language": "javascript"})
	if out := instExec(t, s, id, map[string]any{"code": "console.log(js + 2)", "language": "javascript"}); str(out["stdout"]) != "42\n" {
		t.Errorf("javascript in a python instance: %v", out)
	}
	if out := instExec(t, s, id, map[string]any{"code": "print(counter)"}); str(out["stdout"]) != "2\n" {
		t.Errorf("python after javascript: %v", out)
	}
	for _, got := range []map[string]any{inst, mustCall(t, s, http.StatusOK, "GET", "/api/v1/instances/"+id, nil)} {
		created, err := time.Parse(time.RFC3339Nano, str(got["created_at"]))
		if err != nil || time.Since(created) > time.Minute || time.Since(created) < 0 {
			t.Errorf("created_at %v (%v)", got["created_at"], err)
		}
	}
	// A process left running in the background, counting.
	instExec(t, s, id, map[string]any{"command": "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null 2>&1 &"})
	time.Sleep(500 * time.Millisecond)
	count := func() int {
		t.Helper()
		out := instExec(t, s, id, map[string]any{"command": "cat /tmp/count"})
		n, err := strconv.Atoi(strings.TrimSpace(str(out["stdout"])))
		if err != nil {
			t.Fatalf("count: %v", out)
		}
		return n
	}
	before := count()
	if before < 2 {
		t.Fatalf("the background process does not run: count %d", before)
	}

	// Pause: memory freed, execs refused; resume: everything is back.
	if out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/instances/"+id+"/pause", nil); out["state"] != "paused" {
		t.Fatalf("pause: %v", out)
	}
	if status, out := call(t, s, s.Key, "POST", "/api/v1/instances/"+id+"/exec", map[string]any{"command": "true"}); status != http.StatusConflict {
		t.Errorf("exec in a paused instance: %d %v", status, out)
	}
	time.Sleep(300 * time.Millisecond)
	if out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/instances/"+id+"/resume", nil); out["state"] != "running" {
		t.Fatalf("resume: %v", out)
	}
	if out := instExec(t, s, id, map[string]any{"code": "print(counter, open('/workspace/f.txt').read().strip())"}); str(out["stdout"]) != "2 hi\n" {
		t.Errorf("after resume: %v", out)
	}
	// The time it ran until the pause was metered: a persistent usage row with
	// its duration and measured memory.
	usage := mustCall(t, s, http.StatusOK, "GET", "/api/v1/usage?group_by=mode", nil)
	metered := false
	for _, row := range usage["rows"].([]any) {
		r := row.(map[string]any)
		if r["group"] == "persistent" && r["gb_seconds"].(float64) > 0 && r["cost_micro_usd"].(float64) > 0 {
			metered = true
		}
	}
	if !metered {
		t.Errorf("instance time not metered: %v", usage["rows"])
	}
	after := count()
	time.Sleep(400 * time.Millisecond)
	if later := count(); after < before || later <= after {
		t.Errorf("the background process after resume: %d before pause, %d after, then %d", before, after, later)
	}

	// A web server, reached through the exposed URL (never a host port).
	instExec(t, s, id, map[string]any{"command": "cd /workspace && nohup python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &"})
	ex := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances/"+id+"/expose", map[string]any{"name": "web", "port": 8000})
	url := str(ex["url"])
	if !strings.HasSuffix(url, "/p/"+id+"/web/") {
		t.Fatalf("expose: %v", ex)
	}
	var status int
	var body string
	for range 100 {
		if status, body = httpGet(t, url+"f.txt", map[string]string{"Authorization": "Bearer " + s.Key}); status == 200 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status != 200 || body != "hi\n" {
		t.Fatalf("through the exposed URL: %d %q", status, body)
	}
	if status, _ := httpGet(t, url+"f.txt", nil); status != http.StatusNotFound { // as if nothing were there
		t.Errorf("without a key: %d", status)
	}
	if status, body := httpGet(t, s.URL+"/f.txt", map[string]string{"Host": "web-" + id + ".localhost", "X-Api-Key": s.Key}); status != 200 || body != "hi\n" {
		t.Errorf("by host name: %d %q", status, body)
	}
	mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances/"+id+"/expose", map[string]any{"name": "pub", "port": 8000, "public": true})
	if status, body := httpGet(t, s.URL+"/p/"+id+"/pub/f.txt", nil); status != 200 || body != "hi\n" {
		t.Errorf("public port: %d %q", status, body)
	}

	// Files: upload, download, archives, and path checks.
	status, b, _ := s.Do(context.Background(), "PUT", "/api/v1/instances/"+id+"/files?path=/workspace/dir/a.txt", []byte("A"))
	if status != http.StatusCreated {
		t.Fatalf("upload: %d %s", status, b)
	}
	status, b, _ = s.Do(context.Background(), "GET", "/api/v1/instances/"+id+"/files?path=/workspace/dir/a.txt", nil)
	if status != 200 || string(b) != "A" {
		t.Errorf("download: %d %q", status, b)
	}
	status, b, _ = s.Do(context.Background(), "GET", "/api/v1/instances/"+id+"/files?path=/workspace/dir&format=tar", nil)
	if names := tarNames(t, b); status != 200 || strings.Join(names, ",") != "workspace/dir/,workspace/dir/a.txt" {
		t.Errorf("tar download: %d %v", status, names)
	}
	for _, outside := range []string{"/etc/passwd", "/proc/1/environ", "/.faas/agent"} {
		if status, b, _ := s.Do(context.Background(), "GET", "/api/v1/instances/"+id+"/files?path="+outside, nil); status != http.StatusBadRequest {
			t.Errorf("download of %s: %d %.200s", outside, status, b)
		}
	}
	for _, missing := range []string{"", "&format=tar"} {
		if status, b, _ := s.Do(context.Background(), "GET", "/api/v1/instances/"+id+"/files?path=/workspace/nope"+missing, nil); status != http.StatusNotFound {
			t.Errorf("download of a missing file%s: %d %s", missing, status, b)
		}
	}
	for _, bad := range []struct {
		path string
		tar  []byte
	}{
		{"/api/v1/instances/" + id + "/files?path=/etc/passwd", nil},
		{"/api/v1/instances/" + id + "/files?path=/workspace/../etc/x", nil},
		{"/api/v1/instances/" + id + "/files/archive?dest=/workspace", makeTar(t, "../escape.txt", "x")},
		{"/api/v1/instances/" + id + "/files/archive?dest=/workspace", []byte("not a tar archive, not at all, no")},
	} {
		method := "PUT"
		if bad.tar != nil {
			method = "POST"
		}
		if status, b, _ := s.Do(context.Background(), method, bad.path, bad.tar); status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s", method, bad.path, status, b)
		}
	}
	// A symlink in the instance cannot carry an upload out of the allowed places.
	instExec(t, s, id, map[string]any{"command": "ln -s /etc /workspace/etc"})
	if status, b, _ := s.Do(context.Background(), "PUT", "/api/v1/instances/"+id+"/files?path=/workspace/etc/evil", []byte("x")); status != http.StatusBadRequest {
		t.Errorf("upload through a symlink: %d %s", status, b)
	}
	status, b, _ = s.Do(context.Background(), "POST", "/api/v1/instances/"+id+"/sync?dest=/workspace/proj", makeTar(t, "src/main.py", "print('synced')"))
	if status != 200 {
		t.Fatalf("sync: %d %s", status, b)
	}
	if out := instExec(t, s, id, map[string]any{"command": "python3 /workspace/proj/src/main.py; stat -c %U /workspace/proj/src/main.py"}); str(out["stdout"]) != "synced\nuser\n" {
		t.Errorf("synced file: %v", out)
	}

	// SSH and scp with the system's OpenSSH clients.
	sshCheck(t, s, id)

	// A terminal over WebSocket.
	terminalCheck(t, s, id)

	// A snapshot of the running instance restores into a session with its state.
	snap := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/snapshots", map[string]any{"instance_id": id})
	if out := runIn(t, s, map[string]any{"snapshot_id": snap["id"], "code": "print(counter, open('/workspace/f.txt').read().strip())"}); str(out["stdout"]) != "2 hi\n" {
		t.Errorf("session from an instance's snapshot: %v", out)
	}

	// Another account sees none of it.
	other := s.NewKey(context.Background(), "instances", "execute")
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/instances/" + id}, {"POST", "/api/v1/instances/" + id + "/exec"}, {"POST", "/api/v1/instances/" + id + "/pause"},
		{"GET", "/api/v1/instances/" + id + "/ssh"}, {"POST", "/api/v1/instances/" + id + "/expose"}, {"DELETE", "/api/v1/instances/" + id},
		{"GET", "/api/v1/instances/" + id + "/files?path=/workspace/f.txt"},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{"command": "true", "name": "x", "port": 1}
		}
		if status, out := call(t, s, other, c.method, c.path, body); status != http.StatusNotFound {
			t.Errorf("other account: %s %s: %d %v", c.method, c.path, status, out)
		}
	}
	if status, _ := httpGet(t, url+"f.txt", map[string]string{"X-Api-Key": other}); status != http.StatusNotFound {
		t.Errorf("other account's key on the exposed URL: %d", status)
	}
	if _, out := call(t, s, other, "GET", "/api/v1/instances", nil); len(out["instances"].([]any)) != 0 {
		t.Errorf("other account lists %v", out)
	}

	// Restart: the instance comes back as it was (paused at shutdown, resumed).
	s.Restart()
	if out := mustCall(t, s, http.StatusOK, "GET", "/api/v1/instances/"+id, nil); out["state"] != "running" {
		t.Fatalf("after restart: %v", out)
	}
	if out := instExec(t, s, id, map[string]any{"code": "print(counter)"}); str(out["stdout"]) != "2\n" {
		t.Errorf("code state after restart: %v", out)
	}

	// Stop ends the processes and keeps the files; start boots it again.
	mustCall(t, s, http.StatusOK, "POST", "/api/v1/instances/"+id+"/stop", nil)
	if out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/instances/"+id+"/start", nil); out["state"] != "running" {
		t.Fatalf("start: %v", out)
	}
	if out := instExec(t, s, id, map[string]any{"command": "cat /workspace/f.txt /workspace/dir/a.txt; test -e /tmp/count || echo no-count"}); str(out["stdout"]) != "hi\nAno-count\n" {
		t.Errorf("after stop and start: %v", out)
	}
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/instances/"+id, nil)
	if status, _ := call(t, s, s.Key, "GET", "/api/v1/instances/"+id, nil); status != http.StatusNotFound {
		t.Errorf("deleted instance: %d", status)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "instances", id)); !os.IsNotExist(err) {
		t.Errorf("files of a deleted instance: %v", err)
	}
}

func makeTar(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	return b.Bytes()
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			return names
		}
		names = append(names, h.Name)
	}
}

// sshCheck runs a command with ssh and copies a file in with scp.
func sshCheck(t *testing.T, s *testserver.Server, id string) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("the OpenSSH client is missing (scripts/setup.sh installs it for tests)")
		}
		t.Skip("no ssh client")
	}
	info := mustCall(t, s, http.StatusOK, "GET", "/api/v1/instances/"+id+"/ssh", nil)
	dir := t.TempDir()
	keyFile, known := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, []byte(str(info["private_key"])), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(known, []byte(str(info["known_hosts"])+"\n"), 0o600)
	port := fmt.Sprint(info["port"].(float64))
	if info["user"] != id || port != strconv.Itoa(s.SSHPort) {
		t.Fatalf("ssh info: %v", info)
	}
	opts := []string{"-i", keyFile, "-F", "/dev/null", "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
	cmd := exec.Command("ssh", append(append([]string{"-p", port}, opts...), id+"@127.0.0.1", "cat /workspace/f.txt; echo err >&2; exit 7")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || stdout.String() != "hi\n" || !strings.Contains(stderr.String(), "err") {
		t.Fatalf("ssh: %v stdout %q stderr %q", err, stdout.String(), stderr.String())
	}
	local := filepath.Join(dir, "up.txt")
	os.WriteFile(local, []byte("copied over scp\n"), 0o644)
	if out, err := exec.Command("scp", append(append([]string{"-P", port}, opts...), local, id+"@127.0.0.1:/workspace/up.txt")...).CombinedOutput(); err != nil {
		t.Fatalf("scp: %v %s", err, out)
	}
	if out := instExec(t, s, id, map[string]any{"command": "cat /workspace/up.txt"}); str(out["stdout"]) != "copied over scp\n" {
		t.Errorf("file copied with scp: %v", out)
	}
	// The CLI: ssh-info saves a key; ssh runs the system client with one.
	home := t.TempDir()
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(testserver.Binaries(t), "faas"), args...)
		cmd.Env = append(os.Environ(), "FAAS_ENDPOINT="+s.URL, "FAAS_API_KEY="+s.Key, "HOME="+home)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli("instances", "ssh-info", id); err != nil || !strings.Contains(out, "port "+port) || !strings.Contains(out, "user "+id) {
		t.Errorf("faas instances ssh-info: %v %s", err, out)
	}
	if st, err := os.Stat(filepath.Join(home, ".faas", "ssh", id, "id_ed25519")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("saved key: %v", err)
	}
	if out, err := cli("instances", "ssh", id, "echo via-cli; exit 3"); !strings.Contains(out, "via-cli") {
		t.Errorf("faas instances ssh: %v %s", err, out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("faas instances ssh exit: %v", err)
	}
	// A key not handed out for this instance is refused.
	other := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"enable_ssh": true})
	defer mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/instances/"+str(other["id"]), nil)
	cmd = exec.Command("ssh", append(append([]string{"-p", port}, opts...), str(other["id"])+"@127.0.0.1", "true")...)
	if err := cmd.Run(); err == nil {
		t.Errorf("a key of one instance opened another")
	}
}

// terminalCheck opens a shell on a PTY over WebSocket and runs tty in it.
func terminalCheck(t *testing.T, s *testserver.Server, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/api/v1/instances/" + id + "/terminal?rows=30&cols=100&api_key=" + s.Key
	c, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("terminal: %v", err)
	}
	defer c.CloseNow()
	send := func(v any) {
		b, _ := json.Marshal(v)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	// readUntil reads frames until the output holds want (or, with want "", until
	// the exit frame, whose code it returns).
	readUntil := func(want string) int {
		t.Helper()
		for {
			if want != "" && strings.Contains(out.String(), want) {
				return 0
			}
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("terminal read: %v (waiting for %q, so far %q)", err, want, out.String())
			}
			var f struct {
				Type string
				Data string
				Code *int
			}
			json.Unmarshal(b, &f)
			switch f.Type {
			case "stdout":
				out.WriteString(f.Data)
			case "exit":
				if want != "" || f.Code == nil {
					t.Fatalf("terminal ended (%v) while waiting for %q: %q", f.Code, want, out.String())
				}
				return *f.Code
			}
		}
	}
	send(map[string]any{"type": "stdin", "data": "stty size\n"})
	readUntil("30 100")
	send(map[string]any{"type": "resize", "rows": 50, "cols": 120})
	send(map[string]any{"type": "stdin", "data": "tty; stty size; exit 5\n"})
	if code := readUntil(""); code != 5 || !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "50 120") {
		t.Errorf("terminal: exit %d, output %q", code, out.String())
	}
}

// TestInstanceLimitsAndDevServers: the disk limit holds, and a development server
// starts when the image has it or is refused naming what is missing.
func TestInstanceLimitsAndDevServers(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	inst := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"resources": map[string]any{"disk_mb": 64, "memory_mb": 256}})
	id := str(inst["id"])
	out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/instances/"+id+"/exec", map[string]any{"command": "dd if=/dev/zero of=/workspace/big bs=1M count=200"})
	if out["exit_code"].(float64) == 0 || !strings.Contains(str(out["stderr"]), "No space left") {
		t.Errorf("200 MB written to a 64 MB disk: %v", out)
	}
	instExec(t, s, id, map[string]any{"command": "rm -f /workspace/big; echo ok"})

	// A long exec does not hold up others, nor reading the instance.
	long := make(chan struct{})
	go func() {
		defer close(long)
		call(t, s, s.Key, "POST", "/api/v1/instances/"+id+"/exec", map[string]any{"command": "sleep 4"})
	}()
	time.Sleep(500 * time.Millisecond)
	began := time.Now()
	mustCall(t, s, http.StatusOK, "GET", "/api/v1/instances/"+id, nil)
	if out := instExec(t, s, id, map[string]any{"command": "echo alongside"}); str(out["stdout"]) != "alongside\n" || time.Since(began) > 3*time.Second {
		t.Errorf("an exec next to a long one: %v after %v", out, time.Since(began))
	}
	<-long

	for _, c := range []struct {
		body   map[string]any
		status int
	}{
		{map[string]any{"resources": map[string]any{"disk_mb": -1}}, 400},
		{map[string]any{"memory_mb": 1}, 400},
		{map[string]any{"network": true}, 501},
		{map[string]any{"snapshot_id": "snap_nope"}, 404},
		{map[string]any{"language": "cobol"}, 400},
	} {
		if status, out := call(t, s, s.Key, "POST", "/api/v1/instances", c.body); status != c.status {
			t.Errorf("create %v: %d %v", c.body, status, out)
		}
	}

	status, out := call(t, s, s.Key, "POST", "/api/v1/instances/"+id+"/vnc", nil)
	if status != http.StatusUnprocessableEntity || !strings.Contains(str(out["error"]), "Xvfb") {
		t.Errorf("vnc without Xvfb: %d %v", status, out)
	}
	_, jupyterErr := exec.LookPath("jupyter-notebook")
	if jupyterErr != nil && os.Getenv("CI") != "" {
		t.Fatal("jupyter-notebook is missing: scripts/setup.sh installs it for the tests (FAAS_SETUP_TEST=1)")
	}
	status, out = call(t, s, s.Key, "POST", "/api/v1/instances/"+id+"/jupyter", nil)
	if jupyterErr != nil {
		if status != http.StatusUnprocessableEntity || !strings.Contains(str(out["error"]), "jupyter") {
			t.Errorf("jupyter without jupyter: %d %v", status, out)
		}
		return
	}
	if status != http.StatusOK {
		t.Fatalf("jupyter: %d %v", status, out)
	}
	code, page := httpGet(t, str(out["url"])+"tree", map[string]string{"X-Api-Key": s.Key})
	if code != 200 || !strings.Contains(page, "Jupyter") {
		t.Errorf("jupyter through its URL: %d %.300s", code, page)
	}
}

// TestInstanceIdleTTL: an instance idle past its TTL is paused (state kept), and
// its running time is metered on the way.
func TestInstanceIdleTTL(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_INSTANCE_METER_INTERVAL=300ms"}})
	inst := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"idle_ttl_seconds": 1})
	id := str(inst["id"])
	instExec(t, s, id, map[string]any{"code": "kept = 'yes'"})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := mustCall(t, s, http.StatusOK, "GET", "/api/v1/instances/"+id, nil)
		if out["state"] == "paused" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an instance idle past its 1 s TTL is still %v", out["state"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustCall(t, s, http.StatusOK, "POST", "/api/v1/instances/"+id+"/resume", nil)
	if out := instExec(t, s, id, map[string]any{"code": "print(kept)"}); str(out["stdout"]) != "yes\n" {
		t.Errorf("after an idle pause: %v", out)
	}
	usage := mustCall(t, s, http.StatusOK, "GET", "/api/v1/usage?group_by=mode", nil)
	if !strings.Contains(fmt.Sprint(usage["rows"]), "persistent") {
		t.Errorf("no persistent usage: %v", usage["rows"])
	}
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/instances/"+id, nil)
}

// TestInstanceUploads: a file upload streams into the instance (the server holds
// buffers of it, never the file: nor for an instance that does not exist), with
// or without a length; one that fails (the body ends early, the disk fills)
// leaves nothing behind; a sync that replaces /tmp, a mount point, empties it.
func TestInstanceUploads(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	id := str(mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"language": "python", "memory_mb": 1024, "disk_mb": 256})["id"])
	hwm := func() int64 { return int64(statusKB(t, s.PID(), "VmHWM")) << 10 }
	put := func(instance, path string, body io.Reader, length int64) (int, string) {
		t.Helper()
		req, err := http.NewRequest("PUT", s.URL+"/api/v1/instances/"+instance+"/files?path="+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length // -1: chunked
		req.Header.Set("Authorization", "Bearer "+s.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error() // the server may answer and close before the body is sent
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	before := hwm()
	const size = 200 << 20
	if status, b := put(id, "/workspace/big", io.LimitReader(zeros{}, size), size); status != http.StatusCreated {
		t.Fatalf("200 MB upload: %d %s", status, b)
	}
	if status, b := put("i-doesnotexist", "/workspace/big", io.LimitReader(zeros{}, 900<<20), 900<<20); status != http.StatusNotFound && status != 0 {
		t.Errorf("900 MB upload to no instance: %d %s", status, b)
	}
	if grew := hwm() - before; grew > 64<<20 {
		t.Errorf("the server's memory peak grew by %d MB over uploads of 200 and 900 MB", grew>>20)
	}
	if out := instExec(t, s, id, map[string]any{"command": "stat -c '%s %U' /workspace/big; rm /workspace/big"}); str(out["stdout"]) != fmt.Sprintf("%d user\n", size) {
		t.Errorf("the uploaded file: %v", out)
	}
	if status, b := put(id, "/workspace/chunked", strings.NewReader("no length given"), -1); status != http.StatusCreated {
		t.Errorf("chunked upload: %d %s", status, b)
	}
	// A body that ends before its length (sent by hand: Go's client will not).
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /api/v1/instances/%s/files?path=/workspace/short HTTP/1.1\r\nHost: faas\r\nAuthorization: Bearer %s\r\nContent-Length: 5000\r\n\r\n%s", id, s.Key, strings.Repeat("x", 1000))
	_ = conn.(*net.TCPConn).CloseWrite()
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a body shorter than its length: %v %v", resp, err)
	}
	conn.Close()
	if status, b := put(id, "/workspace/huge", io.LimitReader(zeros{}, 300<<20), 300<<20); status != http.StatusBadRequest || !strings.Contains(b, "no space left") {
		t.Errorf("300 MB into a 256 MB disk: %d %s", status, b)
	}
	if out := instExec(t, s, id, map[string]any{"command": "ls /workspace; cat /workspace/chunked"}); str(out["stdout"]) != "chunked\nno length given" {
		t.Errorf("after the failed uploads: %q", out["stdout"])
	}
	instExec(t, s, id, map[string]any{"command": "touch /tmp/old"})
	if status, b, _ := s.Do(context.Background(), "POST", "/api/v1/instances/"+id+"/sync?dest=/tmp&delete=true", makeTar(t, "new.txt", "new")); status != http.StatusOK {
		t.Fatalf("sync replacing /tmp: %d %s", status, b)
	}
	if out := instExec(t, s, id, map[string]any{"command": "ls /tmp; cat /tmp/new.txt"}); str(out["stdout"]) != "new.txt\nnew" {
		t.Errorf("/tmp after the sync: %q", out["stdout"])
	}
	// An archive refused part-way (a good entry, then one that climbs out, or
	// a cut-off one) changes nothing, even in a sync that empties its dest.
	var bad bytes.Buffer
	tw := tar.NewWriter(&bad)
	for _, name := range []string{"first.txt", "../escape.txt"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
	}
	tw.Close()
	good := makeTar(t, "cut.txt", strings.Repeat("y", 4096))
	for _, body := range [][]byte{bad.Bytes(), good[:1024]} {
		if status, b, _ := s.Do(context.Background(), "POST", "/api/v1/instances/"+id+"/sync?dest=/tmp&delete=true", body); status != http.StatusBadRequest || !strings.Contains(string(b), "archive rejected") {
			t.Errorf("sync of a bad archive: %d %s", status, b)
		}
	}
	if out := instExec(t, s, id, map[string]any{"command": "ls /tmp; cat /tmp/new.txt"}); str(out["stdout"]) != "new.txt\nnew" {
		t.Errorf("/tmp after refused syncs: %q", out["stdout"])
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestDeleteBusyInstance: deleting an instance stops the exec running in it
// rather than waiting for it to run to its end.
func TestDeleteBusyInstance(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	id := str(mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"language": "python"})["id"])
	type answer struct {
		status int
		out    map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		status, out := call(t, s, s.Key, "POST", "/api/v1/instances/"+id+"/exec", map[string]any{"command": "sleep 60; echo finished", "timeout_ms": 120000})
		done <- answer{status, out}
	}()
	time.Sleep(2 * time.Second)
	start := time.Now()
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/instances/"+id, nil)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the deletion waited %v for the exec", took)
	}
	select {
	case a := <-done:
		if a.out["status"] == "succeeded" || strings.Contains(str(a.out["stdout"]), "finished") {
			t.Errorf("the exec in the deleted instance: %d %v", a.status, a.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the exec in the deleted instance never answered")
	}
}
