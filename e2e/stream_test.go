package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/faas-platform/faas/internal/testserver"
)

type frame struct {
	Type        string          `json:"type"`
	Data        string          `json:"data"`
	ExecutionID string          `json:"execution_id"`
	Code        *int            `json:"code"`
	Error       string          `json:"error"`
	Result      json.RawMessage `json:"result"`
	at          time.Time
}

func dial(t *testing.T, s *testserver.Server, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, strings.Replace(s.URL, "http", "ws", 1)+path, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + s.Key}},
	})
	if err != nil {
		t.Fatalf("dialing %s: %v (%v)", path, err, resp)
	}
	c.SetReadLimit(8 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func send(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatalf("writing: %v", err)
	}
}

// readUntilExit reads frames until the exit (or error) frame.
func readUntilExit(t *testing.T, c *websocket.Conn, timeout time.Duration) []frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []frame
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading frames: %v (so far %+v)", err, out)
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("frame %q: %v", b, err)
		}
		f.at = time.Now()
		out = append(out, f)
		if f.Type == "exit" || f.Type == "error" {
			return out
		}
	}
}

// readStdoutUntil reads frames until the stdout so far contains want.
func readStdoutUntil(t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	for !strings.Contains(out.String(), want) {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %q (got %q): %v", want, out.String(), err)
		}
		var f frame
		if json.Unmarshal(b, &f) == nil && f.Type == "stdout" {
			out.WriteString(f.Data)
		}
	}
}

// readFrame reads one frame (zero frame on error).
func readFrame(c *websocket.Conn) frame {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var f frame
	if _, b, err := c.Read(ctx); err == nil {
		_ = json.Unmarshal(b, &f)
	}
	return f
}

func stdoutOf(frames []frame) string {
	var b strings.Builder
	for _, f := range frames {
		if f.Type == "stdout" {
			b.WriteString(f.Data)
		}
	}
	return b.String()
}

func TestStreamOutputAsItHappens(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := dial(t, s, "/api/v1/execute/stream")
	send(t, c, map[string]any{"type": "exec", "language": "python", "code": "import time, sys\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)\nprint('done', file=sys.stderr)"})
	frames := readUntilExit(t, c, time.Minute)
	if frames[0].Type != "started" || frames[0].ExecutionID == "" {
		t.Fatalf("first frame %+v", frames[0])
	}
	var outs []frame
	for _, f := range frames {
		if f.Type == "stdout" {
			outs = append(outs, f)
		}
	}
	if len(outs) < 5 || stdoutOf(frames) != "0\n1\n2\n3\n4\n" {
		t.Fatalf("stdout frames %+v", outs)
	}
	if spread := outs[len(outs)-1].at.Sub(outs[0].at); spread < 600*time.Millisecond {
		t.Errorf("the output came all at once (first to last frame: %v)", spread)
	}
	last := frames[len(frames)-1]
	if last.Type != "exit" || last.Code == nil || *last.Code != 0 || !strings.Contains(string(last.Result), `"stderr":"done\n"`) {
		t.Errorf("exit frame %+v %s", last, last.Result)
	}
}

