package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faas-platform/faas/api"
	"github.com/faas-platform/faas/client"
)

// Unit tests of argument handling and output mirroring against a stub HTTP
// server; the acceptance tests run `faas run` against a real server.

type stubServer struct {
	*httptest.Server
	got    map[string]any
	answer string
	status int
}

func newStub(t *testing.T) *stubServer {
	s := &stubServer{status: 200, answer: `{"execution_id":"e","status":"succeeded","exit_code":0,"stdout":"hi\n"}`}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.got = nil
		if err := json.NewDecoder(r.Body).Decode(&s.got); err != nil {
			t.Error(err)
		}
		if auth := r.Header.Get("Authorization"); auth != "Bearer key" {
			t.Errorf("Authorization = %q", auth)
		}
		w.WriteHeader(s.status)
		io.WriteString(w, s.answer)
	}))
	t.Cleanup(s.Close)
	return s
}

func runWith(t *testing.T, srv *stubServer, stdin string, terminal bool, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	args = append([]string{"--endpoint", srv.URL, "--api-key", "key"}, args...)
	err = runCmd(context.Background(), args, runIO{
		stdin: strings.NewReader(stdin), stdinTerminal: terminal, stdout: &o, stderr: &e,
	})
	return o.String(), e.String(), err
}

func TestRunRequests(t *testing.T) {
	dir := t.TempDir()
	py := filepath.Join(dir, "x.py")
	os.WriteFile(py, []byte("print(2)"), 0o644)
	in := filepath.Join(dir, "in.txt")
	os.WriteFile(in, []byte("input"), 0o644)
	t.Setenv("FAAS_TEST_PASS", "through")

	tests := []struct {
		name     string
		args     []string
		stdin    string
		terminal bool
		want     string // JSON of the request body
	}{
		{"code", []string{"-l", "python", "-c", "print(1)"}, "", true,
			`{"code":"print(1)","language":"python"}`},
		{"no language: the server's default", []string{"-c", "print(1)"}, "", true,
			`{"code":"print(1)"}`},
		{"no language from piped stdin", nil, "print(1)", false,
			`{"code":"print(1)"}`},
		{"session: the server picks the mode", []string{"--session", "s1", "-c", "x = 5"}, "", true,
			`{"code":"x = 5","session_id":"s1"}`},
		{"explicit mode", []string{"-c", "x", "--mode", "cached"}, "", true,
			`{"code":"x","mode":"cached"}`},
		{"flags after dashes are code files", []string{"-l", "python", "--", "-"}, "print(3)", true,
			`{"code":"print(3)","language":"python"}`},
		{"dashes as a flag's value", []string{"-c", "--", "--timeout", "1s"}, "", true,
			`{"code":"--","timeout_ms":1000}`},
		{"file by extension", []string{py}, "", true,
			`{"code":"print(2)","language":"python"}`},
		{"flags after file", []string{py, "--timeout", "1500us", "--memory", "128", "-e", "A=1", "--env", "FAAS_TEST_PASS"}, "", true,
			`{"code":"print(2)","env_vars":{"A":"1","FAAS_TEST_PASS":"through"},"language":"python","resources":{"memory_mb":128},"timeout_ms":2}`},
		{"language overrides extension", []string{"--language=bash", py}, "", true,
			`{"code":"print(2)","language":"bash"}`},
		{"command", []string{"--command", "ls /", "--image", "alpine", "--cpus", "0.5", "-w", "/tmp", "--session", "s1", "--mode", "persistent"}, "", true,
			`{"command":"ls /","image":"alpine","mode":"persistent","resources":{"cpu_cores":0.5},"session_id":"s1","working_dir":"/tmp"}`},
		{"code from piped stdin", []string{"-l", "javascript", "--stdin", in}, "console.log(1)", false,
			`{"code":"console.log(1)","language":"javascript","stdin":"input"}`},
		{"code dash", []string{"-l", "bash", "-c", "-"}, "echo hi", true,
			`{"code":"echo hi","language":"bash"}`},
		{"file dash", []string{"-l", "typescript", "--", "-"}, "let x = 1", true,
			`{"code":"let x = 1","language":"typescript"}`},
		{"program stdin from stdin", []string{"-l", "python", "-c", "input()", "--stdin", "-"}, "line\n", true,
			`{"code":"input()","language":"python","stdin":"line\n"}`},
	}
	srv := newStub(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runWith(t, srv, tt.stdin, tt.terminal, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if out != "hi\n" {
				t.Errorf("stdout = %q", out)
			}
			got, _ := json.Marshal(srv.got)
			if string(got) != tt.want {
				t.Errorf("request = %s\nwant      %s", got, tt.want)
			}
		})
	}
}

