package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	stopAfterExecID := func(p []string) bool { return len(p) == 2 && p[0] == "exec" }
	tests := []struct {
		name      string
		args      []string
		stop      func([]string) bool
		wantPos   []string
		wantFlags string // name=N public=B count=C
	}{
		{"flags first", []string{"--name", "web", "--public", "i-1", "8000"}, nil,
			[]string{"i-1", "8000"}, "web true 0"},
		{"flags after positionals", []string{"i-1", "8000", "--name", "web", "--public"}, nil,
			[]string{"i-1", "8000"}, "web true 0"},
		{"flags between", []string{"i-1", "--name=web", "8000", "-public", "-count", "2"}, nil,
			[]string{"i-1", "8000"}, "web true 2"},
		{"dashes end the flags", []string{"i-1", "--", "--name", "web"}, nil,
			[]string{"i-1", "--name", "web"}, " false 0"},
		{"dashes as a flag's value", []string{"--name", "--", "i-1", "--public"}, nil,
			[]string{"i-1"}, "-- true 0"},
		{"dashes after a boolean", []string{"--public", "--", "--count"}, nil,
			[]string{"--count"}, " true 0"},
		{"a lone dash is positional", []string{"-", "--count", "1"}, nil,
			[]string{"-"}, " false 1"},
		{"stop: the rest is a command line", []string{"--count", "1", "exec", "i-1", "ls", "-la", "--name", "x"}, stopAfterExecID,
			[]string{"exec", "i-1", "ls", "-la", "--name", "x"}, " false 1"},
		{"stop drops one dashes", []string{"--public", "exec", "i-1", "--", "ls", "--", "-l"}, stopAfterExecID,
			[]string{"exec", "i-1", "ls", "--", "-l"}, " true 0"},
		{"nothing", nil, nil, nil, " false 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("faas test", "usage: faas test", io.Discard)
			name := fs.String("name", "", "")
			public := fs.Bool("public", false, "")
			count := fs.Int("count", 0, "")
			pos, err := parseFlags(fs, tt.args, tt.stop)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(pos, "|") != strings.Join(tt.wantPos, "|") {
				t.Errorf("positional = %q, want %q", pos, tt.wantPos)
			}
			if got := fmt.Sprintf("%s %v %d", *name, *public, *count); got != tt.wantFlags {
				t.Errorf("flags = %q, want %q", got, tt.wantFlags)
			}
		})
	}
}

func TestParseFlagsHelpAndErrors(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		var out bytes.Buffer
		fs := newFlagSet("faas test", "usage: faas test THING", &out)
		fs.String("name", "", "the `name` of it")
		_, err := parseFlags(fs, []string{"thing", arg}, nil)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: err = %v, want flag.ErrHelp", arg, err)
		}
		if got := out.String(); !strings.HasPrefix(got, "usage: faas test THING\n\nflags:\n  -name name") {
			t.Errorf("%s printed %q", arg, got)
		}
	}

	var out bytes.Buffer
	fs := newFlagSet("faas test", "usage: faas test", &out)
	_, err := parseFlags(fs, []string{"thing", "--nope"}, nil)
	var ue usageError
	if !errors.As(err, &ue) || err.Error() != "flag provided but not defined: -nope (see faas test -h)" {
		t.Errorf("err = %v (%T)", err, err)
	}
	if out.Len() != 0 {
		t.Errorf("a mistake printed %q (main prints the error)", out.String())
	}
}

// stdio runs f with os.Stdout and os.Stderr going to files and returns what
// it wrote to each.
func stdio(t *testing.T, f func() error) (stdout, stderr string, err error) {
	t.Helper()
	dir := t.TempDir()
	o, _ := os.Create(dir + "/stdout")
	e, _ := os.Create(dir + "/stderr")
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = o, e
	defer func() { os.Stdout, os.Stderr = oldOut, oldErr; o.Close(); e.Close() }()
	err = f()
	bo, _ := os.ReadFile(o.Name())
	be, _ := os.ReadFile(e.Name())
	return string(bo), string(be), err
}

// apiRecorder is an httptest server standing in for the API: it records the
// last request and answers each "METHOD /path" with a canned body.
type apiRecorder struct {
	*httptest.Server
	method, path string
	body         map[string]any
}

func newAPIRecorder(t *testing.T, answers map[string]string) *apiRecorder {
	a := &apiRecorder{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.method, a.path, a.body = r.Method, r.URL.Path, nil
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &a.body); err != nil {
				t.Errorf("%s %s: body %q: %v", r.Method, r.URL.Path, b, err)
			}
		}
		answer, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no such route in the test","code":"not_found"}`)
			return
		}
		io.WriteString(w, answer)
	}))
	t.Cleanup(a.Close)
	return a
}

