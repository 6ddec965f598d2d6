package agent

import (
	_ "embed"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// Standbys of languages that cannot fork a prepared interpreter (node, bash) are
// processes the agent starts ahead of any request, one per execution: prepared
// like a Python zygote's standby (in a cgroup and process group of their own,
// limits set, stdio pipes in place), so executions skip the interpreter's
// start-up. Their "zygote" has no process of its own; it starts them (start).

//go:embed standby.js
var nodeStandbyJS string

// nodeStandbys is how many started node processes a sandbox keeps waiting (each
// is a whole interpreter, ~40 MB).
const nodeStandbys = 1

// bashStandbys is how many started bash processes a sandbox keeps waiting.
const bashStandbys = 1

// standbySeq numbers started standbys' cgroups.
var standbySeq atomic.Uint64

// startedStandbys returns the zygote of a language whose standbys start does
// start (one at a time, as many as want).
// asUser marks standbys that run as the sandbox user (see startBashStandby).
func (s *Server) startedStandbys(w Warm, want int, asUser bool, start func(Warm) (standby, error)) *zygote {
	z := &zygote{language: w.Language, config: w, sock: -1, want: want, asUser: asUser,
		standbys: make(chan standby, 16), arrived: make(chan struct{}, 1), gone: make(chan struct{})}
	z.start = func(gen int) {
		sb, err := start(w)
		if err != nil {
			s.logf("starting a %s standby: %v", w.Language, err)
		}
		if !s.arriveStarted(z, sb, gen, err == nil && standbyReady(sb.control)) {
			z.kill() // given up: executions start the interpreter themselves
		}
	}
	z.owed = want
	z.refill()
	return z
}

// startStandbyProcess starts a standby process as the agent's child: argv with
// stdio pipes (the ends it keeps are in the standby returned), fd 3 the control
// socket on which it says "ready", then extra from fd 4; in a cgroup and process
// group of its own with w's limits, as cred (nil: root).
func (s *Server) startStandbyProcess(w Warm, argv []string, env []string, extra []*os.File, cred *syscall.Credential) (standby, error) {
	sb := standby{control: -1}
	path, err := lookPath(argv[0], nil)
	if err != nil {
		return sb, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return sb, err
	}
	sb.control = fds[0]
	theirs := os.NewFile(uintptr(fds[1]), "standby-control")
	defer theirs.Close()
	stdio, ours, err := stdioPipes(w.UID, w.GID)
	if err != nil {
		syscall.Close(sb.control)
		return standby{control: -1}, err
	}
	sb.stdio = ours
	defer closeFDs(stdio[:]...)
	files := []uintptr{uintptr(stdio[0]), uintptr(stdio[1]), uintptr(stdio[2]), theirs.Fd()}
	for _, f := range extra {
		files = append(files, f.Fd())
	}
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred, Cloneflags: ipcOfItsOwn},
	}
	// Its own pids and cpuacct groups (as a Python standby makes itself): what
	// the execution starts is counted, billed and killed with it.
	p := &process{req: ExecRequest{MaxProcs: w.MaxProcs, MaxOpenFiles: w.MaxOpenFiles, MaxFileBytes: w.MaxFileBytes}}
	s.makeCgroupNamed(p, "standby-"+w.Language+"-"+strconv.FormatUint(standbySeq.Add(1), 10))
	s.forkMu.Lock()
	pid, err := s.forkLocked(p, path, argv, attr)
	s.forkMu.Unlock()
	if err != nil {
		s.removeCgroup(p)
		sb.close()
		return standby{control: -1}, err
	}
	sb.PID, sb.Cgroup = pid, p.cgroup
	return sb, nil
}

// startNodeStandby starts one node standby (see standby.js); it stays root
// until it takes its request.
func (s *Server) startNodeStandby(w Warm) (standby, error) {
	cfg, _ := json.Marshal(map[string]any{"uid": w.UID, "gid": w.GID, "env": envMap(w.Env)})
	return s.startStandbyProcess(w, []string{"node", "-e", nodeStandbyJS, string(cfg)},
		[]string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}, nil, nil)
}

