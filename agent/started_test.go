package agent

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// runBash runs code as `bash -c` would with env and dir, and as a bash standby
// started with the environment start does (bashStandbyScript, request from
// bashRequest), on this machine's bash, and returns what each printed and its
// exit code.
func runBash(t *testing.T, code string, env, start []string, dir, stdin string) (direct, standby string) {
	t.Helper()
	run := func(cmd *exec.Cmd, feed func()) string {
		var out, errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if feed != nil {
			feed()
		}
		err := cmd.Wait()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return "stdout " + out.String() + "|stderr " + errb.String() + "|exit " + strconv.Itoa(code)
	}
	c := exec.Command("bash", "-c", code)
	c.Env, c.Dir = env, dir
	direct = run(c, nil)

	req, err := bashRequest(ExecRequest{Code: code, Env: env, Dir: dir}, start)
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, _ := os.Pipe()
	reqR, reqW, _ := os.Pipe()
	s := exec.Command("bash", "--norc", "--noprofile", "-c", bashStandbyScript, "bash")
	s.Env, s.Dir, s.ExtraFiles = append([]string{}, start...), "/", []*os.File{readyW, reqR}
	standby = run(s, func() {
		readyW.Close()
		reqR.Close()
		if b, _ := io.ReadAll(readyR); string(b) != "ready" {
			t.Errorf("the standby said %q, not ready", b)
		}
		reqW.Write(req)
		reqW.Close()
	})
	return direct, standby
}

// TestBashStandbyAsBashC checks a bash standby runs code as bash -c does.
func TestBashStandbyAsBashC(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed:", err)
	}
	dir := t.TempDir() + "/a dir 'quoted'\nand a newline"
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8",
		"QUOTES=it's \"x\" $HOME `id` \\n", "LINES=one\ntwo\n", "EMPTY="}
	for _, code := range []string{
		"echo 1", "echo a\nnosuchcommand", "echo $LINENO\necho $LINENO", "exit 3",
		`echo "$0 $# $SHLVL" "$BASH_EXECUTION_STRING"`, `printf '%s|' "$QUOTES" "$LINES" "$EMPTY"`,
		`pwd; echo "$PWD"; declare -p OLDPWD`, "env | sort", "cat <<EOF\nhi $HOME\nEOF",
		"set -e; false; echo never", "trap 'echo bye' EXIT; echo hi", "f() { nosuch; }; f",
		"read -r x; echo got $x", "return 4", "echo $- $_", "ls /proc/self/fd | wc -l",
	} {
		direct, standby := runBash(t, code, env, bashStartEnv(env), dir, "input line\n")
		if direct != standby {
			t.Errorf("%q:\n  bash -c: %q\n  standby: %q", code, direct, standby)
		}
	}
	// A standby started with the usual locale runs requests with another one,
	// or none, as bash -c does.
	start := bashStartEnv([]string{"PATH=/bin", "LANG=C.UTF-8", "LC_TIME=C.UTF-8", "LC_X-Y=1"})
	if len(start) != 2 {
		t.Fatalf("bashStartEnv kept %q, want LANG and LC_TIME", start)
	}
	for _, env := range [][]string{
		{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_TIME=C.UTF-8"},
		{"PATH=/usr/bin:/bin", "LANG=C"},
		{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8"},
		{"PATH=/usr/bin:/bin"},
	} {
		code := "env | sort; locale; printf '%s\\n' \"${LANG-unset}\" \"${LC_TIME-unset}\" $'\\xc3\\xa9' | wc -m"
		direct, standby := runBash(t, code, env, start, dir, "")
		if direct != standby {
			t.Errorf("%q:\n  bash -c: %q\n  standby: %q", env, direct, standby)
		}
	}
}

// TestBashRequestRefuses checks the environments a standby cannot give as bash
// -c would (the request then runs in a new bash).
func TestBashRequestRefuses(t *testing.T) {
	for _, env := range [][]string{{"SHLVL=3"}, {"BASH_ENV=/x"}, {"IFS=:"}, {"A-B=1"}, {"1X=1"},
		{"BASH_FUNC_f%%=() { echo; }"}, {"PWD=/x"}} {
		if _, err := bashRequest(ExecRequest{Code: "true", Env: env, Dir: "/"}, nil); !errors.Is(err, errStartupVars) {
			t.Errorf("%q: %v, want errStartupVars", env, err)
		}
	}
	for _, n := range []string{"A", "_x", "a1", "PATH"} {
		if _, err := bashRequest(ExecRequest{Code: "true", Env: []string{n + "=v"}, Dir: "/"}, nil); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}
