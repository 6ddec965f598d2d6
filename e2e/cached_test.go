package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faas-platform/faas/client"
	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/internal/testserver"
)

type poolsResponse struct {
	Pools []struct {
		Image    string
		MemoryMB int `json:"memory_mb"`
		Idle     int
		InUse    int `json:"in_use"`
		Hits     int64
		Misses   int64
		Boots    int64
		Retired  int64
		Reaped   int64
		Evicted  int64
	}
	Stock struct{ Target, Ready int }
}

func pools(t *testing.T, s *testserver.Server, key string) poolsResponse {
	t.Helper()
	status, b, _ := s.DoWithKey(context.Background(), key, "GET", "/api/v1/pools", nil)
	var p poolsResponse
	if status != http.StatusOK || json.Unmarshal(b, &p) != nil {
		t.Fatalf("pools: %d %s", status, b)
	}
	return p
}

// waitIdle waits until the account's pool has n idle sandboxes and none in use (a
// sandbox returns to its pool just after its execution's answer). The pool then
// hands out the sandbox used last first.
func waitIdle(t *testing.T, s *testserver.Server, key string, n int) {
	t.Helper()
	for range 100 {
		if p := pools(t, s, key); len(p.Pools) > 0 && p.Pools[0].Idle >= n && p.Pools[0].InUse == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the pool never had %d idle sandboxes: %+v", n, pools(t, s, key))
}

// sysvLeave makes a System V shared memory segment (holding a secret) and a
// message queue and leaves them; sysvFind is the pair of ids found under their
// keys, (-1, -1) when they are not there.
const (
	sysvLeave = "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.shmat.restype = ctypes.c_void_p\nctypes.memmove(libc.shmat(libc.shmget(0x1234, 4096, 0o1666), None, 0), b'SECRET', 6)\nlibc.msgget(0x4321, 0o1666)\n"
	sysvFind  = "(ctypes.CDLL(None).shmget(0x1234, 0, 0), ctypes.CDLL(None).msgget(0x4321, 0))"
)

func cached(t *testing.T, c *client.Client, code string) *client.ExecuteResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: "python", Code: code, TimeoutMS: 20000})
	if err != nil {
		t.Fatalf("cached execution: %v", err)
	}
	return res
}

// TestCachedReuseAndReset checks a cached execution reuses the account's warm
// sandbox, and that nothing an execution leaves (files, processes, module state,
// System V shared memory and message queues) reaches the next one.
func TestCachedReuseAndReset(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	first := cached(t, c, "import os\nprint(*(oct(os.stat(d).st_mode & 0o7777)[2:] for d in ('/tmp', '/var/tmp', '/dev/shm', '/workspace')))\nopen('/tmp/left', 'w').write('x')\nopen('/workspace/left', 'w').write('x')\nos.makedirs('/home/user/.cache/left', exist_ok=True)\nimport subprocess\nsubprocess.Popen(['sleep', '3600'], start_new_session=True)\nimport json\njson.leftover = 42\nos.chmod('/workspace', 0o700)\n"+sysvLeave+"print(os.getpid())")
	if first.Status != "succeeded" || first.Warm {
		t.Fatalf("first cached execution: %+v", first)
	}
	if !strings.HasPrefix(first.Stdout, "1777 1777 1777 755\n") {
		t.Errorf("a fresh sandbox's shared directories are not sticky: %q", first.Stdout)
	}
	waitIdle(t, s, s.Key, 1)
	second := cached(t, c, "import os, json, subprocess, ctypes\nleft = [p for p in ('/tmp/left', '/workspace/left', '/home/user/.cache') if os.path.exists(p)]\nps = subprocess.run(['ps', '-eo', 'user,args'], capture_output=True, text=True).stdout\nprint(left, 'sleep 3600' in ps, hasattr(json, 'leftover'), "+sysvFind+", *(oct(os.stat(d).st_mode & 0o7777)[2:] for d in ('/tmp', '/var/tmp', '/dev/shm', '/workspace')))")
	if !second.Warm {
		t.Fatalf("the second cached execution did not reuse the warm sandbox: %+v", second)
	}
	// The places the user writes are back as they were: /tmp and the like
	// sticky (no user deletes another's files there), the workspace open.
	if second.Stdout != "[] False False (-1, -1) 1777 1777 1777 755\n" {
		t.Errorf("state leaked into the next execution: %q (stderr %q)", second.Stdout, second.Stderr)
	}
	p := pools(t, s, s.Key)
	if len(p.Pools) != 1 || p.Pools[0].Hits < 1 || p.Pools[0].Misses < 1 {
		t.Errorf("pool stats %+v", p)
	}
}

