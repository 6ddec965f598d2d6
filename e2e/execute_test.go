package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/faas-platform/faas/client"
	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/internal/testserver"
)

func execute(t *testing.T, s *testserver.Server, req client.ExecuteRequest) *client.ExecuteResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := s.Client().Execute(ctx, req)
	if err != nil {
		t.Fatalf("execute %+v: %v", req, err)
	}
	return res
}

// TestSignalsAtDefault: the code's processes get signals at their default
// disposition (the agent, as the sandbox's PID 1, shields itself from them
// without passing that on): a TERM ends a shell, a closed pipe ends its writer
// quietly, in every mode and language.
func TestSignalsAtDefault(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	for _, tc := range []struct {
		language, code, stdout string
		exit                   int
	}{
		{"bash", "yes | head -1; kill -TERM $$; echo survived", "y\n", 143},
		{"python", "import subprocess\nprint(subprocess.run(['bash', '-c', 'yes | head -1; kill -HUP $$; echo survived'], capture_output=True))", "CompletedProcess(args=['bash', '-c', 'yes | head -1; kill -HUP $$; echo survived'], returncode=-1, stdout=b'y\\n', stderr=b'')\n", 0},
		{"javascript", "process.kill(process.pid, 'SIGTERM'); setTimeout(() => console.log('survived'), 1000)", "", 143},
	} {
		for _, mode := range []string{"ephemeral", "cached"} {
			res := execute(t, s, client.ExecuteRequest{Mode: mode, Language: tc.language, Code: tc.code})
			if res.ExitCode != tc.exit || res.Stdout != tc.stdout || res.Stderr != "" {
				t.Errorf("%s %s %q: exit %d, stdout %q, stderr %q", mode, tc.language, tc.code, res.ExitCode, res.Stdout, res.Stderr)
			}
		}
	}
}

func TestExecuteEphemeral(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	tests := []struct {
		name       string
		req        client.ExecuteRequest
		stdout     string
		stderr     string
		exit       int
		status     string
		stdoutPart string
	}{
		{name: "python print", req: client.ExecuteRequest{Language: "python", Code: "print(1)"}, stdout: "1\n", status: "succeeded"},
		{name: "python exit code", req: client.ExecuteRequest{Language: "python", Code: "import sys; sys.exit(3)"}, exit: 3, status: "failed"},
		{name: "stderr apart", req: client.ExecuteRequest{Language: "python", Code: "import sys\nprint('out')\nprint('err', file=sys.stderr)"}, stdout: "out\n", stderr: "err\n", status: "succeeded"},
		{name: "python exception", req: client.ExecuteRequest{Language: "python", Code: "raise ValueError('boom')"}, exit: 1, status: "failed"},
		{name: "stdin", req: client.ExecuteRequest{Language: "python", Code: "import sys; print(sys.stdin.read().upper())", Stdin: "hello\nworld"}, stdout: "HELLO\nWORLD\n", status: "succeeded"},
		{name: "env object", req: client.ExecuteRequest{Language: "bash", Code: "echo \"$GREETING $WHO\"", Env: map[string]string{"GREETING": "hi", "WHO": "there"}}, stdout: "hi there\n", status: "succeeded"},
		{name: "javascript", req: client.ExecuteRequest{Language: "javascript", Code: "console.log('Hello World'); console.error('e'); process.exit(2)"}, stdout: "Hello World\n", stderr: "e\n", exit: 2, status: "failed"},
		{name: "typescript", req: client.ExecuteRequest{Language: "typescript", Code: "interface P { x: number }\nconst p: P = { x: 20 };\nconsole.log(p.x + 1 as number)"}, stdout: "21\n", status: "succeeded"},
		{name: "bash", req: client.ExecuteRequest{Language: "bash", Code: "for i in 1 2 3; do echo $i; done; exit 7"}, stdout: "1\n2\n3\n", exit: 7, status: "failed"},
		{name: "command", req: client.ExecuteRequest{Command: "echo $((6*7)) && pwd"}, stdout: "42\n/workspace\n", status: "succeeded"},
		{name: "working dir", req: client.ExecuteRequest{Command: "pwd", WorkingDir: "/tmp/work/sub"}, stdout: "/tmp/work/sub\n", status: "succeeded"},
		{name: "unprivileged user", req: client.ExecuteRequest{Command: "id -u; id -g"}, stdout: "1000\n1000\n", status: "succeeded"},
		{name: "command not found", req: client.ExecuteRequest{Command: "no-such-program-xyz"}, exit: 127, status: "failed"},
		{name: "longest code", req: client.ExecuteRequest{Language: "python", Code: longestPython}, stdout: fmt.Sprintf("%d\n", longestPythonString), status: "succeeded"},
		{name: "killed by signal", req: client.ExecuteRequest{Language: "python", Code: "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"}, exit: 137, status: "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := execute(t, s, tt.req)
			if res.Stdout != tt.stdout && tt.stdoutPart == "" {
				t.Errorf("stdout = %q, want %q (stderr %q)", res.Stdout, tt.stdout, res.Stderr)
			}
			if tt.stderr != "" && res.Stderr != tt.stderr {
				t.Errorf("stderr = %q, want %q", res.Stderr, tt.stderr)
			}
			if res.ExitCode != tt.exit {
				t.Errorf("exit code = %d, want %d (stderr %q, error %q)", res.ExitCode, tt.exit, res.Stderr, res.Error)
			}
			if res.Status != tt.status {
				t.Errorf("status = %q, want %q", res.Status, tt.status)
			}
			if res.Output != res.Stdout || res.Logs != res.Stderr || res.RequestID != res.ExecutionID || res.ExecutionID == "" {
				t.Errorf("mirrors differ: output/logs/request_id must equal stdout/stderr/execution_id: %+v", res)
			}
			if res.Mode != "ephemeral" {
				t.Errorf("mode = %q", res.Mode)
			}
		})
	}
}

