package sshgw

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// The tests drive the gateway with the system's OpenSSH client (ssh, scp)
// against localBackend, which runs commands as processes on this host.

const testUser = "inst_test"

// cmdTimeout bounds every client command, so that a bug hangs no test.
const cmdTimeout = 60 * time.Second

// need makes sure a program the tests depend on is there: without it the test
// fails in CI (which must provide it) and is skipped elsewhere.
func need(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if p, err := exec.LookPath(path); err == nil && p != "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (Debian package %s)", path, pkg)
	}
	t.Skipf("%s is missing (install Debian package %s)", path, pkg)
}

// localBackend authorizes one user with one key and runs commands as local
// processes in dir, each in its own process group (or session, on a PTY).
type localBackend struct {
	dir  string
	user string
	key  ssh.PublicKey

	mu      sync.Mutex
	procs   []*localProc
	started chan *localProc // every started process, for tests to wait on
}

func (b *localBackend) Authorize(user string, key ssh.PublicKey) (string, bool) {
	if user != b.user || !bytes.Equal(key.Marshal(), b.key.Marshal()) {
		return "", false
	}
	return "test-target", true
}

func (b *localBackend) Start(ctx context.Context, target string, cmd Command, stdout, stderr io.Writer) (Process, error) {
	if target != "test-target" {
		return nil, fmt.Errorf("unknown target %q", target)
	}
	if cmd.Env["FAAS_TEST_FAIL_START"] != "" {
		return nil, errors.New("starting failed as asked")
	}
	argv := cmd.Argv
	if argv == nil {
		argv = []string{"/bin/bash", "-l"}
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Dir = b.dir
	c.Env = append(os.Environ(), "HOME="+b.dir)
	if cmd.PTY != nil {
		c.Env = append(c.Env, "TERM="+cmd.PTY.Term)
	}
	for k, v := range cmd.Env {
		c.Env = append(c.Env, k+"="+v)
	}
	p := &localProc{cmd: c, done: make(chan struct{})}

	if cmd.PTY != nil {
		ptmx, err := pty.StartWithSize(c, &pty.Winsize{Rows: cmd.PTY.Rows, Cols: cmd.PTY.Cols})
		if err != nil {
			return nil, err
		}
		p.ptmx, p.stdin = ptmx, ptmx
		copied := make(chan struct{})
		go func() {
			io.Copy(stdout, ptmx) // ends with EIO once the terminal is closed
			close(copied)
		}()
		go func() {
			c.Wait()
			<-copied
			ptmx.Close()
			p.finish()
		}()
	} else {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		c.Stdout, c.Stderr = stdout, stderr
		c.WaitDelay = 5 * time.Second
		stdin, err := c.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.stdin = stdin
		if err := c.Start(); err != nil {
			return nil, err
		}
		go func() {
			c.Wait() // also waits for the output copies
			p.finish()
		}()
	}
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	select {
	case b.started <- p:
	default:
	}
	return p, nil
}

// checkNoLeaks fails the test if a process the backend started is still
// alive, or has a live process in its group.
func (b *localBackend) checkNoLeaks(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	procs := b.procs
	b.mu.Unlock()
	for _, p := range procs {
		p.checkGone(t)
	}
}

type localProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ptmx  *os.File // nil without a PTY

	done chan struct{} // closed when the process has been reaped and its output copied
	code int
}

func (p *localProc) finish() {
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		p.code = 128 + int(ws.Signal())
	} else {
		p.code = ws.ExitStatus()
	}
	close(p.done)
}

func (p *localProc) WriteStdin(b []byte) error {
	_, err := p.stdin.Write(b)
	return err
}

func (p *localProc) CloseStdin() error {
	if p.ptmx != nil {
		_, err := p.ptmx.Write([]byte{4}) // ^D: end of file on a terminal
		return err
	}
	return p.stdin.Close()
}

func (p *localProc) Resize(rows, cols uint16) error {
	if p.ptmx == nil {
		return nil
	}
	return pty.Setsize(p.ptmx, &pty.Winsize{Rows: rows, Cols: cols})
}

func (p *localProc) Kill() error {
	// The process leads its group (Setpgid, or Setsid on a PTY).
	err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (p *localProc) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.code, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// checkGone fails the test unless the process ends and nothing is left alive
// in its process group, within cmdTimeout. (Children of a killed process are
// reaped by init, a moment after the process itself.)
func (p *localProc) checkGone(t *testing.T) {
	t.Helper()
	deadline := time.After(cmdTimeout)
	select {
	case <-p.done:
	case <-deadline:
		t.Errorf("process %d (%v) still running", p.cmd.Process.Pid, p.cmd.Args)
		return
	}
	for {
		left := liveGroupMembers(t, p.cmd.Process.Pid)
		if len(left) == 0 {
			return
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Errorf("process group %d (%v) still has live processes %v", p.cmd.Process.Pid, p.cmd.Args, left)
			return
		}
	}
}

// liveGroupMembers lists the processes of group pgid that are not zombies.
func liveGroupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // ended meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		pids = append(pids, pid)
	}
	return pids
}

