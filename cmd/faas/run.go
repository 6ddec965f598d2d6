package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/faas-platform/faas/client"
)

// runRun is `faas run`: run code, a file or a shell command once on a server
// and mirror the program's output streams and exit status.
func runRun(ctx context.Context, args []string) error {
	return runCmd(ctx, args, runIO{
		stdin:         os.Stdin,
		stdinTerminal: isTerminal(os.Stdin),
		stdout:        os.Stdout,
		stderr:        os.Stderr,
	})
}

// runIO is the outside world of `faas run`, replaceable in tests.
type runIO struct {
	stdin         io.Reader
	stdinTerminal bool
	stdout        io.Writer
	stderr        io.Writer
}

// runOptions are the parsed flags and arguments of `faas run`.
type runOptions struct {
	language, code, command   string
	mode, image, workdir      string
	session, stdinFile        string
	endpoint, apiKey          string
	timeout                   time.Duration
	memoryMB                  int
	cpus                      float64
	env                       envFlag
	jsonOut                   bool
	file                      string // positional argument, "" when none
	codeFromStdin, hasCodeArg bool
}

const runUsage = `usage: faas run [flags] [FILE | -]

Runs code once in a sandbox on a faas server and mirrors its output and exit
status. The code comes from -c, from FILE (language from its extension), from
standard input (FILE "-", or -c -, or when standard input is not a terminal),
or --command runs a shell command line instead. Without -l and FILE the
server's default language applies: python, or a session's own language.
Flags may come before or after FILE.

Without --mode the server picks it: checkpointed with --session (the session's
state stays for the next run with the same id), ephemeral otherwise. Mode
persistent creates an instance that keeps running; its id is printed on
standard error.

examples:
  faas run -c 'print(1)'
  faas run script.py --timeout 10s
  echo 'console.log(1)' | faas run -l javascript
  faas run --command 'ls /' --image alpine
  faas run --session s1 -c 'x = 5'; faas run --session s1 -c 'print(x)'`

// parseRunArgs parses `faas run` arguments. Flags may come before and after FILE.
func parseRunArgs(args []string, stderr io.Writer) (*runOptions, error) {
	o := &runOptions{}
	fs := newFlagSet("faas run", runUsage, stderr)
	str := func(p *string, def, usage string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, def, usage)
		}
	}
	str(&o.language, "", "`language`: python, javascript, typescript or bash (default: from FILE's extension, else the server's: python)", "l", "language")
	str(&o.code, "", "the `code` to run (\"-\" reads it from standard input)", "c", "code")
	str(&o.command, "", "run a shell `command line` (sh -c) instead of code", "command")
	str(&o.mode, "", "execution `mode`: ephemeral, cached, checkpointed, branched or persistent (default: the server's: checkpointed with --session, else ephemeral)", "mode")
	str(&o.image, "", "container `image` to run in (default: the server's for the language)", "image")
	str(&o.workdir, "", "working `directory` inside the sandbox", "w", "workdir")
	str(&o.session, "", "session `id` to run in (created on first use): its state stays for the next run with the same id", "session")
	str(&o.stdinFile, "", "`file` fed to the program's standard input (\"-\": this command's standard input)", "stdin")
	str(&o.endpoint, defaultEndpoint(), "server `URL` (env FAAS_ENDPOINT, or FAAS_API_PORT on 127.0.0.1)", "endpoint")
	// The key's default is looked up after parsing, so it never shows up in -h.
	str(&o.apiKey, "", "API `key` (default: env FAAS_API_KEY, else admin.key in the server's data directory)", "api-key")
	fs.DurationVar(&o.timeout, "timeout", 0, "time limit of the program, such as 30s (default: the server's)")
	fs.IntVar(&o.memoryMB, "memory", 0, "memory limit in `MB` (default: the server's)")
	fs.Float64Var(&o.cpus, "cpus", 0, "CPU limit in `cores`, such as 0.5 (default: the server's)")
	fs.Var(&o.env, "e", "set environment variable `KEY=VALUE` (repeatable; KEY alone passes this environment's value)")
	fs.Var(&o.env, "env", "same as -e `KEY=VALUE`")
	fs.BoolVar(&o.jsonOut, "json", false, "print the whole result as JSON instead of the program's output")

	positional, err := parseFlags(fs, args, nil)
	if err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "c" || f.Name == "code" {
			o.hasCodeArg = true
		}
	})

	switch len(positional) {
	case 0:
	case 1:
		o.file = positional[0]
	default:
		return nil, usageError{fmt.Sprintf("run takes at most one FILE, got %q", positional)}
	}
	if o.apiKey == "" {
		o.apiKey = defaultAPIKey()
	}
	return o, nil
}