// TestCachedResetHiddenWrites checks the reset finds what an execution leaves in
// the places the user writes even when the code puts each directory's times back
// as they were (the reset skips a directory it left empty only if its change
// time, which no process can set back, is unchanged).
func TestCachedResetHiddenWrites(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	const dirs = "('/tmp', '/var/tmp', '/dev/shm', '/workspace', '/home/user')"
	look := "import os\nprint([p for d in " + dirs + " for p in os.listdir(d)])"
	if r := cached(t, c, look); r.Status != "succeeded" {
		t.Fatalf("first execution: %+v", r)
	}
	for round := range 2 { // the second round runs after a reset that found nothing to do
		waitIdle(t, s, s.Key, 1)
		hide := cached(t, c, "import os\nfor d in "+dirs+":\n    st = os.stat(d)\n    open(d + '/hidden', 'w').write('x')\n    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns)) if os.access(d, os.W_OK) and os.stat(d).st_uid == os.getuid() else None\nprint('left')")
		if hide.Status != "succeeded" || hide.Stdout != "left\n" || !hide.Warm {
			t.Fatalf("round %d: execution leaving files: %+v", round, hide)
		}
		waitIdle(t, s, s.Key, 1)
		if r := cached(t, c, look); !r.Warm || r.Stdout != "[]\n" {
			t.Errorf("round %d: files reached the next execution: %q %q (warm %v)", round, r.Stdout, r.Stderr, r.Warm)
		}
		waitIdle(t, s, s.Key, 1)
		if r := cached(t, c, look); r.Stdout != "[]\n" {
			t.Errorf("round %d: after a quiet execution: %q %q", round, r.Stdout, r.Stderr)
		}
	}
}

// TestCachedBackToBack sends cached executions one after another without pause,
// some leaving a background process for the reset to kill while the zygote forks
// their replacements: each must succeed in a fresh process, and a single client
// must be served by a single warm sandbox (a request waits for the sandbox being
// reset rather than boot another). The previous execution's process (a
// standby that reported its exit and then ends) is gone when the next runs.
func TestCachedBackToBack(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	pids := map[string]int{}
	prev := "0"
	const n = 30
	for i := range n {
		code := "import os\n"
		if i%3 == 0 {
			code += "import subprocess\nsubprocess.Popen(['sleep', '3600'])\n"
		}
		code += "print(os.getpid(), os.path.exists('/proc/" + prev + "/status'))"
		res := cached(t, c, code)
		if res.Status != "succeeded" || res.ExitCode != 0 {
			t.Fatalf("execution %d: status %s exit %d error %q stderr %q", i, res.Status, res.ExitCode, res.Error, res.Stderr)
		}
		pid, alive, _ := strings.Cut(strings.TrimSpace(res.Stdout), " ")
		if alive != "False" {
			t.Errorf("execution %d: the previous execution's process %s is still there: %q", i, prev, res.Stdout)
		}
		if first, ok := pids[pid]; ok {
			t.Fatalf("executions %d and %d ran in the same process (pid %s)", first, i, pid)
		}
		pids[pid] = i
		prev = pid
		if i > 0 && !res.Warm {
			t.Errorf("execution %d did not reuse the warm sandbox", i)
		}
	}
	p := pools(t, s, s.Key)
	if len(p.Pools) != 1 || p.Pools[0].Misses != 1 || p.Pools[0].Hits != n-1 || p.Pools[0].Retired != 0 {
		t.Errorf("one client back to back should use one warm sandbox: %+v", p.Pools)
	}
}

// TestCachedStdio checks the stdio a zygote standby is given ahead of its request
// (pipes the agent made when the standby was forked): stdin when the request has
// some and end-of-file at once when it has none, stdout and stderr apart, and the
// longest code a request may have, each run in a standby of the warm sandbox
// (which has ctypes preloaded; a new interpreter would not); and the identity
// and environment a standby's code gets.
func TestCachedStdio(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	cached(t, c, "print(1)") // boots the account's sandbox and its zygote
	const inStandby = "import sys\nprint('ctypes' in sys.modules)\n"
	tests := []struct {
		name           string
		code, stdin    string
		stdout, stderr string
	}{
		{"stdin", inStandby + "print(sys.stdin.read().upper())", "hello\nworld", "True\nHELLO\nWORLD\n", ""},
		{"no stdin", inStandby + "print(repr(sys.stdin.read()))", "", "True\n''\n", ""},
		{"stderr apart", inStandby + "print('err', file=sys.stderr)", "", "True\n", "err\n"},
		{"longest code", inStandby + "#" + strings.Repeat("x", engine.MaxCodeBytes-len(inStandby)-1), "", "True\n", ""},
	}
	for _, tt := range tests {
		waitIdle(t, s, s.Key, 1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: "python", Code: tt.code, Stdin: tt.stdin, TimeoutMS: 20000})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !res.Warm || res.Status != "succeeded" || res.Stdout != tt.stdout || res.Stderr != tt.stderr {
			t.Errorf("%s: warm %v status %s stdout %q (want %q) stderr %q (want %q) error %q",
				tt.name, res.Warm, res.Status, res.Stdout, tt.stdout, res.Stderr, tt.stderr, res.Error)
		}
	}
	// A standby takes the user's groups and the usual environment before its
	// request: the code sees exactly the request's identity and environment, in
	// os.environ and in the programs it runs, whether the request sets
	// variables or not.
	const env = inStandby + "import os, subprocess\nprint(os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups())\n" +
		"print(sorted(os.environ))\nsubprocess.run(['sh', '-c', 'echo \"${FOO-unset}\" $HOME $TZ; id -G'])"
	const usual = "['HOME', 'LANG', 'PATH', 'PYTHONUNBUFFERED', 'TERM', 'TZ', 'USER']"
	runStandbyCases(t, s, c, []standbyCase{
		{"usual environment", "python", env, "", "True\n1000 1000 1000 1000 []\n" + usual + "\nunset /home/user UTC\n1000\n", "", 0, nil, ""},
		{"request environment", "python", env, "", "True\n1000 1000 1000 1000 []\n['FOO', " + usual[1:] + "\nx y /tmp UTC\n1000\n", "", 0,
			map[string]string{"FOO": "x y", "HOME": "/tmp"}, ""},
		{"usual again", "python", env, "", "True\n1000 1000 1000 1000 []\n" + usual + "\nunset /home/user UTC\n1000\n", "", 0, nil, ""},
	})
}

