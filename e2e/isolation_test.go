package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faas-platform/faas/client"
	"github.com/faas-platform/faas/internal/testserver"
)

func randomName(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// TestIsolation runs hostile probes inside sandboxes; each must find nothing of the
// host, the server or another sandbox.
func TestIsolation(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})

	// A marker planted on the host where a careless sandbox would expose it.
	marker := randomName("faas-isolation-marker-")
	for _, dir := range []string{"/root", "/tmp", s.DataDir} {
		p := filepath.Join(dir, marker)
		if err := os.WriteFile(p, []byte("host secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
	}
	if _, err := os.Stat("/etc/shadow"); err != nil {
		t.Fatalf("host has no /etc/shadow to protect: %v", err)
	}

	probes := []struct {
		name   string
		code   string // python, run as the sandbox user
		expect string // exact stdout
	}{
		{"host /etc/shadow", "import os\nprint(os.path.exists('/etc/shadow'))", "False\n"},
		{"host /root", "import os\ntry:\n    print(os.listdir('/root'))\nexcept OSError as e:\n    print('denied', e.errno)", "denied 13\n"},
		{"marker anywhere", fmt.Sprintf("import os\nhits = []\nfor root, dirs, files in os.walk('/'):\n    if root.startswith(('/proc', '/sys', '/usr')):\n        dirs[:] = []\n        continue\n    if %q in files: hits.append(root)\nprint(hits)", marker), "[]\n"},
		{"data dir", fmt.Sprintf("import os\nprint(os.path.exists(%q), os.path.exists(%q))", s.DataDir, filepath.Join(s.DataDir, "faas.db")), "False False\n"},
		{"server database by name", "import os\nhits = [r for r, d, f in os.walk('/') if 'faas.db' in f and not r.startswith('/proc')]\nprint(hits)", "[]\n"},
		{"only sandbox processes", "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\ncmds = [open('/proc/%s/cmdline' % p, 'rb').read().split(b'\\0')[0] for p in pids]\nprint(any(b'faas' in c and b'agent' not in c for c in cmds), len(pids) < 10)", "False True\n"},
		{"no network interfaces but loopback", "import socket\nprint(sorted(n for _, n in socket.if_nameindex()))", "['lo']\n"},
		{"no raw sockets", "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n    print('raw ok')\nexcept OSError as e:\n    print('refused')", "refused\n"},
		{"cannot mount", "import subprocess\nr = subprocess.run(['mount', '-t', 'tmpfs', 'x', '/tmp'], capture_output=True)\nprint(r.returncode != 0)", "True\n"},
		{"read-only /usr", "try:\n    open('/usr/bin/faas-write-test', 'w')\n    print('wrote')\nexcept OSError as e:\n    print('refused')", "refused\n"},
		{"no setuid escalation", "import subprocess, os\nr = subprocess.run(['su', '-c', 'id -u'], capture_output=True, text=True, input='')\nprint(os.getuid(), r.stdout.strip() != '0')", "1000 True\n"},
		{"no ptrace of other processes", "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.ptrace(16, 1, 0, 0)\nprint(r, ctypes.get_errno() in (1, 3))", "-1 True\n"},
		{"no device nodes", "import os, stat\ntry:\n    os.mknod('/tmp/disk', 0o600 | stat.S_IFBLK, os.makedev(8, 0))\n    print('made')\nexcept OSError as e:\n    print('refused', e.errno)", "refused 1\n"},
		{"no host block devices", "import os\nprint(sorted(d for d in os.listdir('/dev') if d.startswith(('sd', 'vd', 'nvme', 'xvd', 'loop', 'dm-'))))", "[]\n"},
		{"no network egress", "import socket\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect(('1.1.1.1', 80))\n    print('connected')\nexcept OSError as e:\n    print('refused')", "refused\n"},
		{"cannot signal the agent", "import os, signal\ntry:\n    os.kill(1, signal.SIGKILL)\n    print('sent')\nexcept PermissionError:\n    print('denied')", "denied\n"},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			res := execute(t, s, client.ExecuteRequest{Language: "python", Code: p.code, TimeoutMS: 60000})
			if res.Stdout != p.expect {
				t.Errorf("stdout %q, want %q (stderr %q, status %s)", res.Stdout, p.expect, res.Stderr, res.Status)
			}
		})
	}

	t.Run("host loopback unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan struct{}, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		code := fmt.Sprintf("import socket\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect(('127.0.0.1', %d))\n    print('connected')\nexcept OSError:\n    print('unreachable')", port)
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code})
		if res.Stdout != "unreachable\n" {
			t.Errorf("stdout %q", res.Stdout)
		}
		select {
		case <-accepted:
			t.Error("the host listener accepted a connection from the sandbox")
		case <-time.After(200 * time.Millisecond):
		}
	})

	t.Run("writes stay in the sandbox", func(t *testing.T) {
		name := randomName("faas-write-")
		code := fmt.Sprintf("for p in ['/tmp/%[1]s', '/etc/%[1]s', '/workspace/%[1]s', '/home/user/%[1]s']:\n    try:\n        open(p, 'w').write('x'); print('ok')\n    except OSError as e:\n        print('err', e)", name)
		res := execute(t, s, client.ExecuteRequest{Language: "python", Code: code})
		if strings.Count(res.Stdout, "ok") == 0 {
			t.Fatalf("the sandbox could not write anywhere: %q", res.Stdout)
		}
		// Nothing under the host's / or the data dir got the file.
		for _, dir := range []string{"/tmp", "/etc", "/workspace", "/home/user", s.DataDir} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				t.Errorf("a sandbox write reached the host at %s", dir)
			}
		}
		found := false
		_ = filepath.Walk(s.DataDir, func(p string, info os.FileInfo, err error) error {
			if err == nil && strings.Contains(p, name) {
				found = true
			}
			return nil
		})
		if found {
			t.Error("a sandbox write appeared in the server's data dir")
		}
	})

	t.Run("other sandboxes' files", func(t *testing.T) {
		secret := randomName("secret-")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Sandbox A writes its secret and stays alive while B searches for it.
		done := make(chan *client.ExecuteResult, 1)
		go func() {
			res, _ := s.Client().Execute(ctx, client.ExecuteRequest{Language: "bash", Code: fmt.Sprintf("echo %s > /tmp/%s; echo %s > /workspace/%s; sleep 4; cat /tmp/%s", secret, secret, secret, secret, secret), TimeoutMS: 30000})
			done <- res
		}()
		time.Sleep(1500 * time.Millisecond)
		res := execute(t, s, client.ExecuteRequest{Language: "bash", Code: fmt.Sprintf("grep -rl %s /tmp /workspace /home /etc /run 2>/dev/null; ls /tmp /workspace", secret)})
		if strings.Contains(res.Stdout, secret) {
			t.Errorf("sandbox B saw sandbox A's file: %q", res.Stdout)
		}
		a := <-done
		if a == nil || a.Stdout != secret+"\n" {
			t.Errorf("sandbox A lost its own file: %+v", a)
		}
	})
}