// harness is a gateway on a loopback port in front of a localBackend, and
// what an OpenSSH client needs to reach it.
type harness struct {
	srv        *Server
	backend    *localBackend
	dir        string // the backend's working directory
	clientDir  string // keys, known_hosts, client HOME
	port       int
	keyFile    string
	signer     ssh.Signer // the client key, for x/crypto clients
	knownHosts string
}

func newHarness(t *testing.T, idle time.Duration) *harness {
	t.Helper()
	need(t, "ssh", "openssh-client")
	h := &harness{dir: t.TempDir(), clientDir: t.TempDir()}
	h.keyFile, h.signer = writeClientKey(t, h.clientDir, "id_ed25519")
	h.backend = &localBackend{dir: h.dir, user: testUser, key: h.signer.PublicKey(), started: make(chan *localProc, 16)}

	srv, err := New(Config{
		HostKeyPath: filepath.Join(h.clientDir, "host_key"),
		Backend:     h.backend,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		IdleTimeout: idle,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		h.backend.checkNoLeaks(t)
	})
	h.srv = srv
	h.port = ln.Addr().(*net.TCPAddr).Port

	h.knownHosts = filepath.Join(h.clientDir, "known_hosts")
	line := knownhosts.Line([]string{net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port))}, srv.HostKey())
	if !strings.HasPrefix(line, fmt.Sprintf("[127.0.0.1]:%d ", h.port)) {
		t.Fatalf("known_hosts line %q", line)
	}
	if err := os.WriteFile(h.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// writeClientKey generates an ed25519 key and stores it for ssh -i.
func writeClientKey(t *testing.T, dir, name string) (string, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, signer
}

// clientOpts are the options every OpenSSH client gets: this key only, this
// known_hosts only, no configuration, no prompts.
func (h *harness) clientOpts(keyFile string) []string {
	return []string{
		"-F", "/dev/null",
		"-i", keyFile,
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + h.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=10",
	}
}

// sshArgs is the ssh command line for running remote as user.
func (h *harness) sshArgs(keyFile, user string, opts []string, remote ...string) []string {
	args := append(h.clientOpts(keyFile), "-p", strconv.Itoa(h.port))
	args = append(args, opts...)
	args = append(args, user+"@127.0.0.1")
	return append(args, remote...)
}

func (h *harness) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), "HOME="+h.clientDir, "SSH_AUTH_SOCK=")
	return c
}

// run runs an OpenSSH client program to the end.
func (h *harness) run(t *testing.T, stdin, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	c := h.command(ctx, name, args...)
	c.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.Exited():
		code = exitErr.ExitCode()
	default:
		t.Fatalf("%s %q: %v (stderr %q)", name, args, err, errOut.String())
	}
	return out.String(), errOut.String(), code
}

func (h *harness) ssh(t *testing.T, stdin string, opts []string, remote ...string) (stdout, stderr string, code int) {
	t.Helper()
	return h.run(t, stdin, "ssh", h.sshArgs(h.keyFile, testUser, opts, remote...)...)
}

// startBackground starts ssh running remote and returns once the backend has
// started its process.
func (h *harness) startBackground(t *testing.T, remote string) (*exec.Cmd, *localProc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	t.Cleanup(cancel)
	c := h.command(ctx, "ssh", h.sshArgs(h.keyFile, testUser, nil, remote)...)
	var errOut bytes.Buffer
	c.Stderr = &errOut
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	select {
	case p := <-h.backend.started:
		return c, p
	case <-ctx.Done():
		t.Fatalf("command never started (ssh stderr %q)", errOut.String())
		return nil, nil
	}
}