// buildRequest turns parsed options into an execute request, reading code and
// stdin from files or standard input as asked.
func buildRequest(o *runOptions, rio runIO) (client.ExecuteRequest, error) {
	req := client.ExecuteRequest{
		Language:   o.language,
		Command:    o.command,
		Mode:       o.mode,
		Image:      o.image,
		WorkingDir: o.workdir,
		SessionID:  o.session,
	}
	sources := 0
	for _, set := range []bool{o.hasCodeArg, o.file != "", o.command != ""} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		return req, usageError{"give only one of -c, FILE and --command"}
	}
	if o.command != "" && o.language != "" {
		return req, usageError{"--command runs a shell command line: it takes no --language"}
	}
	if o.language != "" && !slices.Contains(languages, o.language) {
		return req, usageError{fmt.Sprintf("unknown language %q (want one of %s)", o.language, strings.Join(languages, ", "))}
	}

	switch {
	case o.command != "":
	case o.hasCodeArg && o.code != "-":
		if o.code == "" {
			return req, usageError{"-c: empty code"}
		}
		req.Code = o.code
	case o.file != "" && o.file != "-":
		if req.Language == "" {
			req.Language = languageOf(o.file)
			if req.Language == "" {
				return req, usageError{fmt.Sprintf("cannot tell the language of %s from its extension: use -l", o.file)}
			}
		}
		b, err := os.ReadFile(o.file)
		if err != nil {
			return req, err
		}
		req.Code = string(b)
	default: // -c -, FILE "-", or nothing given
		if !o.hasCodeArg && o.file == "" && rio.stdinTerminal {
			return req, usageError{"nothing to run: give -c CODE, a FILE, --command or code on standard input (see faas run -h)"}
		}
		if o.stdinFile == "-" {
			return req, usageError{"--stdin - cannot be used when the code itself is read from standard input"}
		}
		b, err := io.ReadAll(rio.stdin)
		if err != nil {
			return req, fmt.Errorf("reading code from standard input: %w", err)
		}
		req.Code = string(b)
		o.codeFromStdin = true
	}

	switch o.stdinFile {
	case "":
	case "-":
		b, err := io.ReadAll(rio.stdin)
		if err != nil {
			return req, fmt.Errorf("reading standard input: %w", err)
		}
		req.Stdin = string(b)
	default:
		b, err := os.ReadFile(o.stdinFile)
		if err != nil {
			return req, fmt.Errorf("--stdin: %w", err)
		}
		req.Stdin = string(b)
	}

	switch {
	case o.timeout < 0:
		return req, usageError{"--timeout must be positive"}
	case o.timeout > 0:
		req.TimeoutMS = int(max((o.timeout+time.Millisecond-1)/time.Millisecond, 1))
	}
	if o.memoryMB < 0 || o.cpus < 0 {
		return req, usageError{"--memory and --cpus must be positive"}
	}
	if o.memoryMB > 0 || o.cpus > 0 {
		req.Resources = &client.Resources{CPUCores: o.cpus, MemoryMB: o.memoryMB}
	}
	if len(o.env) > 0 {
		req.Env = map[string]string(o.env)
	}
	return req, nil
}

func runCmd(ctx context.Context, args []string, rio runIO) error {
	o, err := parseRunArgs(args, rio.stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	req, err := buildRequest(o, rio)
	if err != nil {
		return err
	}
	if o.endpoint == "" {
		return usageError{"--endpoint: empty server address"}
	}

	res, err := newClient(o.endpoint, o.apiKey).Execute(ctx, req)
	if err != nil {
		return explainClientError(err, o.endpoint, o.apiKey)
	}

	if o.jsonOut {
		// client.ExecuteResult has every field of the server's answer, empty
		// ones included, in the server's order.
		enc := json.NewEncoder(rio.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
		if note := instanceNote(res); note != "" {
			fmt.Fprintln(rio.stderr, "faas:", note)
		}
	} else {
		writeResult(res, rio.stdout, rio.stderr)
	}
	if code := exitCodeOf(res); code != 0 {
		return exitError{code}
	}
	return nil
}

// writeResult mirrors the program's streams exactly and adds notes about what
// the platform did to it on stderr.
func writeResult(res *client.ExecuteResult, stdout, stderr io.Writer) {
	io.WriteString(stdout, res.Stdout)
	io.WriteString(stderr, res.Stderr)
	var notes []string
	if res.StdoutTruncated {
		notes = append(notes, "stdout truncated by the server's output limit")
	}
	if res.StderrTruncated {
		notes = append(notes, "stderr truncated by the server's output limit")
	}
	if res.TimedOut || res.Status == client.StatusTimeout {
		notes = append(notes, fmt.Sprintf("timed out after %v", res.Duration().Round(time.Millisecond)))
	}
	if res.OOMKilled {
		notes = append(notes, "killed: out of memory")
	}
	if res.Error != "" && res.Status == client.StatusError {
		notes = append(notes, res.Error)
	}
	if note := instanceNote(res); note != "" {
		notes = append(notes, note)
	}
	if len(notes) == 0 {
		return
	}
	if res.Stderr != "" && !strings.HasSuffix(res.Stderr, "\n") {
		io.WriteString(stderr, "\n") // notes start on their own line
	}
	for _, n := range notes {
		fmt.Fprintln(stderr, "faas:", n)
	}
}

// instanceNote tells about the instance a persistent execution created (or
// ran in), which keeps running after `faas run` returns; "" for none.
func instanceNote(res *client.ExecuteResult) string {
	if res.InstanceID == "" {
		return ""
	}
	return fmt.Sprintf("instance %s keeps running (faas instances delete %s to remove it)", res.InstanceID, res.InstanceID)
}

// exitCodeOf is the status `faas run` exits with for a result: the program's
// own, 124 for a time-out (like timeout(1)), and 1 when the platform failed
// without an exit status of the program.
func exitCodeOf(res *client.ExecuteResult) int {
	code := res.ExitCode
	switch res.Status {
	case client.StatusTimeout:
		if code == 0 || code == -1 {
			return 124
		}
	case client.StatusError, client.StatusFailed:
		if code == 0 {
			return 1
		}
	}
	if code < 0 || code > 255 {
		return 1
	}
	return code
}

// explainClientError adds a hint to errors a user can fix by themselves.
func explainClientError(err error, endpoint, key string) error {
	switch {
	case client.IsUnauthorized(err) && key == "":
		return fmt.Errorf("%w\nno API key: set FAAS_API_KEY or --api-key (or run where the server's %s is readable)",
			err, filepath.Join(defaultDataDir(), "admin.key"))
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w\nis a server running at %s? start one with `faas serve` or set FAAS_ENDPOINT", err, endpoint)
	}
	return err
}

// languages are the values of --language.
var languages = []string{client.LanguagePython, client.LanguageJavaScript, client.LanguageTypeScript, client.LanguageBash}

// languageOf guesses a file's language from its extension; "" when unknown.
func languageOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".py":
		return client.LanguagePython
	case ".js", ".mjs", ".cjs":
		return client.LanguageJavaScript
	case ".ts":
		return client.LanguageTypeScript
	case ".sh", ".bash":
		return client.LanguageBash
	}
	return ""
}