// longestPython is python code of the longest length a request may have (it
// prints the length of its one string).
var longestPython = "x = '" + strings.Repeat("a", longestPythonString) + "'\nprint(len(x))"

const longestPythonString = engine.MaxCodeBytes - len("x = ''\nprint(len(x))")

// TestOriginalSDKWireFormat sends what the original SDKs send: command + image,
// env_vars as pairs, flat resources, unknown fields.
func TestOriginalSDKWireFormat(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	body := `{"command":"echo $A-$B","image":"host","env_vars":[["A","x"],["B","y"]],"memory_mb":256,"cpu_cores":0.5,"timeout_ms":10000,"future_field":{"a":1},"mode":null}`
	status, b, _ := s.Do(context.Background(), "POST", "/api/v1/execute", []byte(body))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, b)
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res["output"] != "x-y\n" || res["stdout"] != "x-y\n" || res["exit_code"] != float64(0) || res["logs"] != "" {
		t.Errorf("unexpected response %s", b)
	}
	usage, _ := res["usage"].(map[string]any)
	if usage == nil || usage["memory_peak_mb"].(float64) <= 0 {
		t.Errorf("usage missing or empty: %s", b)
	}

	// The same execution is on record.
	id := res["execution_id"].(string)
	ex, err := s.Client().GetExecution(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != "succeeded" || ex.Mode != "ephemeral" || ex.ExecutionID != id {
		t.Errorf("stored execution = %+v", ex)
	}
}

