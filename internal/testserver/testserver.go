// Package testserver starts a real `faas serve` process (built from this source
// tree) on a loopback port with its own data directory, for tests that exercise the
// whole platform: API, engine, store and real gVisor sandboxes.
//
// Tests that use it need root and a runsc binary (bin/runsc, built by
// scripts/build-runsc.sh, or FAAS_RUNSC). Without them a test is skipped with the
// reason, except under CI (env CI set), where it fails: in CI these tests must run.
package testserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faas-platform/faas/client"
)

// Server is a running faas server.
type Server struct {
	URL     string
	Key     string // an admin key
	DataDir string
	Runsc   string
	// SSHPort is the SSH gateway's port.
	SSHPort int

	t    testing.TB
	cmd  *exec.Cmd
	env  []string
	port int // the API's, once the first start chose it (restarts keep it)
	logs *Buffer
	exit chan error
}

// Options adjust the server.
type Options struct {
	// Env adds environment variables to the server's (e.g. FAAS_STOCK=0).
	Env []string
	// DataDir reuses a data directory (to test restarts); default: a new temp dir.
	DataDir string
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// RepoRoot returns the source tree's root (the directory holding go.mod).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/faas-platform/faas\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod of github.com/faas-platform/faas not found above the working directory")
		}
		dir = parent
	}
}

// Require skips (or, under CI, fails) the test unless sandboxes can run here, and
// returns the runsc path.
func Require(t testing.TB) string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("this test runs gVisor sandboxes and needs root")
	}
	runsc := os.Getenv("FAAS_RUNSC")
	if runsc == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		runsc = filepath.Join(root, "bin", "runsc")
	}
	if _, err := os.Stat(runsc); err != nil {
		fail("this test needs runsc at %s: build it with scripts/build-runsc.sh (or make runsc), or set FAAS_RUNSC", runsc)
	}
	return runsc
}

// Binaries builds faas and faas-agent from this tree (once per test binary) and
// returns the directory holding them. Test binaries of several packages may run
// at once: each builds to a temporary name and renames it into place.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		// One directory per source tree, reused by every test binary and run
		// (go build only rewrites what changed).
		sum := sha256.Sum256([]byte(root))
		buildDir = filepath.Join(os.TempDir(), "faas-test-bin-"+hex.EncodeToString(sum[:6]))
		if buildErr = os.MkdirAll(buildDir, 0o755); buildErr != nil {
			return
		}
		for _, pkg := range []string{"faas", "faas-agent"} {
			tmp := filepath.Join(buildDir, fmt.Sprintf(".%s.%d", pkg, os.Getpid()))
			cmd := exec.Command("go", "build", "-o", tmp, "./cmd/"+pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				os.Remove(tmp)
				buildErr = fmt.Errorf("building %s: %v\n%s", pkg, err, out)
				return
			}
			if buildErr = os.Rename(tmp, filepath.Join(buildDir, pkg)); buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// RandomKey returns a fresh API key string.
func RandomKey() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return "faas_" + hex.EncodeToString(b[:])
}

// Start starts a server and stops it (checking it left nothing behind) when the
// test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	runsc := Require(t)
	bin := Binaries(t)
	dataDir := opts.DataDir
	if dataDir == "" {
		var err error
		dataDir, err = os.MkdirTemp("", "faas-test-data-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dataDir) })
	}
	s := &Server{Key: RandomKey(), DataDir: dataDir, Runsc: runsc, t: t, SSHPort: freePort(t)}
	s.env = append(os.Environ(),
		"FAAS_DATA_DIR="+dataDir,
		"FAAS_API_KEY="+s.Key,
		"FAAS_RUNSC="+runsc,
		"FAAS_AGENT="+filepath.Join(bin, "faas-agent"),
		"FAAS_HOST=127.0.0.1",
		"FAAS_SSH_PORT="+strconv.Itoa(s.SSHPort),
		"FAAS_LOG_LEVEL=debug",
	)
	s.env = append(s.env, opts.Env...)
	s.start()
	t.Cleanup(func() {
		s.Stop()
		s.CheckClean()
	})
	return s
}

// servingAt finds the address the server says it serves at in its log.
var servingAt = regexp.MustCompile(`msg="faas serving" addr=(\S+)`)

// start starts the server and waits until it is healthy. The first start lets
// the kernel choose the API's port (the server logs it; restarts keep it); the
// SSH gateway's was chosen free beforehand, and should another process take it
// (or a kept API port) before the server binds it, the start is tried again on
// new ports.
func (s *Server) start() {
	t := s.t
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := s.tryStart()
		if err == nil {
			return
		}
		if !strings.Contains(s.logs.String(), "address already in use") || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("a port was taken (attempt %d); starting on new ports", attempt)
		s.port = 0
		s.SSHPort = freePort(t)
		s.env = append(s.env, "FAAS_SSH_PORT="+strconv.Itoa(s.SSHPort))
	}
}