// envFlag collects repeated -e KEY=VALUE flags.
type envFlag map[string]string

func (e *envFlag) String() string {
	if e == nil || *e == nil {
		return ""
	}
	keys := make([]string, 0, len(*e))
	for k := range *e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (e *envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		// Like docker run -e KEY: pass on this environment's value.
		if v, ok = os.LookupEnv(k); !ok {
			return fmt.Errorf("%s is not set here: use KEY=VALUE", k)
		}
	}
	if k == "" {
		return errors.New("want KEY=VALUE")
	}
	if *e == nil {
		*e = envFlag{}
	}
	(*e)[k] = v
	return nil
}

// isTerminal reports whether f is a character device such as a terminal.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Defaults shared by the client commands.

// defaultEndpoint is the server address client commands use without
// --endpoint: $FAAS_ENDPOINT, else http://127.0.0.1:$FAAS_API_PORT (port 8080
// by default).
func defaultEndpoint() string {
	if e := strings.TrimSpace(os.Getenv("FAAS_ENDPOINT")); e != "" {
		return e
	}
	port := strings.TrimSpace(os.Getenv("FAAS_API_PORT"))
	if port == "" {
		port = "8080"
	}
	return "http://127.0.0.1:" + port
}

// defaultAPIKey is the API key client commands use without --api-key:
// $FAAS_API_KEY, else the contents of admin.key in the server's data directory
// (readable when the client runs as the server's user), else "".
func defaultAPIKey() string {
	if k := strings.TrimSpace(os.Getenv("FAAS_API_KEY")); k != "" {
		return k
	}
	b, err := os.ReadFile(filepath.Join(defaultDataDir(), "admin.key"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// defaultDataDir is the server's data directory: $FAAS_DATA_DIR, else
// /var/lib/faas for root, else $XDG_STATE_HOME/faas or ~/.local/state/faas.
func defaultDataDir() string {
	if d := os.Getenv("FAAS_DATA_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/faas"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "faas")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "faas")
	}
	return filepath.Join(os.TempDir(), "faas")
}

// newClient returns the SDK client a client command talks to the server with.
// clientFlags adds --endpoint and --api-key to fs; once fs is parsed, the
// returned func gives the client they name, the endpoint and the key (the key
// defaulting to env FAAS_API_KEY, else the server's admin.key).
func clientFlags(fs *flag.FlagSet, keyHelp string) func() (*client.Client, string, string) {
	endpoint := fs.String("endpoint", defaultEndpoint(), "server URL (env FAAS_ENDPOINT)")
	apiKey := fs.String("api-key", "", keyHelp+" (default: env FAAS_API_KEY, else the server's admin.key)")
	return func() (*client.Client, string, string) {
		key := *apiKey
		if key == "" {
			key = defaultAPIKey()
		}
		return newClient(*endpoint, key), *endpoint, key
	}
}

func newClient(endpoint, key string) *client.Client {
	return client.New(endpoint, key)
}
