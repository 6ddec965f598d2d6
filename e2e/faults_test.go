package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faas-platform/faas/client"
	"github.com/faas-platform/faas/internal/testserver"
)

// sandboxProcesses returns the pids of the gVisor sandbox processes (runsc boot)
// of a server's data dir.
func sandboxProcesses(s *testserver.Server) []int {
	var pids []int
	for _, p := range testserver.ProcessesMentioning(s.DataDir) {
		pidStr, cmd, _ := strings.Cut(p, ": ")
		if strings.Contains(cmd, " boot ") {
			if pid, err := strconv.Atoi(pidStr); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// TestSandboxKilled kills every sandbox under a running execution: the execution
// ends with an error (it does not hang), and the server goes on serving.
func TestSandboxKilled(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	done := make(chan *client.ExecuteResult, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res, err := s.Client().Execute(cctx, client.ExecuteRequest{Language: "python", Code: "import time\nprint('up', flush=True)\ntime.sleep(30)", TimeoutMS: 60000})
		if err != nil {
			t.Errorf("execute: %v", err)
		}
		done <- res
	}()
	time.Sleep(2 * time.Second)
	pids := sandboxProcesses(s)
	if len(pids) == 0 {
		t.Fatal("no sandbox process found")
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case res := <-done:
		if res == nil || res.Status != "error" || res.Error == "" || res.Stdout != "up\n" {
			t.Errorf("execution under a killed sandbox: %+v", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the execution hung after its sandbox was killed")
	}
	// The server replaces the dead stocked sandboxes and serves as before.
	res := execute(t, s, client.ExecuteRequest{Language: "python", Code: "print('still here')"})
	if res.Stdout != "still here\n" {
		t.Errorf("after the kill: %+v", res)
	}
}

// TestServerCrash SIGKILLs the server during an execution and starts it again:
// the execution is reported failed (not lost, not left running), the sandboxes of
// the dead server are gone, and the server serves as before.
func TestServerCrash(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	var id string
	started := make(chan struct{})
	go func() {
		c := dial(t, s, "/api/v1/execute/stream")
		send(t, c, map[string]any{"language": "python", "code": "import time\ntime.sleep(60)", "timeout_ms": 120000})
		f := readFrame(c)
		id = f.ExecutionID
		close(started)
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the execution did not start")
	}
	time.Sleep(time.Second)
	before := s.RunscContainers()
	s.Kill()
	s.Restart()

	ex, err := s.Client().GetExecution(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != "error" || !strings.Contains(ex.Error, "server stopped") || ex.FinishedAt.IsZero() {
		t.Errorf("the execution in flight at the crash: %+v", ex)
	}
	for _, old := range before {
		if slices.Contains(s.RunscContainers(), old) {
			t.Errorf("sandbox %s of the crashed server is still there", old)
		}
		if _, err := os.Stat(filepath.Join(s.DataDir, "sandboxes", "bundles", old)); err == nil {
			t.Errorf("the bundle of sandbox %s is still there", old)
		}
	}
	res := execute(t, s, client.ExecuteRequest{Language: "python", Code: "print('back')"})
	if res.Stdout != "back\n" {
		t.Errorf("after the restart: %+v", res)
	}
}

// TestGracefulShutdown: SIGTERM lets an execution in flight finish (the server
// drains it before it stops), refuses nothing it had accepted, and leaves nothing
// behind; the record says it succeeded.
func TestGracefulShutdown(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	type answer struct {
		res *client.ExecuteResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := c.Execute(context.Background(), client.ExecuteRequest{Language: "python", Code: "import time\ntime.sleep(3)\nprint('drained')", TimeoutMS: 60000})
		done <- answer{res, err}
	}()
	time.Sleep(time.Second) // the execution is running
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }() // SIGTERM, then waits for the exit
	a := <-done
	if a.err != nil || a.res.Stdout != "drained\n" || a.res.Status != "succeeded" {
		t.Fatalf("the execution in flight at SIGTERM: %+v %v", a.res, a.err)
	}
	select {
	case <-stopped:
	case <-time.After(90 * time.Second):
		t.Fatal("the server did not stop after draining")
	}
	s.CheckClean()
	s.Restart()
	ex, err := s.Client().GetExecution(context.Background(), a.res.ExecutionID)
	if err != nil || ex.Status != "succeeded" {
		t.Errorf("its record after the restart: %+v %v", ex, err)
	}
}