func TestRunUsageErrors(t *testing.T) {
	srv := newStub(t)
	for name, args := range map[string][]string{
		"nothing on a terminal": {},
		"unknown extension":     {"x.rb"},
		"unknown language":      {"-l", "cobol", "-c", "x"},
		"code and command":      {"-c", "x", "--command", "ls"},
		"command and language":  {"-l", "python", "--command", "ls"},
		"two files":             {"a.py", "b.py"},
		"stdin twice":           {"-l", "python", "-c", "-", "--stdin", "-"},
		"bad flag":              {"--nope"},
		"bad env":               {"-l", "bash", "-c", "x", "-e", "FAAS_SURELY_UNSET_VAR"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := runWith(t, srv, "", true, args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("err = %v (%T), want usageError", err, err)
			}
		})
	}
}

func TestRunOutputAndExitCodes(t *testing.T) {
	tests := []struct {
		name, answer     string
		wantOut, wantErr string
		wantCode         int
	}{
		{"failed", `{"status":"failed","exit_code":3,"stdout":"a","stderr":"b"}`, "a", "b", 3},
		{"truncated", `{"status":"succeeded","exit_code":0,"stdout":"a","stderr":"b","stdout_truncated":true}`,
			"a", "b\nfaas: stdout truncated by the server's output limit\n", 0},
		{"timeout", `{"status":"timeout","exit_code":-1,"timed_out":true,"duration_ms":1000}`,
			"", "faas: timed out after 1s\n", 124},
		{"timeout keeps signal status", `{"status":"timeout","exit_code":137,"timed_out":true,"duration_ms":5}`,
			"", "faas: timed out after 5ms\n", 137},
		{"platform error", `{"status":"error","exit_code":-1,"error":"sandbox failed to start"}`,
			"", "faas: sandbox failed to start\n", 1},
		{"oom", `{"status":"failed","exit_code":137,"oom_killed":true,"stderr":"Killed\n"}`,
			"", "Killed\nfaas: killed: out of memory\n", 137},
	}
	srv := newStub(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.answer = tt.answer
			out, errOut, err := runWith(t, srv, "", true, "-l", "python", "-c", "x")
			code := 0
			var ee exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatal(err)
			}
			if out != tt.wantOut || errOut != tt.wantErr || code != tt.wantCode {
				t.Errorf("got stdout %q stderr %q code %d", out, errOut, code)
			}
		})
	}
}

func TestRunJSONAndAPIError(t *testing.T) {
	srv := newStub(t)
	srv.answer = `{"execution_id":"e","status":"failed","exit_code":2,"stdout":"x"}`
	out, _, err := runWith(t, srv, "", true, "--json", "-l", "python", "-c", "x")
	var res client.ExecuteResult
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || res.ExecutionID != "e" || res.Stdout != "x" {
		t.Errorf("--json printed %q (%v)", out, jerr)
	}
	if !errors.As(err, new(exitError)) {
		t.Errorf("err = %v, want exitError", err)
	}

	srv.status, srv.answer = 400, `{"error":"language \"x\" is not supported","code":"invalid"}`
	_, _, err = runWith(t, srv, "", true, "-l", "python", "-c", "x")
	if err == nil || !strings.Contains(err.Error(), `language "x" is not supported`) {
		t.Errorf("err = %v", err)
	}
}