func TestStreamStdinAndStop(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	t.Run("stdin round trip", func(t *testing.T) {
		c := dial(t, s, "/api/v1/execute/stream")
		send(t, c, map[string]any{"language": "python", "code": "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\nprint('eof')"})
		send(t, c, map[string]string{"type": "stdin", "data": "hello\n"})
		readStdoutUntil(t, c, "HELLO\n")
		send(t, c, map[string]string{"type": "stdin", "data": "again\n"})
		send(t, c, map[string]string{"type": "stdin_close"})
		frames := readUntilExit(t, c, time.Minute)
		if out := stdoutOf(frames); out != "AGAIN\neof\n" || *frames[len(frames)-1].Code != 0 {
			t.Errorf("stdout %q, last %+v", out, frames[len(frames)-1])
		}
	})
	t.Run("stop", func(t *testing.T) {
		c := dial(t, s, "/api/v1/execute/stream")
		send(t, c, map[string]any{"language": "python", "code": "import time\nprint('up', flush=True)\ntime.sleep(120)", "timeout_ms": 300000})
		started := readFrame(c)
		if started.Type != "started" || started.ExecutionID == "" {
			t.Fatalf("first frame %+v, want started", started)
		}
		readStdoutUntil(t, c, "up\n")
		// Its record while it runs: no exit code yet (null, not 0).
		record := func() map[string]any {
			status, body, _ := s.Do(context.Background(), "GET", "/api/v1/executions/"+started.ExecutionID, nil)
			var m map[string]any
			if err := json.Unmarshal(body, &m); status != 200 || err != nil {
				t.Fatalf("GET the execution: %d %s", status, body)
			}
			return m
		}
		if m := record(); m["status"] != "running" || m["exit_code"] != nil || m["finished_at"] != nil {
			t.Errorf("record of the running execution: %v", m)
		} else if _, ok := m["exit_code"]; !ok {
			t.Errorf("exit_code missing (want null) while it runs: %v", m)
		}
		start := time.Now()
		send(t, c, map[string]string{"type": "stop"})
		frames := readUntilExit(t, c, 30*time.Second)
		last := frames[len(frames)-1]
		if last.Type != "exit" || !strings.Contains(string(last.Result), "stopped on request") || time.Since(start) > 10*time.Second {
			t.Errorf("after stop: %+v %s (after %v)", last, last.Result, time.Since(start))
		}
		if m := record(); last.Code == nil || m["status"] == "running" || m["exit_code"] != float64(*last.Code) || m["finished_at"] == nil {
			t.Errorf("record after the stop: %v (exit frame %+v)", m, last)
		}
	})
}

func TestStreamAttachReplaySSE(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	a := dial(t, s, "/api/v1/execute/stream")
	send(t, a, map[string]any{"language": "python", "code": "import time\nfor i in range(6):\n    print('line', i, flush=True)\n    time.sleep(0.25)"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var id string
	seen := 0
	for seen < 2 { // attach once the execution is under way
		_, b, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var f frame
		_ = json.Unmarshal(b, &f)
		if f.Type == "started" {
			id = f.ExecutionID
		}
		if f.Type == "stdout" {
			seen++
		}
	}
	want := "line 0\nline 1\nline 2\nline 3\nline 4\nline 5\n"
	// A second watcher gets the start again, then the rest live.
	b := dial(t, s, "/api/v1/executions/"+id+"/stream")
	if out := stdoutOf(readUntilExit(t, b, time.Minute)); out != want {
		t.Errorf("attached watcher got %q", out)
	}
	if out := stdoutOf(readUntilExit(t, a, time.Minute)); !strings.HasSuffix(want, out) {
		t.Errorf("first watcher's rest %q", out)
	}
	// After the end: a full replay.
	c := dial(t, s, "/api/v1/executions/"+id+"/stream")
	frames := readUntilExit(t, c, 30*time.Second)
	if out := stdoutOf(frames); out != want || frames[len(frames)-1].Type != "exit" {
		t.Errorf("replay after the end: %q", out)
	}
	// The same as Server-Sent Events, with the key as a query parameter.
	req, _ := http.NewRequest("GET", s.URL+"/api/v1/executions/"+id+"/events?api_key="+s.Key, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sse strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		sse.WriteString(sc.Text() + "\n")
	}
	if resp.StatusCode != 200 || strings.Count(sse.String(), "event: stdout") < 1 || stdoutOfSSE(sse.String()) != want || !strings.Contains(sse.String(), "event: exit") {
		t.Errorf("SSE %d (%v):\n%s", resp.StatusCode, sc.Err(), sse.String())
	}
	// The key in the URL is taken whatever the Accept header (curl's */*).
	if status, body, _ := s.DoWithKey(context.Background(), "", "GET", "/api/v1/executions/"+id+"/events?api_key="+s.Key, nil); status != 200 || stdoutOfSSE(string(body)) != want {
		t.Errorf("SSE with ?api_key= and no Accept header: %d %s", status, body)
	}
	// Another account cannot attach.
	other := s.NewKey(context.Background(), "execute")
	if status, body, _ := s.DoWithKey(context.Background(), other, "GET", "/api/v1/executions/"+id+"/events", nil); status != 404 {
		t.Errorf("another account attaching: %d %s", status, body)
	}
	// The key is required for the upgrade.
	if _, resp, err := websocket.Dial(ctx, strings.Replace(s.URL, "http", "ws", 1)+"/api/v1/execute/stream", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("upgrade without a key: %v %v", err, resp)
	}
}

// stdoutOfSSE joins the data of the stdout events of an event stream.
func stdoutOfSSE(stream string) string {
	var out strings.Builder
	for _, line := range strings.Split(stream, "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			var f frame
			if json.Unmarshal([]byte(d), &f) == nil && f.Type == "stdout" {
				out.WriteString(f.Data)
			}
		}
	}
	return out.String()
}

func rssKB(t *testing.T, pid int) int { return statusKB(t, pid, "VmRSS") }

// statusKB reads a process's memory figure (VmRSS, VmHWM) in KiB from its
// /proc status.
func statusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatalf("no %s in the status of process %d", field, pid)
	return 0
}