func (s *Server) tryStart() error {
	t := s.t
	s.logs = &Buffer{}
	cmd := exec.Command(filepath.Join(Binaries(t), "faas"), "serve")
	cmd.Env = append(append([]string{}, s.env...), "FAAS_API_PORT="+strconv.Itoa(s.port))
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	s.exit = make(chan error, 1)
	go func() { s.exit <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	s.URL = ""
	for {
		select {
		case err := <-s.exit:
			s.cmd = nil
			return fmt.Errorf("faas serve exited during start-up: %v\n%s", err, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("faas serve not healthy after 60s\n%s", s.logs.String())
		}
		if s.URL == "" {
			m := servingAt.FindStringSubmatch(s.logs.String())
			if m == nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			_, port, _ := net.SplitHostPort(m[1])
			s.port, _ = strconv.Atoi(port)
			s.URL = "http://" + m[1]
		}
		resp, err := http.Get(s.URL + "/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client returns a Go SDK client with the admin key.
func (s *Server) Client() *client.Client { return client.New(s.URL, s.Key, client.WithRetries(0)) }

// PID is the server process's pid.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Logs returns what the server printed so far.
func (s *Server) Logs() string { return s.logs.String() }

// Stop sends SIGTERM and waits for a clean exit (SIGKILL after 60s).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exit:
		if err != nil {
			s.t.Errorf("faas serve exited with %v\n%s", err, s.logs.String())
		}
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exit
		s.t.Errorf("faas serve did not stop within 60s of SIGTERM\n%s", s.logs.String())
	}
	s.t.Logf("server log:\n%s", lastLines(s.logs.String(), 40))
	s.cmd = nil
}

// Kill kills the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

// Restart starts the server again on the same data directory.
func (s *Server) Restart() {
	if s.cmd != nil {
		s.Stop()
	}
	s.start()
}

// CheckClean fails the test if the stopped server left a sandbox, a runsc process,
// a mount or a bundle behind.
func (s *Server) CheckClean() {
	t := s.t
	t.Helper()
	if ids := s.RunscContainers(); len(ids) > 0 {
		t.Errorf("runsc containers left behind: %v", ids)
	}
	bundles, _ := os.ReadDir(filepath.Join(s.DataDir, "sandboxes", "bundles"))
	if len(bundles) > 0 {
		t.Errorf("%d sandbox bundles left behind", len(bundles))
	}
	if procs := ProcessesMentioning(s.DataDir); len(procs) > 0 {
		t.Errorf("processes left behind: %v", procs)
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil && strings.Contains(string(b), s.DataDir) {
		t.Errorf("mounts left behind under %s", s.DataDir)
	}
}

// RunscContainers lists the containers in the server's runsc state root.
func (s *Server) RunscContainers() []string {
	out, _ := exec.Command(s.Runsc, "--root="+filepath.Join(s.DataDir, "sandboxes", "runsc"), "list", "-quiet").Output()
	return strings.Fields(string(out))
}

// ProcessesMentioning lists host processes whose command line contains s.
func ProcessesMentioning(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, s) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}

// Do sends a request with the admin key and returns status and body.
func (s *Server) Do(ctx context.Context, method, path string, body []byte) (int, []byte, http.Header) {
	return s.DoWithKey(ctx, s.Key, method, path, body)
}

// DoWithKey sends a request with the given key ("" sends none).
func (s *Server) DoWithKey(ctx context.Context, key, method, path string, body []byte) (int, []byte, http.Header) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// NewKey creates an API key for a new account through the admin API and returns it.
func (s *Server) NewKey(ctx context.Context, scopes ...string) string {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": "test", "scopes": scopes})
	status, b, _ := s.Do(ctx, "POST", "/api/v1/keys", body)
	var k struct{ Key string }
	if status != http.StatusCreated || json.Unmarshal(b, &k) != nil || k.Key == "" {
		s.t.Fatalf("creating a key: %d %s", status, b)
	}
	return k.Key
}

// ClientWithKey returns a Go SDK client using key.
func (s *Server) ClientWithKey(key string) *client.Client {
	return client.New(s.URL, key, client.WithRetries(0))
}

// Buffer is a bytes.Buffer safe for concurrent writers (a server's log, an
// execution's output written by a connection's reader).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// lastLines returns the last n lines of s, preceded by the error lines before them.
func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		// The errors logged before the last lines matter most of all.
		var errs []string
		for _, l := range lines[:len(lines)-n] {
			if strings.Contains(l, "level=ERROR") {
				errs = append(errs, l)
			}
		}
		lines = append(errs, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