// TestRunJSONIsTheServersAnswer checks that --json prints what the server's
// own response type encodes to, empty fields included.
func TestRunJSONIsTheServersAnswer(t *testing.T) {
	srv := newStub(t)
	for name, resp := range map[string]api.ExecuteResponse{
		"empty streams": {ExecutionID: "e1", RequestID: "e1", Status: "succeeded", Mode: "ephemeral", Language: "python"},
		"every field": {ExecutionID: "e2", RequestID: "e2", Status: "error", ExitCode: 1, Stdout: "o", Stderr: "e",
			Output: "o", Logs: "e", StdoutTruncated: true, StderrTruncated: true, TimedOut: true, OOMKilled: true,
			Error: "boom", DurationMS: 5, Mode: "branched", Language: "python", SnapshotID: "sn", SnapshotError: "no",
			SessionID: "b1", BranchID: "b1", InstanceID: "i-1", Warm: true},
	} {
		t.Run(name, func(t *testing.T) {
			var want map[string]any
			b, _ := json.Marshal(resp)
			json.Unmarshal(b, &want)
			want["usage"] = map[string]any{"cpu_ms": 1.0, "memory_peak_mb": 2.0, "cost_usd": 3.5, "cost_micro_usd": 3500000.0}
			b, _ = json.Marshal(want)
			srv.answer = string(b)

			out, _, err := runWith(t, srv, "", true, "--json", "-c", "x")
			if err != nil && !errors.As(err, new(exitError)) {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("--json printed %q: %v", out, err)
			}
			if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
				t.Errorf("--json printed %s\nthe server sent %s", g, w)
			}
		})
	}
}

func TestRunPersistentTellsTheInstance(t *testing.T) {
	srv := newStub(t)
	srv.answer = `{"execution_id":"e","status":"succeeded","exit_code":0,"stdout":"hi\n","stderr":"warn","mode":"persistent","instance_id":"i-42"}`
	const note = "faas: instance i-42 keeps running (faas instances delete i-42 to remove it)\n"
	for _, args := range [][]string{{"--mode", "persistent", "-c", "x"}, {"--json", "--mode", "persistent", "-c", "x"}} {
		out, errOut, err := runWith(t, srv, "", true, args...)
		if err != nil {
			t.Fatal(err)
		}
		if srv.got["mode"] != "persistent" {
			t.Errorf("%q sent %v", args, srv.got)
		}
		wantErr := "warn\n" + note
		if args[0] == "--json" {
			wantErr = note
			if !strings.Contains(out, `"instance_id": "i-42"`) {
				t.Errorf("--json printed %s", out)
			}
		}
		if errOut != wantErr {
			t.Errorf("%q: stderr = %q, want %q", args, errOut, wantErr)
		}
	}

	srv.answer = `{"execution_id":"e","status":"succeeded","exit_code":0,"mode":"ephemeral"}`
	if _, errOut, _ := runWith(t, srv, "", true, "-c", "x"); errOut != "" {
		t.Errorf("without an instance: stderr = %q", errOut)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDefaults(t *testing.T) {
	t.Setenv("FAAS_ENDPOINT", "")
	t.Setenv("FAAS_API_PORT", "")
	if got := defaultEndpoint(); got != "http://127.0.0.1:8080" {
		t.Errorf("defaultEndpoint() = %q", got)
	}
	t.Setenv("FAAS_API_PORT", "9000")
	if got := defaultEndpoint(); got != "http://127.0.0.1:9000" {
		t.Errorf("defaultEndpoint() = %q", got)
	}
	t.Setenv("FAAS_ENDPOINT", "http://h:1")
	if got := defaultEndpoint(); got != "http://h:1" {
		t.Errorf("defaultEndpoint() = %q", got)
	}

	dir := t.TempDir()
	t.Setenv("FAAS_DATA_DIR", dir)
	t.Setenv("FAAS_API_KEY", "")
	if got := defaultDataDir(); got != dir {
		t.Errorf("defaultDataDir() = %q", got)
	}
	if got := defaultAPIKey(); got != "" {
		t.Errorf("defaultAPIKey() without a key = %q", got)
	}
	os.WriteFile(filepath.Join(dir, "admin.key"), []byte("  secret\n"), 0o600)
	if got := defaultAPIKey(); got != "secret" {
		t.Errorf("defaultAPIKey() from file = %q", got)
	}
	t.Setenv("FAAS_API_KEY", "fromenv")
	if got := defaultAPIKey(); got != "fromenv" {
		t.Errorf("defaultAPIKey() from env = %q", got)
	}
}

func TestServeStockImages(t *testing.T) {
	t.Setenv("FAAS_STOCK_IMAGES", "python@python:3.12-slim=2")
	c, err := parseServe(nil)
	if err != nil || len(c.stockTargets) != 1 || c.stockTargets[0].Image != "python:3.12-slim" || c.stockTargets[0].Size != 2 {
		t.Fatalf("from the environment: %+v, %v", c, err)
	}
	_, err = parseServe([]string{"--stock-images", "python@python:3.12-slim"})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "SIZE") {
		t.Errorf("a malformed stock target: %v (%T), want a usageError naming the format", err, err)
	}
}