// TestSubcommandFlagsAfterArguments runs client commands with their flags
// after the positional arguments, as their usage texts show them.
func TestSubcommandFlagsAfterArguments(t *testing.T) {
	srv := newAPIRecorder(t, map[string]string{
		"POST /api/v1/instances/i-1/expose":   `{"name":"web","port":8000,"public":true,"url":"http://x/web"}`,
		"POST /api/v1/snapshots/sn-1/restore": `{"id":"cli2","language":"python"}`,
		"POST /api/v1/instances/i-1/exec":     `{"status":"succeeded","exit_code":0,"stdout":"ok\n"}`,
		"POST /api/v1/snapshots":              `{"id":"sn-2"}`,
	})
	conn := []string{"--endpoint", srv.URL, "--api-key", "k"}
	tests := []struct {
		name     string
		run      func(context.Context, []string) error
		args     []string
		wantPath string
		wantBody string
		wantOut  string
	}{
		{"expose --name --public", runInstances, append([]string{"expose", "i-1", "8000", "--name", "web", "--public"}, conn...),
			"/api/v1/instances/i-1/expose", `{"name":"web","port":8000,"public":true}`, "http://x/web\n"},
		{"restore --session", runSnapshots, append([]string{"restore", "sn-1", "--session", "cli2"}, conn...),
			"/api/v1/snapshots/sn-1/restore", `{"session_id":"cli2"}`, "cli2\n"},
		{"create, flags first", runSnapshots, append(conn, "create", "--session", "s1", "--name", "n"),
			"/api/v1/snapshots", `{"name":"n","session_id":"s1"}`, "sn-2\n"},
		{"exec keeps the command's flags", runInstances, append(conn, "exec", "i-1", "ls", "-la", "--name", "x"),
			"/api/v1/instances/i-1/exec", `{"command":"ls -la --name x"}`, "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := stdio(t, func() error { return tt.run(context.Background(), tt.args) })
			if err != nil {
				t.Fatal(err)
			}
			if srv.method != http.MethodPost || srv.path != tt.wantPath {
				t.Errorf("request %s %s, want POST %s", srv.method, srv.path, tt.wantPath)
			}
			if got, _ := json.Marshal(srv.body); string(got) != tt.wantBody {
				t.Errorf("body = %s, want %s", got, tt.wantBody)
			}
			if out != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
		})
	}
}

// TestHelp checks that -h, --help and `faas help CMD` print the command's
// usage and flags and succeed, for every command and subcommand.
func TestHelp(t *testing.T) {
	var calls [][]string
	for _, c := range commands() {
		calls = append(calls, []string{c.name, "-h"}, []string{c.name, "--help"}, []string{"help", c.name})
	}
	for _, sub := range []string{"instances create", "instances expose i-1 80", "snapshots restore", "keys list", "images import", "instances help", "snapshots help"} {
		calls = append(calls, append(strings.Fields(sub), "-h"))
	}
	for _, args := range calls {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errOut, err := stdio(t, func() error { return dispatch(context.Background(), args) })
			if err != nil && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("err = %v (%T), want success", err, err)
			}
			name := args[0]
			if name == "help" {
				name = args[1]
			}
			if out != "" || !strings.HasPrefix(errOut, "usage: faas "+name) || strings.Contains(errOut, "help requested") {
				t.Errorf("stdout %q, stderr:\n%s", out, errOut)
			}
			if name != "version" && !strings.Contains(errOut, "\nflags:\n") {
				t.Errorf("no flags in:\n%s", errOut)
			}
		})
	}
}

func TestSubcommandUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"instances", "expose", "i-1"},
		{"instances", "get"},
		{"instances", "get", "a", "b"},
		{"instances", "frobnicate"},
		{"snapshots", "restore"},
		{"snapshots", "list", "x"},
		{"keys", "revoke"},
		{"keys", "nope", "x"},
		{"images", "pull"},
		{"usage", "x"},
		{"version", "x"},
		{"instances", "list", "--nope"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, _, err := stdio(t, func() error { return dispatch(context.Background(), args) })
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("err = %v (%T), want usageError", err, err)
			}
		})
	}
	// A command group without a subcommand prints its usage: exit status 2.
	_, errOut, err := stdio(t, func() error { return dispatch(context.Background(), []string{"snapshots"}) })
	if ee := (exitError{}); !errors.As(err, &ee) || ee.code != 2 || !strings.HasPrefix(errOut, "usage: faas snapshots list") {
		t.Errorf("err = %v, stderr %q", err, errOut)
	}
}