// TestCachedJavaScript checks cached JavaScript and TypeScript run in node
// processes the agent started ahead of the request (node cannot fork; each
// execution still gets a process of its own), and that they behave as node -e:
// output apart, stdin, exit codes, an uncaught exception's message, the names
// node -e gives, and nothing of one execution in the next.
func TestCachedJavaScript(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	const inStandby = "console.log(process.execArgv[1].startsWith('// A node standby'), process.getuid());\n"
	runStandbyCases(t, s, c, []standbyCase{
		{"first", "javascript", inStandby + "globalThis.left = 1", "", "true 1000\n", "", 0, nil, ""},
		{"output apart", "javascript", inStandby + "console.error('err'); console.log(typeof left)", "", "true 1000\nundefined\n", "err", 0, nil, ""},
		{"stdin", "javascript", inStandby + "let d = ''; process.stdin.on('data', (c) => (d += c)).on('end', () => console.log(d.toUpperCase()))", "hi\nthere", "true 1000\nHI\nTHERE\n", "", 0, nil, ""},
		{"no stdin", "javascript", inStandby + "console.log(JSON.stringify(require('fs').readFileSync(0, 'utf8')))", "", "true 1000\n\"\"\n", "", 0, nil, ""},
		{"exit code", "javascript", inStandby + "process.exitCode = 3", "", "true 1000\n", "", 3, nil, ""},
		{"uncaught exception", "javascript", inStandby + "throw new Error('boom')", "", "true 1000\n", "Error: boom", 1, nil, ""},
		{"names of node -e", "javascript", inStandby + "const fs = 1, path = 2, req = 3; console.log(fs + path + req, __filename, typeof require('os').cpus, module.exports === exports)", "", "true 1000\n6 [eval] function true\n", "", 0, nil, ""},
		{"typescript", "typescript", inStandby + "interface P { x: number }\nconst p: P = { x: 20 };\nconsole.log(p.x + 1 as number)", "", "true 1000\n21\n", "", 0, nil, ""},
		// Module syntax: node -e runs it as an ES module (in a node of its own).
		{"top-level await", "javascript", "const v = await Promise.resolve(42); console.log(v, typeof require, process.getuid()); process.exitCode = 4", "", "42 undefined 1000\n", "", 4, nil, ""},
		{"import", "javascript", "import os from 'os'; console.log(typeof os.cpus)", "", "function\n", "", 0, nil, ""},
		{"await in an expression", "javascript", "console.log(await Promise.resolve(3), import.meta.url.startsWith('file:'))", "", "3 true\n", "", 0, nil, ""},
		{"a syntax error stays one", "javascript", "console.log((1)", "", "", "SyntaxError", 1, nil, ""},
		// A standby takes the user's groups and the usual environment before
		// its request: the code sees the request's, in process.env and in the
		// programs it runs.
		{"usual environment", "javascript", jsIdentity, "", "true 1000\n1000 1000 1000 1000 [1000]\n" + jsUsualEnv + "\nunset /home/user UTC\n1000\n", "", 0, nil, ""},
		{"request environment", "javascript", jsIdentity, "", "true 1000\n1000 1000 1000 1000 [1000]\n[\"FOO\"," + jsUsualEnv[1:] + "\nx y /tmp UTC\n1000\n", "", 0,
			map[string]string{"FOO": "x y", "HOME": "/tmp"}, ""},
		{"usual again", "javascript", jsIdentity, "", "true 1000\n1000 1000 1000 1000 [1000]\n" + jsUsualEnv + "\nunset /home/user UTC\n1000\n", "", 0, nil, ""},
	})
}

// jsIdentity prints, in a node standby, the process's identity (node's
// getgroups includes the effective gid), the names in its environment, and what
// a program it runs gets.
const jsIdentity = "console.log(process.execArgv[1].startsWith('// A node standby'), process.getuid());\n" +
	"console.log(process.getuid(), process.geteuid(), process.getgid(), process.getegid(), JSON.stringify(process.getgroups()));\n" +
	"console.log(JSON.stringify(Object.keys(process.env).sort()));\n" +
	"process.stdout.write(require('child_process').execSync('echo \"${FOO-unset}\" $HOME $TZ; id -G'));"

// jsUsualEnv is what jsIdentity prints of the usual environment.
const jsUsualEnv = `["HOME","LANG","PATH","PYTHONUNBUFFERED","TERM","TZ","USER"]`

// standbyCase is one cached execution and what it must give.
type standbyCase struct {
	name, language, code, stdin string
	stdout, stderrPart          string
	exit                        int
	env                         map[string]string
	dir                         string
}