// TestStreamSlowClient: a client that never reads neither slows the execution nor
// grows the server's memory beyond the output limit.
func TestStreamSlowClient(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_STREAM_HEARTBEAT=200ms"}})
	before := rssKB(t, s.PID())
	c := dial(t, s, "/api/v1/execute/stream")
	// 200 MB of output as fast as it comes; the client reads nothing.
	send(t, c, map[string]any{"language": "python", "code": "import sys\nb = 'x' * 65536 + '\\n'\nfor _ in range(3200): sys.stdout.write(b)", "timeout_ms": 120000})
	// Find the execution through the admin API: it must finish on its own.
	deadline := time.Now().Add(90 * time.Second)
	var id string
	for id == "" && time.Now().Before(deadline) {
		status, b, _ := s.Do(context.Background(), "GET", "/api/v1/pools", nil)
		_ = status
		_ = b
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, msg, err := c.Read(ctx) // only the first frame, for the id
		cancel()
		if err == nil {
			var f frame
			_ = json.Unmarshal(msg, &f)
			id = f.ExecutionID
		}
	}
	if id == "" {
		t.Fatal("no started frame")
	}
	var finished bool
	for time.Now().Before(deadline) {
		ex, err := s.Client().GetExecution(context.Background(), id)
		if err == nil && ex.Status != "running" {
			finished = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !finished {
		t.Fatal("the execution did not finish while its client did not read")
	}
	if grew := rssKB(t, s.PID()) - before; grew > 64<<10 {
		t.Errorf("the server grew by %d KB for a client that does not read", grew)
	}
	// The client can still read it all, in order, up to the output limit.
	frames := readUntilExit(t, c, time.Minute)
	last := frames[len(frames)-1]
	if last.Type != "exit" || !strings.Contains(string(last.Result), `"stdout_truncated":true`) {
		t.Errorf("last frame %+v", last.Type)
	}
}

func TestStreamHeartbeat(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_STREAM_HEARTBEAT=200ms"}})
	c := dial(t, s, "/api/v1/execute/stream")
	send(t, c, map[string]any{"language": "bash", "code": "sleep 1.5; echo ok"})
	frames := readUntilExit(t, c, time.Minute)
	beats := 0
	for _, f := range frames {
		if f.Type == "heartbeat" {
			beats++
		}
	}
	if beats < 3 || stdoutOf(frames) != "ok\n" {
		t.Errorf("%d heartbeats in %d frames", beats, len(frames))
	}
}