// bashStandbyScript is what a bash standby runs (as `bash -c`, $0 "bash"): it
// says it is ready, closes its control socket, and waits for its request on fd 4:
// a first line of set-up (environment, working directory; written by
// bashRequest) and then the code, which it runs with eval, as `bash -c` would
// run it (BASH_EXECUTION_STRING is the code; `$(<file)` reads without forking).
const bashStandbyScript = `printf ready >&3; exec 3>&-; R=$(</dev/fd/4); eval "${R%%$'\n'*}"; BASH_EXECUTION_STRING=${R#*$'\n'}; unset R; : bash; eval "$BASH_EXECUTION_STRING"`

// startBashStandby starts one bash standby. Bash cannot drop root itself, so it
// runs as the sandbox user from the start; the sandbox's reset kills it with
// every user process (dropUserStandbys), so the one an execution takes was
// started after the last execution in the sandbox ended and has shared the
// sandbox with no user code.
func (s *Server) startBashStandby(w Warm) (standby, error) {
	r, wr, err := os.Pipe()
	if err != nil {
		return standby{control: -1}, err
	}
	defer r.Close()
	// The user opens the pipe again (/dev/fd/4), which needs it to be theirs.
	if err := r.Chown(w.UID, w.GID); err != nil {
		wr.Close()
		return standby{control: -1}, err
	}
	sb, err := s.startStandbyProcess(w, []string{"bash", "--norc", "--noprofile", "-c", bashStandbyScript, "bash"}, bashStartEnv(w.Env),
		[]*os.File{r}, &syscall.Credential{Uid: uint32(w.UID), Gid: uint32(w.GID), Groups: []uint32{}})
	if err != nil {
		wr.Close()
		return sb, err
	}
	sb.request = wr
	return sb, nil
}

// shellName reports whether name is one bash can export (bash -c passes others
// on to the programs it runs, which a standby cannot; exported functions,
// BASH_FUNC_*, are among them).
func shellName(name string) bool {
	for i, c := range name {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return name != ""
}

// bashStartupVars are variables bash reads only as it starts: a request that
// sets one (or a name bash cannot export) runs in a new bash, not a standby.
var bashStartupVars = []string{"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT", "SHLVL", "BASH_XTRACEFD", "IFS", "PWD", "OLDPWD", "PS4"}

// errStartupVars says a request cannot run in a bash standby.
var errStartupVars = errors.New("the environment sets a variable bash reads at start-up or cannot export")

// bashStartEnv is the part of the usual environment (Warm.Env) a bash standby
// starts with: the locale (LANG, LC_*), which bash loads as it is set (a dozen
// files, ~2 ms under gVisor), so that a request setting the same finds it
// loaded. The rest is set by the request.
func bashStartEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if (name == "LANG" || strings.HasPrefix(name, "LC_")) && shellName(name) && !strings.Contains(kv, "\x00") {
			out = append(out, kv)
		}
	}
	return out
}

// bashRequest is what a bash standby started with the environment start reads:
// one line that sets the request's environment and working directory as a new
// `bash -c` would have them (unsetting what start has and the request has not),
// then the code.
func bashRequest(req ExecRequest, start []string) ([]byte, error) {
	var b strings.Builder
	b.WriteString("exec 4<&-")
	for _, kv := range start {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(req.Env, func(r string) bool { return strings.HasPrefix(r, name+"=") }) {
			b.WriteString("; unset ")
			b.WriteString(name)
		}
	}
	for _, kv := range req.Env {
		name, _, _ := strings.Cut(kv, "=")
		if !shellName(name) || slices.Contains(bashStartupVars, name) || strings.Contains(kv, "\x00") {
			return nil, errStartupVars
		}
		b.WriteString("; export ")
		b.WriteString(shellQuote(kv))
	}
	b.WriteString("; cd -- ")
	b.WriteString(shellQuote(req.Dir))
	b.WriteString(" || exit 127; unset OLDPWD; export OLDPWD\n")
	b.WriteString(req.Code)
	return []byte(b.String()), nil
}

// shellQuote quotes s as one word for bash, on one line (a newline is written
// as \n inside $'...').
func shellQuote(s string) string {
	if !strings.Contains(s, "\n") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return "$'" + strings.NewReplacer(`\`, `\\`, "'", `\'`, "\n", `\n`).Replace(s) + "'"
}