// runStandbyCases runs each case in turn in the account's warm sandbox (all but
// the first must find it warm).
func runStandbyCases(t *testing.T, s *testserver.Server, c *client.Client, cases []standbyCase) {
	t.Helper()
	for i, tt := range cases {
		if i > 0 {
			waitIdle(t, s, s.Key, 1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: tt.language, Code: tt.code, Stdin: tt.stdin, Env: tt.env, WorkingDir: tt.dir, TimeoutMS: 20000})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if res.Stdout != tt.stdout || res.ExitCode != tt.exit || !strings.Contains(res.Stderr, tt.stderrPart) || (i > 0 && !res.Warm) {
			t.Errorf("%s: warm %v exit %d (want %d) stdout %q (want %q) stderr %q (want it to hold %q) error %q",
				tt.name, res.Warm, res.ExitCode, tt.exit, res.Stdout, tt.stdout, res.Stderr, tt.stderrPart, res.Error)
		}
	}
}

// TestCachedBash checks cached bash runs in a bash the agent started ahead of
// the request (one per execution), and behaves as bash -c: output apart, stdin,
// exit codes, errors, the names and environment bash -c gives, the request's
// environment and working directory, and nothing of one execution in the next.
// A request whose environment sets a variable bash reads only at start-up runs
// in a new bash, as does the first execution of a sandbox.
func TestCachedBash(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	// Whether this runs in a standby (its command line is the standby's script).
	const inStandby = `if [ "$(tr '\0' '\n' </proc/$$/cmdline | sed -n 2p)" = --norc ]; then echo standby $(id -u); else echo new $(id -u); fi` + "\n"
	runStandbyCases(t, s, c, []standbyCase{
		// The first execution of a sandbox starts bash itself (the standby is
		// still starting); the sandbox has one ready from then on.
		{"first", "bash", inStandby + "left=1; export LEFT=1; echo x > /tmp/left; sleep 60 &", "", "new 1000\n", "", 0, nil, ""},
		{"output apart", "bash", inStandby + "echo err >&2; echo ${left-unset} ${LEFT-unset}; ls /tmp; pgrep sleep || echo none", "", "standby 1000\nunset unset\nnone\n", "err", 0, nil, ""},
		{"stdin", "bash", inStandby + "tr a-z A-Z", "hi\nthere\n", "standby 1000\nHI\nTHERE\n", "", 0, nil, ""},
		{"no stdin", "bash", inStandby + "wc -c", "", "standby 1000\n0\n", "", 0, nil, ""},
		{"exit code", "bash", inStandby + "exit 3", "", "standby 1000\n", "", 3, nil, ""},
		{"not found", "bash", inStandby + "nosuchcommand", "", "standby 1000\n", "bash: line 2: nosuchcommand: command not found", 127, nil, ""},
		{"names of bash -c", "bash", inStandby + `echo "$0 $# $SHLVL $PWD ${BASH_EXECUTION_STRING: -12}"; declare -p OLDPWD; echo $LINENO`, "",
			"standby 1000\nbash 0 1 /workspace echo $LINENO\ndeclare -x OLDPWD\n2\n", "", 0, nil, ""},
		{"environment and directory", "bash", inStandby + `echo "$FOO" $PWD; env | grep -c '^FOO='`, "",
			"standby 1000\na b'c $HOME /tmp\n1\n", "", 0, map[string]string{"FOO": "a b'c $HOME"}, "/tmp"},
		// The standby starts with the usual locale loaded; a request may set another.
		{"usual locale", "bash", inStandby + "echo $LANG; locale | head -1; printf '\\xc3\\xa9' | wc -m", "", "standby 1000\nC.UTF-8\nLANG=C.UTF-8\n1\n", "", 0, nil, ""},
		{"another locale", "bash", inStandby + "echo $LANG; locale | head -1; printf '\\xc3\\xa9' | wc -m", "", "standby 1000\nC\nLANG=C\n2\n", "", 0, map[string]string{"LANG": "C"}, ""},
		{"a start-up variable", "bash", inStandby + "echo $SHLVL", "", "new 1000\n5\n", "", 0, map[string]string{"SHLVL": "4"}, ""},
		{"after the fallback", "bash", inStandby + "echo ok", "", "standby 1000\nok\n", "", 0, nil, ""},
	})
}

// TestCachedBashStandbyFresh checks a bash standby (it runs as the sandbox user
// while it waits, bash cannot drop root) never serves an execution after sharing
// the sandbox with another one: code in a Python execution of the same sandbox
// writes commands into the request pipe of the bash standby waiting there, and
// the next bash execution does not run them.
func TestCachedBashStandbyFresh(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	first := true
	run := func(language, code string) *client.ExecuteResult {
		t.Helper()
		if !first {
			waitIdle(t, s, s.Key, 1)
		}
		first = false
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: language, Code: code, TimeoutMS: 20000})
		if err != nil || res.Status != "succeeded" {
			t.Fatalf("%s execution: %+v %v", language, res, err)
		}
		return res
	}
	run("python", "print(1)")
	run("bash", "echo 1") // starts the sandbox's bash standbys
	run("bash", "echo 1")
	inject := `import os
n = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if b"printf ready" in open("/proc/%s/cmdline" % pid, "rb").read():
            fd = os.open("/proc/%s/fd/4" % pid, os.O_WRONLY)
            os.write(fd, b"echo INJECTED\n")
            n += 1
    except OSError:
        pass
print(n)`
	if res := run("python", inject); res.Stdout == "0\n" {
		t.Fatalf("no bash standby was waiting in the sandbox to test with: %+v", res)
	}
	if res := run("bash", `tr '\0' '\n' </proc/$$/cmdline | sed -n 2p`); res.Stdout != "--norc\n" || strings.Contains(res.Stdout+res.Stderr, "INJECTED") || !res.Warm {
		t.Errorf("the bash execution after the Python one: warm %v stdout %q stderr %q (want a fresh standby: --norc, nothing injected)", res.Warm, res.Stdout, res.Stderr)
	}
}