func TestExec(t *testing.T) {
	h := newHarness(t, 0)
	var seq strings.Builder
	for i := 1; i <= 200000; i++ {
		fmt.Fprintln(&seq, i)
	}
	tests := []struct {
		name       string
		opts       []string
		stdin      string
		remote     string
		wantStdout string
		wantStderr string
		wantCode   int
	}{
		{name: "stdout stderr and exit code", remote: "echo out; echo err >&2; exit 3",
			wantStdout: "out\n", wantStderr: "err\n", wantCode: 3},
		{name: "stdin", stdin: "hello\n", remote: "cat", wantStdout: "hello\n"},
		{name: "environment", opts: []string{"-o", "SetEnv=FAAS_TEST=bar"}, remote: `echo "$FAAS_TEST"`,
			wantStdout: "bar\n"},
		{name: "working directory", remote: "pwd", wantStdout: h.dir + "\n"},
		{name: "all output before exit status", remote: "seq 1 200000", wantStdout: seq.String()},
		{name: "killed by a signal", remote: "kill -9 $$", wantCode: 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := h.ssh(t, tt.stdin, tt.opts, tt.remote)
			if stdout != tt.wantStdout {
				if len(stdout) > 200 {
					t.Errorf("stdout: got %d bytes, want %d", len(stdout), len(tt.wantStdout))
				} else {
					t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
				}
			}
			if stderr != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", stderr, tt.wantStderr)
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
		})
	}
}

func TestPTY(t *testing.T) {
	h := newHarness(t, 0)
	t.Run("exec", func(t *testing.T) {
		stdout, stderr, code := h.ssh(t, "", []string{"-tt"}, "tty")
		if !strings.HasPrefix(stdout, "/dev/pts/") || code != 0 {
			t.Errorf("ssh -tt tty: stdout %q, stderr %q, exit code %d", stdout, stderr, code)
		}
	})
	t.Run("interactive shell", func(t *testing.T) {
		stdout, stderr, code := h.ssh(t, "echo $((6*7))\nexit\n", []string{"-tt"})
		if !strings.Contains(stdout, "42") || code != 0 {
			t.Errorf("ssh -tt: stdout %q, stderr %q, exit code %d", stdout, stderr, code)
		}
	})
}

func TestSCP(t *testing.T) {
	h := newHarness(t, 0)
	need(t, "scp", "openssh-client")
	need(t, SFTPServer, "openssh-sftp-server")

	content := make([]byte, 300<<10) // binary, and more than one window
	rand.Read(content)
	local := filepath.Join(h.clientDir, "local.bin")
	if err := os.WriteFile(local, content, 0o600); err != nil {
		t.Fatal(err)
	}
	scp := func(from, to string) {
		t.Helper()
		args := append(h.clientOpts(h.keyFile), "-P", strconv.Itoa(h.port), from, to)
		if stdout, stderr, code := h.run(t, "", "scp", args...); code != 0 {
			t.Fatalf("scp %s %s: exit code %d, stdout %q, stderr %q", from, to, code, stdout, stderr)
		}
	}

	scp(local, testUser+"@127.0.0.1:copied.txt")
	got, err := os.ReadFile(filepath.Join(h.dir, "copied.txt"))
	if err != nil {
		t.Fatalf("scp in: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("scp in: got %d bytes, want %d, not the same", len(got), len(content))
	}

	back := filepath.Join(h.clientDir, "back.bin")
	scp(testUser+"@127.0.0.1:copied.txt", back)
	got, err = os.ReadFile(back)
	if err != nil {
		t.Fatalf("scp out: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("scp out: got %d bytes, want %d, not the same", len(got), len(content))
	}
}

func TestAuthRefused(t *testing.T) {
	h := newHarness(t, 0)
	otherKey, _ := writeClientKey(t, h.clientDir, "id_other")
	tests := []struct {
		name, keyFile, user string
	}{
		{"wrong key", otherKey, testUser},
		{"wrong user", h.keyFile, "inst_other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := h.run(t, "", "ssh", h.sshArgs(tt.keyFile, tt.user, nil, "echo in")...)
			if code != 255 || !strings.Contains(stderr, "Permission denied") || stdout != "" {
				t.Errorf("got exit code %d, stdout %q, stderr %q; want 255 and Permission denied", code, stdout, stderr)
			}
		})
	}
	h.backend.mu.Lock()
	defer h.backend.mu.Unlock()
	if n := len(h.backend.procs); n != 0 {
		t.Errorf("backend started %d processes for refused clients", n)
	}
}

func TestStartFails(t *testing.T) {
	h := newHarness(t, 0)
	stdout, stderr, code := h.ssh(t, "", []string{"-o", "SetEnv=FAAS_TEST_FAIL_START=1"}, "echo in")
	if code != 255 || stdout != "" || !strings.Contains(stderr, "cannot start exec in test-target") ||
		strings.Contains(stderr, "as asked") {
		t.Errorf("got exit code %d, stdout %q, stderr %q; want 255 and a message without the internal cause", code, stdout, stderr)
	}
}

func TestForwardingRefused(t *testing.T) {
	h := newHarness(t, 0)
	_, stderr, code := h.ssh(t, "", []string{"-W", "127.0.0.1:1"})
	// With LogLevel=ERROR, ssh says "stdio forwarding failed" rather than
	// "administratively prohibited".
	if code != 255 || !strings.Contains(stderr, "forwarding failed") {
		t.Errorf("ssh -W: exit code %d, stderr %q; want a refused channel", code, stderr)
	}
}

// TestRequests covers what the OpenSSH client cannot be made to send:
// window-change and unknown subsystems.
func TestRequests(t *testing.T) {
	h := newHarness(t, 0)
	client, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)), &ssh.ClientConfig{
		User:            testUser,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(h.signer)},
		HostKeyCallback: ssh.FixedHostKey(h.srv.HostKey()),
		Timeout:         cmdTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	t.Run("unknown subsystem", func(t *testing.T) {
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if err := sess.RequestSubsystem("netconf"); err == nil {
			t.Error("subsystem netconf accepted")
		}
	})

	t.Run("window-change", func(t *testing.T) {
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if err := sess.RequestPty("xterm", 30, 100, nil); err != nil {
			t.Fatal(err)
		}
		stdin, err := sess.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		sess.Stdout = pw
		if err := sess.Start("stty size; read x; stty size"); err != nil {
			t.Fatal(err)
		}
		out := &lineReader{r: pr}
		if err := out.waitFor("30 100"); err != nil {
			t.Fatal(err)
		}
		if err := sess.WindowChange(50, 120); err != nil {
			t.Fatal(err)
		}
		// WindowChange does not wait for a reply: a request sent after it is
		// handled after it.
		if _, err := sess.SendRequest("faas-test-sync", true, nil); err != nil {
			t.Fatal(err)
		}
		io.WriteString(stdin, "\n")
		if err := out.waitFor("50 120"); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, pr)
		if err := sess.Wait(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
	})
}

