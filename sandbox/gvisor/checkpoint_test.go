package gvisor_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/internal/testserver"
	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/sandbox/gvisor"
)

func newDriver(t *testing.T) *gvisor.Driver {
	t.Helper()
	runsc := testserver.Require(t)
	bin := testserver.Binaries(t)
	state := t.TempDir()
	t.Setenv("FAAS_TEST_STATE", state)
	d, err := gvisor.New(gvisor.Config{Runsc: runsc, Agent: filepath.Join(bin, "faas-agent"), StateDir: state, DebugLogDir: os.Getenv("FAAS_TEST_RUNSC_DEBUG")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// buf collects output written by the agent connection's reader.
type buf = testserver.Buffer

func run(t *testing.T, sb sandbox.Sandbox, script string) string {
	t.Helper()
	var out, errb buf
	e, err := sb.Agent().Start(agent.ExecRequest{Argv: []string{"/bin/sh", "-c", script}, Dir: "/", UID: 1000, GID: 1000, TimeoutMS: 10000},
		agent.Output{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.Wait(context.Background())
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("%q: %+v %v stderr=%s", script, st, err, errb.String())
	}
	return out.String()
}

func TestCheckpointRestore(t *testing.T) {
	d := newDriver(t)
	ctx := context.Background()
	sb, err := d.Create(ctx, sandbox.Spec{MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	run(t, sb, "echo parent > /tmp/f")
	dir := filepath.Join(t.TempDir(), "img")
	os.Mkdir(dir, 0o700)
	start := time.Now()
	if err := sb.(sandbox.Checkpointer).Checkpoint(ctx, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("checkpoint took %v", time.Since(start))
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, _ := e.Info()
		t.Logf("  %s %d", e.Name(), fi.Size())
	}
	run(t, sb, "echo changed > /tmp/f")
	start = time.Now()
	r, err := d.Restore(ctx, sb.Spec(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Destroy(ctx)
	t.Logf("restore took %v", time.Since(start))
	if got := run(t, r, "cat /tmp/f"); got != "parent\n" {
		t.Fatalf("restored sandbox sees %q", got)
	}
	if got := run(t, sb, "cat /tmp/f"); got != "changed\n" {
		t.Fatalf("original sees %q", got)
	}
}

func cell(t *testing.T, sb sandbox.Sandbox, language, code string) (string, string, agent.ExitStatus) {
	t.Helper()
	var out, errb buf
	e, err := sb.Agent().Start(agent.ExecRequest{Session: "main", Language: language, Code: code, Env: []string{"PATH=/usr/bin:/bin", "HOME=/home/user"}, Dir: "/workspace", UID: 1000, GID: 1000, TimeoutMS: 5000},
		agent.Output{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), st
}

func TestSessionSurvivesCheckpoint(t *testing.T) {
	d := newDriver(t)
	ctx := context.Background()
	for _, tc := range []struct{ language, setup, step, want string }{
		{"python", "import json\nx = 41\nf = open('/workspace/log', 'w')\nf.write('a')", "x += 1\nf.write('b'); f.flush()\nprint(json.dumps(x), open('/workspace/log').read())", "42 ab\n"},
		{"javascript", "const fs = require('fs'); let x = 41; var fd = fs.openSync('/workspace/log', 'w'); fs.writeSync(fd, 'a');", "x += 1; fs.writeSync(fd, 'b'); console.log(x, fs.readFileSync('/workspace/log', 'utf8'))", "42 ab\n"},
	} {
		t.Run(tc.language, func(t *testing.T) {
			sb, err := d.Create(ctx, sandbox.Spec{MemoryMB: 256})
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Destroy(ctx)
			if out, errOut, st := cell(t, sb, tc.language, tc.setup); st.ExitCode != 0 {
				b, _ := exec.Command("sh", "-c", "cat "+os.Getenv("FAAS_TEST_STATE")+"/bundles/*/console.log").CombinedOutput()
				t.Fatalf("setup: %q %q %+v %s", out, errOut, st, b)
			}
			dir := filepath.Join(t.TempDir(), "img")
			os.Mkdir(dir, 0o700)
			start := time.Now()
			if err := sb.(sandbox.Checkpointer).Checkpoint(ctx, dir); err != nil {
				t.Fatal(err)
			}
			t.Logf("checkpoint %v", time.Since(start))
			start = time.Now()
			r, err := d.Restore(ctx, sb.Spec(), dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Destroy(ctx)
			t.Logf("restore %v", time.Since(start))
			for name, box := range map[string]sandbox.Sandbox{"original": sb, "restored": r} {
				out, errOut, st := cell(t, box, tc.language, tc.step)
				if out != tc.want || st.ExitCode != 0 {
					t.Errorf("%s: %q %q %+v", name, out, errOut, st)
				}
			}
			// Errors and exit codes are the cell's, and the session goes on.
			if _, errOut, st := cell(t, r, tc.language, "undefined_name"); st.ExitCode != 1 || !strings.Contains(errOut, "undefined_name") {
				t.Errorf("error cell: %q %+v", errOut, st)
			}
			if out, _, st := cell(t, r, tc.language, map[string]string{"python": "print(x)", "javascript": "console.log(x)"}[tc.language]); out != "42\n" || st.ExitCode != 0 {
				t.Errorf("after error: %q %+v", out, st)
			}
		})
	}
}

// BenchmarkCheckpointRestore measures checkpointing a Python session and restoring
// it (to the agent's first answer), and reports the image size.
func BenchmarkCheckpointRestore(b *testing.B) {
	runsc := testserver.Require(b)
	bin := testserver.Binaries(b)
	d, err := gvisor.New(gvisor.Config{Runsc: runsc, Agent: filepath.Join(bin, "faas-agent"), StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	sb, err := d.Create(ctx, sandbox.Spec{MemoryMB: 512})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Destroy(ctx)
	var out, errb buf
	e, err := sb.Agent().Start(agent.ExecRequest{Session: "main", Language: "python", Code: "import json, os, sys\nx = 41", Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/workspace", UID: 1000, GID: 1000}, agent.Output{Stdout: &out, Stderr: &errb})
	if err != nil {
		b.Fatal(err)
	}
	if st, err := e.Wait(ctx); err != nil || st.ExitCode != 0 {
		b.Fatal(st, err, errb.String())
	}
	dir := b.TempDir()
	if d := os.Getenv("FAAS_BENCH_IMAGE_DIR"); d != "" {
		dir = d
	}
	b.Run("checkpoint", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			img := filepath.Join(dir, strconv.Itoa(i))
			os.Mkdir(img, 0o700)
			if err := sb.(sandbox.Checkpointer).Checkpoint(ctx, img); err != nil {
				b.Fatal(err)
			}
		}
		var size int64
		entries, _ := os.ReadDir(filepath.Join(dir, "0"))
		for _, e := range entries {
			fi, _ := e.Info()
			size += fi.Size()
		}
		b.ReportMetric(float64(size)/(1<<20), "MiB/image")
	})
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			r, err := d.Restore(ctx, sb.Spec(), filepath.Join(dir, "0"))
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			r.Destroy(ctx)
			b.StartTimer()
		}
	})
}

// TestPTYAndTunnel runs a shell on a terminal, and reaches a web server left
// running in the background through a tunnel (the sandbox has no network).
func TestPTYAndTunnel(t *testing.T) {
	d := newDriver(t)
	ctx := context.Background()
	sb, err := d.Create(ctx, sandbox.Spec{MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)

	var out buf
	e, err := sb.Agent().Start(agent.ExecRequest{Argv: []string{"/bin/sh", "-c", "tty; stty size"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", UID: 1000, GID: 1000,
		PTY: &agent.PTY{Winsize: agent.Winsize{Rows: 40, Cols: 132}}}, agent.Output{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := e.Wait(ctx); err != nil || st.ExitCode != 0 || !strings.HasPrefix(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "40 132") {
		t.Fatalf("tty on a PTY: %q %+v %v", out.String(), st, err)
	}

	e, err = sb.Agent().Start(agent.ExecRequest{Argv: []string{"/bin/sh", "-c", "cd /tmp && echo hello > index.html && python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &"},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", UID: 1000, GID: 1000, KeepBackground: true}, agent.Output{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := e.Wait(ctx); err != nil || st.ExitCode != 0 {
		t.Fatalf("starting the server: %+v %v", st, err)
	}
	if _, err := sb.Agent().Dial(ctx, 8001); err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Errorf("dial of a closed port: %v", err)
	}
	var tun *agent.Tunnel
	for range 100 {
		if tun, err = sb.Agent().Dial(ctx, 8000); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if _, err := tun.Write([]byte("GET /index.html HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(tun)
	if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.0 200") || !strings.HasSuffix(string(resp), "hello\n") {
		t.Fatalf("through the tunnel: %q %v", resp, err)
	}
}