// TestCachedControlReplaced: code that puts a socket or file of its own on the
// number of its standby's control socket neither gets the standby's end report
// nor keeps the standby waiting; the execution ends as the code did.
func TestCachedControlReplaced(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	run := func(language, code string) *client.ExecuteResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: language, Code: code, TimeoutMS: 10000})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// A socket whose other end is the code's own: a wait for the agent on it
	// would last until the timeout.
	python := `import os, socket, stat, sys
def is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
control = [fd for fd in range(3, 1024) if is_socket(fd)]
mine, theirs = socket.socketpair()
for fd in control:
    os.dup2(mine.fileno(), fd)
print('ctypes' in sys.modules, len(control))
sys.exit(3)`
	for range 2 {
		res := run("python", python)
		if res.Stdout != "True 1\n" || res.ExitCode != 3 || res.TimedOut {
			t.Errorf("python, control socket replaced: exit %d timed out %v stdout %q stderr %q (want True 1, in a standby, exit 3)", res.ExitCode, res.TimedOut, res.Stdout, res.Stderr)
		}
		waitIdle(t, s, s.Key, 1)
	}
	// A file on descriptor 3 (a node standby's control socket): what the code
	// finds in it at its exit is its own, not a report.
	node := `const fs = require('fs');
const out = fs.openSync('/proc/self/fd/1', 'w');
fs.closeSync(3);
const mine = fs.openSync('/tmp/mine', 'w+');
process.on('exit', () => fs.writeSync(out, JSON.stringify([mine, fs.readFileSync('/tmp/mine', 'utf8')]) + '\n'));
process.exitCode = 4;`
	for range 2 {
		res := run("javascript", node)
		if res.Stdout != "[3,\"\"]\n" || res.ExitCode != 4 || res.TimedOut {
			t.Errorf("javascript, control socket replaced: exit %d timed out %v stdout %q stderr %q (want [3,\"\"], exit 4)", res.ExitCode, res.TimedOut, res.Stdout, res.Stderr)
		}
		waitIdle(t, s, s.Key, 1)
	}
}

// TestCachedStandbysOutOfReach checks user code cannot reach the zygote's
// standby processes (they stay root until they take a request): after an
// execution SIGKILLs every process it can, the next one still runs in a standby
// forked from the zygote (which preloads ctypes; a new interpreter would not).
// Standbys that had dropped to the user ahead would die here.
func TestCachedStandbysOutOfReach(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	if res := cached(t, c, "print(1)"); res.Status != "succeeded" { // the zygote and its standbys are up
		t.Fatalf("first execution: %+v", res)
	}
	waitIdle(t, s, s.Key, 1)
	killAll := "import os, signal\nn = 0\nfor p in os.listdir('/proc'):\n    if p.isdigit() and int(p) not in (1, os.getpid()):\n" +
		"        try:\n            os.kill(int(p), signal.SIGKILL)\n            n += 1\n        except OSError:\n            pass\nprint(n)"
	res := cached(t, c, killAll)
	if res.Status != "succeeded" || res.Stdout != "0\n" {
		t.Fatalf("user code killed processes of the sandbox (count in stdout): %+v", res)
	}
	waitIdle(t, s, s.Key, 1)
	res = cached(t, c, "import sys\nprint('ctypes' in sys.modules)")
	if res.Status != "succeeded" || !res.Warm || res.Stdout != "True\n" {
		t.Errorf("after kill -1 the next execution did not run in a zygote standby: warm %v stdout %q stderr %q", res.Warm, res.Stdout, res.Stderr)
	}
}

// TestCachedTenants checks warm sandboxes are never shared between accounts.
func TestCachedTenants(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	keyA := s.NewKey(ctx, "execute")
	a, b := s.ClientWithKey(keyA), s.ClientWithKey(s.NewKey(ctx, "execute"))
	// A marks its sandbox's kernel state (hostname is per sandbox and survives Reset).
	res := cached(t, a, "import socket, os\nprint(open('/proc/sys/kernel/random/boot_id').read().strip())")
	bootA := strings.TrimSpace(res.Stdout)
	waitIdle(t, s, keyA, 1)
	for i := range 3 {
		res := cached(t, b, "print(open('/proc/sys/kernel/random/boot_id').read().strip())")
		if strings.TrimSpace(res.Stdout) == bootA {
			t.Fatalf("account B ran in account A's sandbox (execution %d)", i)
		}
		if i == 0 && res.Warm {
			t.Errorf("B's first cached execution was warm: it can only have been A's sandbox")
		}
	}
	waitIdle(t, s, keyA, 1)
	res = cached(t, a, "print(open('/proc/sys/kernel/random/boot_id').read().strip())")
	if !res.Warm || strings.TrimSpace(res.Stdout) != bootA {
		t.Errorf("A did not get its own warm sandbox back: warm %v boot %q want %q", res.Warm, res.Stdout, bootA)
	}
	// Each account sees only its own pool.
	if p := pools(t, s, s.NewKey(ctx, "execute")); len(p.Pools) != 0 {
		t.Errorf("a new account sees pools: %+v", p.Pools)
	}
}