// lineReader reads a stream until a string appears in it.
type lineReader struct {
	r   io.Reader
	buf []byte
}

func (l *lineReader) waitFor(s string) error {
	b := make([]byte, 1024)
	for !bytes.Contains(l.buf, []byte(s)) {
		n, err := l.r.Read(b)
		l.buf = append(l.buf, b[:n]...)
		if err != nil {
			return fmt.Errorf("waiting for %q in %q: %w", s, l.buf, err)
		}
	}
	i := bytes.Index(l.buf, []byte(s))
	l.buf = l.buf[i+len(s):]
	return nil
}

func TestHostKeyPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "host_key")
	backend := &localBackend{}
	first, err := New(Config{HostKeyPath: path, Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); !bytes.HasPrefix(b, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("host key is not an OpenSSH PEM private key")
	}
	if typ := first.HostKey().Type(); typ != ssh.KeyAlgoED25519 {
		t.Errorf("host key type %s, want %s", typ, ssh.KeyAlgoED25519)
	}

	second, err := New(Config{HostKeyPath: path, Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	second.Close()
	if !bytes.Equal(first.HostKey().Marshal(), second.HostKey().Marshal()) {
		t.Error("host key changed between two servers with the same HostKeyPath")
	}
}

func TestCloseKillsProcesses(t *testing.T) {
	h := newHarness(t, 0)
	client, proc := h.startBackground(t, "sleep 1000")
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	proc.checkGone(t)
	if err := client.Wait(); err == nil {
		t.Error("ssh exited 0 although the server closed")
	}
}

func TestDisconnectKillsProcess(t *testing.T) {
	h := newHarness(t, 0)
	client, proc := h.startBackground(t, "sleep 1000")
	client.Process.Kill()
	client.Wait()
	proc.checkGone(t)
}

func TestIdleTimeout(t *testing.T) {
	h := newHarness(t, time.Second)
	client, proc := h.startBackground(t, "sleep 1000")
	// No bytes go either way while sleep runs: the gateway drops the
	// connection, which ends ssh and kills sleep.
	var exitErr *exec.ExitError
	if err := client.Wait(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 255 {
		t.Errorf("ssh: %v, want exit code 255", err)
	}
	proc.checkGone(t)

	// An active connection is not idle.
	stdout, _, code := h.ssh(t, "", nil, "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.2; done")
	if stdout != "1\n2\n3\n4\n5\n6\n7\n8\n" || code != 0 {
		t.Errorf("busy session: stdout %q, exit code %d", stdout, code)
	}
}

func TestNewInvalid(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no backend", Config{HostKeyPath: filepath.Join(dir, "k")}},
		{"no host key path", Config{Backend: &localBackend{}}},
		{"negative idle timeout", Config{HostKeyPath: filepath.Join(dir, "k"), Backend: &localBackend{}, IdleTimeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Error("New succeeded")
			}
		})
	}
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	if _, err := New(Config{HostKeyPath: garbage, Backend: &localBackend{}}); err == nil {
		t.Error("New accepted a host key file that is not a key")
	}
}