func TestLimits(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})

	t.Run("timeout kills loop", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: "print('start', flush=True)\nwhile True: pass", TimeoutMS: 1500})
		if res.Status != "timeout" || !res.TimedOut || res.Stdout != "start\n" {
			t.Errorf("got status %q timed_out %v stdout %q", res.Status, res.TimedOut, res.Stdout)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("a 1.5 s timeout took %v", d)
		}
	})
	t.Run("timeout kills forked child", func(t *testing.T) {
		t.Parallel()
		// The child detaches into its own session and keeps stdout open; the parent
		// waits forever. Both must die at the timeout, and the answer must come.
		code := "import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True: time.sleep(1)\nprint('parent', flush=True)\ntime.sleep(3600)"
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code, TimeoutMS: 1500})
		if res.Status != "timeout" || res.Stdout != "parent\n" {
			t.Errorf("got status %q stdout %q error %q", res.Status, res.Stdout, res.Error)
		}
	})
	t.Run("background child does not hold the execution", func(t *testing.T) {
		t.Parallel()
		res := execute(t, s, client.ExecuteRequest{Command: "(setsid sleep 3600 &); echo started", TimeoutMS: 60000})
		if res.Status != "succeeded" || res.Stdout != "started\n" || res.DurationMS > 10000 {
			t.Errorf("got %q %q after %d ms", res.Status, res.Stdout, res.DurationMS)
		}
	})
	t.Run("memory hog", func(t *testing.T) {
		t.Parallel()
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: "x = bytearray(1 << 30)\nprint('allocated')", Resources: &client.Resources{MemoryMB: 128}})
		if res.Status != "failed" || !res.OOMKilled || res.ExitCode != 137 || res.Stdout != "" {
			t.Errorf("got status %q oom %v exit %d stdout %q error %q", res.Status, res.OOMKilled, res.ExitCode, res.Stdout, res.Error)
		}
		if !strings.Contains(res.Error, "memory") {
			t.Errorf("error %q does not mention memory", res.Error)
		}
	})
	t.Run("fork bomb contained", func(t *testing.T) {
		t.Parallel()
		res := execute(t, s, client.ExecuteRequest{Language: "bash", Code: ":(){ :|:& };:\nsleep 2\necho survived", TimeoutMS: 20000})
		if res.Stdout != "survived\n" {
			t.Errorf("stdout %q status %q", res.Stdout, res.Status)
		}
		if !strings.Contains(res.Stderr, "Resource temporarily unavailable") {
			t.Errorf("stderr does not show fork refused: %.300q", res.Stderr)
		}
	})
	t.Run("1 GB of output truncated", func(t *testing.T) {
		t.Parallel()
		code := "import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(1024): sys.stdout.buffer.write(chunk)\nsys.stdout.flush()\nprint('end', file=sys.stderr)"
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code, TimeoutMS: 120000})
		if !res.StdoutTruncated || len(res.Stdout) != 1<<20 || res.StderrTruncated || res.Stderr != "end\n" || res.ExitCode != 0 {
			t.Errorf("truncated %v len %d stderr %q exit %d", res.StdoutTruncated, len(res.Stdout), res.Stderr, res.ExitCode)
		}
	})
	t.Run("non-UTF-8 output", func(t *testing.T) {
		t.Parallel()
		status, b, _ := s.Do(context.Background(), "POST", "/api/v1/execute", []byte(`{"language":"python","code":"import sys; sys.stdout.buffer.write(b'ok\\xff\\xfe\\n')"}`))
		if status != http.StatusOK || !json.Valid(b) {
			t.Fatalf("status %d, valid JSON %v: %s", status, json.Valid(b), b)
		}
		var res client.ExecuteResult
		_ = json.Unmarshal(b, &res)
		if !utf8.ValidString(res.Stdout) || !strings.HasPrefix(res.Stdout, "ok") || !strings.Contains(res.Stdout, "\uFFFD") {
			t.Errorf("stdout %q", res.Stdout)
		}
	})
	t.Run("disk fill stops at the writable layer's size", func(t *testing.T) {
		t.Parallel()
		code := "import os\nchunk = b'x' * (1 << 20)\nn = 0\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        while True:\n            f.write(chunk); f.flush(); n += 1\nexcept OSError as e:\n    print('refused after', n // 1024 if n >= 1024 else n, e.strerror)"
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code, TimeoutMS: 120000})
		if !strings.HasPrefix(res.Stdout, "refused after") || !strings.Contains(res.Stdout, "No space left on device") || res.OOMKilled {
			t.Errorf("disk fill: status %q stdout %q stderr %.300q oom %v", res.Status, res.Stdout, res.Stderr, res.OOMKilled)
		}
	})
	t.Run("thousands of open files", func(t *testing.T) {
		t.Parallel()
		code := "import os\nfds = []\ntry:\n    while True: fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError as e:\n    print('refused at', len(fds) // 100 * 100, e.strerror)"
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code, TimeoutMS: 60000})
		if !strings.HasPrefix(res.Stdout, "refused at 1000") || !strings.Contains(res.Stdout, "Too many open files") {
			t.Errorf("fd exhaustion: status %q stdout %q", res.Status, res.Stdout)
		}
	})
	t.Run("SIGTERM ignored, killed at the timeout", func(t *testing.T) {
		t.Parallel()
		code := "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ignoring', flush=True)\ntime.sleep(3600)"
		start := time.Now()
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code, TimeoutMS: 1500})
		if res.Status != "timeout" || res.Stdout != "ignoring\n" || time.Since(start) > 20*time.Second {
			t.Errorf("status %q stdout %q after %v", res.Status, res.Stdout, time.Since(start))
		}
	})
	t.Run("process limit", func(t *testing.T) {
		t.Parallel()
		code := "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('refused after', n, flush=True)"
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code, TimeoutMS: 30000, Resources: &client.Resources{MemoryMB: 2048}})
		if !strings.HasPrefix(res.Stdout, "refused after") {
			t.Errorf("forks were not refused: status %q stdout %q err %q", res.Status, res.Stdout, res.Error)
		}
	})
}

// TestConcurrentExecutions checks outputs never mix across concurrent requests and
// a well-behaved execution succeeds next to a hostile one.
func TestConcurrentExecutions(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = s.Client().Execute(ctx, client.ExecuteRequest{Language: "python", Code: "while True: pass", TimeoutMS: 8000})
	}()
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := s.Client().Execute(ctx, client.ExecuteRequest{Language: "python", Code: fmt.Sprintf("import sys\nprint(%d)\nprint('e%d', file=sys.stderr)", i, i)})
			if err != nil {
				errs <- err
				return
			}
			if res.Stdout != fmt.Sprintf("%d\n", i) || res.Stderr != fmt.Sprintf("e%d\n", i) {
				errs <- fmt.Errorf("request %d got stdout %q stderr %q", i, res.Stdout, res.Stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