// TestCachedRetire checks an execution that times out or is killed by a signal
// retires its sandbox instead of returning it to the pool.
func TestCachedRetire(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	const bootID = "print(open('/proc/sys/kernel/random/boot_id').read().strip(), flush=True)\n"
	cached(t, c, bootID) // a warm sandbox in the pool
	waitIdle(t, s, s.Key, 1)
	// Filling the memory limit takes a while under gVisor on a busy machine:
	// the out-of-memory case has time to reach it.
	for _, tc := range []struct {
		name, code string
		timeoutMS  int
	}{
		{"timeout", bootID + "while True: pass", 1000},
		{"signal", bootID + "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", 1000},
		{"out of memory", bootID + "a = []\nwhile True: a.append(bytearray(10 << 20))", 30000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retired := pools(t, s, s.Key).Pools[0].Retired
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: "python", Code: tc.code, TimeoutMS: tc.timeoutMS})
			if err != nil {
				t.Fatal(err)
			}
			broken := strings.TrimSpace(res.Stdout)
			if !res.Warm || res.Status == "succeeded" || broken == "" {
				t.Fatalf("the breaking execution: %+v", res)
			}
			// The host's OOM killer may kill the process and leave the sandbox
			// running: the answer says what it was all the same.
			if oom := tc.name == "out of memory"; res.OOMKilled != oom || oom && !strings.Contains(res.Error, "memory limit exceeded") {
				t.Errorf("oom_killed %v, error %q after a %s", res.OOMKilled, res.Error, tc.name)
			}
			waitIdle(t, s, s.Key, 0)
			if got := pools(t, s, s.Key).Pools[0].Retired; got != retired+1 {
				t.Errorf("retired went from %d to %d after a %s", retired, got, tc.name)
			}
			for range 3 {
				res := cached(t, c, bootID)
				if strings.TrimSpace(res.Stdout) == broken {
					t.Fatalf("the sandbox was reused after a %s", tc.name)
				}
				waitIdle(t, s, s.Key, 1)
			}
		})
	}
}

// TestCachedConcurrency runs 50 concurrent cached executions; each must get its own
// output and exit code.
func TestCachedConcurrency(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: "python", TimeoutMS: 60000,
				Code: fmt.Sprintf("import sys\nprint('out-%d')\nprint('err-%d', file=sys.stderr)\nsys.exit(%d)", i, i, i%7)})
			switch {
			case err != nil:
				errs <- err
			case res.Stdout != fmt.Sprintf("out-%d\n", i) || res.Stderr != fmt.Sprintf("err-%d\n", i) || res.ExitCode != i%7:
				errs <- fmt.Errorf("request %d: stdout %q stderr %q exit %d", i, res.Stdout, res.Stderr, res.ExitCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestZygoteAsPythonC: code run by a process forked from the Python zygote
// (cached, and ephemeral from the stock) ends as `python3 -c` does — threads
// that are not daemons finish, atexit functions run, a traceback shows the
// code's frames only, SystemExit's code is the status — checked against this
// machine's python3, which the host image's sandboxes run. The process's stdio
// can be opened again by name, in Python and in a shell.
func TestZygoteAsPythonC(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	for _, code := range []string{
		"import threading, time, atexit\natexit.register(lambda: print('atexit ran'))\nthreading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\nprint('main done')",
		"def f():\n    raise ValueError('boom')\nf()",
		"import atexit, sys\natexit.register(lambda: print('bye'))\nopen('/dev/stderr', 'w').write('to stderr\\n')\nsys.exit(3)",
		"import concurrent.futures\nconcurrent.futures.ThreadPoolExecutor().submit(print, 'submitted')",
		"raise SystemExit('a message')",
	} {
		cmd := exec.Command("python3", "-c", code)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		exit := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			exit = ee.ExitCode()
		}
		for _, mode := range []string{"cached", "ephemeral"} {
			res := execute(t, s, client.ExecuteRequest{Mode: mode, Language: "python", Code: code})
			if res.ExitCode != exit || res.Stdout != stdout.String() || res.Stderr != stderr.String() {
				t.Errorf("%s %q: exit %d, stdout %q, stderr %q; python3 -c: exit %d, stdout %q, stderr %q",
					mode, code, res.ExitCode, res.Stdout, res.Stderr, exit, stdout.String(), stderr.String())
			}
		}
	}
	for _, mode := range []string{"cached", "ephemeral"} {
		res := execute(t, s, client.ExecuteRequest{Mode: mode, Language: "bash", Code: "echo err > /dev/stderr; echo out | tee /dev/stdout"})
		if res.ExitCode != 0 || res.Stdout != "out\nout\n" || res.Stderr != "err\n" {
			t.Errorf("%s: a shell writing to /dev/stdout and /dev/stderr: %+v", mode, res)
		}
	}
}

// TestPoolPerMemory: a sandbox's memory size is set at boot for what the code
// sees of it (/proc/meminfo, the sizes of /tmp and /dev/shm, held in it), so a
// request is served only by a warm or stocked sandbox of its own memory limit:
// filling /tmp is ENOSPC, never the memory limit, whatever the sandbox served
// before.
func TestPoolPerMemory(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	const sizes = "grep MemTotal /proc/meminfo | tr -s ' '; df -m /tmp /dev/shm | tail -2 | tr -s ' ' | cut -d ' ' -f 2,6"
	for _, tc := range []struct {
		mode   string
		memory int
		want   string
	}{
		{"cached", 128, "MemTotal: 131072 kB\n32 /tmp\n32 /dev/shm\n"},
		{"cached", 1024, "MemTotal: 1048576 kB\n256 /tmp\n64 /dev/shm\n"},
		{"cached", 128, "MemTotal: 131072 kB\n32 /tmp\n32 /dev/shm\n"},    // its pool's, warm
		{"ephemeral", 128, "MemTotal: 131072 kB\n32 /tmp\n32 /dev/shm\n"}, // not the stock's 512 MB
		{"ephemeral", 512, "MemTotal: 524288 kB\n128 /tmp\n64 /dev/shm\n"},
	} {
		res := execute(t, s, client.ExecuteRequest{Mode: tc.mode, Language: "bash", Code: sizes, Resources: &client.Resources{MemoryMB: tc.memory}})
		if res.ExitCode != 0 || res.Stdout != tc.want {
			t.Errorf("%s at %d MB: exit %d, %q (stderr %q), want %q", tc.mode, tc.memory, res.ExitCode, res.Stdout, res.Stderr, tc.want)
		}
		if tc.mode == "cached" {
			waitIdle(t, s, s.Key, 1)
		}
	}
	for _, mode := range []string{"ephemeral", "cached"} {
		res := execute(t, s, client.ExecuteRequest{Mode: mode, Language: "bash", Code: "dd if=/dev/zero of=/tmp/f bs=1M count=200 status=none", Resources: &client.Resources{MemoryMB: 128}})
		if res.ExitCode != 1 || res.OOMKilled || !strings.Contains(res.Stderr, "No space left on device") {
			t.Errorf("%s: 200 MB into /tmp at 128 MB: %+v", mode, res)
		}
	}
	// An instance's own disk size is not the stock's either (the stock's
	// sandboxes have 512 MB and the default 128 MB).
	inst := str(mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"resources": map[string]any{"memory_mb": 512, "disk_mb": 200}})["id"])
	if out := instExec(t, s, inst, map[string]any{"command": "df -m /tmp | tail -1 | tr -s ' ' | cut -d ' ' -f 2"}); str(out["stdout"]) != "200\n" {
		t.Errorf("/tmp of an instance with a 200 MB disk: %v", out["stdout"])
	}
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/instances/"+inst, nil)
	var memories []int
	for _, p := range pools(t, s, s.Key).Pools {
		memories = append(memories, p.MemoryMB)
	}
	if fmt.Sprint(memories) != "[128 1024]" {
		t.Errorf("pools of memory limits %v, want [128 1024]", memories)
	}
}

// TestPoolManagement checks prewarm, pool sizes, idle reaping and the 503 answer
// when every sandbox is busy.
func TestPoolManagement(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{
		"FAAS_STOCK=0", "FAAS_MAX_SANDBOXES=3", "FAAS_POOL_IDLE_TIMEOUT=2s",
	}})
	ctx := context.Background()
	status, b, _ := s.Do(ctx, "POST", "/api/v1/prewarm", []byte(`{"language":"python","count":2}`))
	if status != http.StatusOK || !strings.Contains(string(b), `"added":2`) {
		t.Fatalf("prewarm: %d %s", status, b)
	}
	if p := pools(t, s, s.Key); len(p.Pools) != 1 || p.Pools[0].Idle != 2 || p.Pools[0].Boots != 2 {
		t.Fatalf("after prewarm: %+v", p.Pools)
	}
	res := cached(t, s.Client(), "print('warm')")
	if !res.Warm || res.Stdout != "warm\n" {
		t.Errorf("prewarmed sandbox not used: %+v", res)
	}
	status, b, _ = s.Do(ctx, "POST", "/api/v1/prewarm", []byte(`{"language":"python","count":100}`))
	if status != http.StatusBadRequest {
		t.Errorf("prewarm of 100: %d %s", status, b)
	}

	// Idle sandboxes are reaped after the idle timeout.
	deadline := time.Now().Add(20 * time.Second)
	for {
		p := pools(t, s, s.Key)
		if p.Pools[0].Idle == 0 && p.Pools[0].Reaped >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle sandboxes not reaped: %+v", p.Pools)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Three long executions fill the cap of three sandboxes; a fourth is refused
	// with 503 and Retry-After rather than queued.
	other := s.NewKey(ctx, "execute")
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			// The reaped sandboxes may still be on their way out: the request
			// waits for them to be gone rather than being refused.
			res, err := s.Client().Execute(cctx, client.ExecuteRequest{Language: "python", Code: "import time; time.sleep(6)", TimeoutMS: 30000})
			if err != nil || res.ExitCode != 0 {
				t.Errorf("a long execution within the cap: %+v, %v", res, err)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	status, b, hdr := s.DoWithKey(ctx, other, "POST", "/api/v1/execute", []byte(`{"mode":"cached","code":"print(1)"}`))
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(string(b), "busy") {
		t.Errorf("at capacity: %d Retry-After %q %s", status, hdr.Get("Retry-After"), b)
	}
	wg.Wait()
	// Capacity is back once they finish.
	var ok bool
	for range 40 {
		status, _, _ = s.DoWithKey(ctx, other, "POST", "/api/v1/execute", []byte(`{"mode":"cached","code":"print(1)"}`))
		if status == http.StatusOK {
			ok = true
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !ok {
		t.Errorf("capacity did not come back: %d", status)
	}

	// Eight requests at once, with no sandbox running: the cap counts sandboxes
	// still booting, so three get one (the idle warm sandbox is evicted for one of
	// them) and five are refused at once; never more than three sandboxes live.
	live := func() int {
		var h struct{ Sandboxes struct{ Live int } }
		if _, b, _ := s.DoWithKey(ctx, "", "GET", "/health", nil); json.Unmarshal(b, &h) != nil {
			t.Fatalf("health: %s", b)
		}
		return h.Sandboxes.Live
	}
	waitIdle(t, s, other, 1)
	for i := 0; live() > 1; i++ { // the ephemeral ones above are destroyed in the background
		if i > 100 {
			t.Fatalf("%d sandboxes still live", live())
		}
		time.Sleep(100 * time.Millisecond)
	}
	codes := make(chan int, 8)
	stop := make(chan struct{})
	maxLive := make(chan int)
	go func() {
		top := 0
		for {
			select {
			case <-stop:
				maxLive <- top
				return
			case <-time.After(20 * time.Millisecond):
			}
			var h struct{ Sandboxes struct{ Live int } }
			if _, b, _ := s.DoWithKey(ctx, "", "GET", "/health", nil); json.Unmarshal(b, &h) == nil {
				top = max(top, h.Sandboxes.Live)
			}
		}
	}()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, _ := s.Do(ctx, "POST", "/api/v1/execute", []byte(`{"code":"import time; time.sleep(3)","timeout_ms":30000}`))
			codes <- status
		}()
	}
	wg.Wait()
	close(stop)
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[http.StatusOK] != 3 || n[http.StatusServiceUnavailable] != 5 {
		t.Errorf("eight at once under a cap of three: %v (status: count)", n)
	}
	if top := <-maxLive; top > 3 {
		t.Errorf("%d sandboxes were live at once under a cap of three", top)
	}

	// Three clients each sending ephemeral requests one after another, at the cap
	// of three: each request's sandbox is destroyed after its answer, and the
	// client's next request waits for it to be gone rather than being refused.
	for c := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				status, b, _ := s.DoWithKey(ctx, other, "POST", "/api/v1/execute", []byte(`{"code":"print(1)"}`))
				if status != http.StatusOK {
					t.Errorf("client %d, request %d, one after another within the cap: %d %s", c, i, status, b)
				}
			}
		}()
	}
	wg.Wait()
}

// TestLongestCodeEscaped checks code of the largest size a request may have,
// made of the characters JSON escapes longest (the exec request to the agent
// then passes one frame's usual limit), runs in every way code reaches a process:
// a zygote standby, a bash standby, a new interpreter's argument, a command.
func TestLongestCodeEscaped(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	c := s.Client()
	for _, tc := range []struct {
		name    string
		req     client.ExecuteRequest
		comment string // starts a comment in the language
	}{
		{"python cached", client.ExecuteRequest{Mode: "cached", Language: "python", Code: "print('ok')"}, "\n#"},
		{"python ephemeral", client.ExecuteRequest{Language: "python", Code: "print('ok')"}, "\n#"},
		{"bash cached", client.ExecuteRequest{Mode: "cached", Language: "bash", Code: "echo ok"}, "\n#"},
		{"bash ephemeral", client.ExecuteRequest{Language: "bash", Code: "echo ok"}, "\n#"},
		{"javascript ephemeral", client.ExecuteRequest{Language: "javascript", Code: "console.log('ok')"}, "\n//"},
		{"command", client.ExecuteRequest{Command: "echo ok"}, " #"},
	} {
		for _, fill := range []string{"<>&", "\x01\x02\x1f"} {
			req := tc.req
			prefix := req.Code + req.Command + tc.comment
			long := prefix + strings.Repeat(fill, engine.MaxCodeBytes)[:engine.MaxCodeBytes-len(prefix)]
			if req.Command != "" {
				req.Command = long
			} else {
				req.Code = long
			}
			req.TimeoutMS = 30000
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			res, err := c.Execute(ctx, req)
			cancel()
			if err != nil {
				t.Fatalf("%s, %q: %v", tc.name, fill, err)
			}
			if res.Status != "succeeded" || res.Stdout != "ok\n" {
				t.Errorf("%s, %q: status %s stdout %q stderr %.200q error %q", tc.name, fill, res.Status, res.Stdout, res.Stderr, res.Error)
			}
		}
	}
}
