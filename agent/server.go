package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// Version identifies the agent build; the host logs it.
const Version = "1"

// cgroupRoot is where the agent mounts a pids cgroup hierarchy inside the sandbox to
// track every process of an execution (double forks and setsid included). It lives
// under a root-only directory so user code cannot move itself out.
const cgroupRoot = "/run/faas/cgroup"

// cpuacctRoot is where the agent mounts a cpuacct cgroup hierarchy (gVisor has no
// hierarchy with both controllers) with the same groups as cgroupRoot's: an
// execution's CPU time is read from its group, which counts every process of it,
// and which its code cannot change (a standby's own report of its usage comes
// over a socket the code could write to).
const cpuacctRoot = "/run/faas/cpuacct"

// Server is the in-sandbox side of the protocol.
type Server struct {
	w       *FrameWriter
	cgroups bool
	cpuacct bool // cpuacctRoot is mounted (with cgroups)

	// forkMu serialises process creation with the reaper, so an exit is never
	// reaped before its process is registered, and guards procs and rlimit changes.
	forkMu sync.Mutex
	procs  map[int]*process // by pid of the execution's main process

	execMu sync.Mutex
	execs  map[uint32]*process // by execution id

	// early keeps exits reaped before their process was registered (a zygote's
	// grandchild can exit before the zygote tells us its pid). Guarded by forkMu.
	early map[int]earlyExit
	// zygotePIDs maps zygote processes to their language. Guarded by forkMu.
	zygotePIDs map[int]string
	// reported are processes whose end was reported before they were reaped.
	// Guarded by forkMu.
	reported map[int]bool
	// reapedPeakKB is the highest peak memory of the reported processes reaped
	// since the last reset (taken by reset). Guarded by forkMu.
	reapedPeakKB int64
	// reapedCh, when not nil, is closed at the next reap (see awaitReap).
	// Guarded by forkMu.
	reapedCh chan struct{}

	zygoteMu sync.Mutex
	zygotes  map[string]*zygote

	tunnelMu sync.Mutex
	tunnels  map[uint32]*tunnel

	sessionMu   sync.Mutex
	sessions    map[string]*session // by name
	nextSession atomic.Uint64

	// madeDirs are working directories the agent created outside the places the
	// user may write anyway; Reset removes them. Guarded by execMu.
	madeDirs []string

	// emptied holds, for each of userDirs, its stamp when a reset last emptied
	// it (see dirStamp). Guarded by resetMu.
	resetMu sync.Mutex
	emptied [len(userDirs)]dirStamp
}

type earlyExit struct {
	res waitResult
	at  time.Time
}

type process struct {
	id     uint32
	pid    int
	cgroup string
	// cpuFrom is the CPU time its group had used when the execution began (a
	// standby's, getting ready); cpuStat, when set, is its group's cpuacct.stat
	// opened ahead (a standby's), closed when the execution ends.
	cpuFrom cpuMS
	cpuStat *cpuStatFile
	req     ExecRequest
	start   time.Time
	stdin   chan []byte // nil when the request has no stdin; set before launch
	// stdinClosed is set once StdinClose was handled. Guarded by Server.execMu.
	stdinClosed bool
	exited      chan waitResult
	pty         *os.File // the terminal's master side, when the request has a PTY
	killMu      sync.Mutex
	timeout     bool
	killed      bool
}

type waitResult struct {
	status syscall.WaitStatus
	rusage syscall.Rusage
	// release, when set (a standby's own report), lets the process go once
	// its exit has been told.
	release func()
}

// Serve runs the agent on the given channel until the host closes it. It is called by
// the faas-agent binary as PID 1 of a sandbox.
func Serve(r io.Reader, w io.Writer) error {
	s := &Server{
		w:          NewFrameWriter(w),
		procs:      make(map[int]*process),
		execs:      make(map[uint32]*process),
		early:      make(map[int]earlyExit),
		zygotePIDs: make(map[int]string),
		reported:   make(map[int]bool),
		zygotes:    make(map[string]*zygote),
		sessions:   make(map[string]*session),
		tunnels:    make(map[uint32]*tunnel),
	}
	s.cgroups = setupCgroups() == nil
	s.cpuacct = s.cgroups && setupCPUAccounting() == nil
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go s.reap(sigs)
	fr := NewRequestReader(r)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.handle(f)
	}
}

func setupCgroups() error {
	if err := os.MkdirAll(filepath.Dir(cgroupRoot), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(cgroupRoot, 0o700); err != nil {
		return err
	}
	return syscall.Mount("faas", cgroupRoot, "cgroup", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "pids")
}

func setupCPUAccounting() error {
	if err := os.MkdirAll(cpuacctRoot, 0o700); err != nil {
		return err
	}
	return syscall.Mount("faas-cpu", cpuacctRoot, "cgroup", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "cpuacct")
}

func (s *Server) logf(format string, args ...any) {
	_ = s.w.WriteFrame(FrameLog, 0, []byte(fmt.Sprintf(format, args...)))
}

func (s *Server) sendJSON(t FrameType, id uint32, v any) {
	b, _ := json.Marshal(v)
	_ = s.w.WriteFrame(t, id, b)
}

func (s *Server) handle(f Frame) {
	switch f.Type {
	case FrameHello:
		var h Hello
		_ = json.Unmarshal(f.Payload, &h)
		s.sendJSON(FrameReady, 0, Ready{Nonce: h.Nonce, Version: Version, Cgroups: s.cgroups})
	case FrameExec:
		var req ExecRequest
		if err := json.Unmarshal(f.Payload, &req); err != nil {
			s.sendJSON(FrameExit, f.ID, ExitStatus{ExitCode: -1, Error: "bad exec request: " + err.Error()})
			return
		}
		s.start(f.ID, req)
	case FrameStdin, FrameStdinClose:
		s.execMu.Lock()
		p := s.execs[f.ID]
		closed := p != nil && p.stdinClosed
		if p != nil && f.Type == FrameStdinClose {
			p.stdinClosed = true
		}
		s.execMu.Unlock()
		if p == nil || p.stdin == nil || closed {
			return
		}
		if f.Type == FrameStdinClose {
			close(p.stdin)
			return
		}
		p.stdin <- f.Payload
	case FrameWarm:
		var wm Warm
		_ = json.Unmarshal(f.Payload, &wm)
		go func() {
			var d Done
			if z, err := s.zygoteFor(wm); err != nil {
				d.Error = err.Error()
			} else {
				z.awaitStandbys(5 * time.Second) // warm means ready to serve
			}
			s.sendJSON(FrameDone, f.ID, d)
		}()
	case FrameReset:
		go func() {
			var d Done
			var err error
			if d.ReapedPeakKB, err = s.reset(); err != nil {
				d.Error = err.Error()
			}
			s.refillZygotes(5 * time.Second)
			s.sendJSON(FrameDone, f.ID, d)
		}()
	case FrameResize:
		var ws Winsize
		s.execMu.Lock()
		p := s.execs[f.ID]
		s.execMu.Unlock()
		if p != nil && json.Unmarshal(f.Payload, &ws) == nil {
			p.killMu.Lock()
			if p.pty != nil {
				_ = pty.Setsize(p.pty, &pty.Winsize{Rows: ws.Rows, Cols: ws.Cols})
			}
			p.killMu.Unlock()
		}
	case FrameTunnelOpen, FrameTunnelData, FrameTunnelClose:
		s.tunnelFrame(f)
	case FrameKill:
		s.execMu.Lock()
		p := s.execs[f.ID]
		s.execMu.Unlock()
		if p != nil {
			p.killMu.Lock()
			p.killed = true
			p.killMu.Unlock()
			s.killTree(p)
		}
	default:
		s.logf("unknown frame type %d", f.Type)
	}
}

// lookPath resolves argv[0] against PATH from the execution's environment.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", file)
}

func (s *Server) start(id uint32, req ExecRequest) {
	if req.Session != "" {
		if !hasSessionKernel(req.Language) {
			s.sendJSON(FrameExit, id, ExitStatus{ExitCode: 127, Error: fmt.Sprintf("no session kernel for %q", req.Language)})
			return
		}
		// Registered now so kill frames find it; runCell fills in the kernel.
		s.execMu.Lock()
		s.execs[id] = &process{id: id, req: req, exited: make(chan waitResult, 1)}
		s.execMu.Unlock()
		go s.runCell(id, req)
		return
	}
	var unregister func()
	fail := func(err error) {
		if unregister != nil {
			unregister()
		}
		s.sendJSON(FrameExit, id, ExitStatus{ExitCode: 127, Error: err.Error()})
	}
	if len(req.Argv) == 0 {
		fail(errors.New("empty command"))
		return
	}
	var argv0 string
	if req.Zygote == "" || req.PTY != nil { // a zygote's process needs none (but when it falls back)
		var err error
		if argv0, err = lookPath(req.Argv[0], req.Env); err != nil {
			fail(err)
			return
		}
	}
	if req.Dir == "" {
		req.Dir = "/"
	}
	if err := s.ensureWorkDir(req); err != nil {
		fail(fmt.Errorf("working directory %s: %w", req.Dir, err))
		return
	}
	p := &process{id: id, req: req, exited: make(chan waitResult, 1)}
	if req.Stdin {
		p.stdin = make(chan []byte, 64)
	}
	// Registered before the process starts, so stdin and kill frames that follow
	// the exec frame always find it; the start itself (which may wait for a zygote)
	// does not hold up the frames of other executions.
	s.execMu.Lock()
	s.execs[id] = p
	s.execMu.Unlock()
	unregister = func() {
		s.execMu.Lock()
		delete(s.execs, id)
		s.execMu.Unlock()
	}
	go s.launch(p, argv0, fail)
}

// ensureWorkDir makes req's working directory if it is missing (owned by the
// request's user; removed at the next reset).
func (s *Server) ensureWorkDir(req ExecRequest) error {
	made, err := ensureDir(req.Dir, req.UID, req.GID)
	if err != nil || made == "" {
		return err
	}
	s.execMu.Lock()
	s.madeDirs = append(s.madeDirs, made)
	s.execMu.Unlock()
	return nil
}

// launch starts p's process (through its language's zygote when asked and
// possible) and supervises it.
func (s *Server) launch(p *process, argv0 string, fail func(error)) {
	req := p.req
	if req.PTY != nil {
		s.launchPTY(p, argv0, fail)
		return
	}
	p.start = time.Now()
	if req.Zygote != "" {
		if sb, ok := s.takeStandby(p); ok {
			stdinW := sb.stdio[0]
			if !req.Stdin {
				stdinW.Close() // its stdin ends at once
				stdinW = nil
			}
			s.started(p, sb.PID, stdinW, sb.stdio[1], sb.stdio[2])
			return
		}
		var err error
		if argv0, err = lookPath(req.Argv[0], req.Env); err != nil {
			fail(err)
			return
		}
	}
	var err error
	var files [3]*os.File
	var parentEnds []*os.File
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		for _, f := range parentEnds {
			f.Close()
		}
	}
	var stdinW *os.File
	if req.Stdin {
		r, w, err := userPipe(req.UID, req.GID)
		if err != nil {
			fail(err)
			return
		}
		files[0], stdinW = r, w
		parentEnds = append(parentEnds, w)
	} else {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			fail(err)
			return
		}
		files[0] = devnull
	}
	outR, outW, err := userPipe(req.UID, req.GID)
	if err != nil {
		closeAll()
		fail(err)
		return
	}
	files[1] = outW
	parentEnds = append(parentEnds, outR)
	errR, errW, err := userPipe(req.UID, req.GID)
	if err != nil {
		closeAll()
		fail(err)
		return
	}
	files[2] = errW
	parentEnds = append(parentEnds, errR)

	attr := &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   req.Env,
		Files: []uintptr{files[0].Fd(), files[1].Fd(), files[2].Fd()},
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: &syscall.Credential{Uid: uint32(req.UID), Gid: uint32(req.GID), Groups: []uint32{}},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if !req.KeepBackground {
		attr.Sys.Cloneflags = ipcOfItsOwn
	}
	s.makeCgroup(p)
	pid, err := s.forkExec(p, argv0, req.Argv, attr)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		for _, f := range parentEnds {
			f.Close()
		}
		s.removeCgroup(p)
		fail(fmt.Errorf("starting %s: %w", req.Argv[0], err))
		return
	}
	s.started(p, pid, stdinW, outR, errR)
}

// takeStandby hands p to a standby of its language's zygote, with the stdio the
// standby already has; false if there is none (the caller starts a new
// interpreter).
func (s *Server) takeStandby(p *process) (standby, bool) {
	z, err := s.zygoteFor(warmOf(p.req))
	if err != nil {
		s.logf("%s zygote unavailable, starting a new interpreter: %v", p.req.Zygote, err)
		return standby{}, false
	}
	sb, err := z.spawn(p.req)
	if errors.Is(err, errNoStandby) || errors.Is(err, errStartupVars) {
		return standby{}, false
	} else if err != nil {
		s.logf("%s zygote failed, starting a new interpreter: %v", p.req.Zygote, err)
		return standby{}, false
	}
	p.cgroup = sb.Cgroup // the standby set its cgroup's pids.max
	// What the standby used getting ready (read as it arrived) is not the
	// execution's.
	p.cpuStat, p.cpuFrom = sb.cpuStat, sb.cpuFrom
	s.forkMu.Lock()
	s.register(p, sb.PID)
	s.forkMu.Unlock()
	go s.awaitReport(p, sb.control)
	return sb, true
}

// started tells the host p's process runs, and forwards its stdin and output
// until it ends.
func (s *Server) started(p *process, pid int, stdinW, outR, errR *os.File) {
	if stdinW != nil {
		go feedStdin(stdinW, p.stdin)
	}
	s.sendJSON(FrameStarted, p.id, Started{PID: pid})
	p.killMu.Lock()
	killedEarly := p.killed
	p.killMu.Unlock()
	if killedEarly {
		s.killTree(p) // a kill frame came before the process existed
	}
	go s.supervise(p, outR, errR)
}

// forkExec starts p's process with p's limits, moves it into p's cgroup and
// registers it with the reaper (all under forkMu, so its exit cannot be reaped
// before it is registered).
func (s *Server) forkExec(p *process, argv0 string, argv []string, attr *syscall.ProcAttr) (int, error) {
	s.forkMu.Lock()
	defer s.forkMu.Unlock()
	pid, err := s.forkLocked(p, argv0, argv, attr)
	if err != nil {
		return 0, err
	}
	s.register(p, pid)
	return pid, nil
}

// forkLocked starts a process with p's limits and moves it into p's cgroup.
// Called with forkMu held (rlimits are per process).
func (s *Server) forkLocked(p *process, argv0 string, argv []string, attr *syscall.ProcAttr) (int, error) {
	restore := setChildLimits(p.req)
	pid, err := syscall.ForkExec(argv0, argv, attr)
	restore()
	if err != nil {
		return 0, err
	}
	if p.cgroup != "" {
		_ = os.WriteFile(filepath.Join(p.cgroup, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		if cpu := s.cpuGroup(p); cpu != "" {
			_ = os.WriteFile(filepath.Join(cpu, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		}
	}
	return pid, nil
}

// ensureDir makes dir exist, owned by the user when the agent creates it, and
// returns the topmost directory it created ("" if none).
func ensureDir(dir string, uid, gid int) (string, error) {
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return "", errors.New("not a directory")
		}
		return "", nil
	}
	if !os.IsNotExist(err) {
		return "", err
	}
	top := dir
	for parent := filepath.Dir(top); parent != top; parent = filepath.Dir(top) {
		if _, err := os.Stat(parent); err == nil {
			break
		}
		top = parent
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if err := os.Chown(d, uid, gid); err != nil {
			return top, err
		}
		if d == top {
			break
		}
	}
	return top, nil
}

// setChildLimits sets the rlimits the next child inherits and returns a func that
// puts the agent's own back. Called with forkMu held (rlimits are per process).
func setChildLimits(req ExecRequest) func() {
	type lim struct {
		res int
		old syscall.Rlimit
	}
	var saved []lim
	set := func(res int, v uint64) {
		var old syscall.Rlimit
		if syscall.Getrlimit(res, &old) != nil {
			return
		}
		if syscall.Setrlimit(res, &syscall.Rlimit{Cur: v, Max: v}) == nil {
			saved = append(saved, lim{res, old})
		}
	}
	const rlimitNproc = 6
	resources := map[string]int{"nproc": rlimitNproc, "nofile": syscall.RLIMIT_NOFILE, "fsize": syscall.RLIMIT_FSIZE, "core": syscall.RLIMIT_CORE}
	for name, v := range rlimitsOf(req) {
		set(resources[name], v)
	}
	return func() {
		for i := len(saved) - 1; i >= 0; i-- {
			_ = syscall.Setrlimit(saved[i].res, &saved[i].old)
		}
	}
}

func feedStdin(w *os.File, ch <-chan []byte) {
	broken := false
	for b := range ch {
		if broken {
			continue // keep draining so the reader loop never blocks
		}
		if _, err := w.Write(b); err != nil {
			broken = true
		}
	}
	w.Close()
}

// supervise forwards the process's output, enforces its timeout and reports its exit.
func (s *Server) supervise(p *process, outR, errR *os.File) {
	var wg sync.WaitGroup
	var outN, errN int64
	var outTrunc, errTrunc bool
	wg.Add(1)
	go func() { defer wg.Done(); outN, outTrunc = s.pump(p, FrameStdout, outR) }()
	if errR != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errN, errTrunc = s.pump(p, FrameStderr, errR) }()
	}

	var timer <-chan time.Time
	if p.req.TimeoutMS > 0 {
		t := time.NewTimer(time.Duration(p.req.TimeoutMS) * time.Millisecond)
		defer t.Stop()
		timer = t.C
	}
	var res waitResult
	select {
	case res = <-p.exited:
	case <-timer:
		p.killMu.Lock()
		p.timeout = true
		p.killMu.Unlock()
		s.killTree(p)
		res = <-p.exited
	}
	elapsed := time.Since(p.start)
	// The execution ends with its main process: whatever it left running goes too,
	// so nothing holds the output pipes open or outlives the request, unless the
	// request keeps it (then its output is read no longer).
	// Each is sent SIGKILL if the output has not ended 5 ms after the main process
	// (it usually ends with it: a standby closes its output before it reports);
	// waiting for them to leave the process table (and removing the cgroup) comes
	// after the exit is reported.
	grace := 2 * time.Second
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if p.req.KeepBackground {
		grace = 200 * time.Millisecond
	} else {
		select {
		case <-done:
		case <-time.After(5 * time.Millisecond):
			go s.signalTree(p) // while the output is read to its end
		}
	}
	select {
	case <-done:
	case <-time.After(grace):
		closeFiles(outR, errR)
		<-done
	}

	st := ExitStatus{
		UserMS:          tvMS(res.rusage.Utime),
		SystemMS:        tvMS(res.rusage.Stime),
		MaxRSSKB:        res.rusage.Maxrss,
		StdoutBytes:     outN,
		StderrBytes:     errN,
		StdoutTruncated: outTrunc,
		StderrTruncated: errTrunc,
		DurationMS:      elapsed.Milliseconds(),
	}
	switch {
	case res.status.Exited():
		st.ExitCode = res.status.ExitStatus()
	case res.status.Signaled():
		st.ExitCode = 128 + int(res.status.Signal())
		st.Signal = signalName(res.status.Signal())
	default:
		st.ExitCode = -1
	}
	// The CPU time of every process of the execution, from its group rather than
	// from the main process's usage (which leaves out children it did not wait
	// for, and which a standby reports itself).
	if cpu, ok := s.cpuTime(p); ok {
		st.UserMS, st.SystemMS = max(cpu.user-p.cpuFrom.user, 0), max(cpu.system-p.cpuFrom.system, 0)
	}
	p.killMu.Lock()
	st.TimedOut, st.Killed = p.timeout, p.killed
	p.killMu.Unlock()

	s.execMu.Lock()
	delete(s.execs, p.id)
	s.execMu.Unlock()
	s.sendJSON(FrameExit, p.id, st)
	if res.release != nil {
		res.release()
	}
	closeFiles(outR, errR) // after the exit is told: closing costs a few system calls
	p.cpuStat.close()
	if p.req.KeepBackground {
		if p.cgroup != "" {
			_ = os.Remove(p.cgroup) // only if nothing is left in it
			if cpu := s.cpuGroup(p); cpu != "" {
				_ = os.Remove(cpu)
			}
		}
	} else {
		s.killTree(p)
		s.removeCgroup(p)
	}
}

// closeFiles closes the files that are not nil.
func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

func tvMS(tv syscall.Timeval) int64 { return tv.Sec*1000 + int64(tv.Usec)/1000 }

// ipcOfItsOwn gives an execution's process an IPC namespace of its own: the
// System V shared memory, message queues and semaphores it makes go when its
// processes do, never reaching the next execution of a warm sandbox (files and
// processes are cleared by the reset; these have no other owner to clear).
// Instances' processes, which may be meant to meet, share the sandbox's.
const ipcOfItsOwn = syscall.CLONE_NEWIPC

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGXFSZ:
		return "SIGXFSZ"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	}
	return "signal " + strconv.Itoa(int(sig))
}

// pump forwards one output stream, forwarding at most MaxOutputBytes of it.
func (s *Server) pump(p *process, t FrameType, r *os.File) (total int64, truncated bool) {
	buf := make([]byte, 32<<10)
	limit := p.req.MaxOutputBytes
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if limit > 0 {
				if total >= limit {
					chunk = nil
				} else if total+int64(n) > limit {
					chunk = chunk[:limit-total]
				}
				if len(chunk) < n {
					truncated = true
				}
			}
			total += int64(n)
			if len(chunk) > 0 {
				if werr := s.w.WriteFrame(t, p.id, chunk); werr != nil {
					return total, truncated
				}
			}
		}
		if err != nil {
			return total, truncated
		}
	}
}

// killTree kills every process of an execution: its cgroup's members (which catches
// double forks and new sessions) and its process group, and waits (briefly) for
// its cgroup to empty.
func (s *Server) killTree(p *process) {
	for range 50 {
		s.forkMu.Lock()
		reaped := s.reapNoticeLocked()
		s.forkMu.Unlock()
		if s.signalTree(p) == 0 {
			return
		}
		awaitReap(reaped, 2*time.Millisecond)
	}
}

// signalTree sends SIGKILL once to the execution's process group and to every
// member of its cgroup, and returns how many members it found (0 without a
// cgroup). A killed process runs no more code, though it may take a while (its
// address space torn down) to leave the process table.
func (s *Server) signalTree(p *process) int {
	s.forkMu.Lock()
	pid := p.pid
	s.forkMu.Unlock()
	if pid <= 0 {
		return 0 // not started yet: launch kills it once it is
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if p.cgroup == "" {
		return 0
	}
	b, err := readSmallFile(filepath.Join(p.cgroup, "cgroup.procs"))
	if err != nil {
		return 0
	}
	n := 0
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// makeCgroup gives p a pids cgroup of its own (if the sandbox has cgroups).
func (s *Server) makeCgroup(p *process) {
	s.makeCgroupNamed(p, "exec-"+strconv.FormatUint(uint64(p.id), 10))
}

func (s *Server) makeCgroupNamed(p *process, name string) {
	if !s.cgroups {
		return
	}
	p.cgroup = filepath.Join(cgroupRoot, name)
	if err := os.Mkdir(p.cgroup, 0o700); err != nil && !os.IsExist(err) {
		p.cgroup = ""
		return
	} else if p.req.MaxProcs > 0 {
		_ = os.WriteFile(filepath.Join(p.cgroup, "pids.max"), []byte(strconv.Itoa(p.req.MaxProcs)), 0)
	}
	if s.cpuacct {
		_ = os.Mkdir(filepath.Join(cpuacctRoot, name), 0o700)
	}
}

// cpuGroup is the cpuacct group paired with p's pids group ("" if none).
func (s *Server) cpuGroup(p *process) string {
	if !s.cpuacct || p.cgroup == "" {
		return ""
	}
	return filepath.Join(cpuacctRoot, filepath.Base(p.cgroup))
}

// cpuTime reads the user and system CPU time, in milliseconds, that the
// processes of p's group used so far (ok false without a cpuacct group): through
// the descriptor p holds (a standby's, opened ahead), or else by path.
func (s *Server) cpuTime(p *process) (cpu cpuMS, ok bool) {
	if p.cpuStat != nil {
		return readCPUStat(p.cpuStat)
	}
	group := s.cpuGroup(p)
	if group == "" {
		return cpuMS{}, false
	}
	f := openCPUStat(group)
	if f == nil {
		return cpuMS{}, false
	}
	defer f.close()
	return readCPUStat(f)
}

// cpuStatFile is an open cpuacct.stat file: a plain descriptor, read with one
// pread (an *os.File would add four fcntl and two epoll_ctl calls, each slow
// under gVisor, and a second pread for its end, for a file that never blocks).
type cpuStatFile struct{ fd int }

// openCPUStat opens the cpuacct.stat file of a cpuacct group (nil if it cannot).
func openCPUStat(group string) *cpuStatFile {
	fd, err := openRead(filepath.Join(group, "cpuacct.stat"))
	if err != nil {
		return nil
	}
	return &cpuStatFile{fd}
}

// close closes f, once; nil is no file.
func (f *cpuStatFile) close() {
	if f != nil && f.fd >= 0 {
		syscall.Close(f.fd)
		f.fd = -1
	}
}

// readCPUStat reads a cpuacct.stat file from its start (its content is made
// anew on each such read, whole): "user N\nsystem N\n", in USER_HZ ticks.
func readCPUStat(f *cpuStatFile) (cpu cpuMS, ok bool) {
	var buf [128]byte
	n, err := syscall.Pread(f.fd, buf[:], 0)
	for err == syscall.EINTR {
		n, err = syscall.Pread(f.fd, buf[:], 0)
	}
	if n <= 0 || err != nil {
		return cpuMS{}, false
	}
	for line := range strings.Lines(string(buf[:n])) {
		name, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		ticks, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cpuMS{}, false
		}
		switch name {
		case "user":
			cpu.user = ticks * 1000 / userHZ
		case "system":
			cpu.system = ticks * 1000 / userHZ
		}
	}
	return cpu, true
}

// cpuMS is CPU time in milliseconds.
type cpuMS struct{ user, system int64 }

// userHZ is the unit of cpuacct.stat (USER_HZ: 100 on Linux's amd64 and arm64
// ABIs, which gVisor implements).
const userHZ = 100

// removeCgroup removes p's groups, waiting (briefly) for its processes to leave.
func (s *Server) removeCgroup(p *process) {
	if p.cgroup == "" {
		return
	}
	cpu := s.cpuGroup(p)
	for range 100 {
		if err := syscall.Rmdir(p.cgroup); err == nil || err == syscall.ENOENT {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if cpu != "" {
		_ = syscall.Rmdir(cpu)
	}
}

// register records p as the execution whose main process is pid, delivering an
// exit already reaped. Called with forkMu held.
func (s *Server) register(p *process, pid int) {
	p.pid = pid
	if e, ok := s.early[pid]; ok {
		delete(s.early, pid)
		p.exited <- e.res
	} else {
		s.procs[pid] = p
	}
	// Orphans nobody claimed: forget them after a while.
	for other, e := range s.early {
		if time.Since(e.at) > time.Minute {
			delete(s.early, other)
		}
	}
}

func (s *Server) zygoteExited(lang string, pid int) {
	s.zygoteMu.Lock()
	z := s.zygotes[lang]
	s.zygoteMu.Unlock()
	if z != nil && z.pid == pid {
		z.kill()
	}
}

// userDirs are where the sandbox user can write; Reset empties them.
var userDirs = [...]struct {
	path string
	mode os.FileMode
	user bool
}{
	{"/tmp", os.ModeSticky | 0o777, false}, {"/var/tmp", os.ModeSticky | 0o777, false}, {"/dev/shm", os.ModeSticky | 0o777, false},
	{"/workspace", 0o755, true}, {"/home/user", 0o755, true},
}

// reset returns the sandbox to a fresh state for the next execution: every process
// of the user is killed and every place the user can write is emptied. Python
// and node standbys run as root until they take a request, so they stay; bash
// ones run as the user and go with the rest (dropUserStandbys). Killed processes
// are waited for (one may be inside a system call that writes a file). Standbys
// that reported their exit are left a moment to end by themselves; one still
// there after it is killed with the rest (its code may have kept it from
// ending).
func (s *Server) reset() (reapedPeakKB int64, err error) {
	s.dropUserStandbys()
	// The processes that reported their end are ending (their executions'
	// processes were killed): once reaped, their true peak memory is known.
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
		s.forkMu.Lock()
		n, reaped := len(s.reported), s.reapNoticeLocked()
		s.forkMu.Unlock()
		if n == 0 {
			break
		}
		awaitReap(reaped, time.Until(deadline))
	}
	s.forkMu.Lock()
	reapedPeakKB, s.reapedPeakKB = s.reapedPeakKB, 0
	s.forkMu.Unlock()
	for range 50 {
		s.forkMu.Lock()
		reaped := s.reapNoticeLocked()
		s.forkMu.Unlock()
		if killUserProcesses() == 0 {
			break
		}
		awaitReap(reaped, 2*time.Millisecond)
	}
	var errs []error
	s.resetMu.Lock()
	defer s.resetMu.Unlock()
	for i, d := range userDirs {
		if s.emptied[i].valid && stampOf(d.path) == s.emptied[i] {
			continue // as the last reset left it: still empty
		}
		s.emptied[i] = dirStamp{}
		names, err := readDirNames(d.path)
		if err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
			continue
		}
		clean := true
		for _, name := range names {
			if err := os.RemoveAll(filepath.Join(d.path, name)); err != nil {
				errs = append(errs, err)
				clean = false
			}
		}
		restoreDir(d.path, d.mode, d.user)
		if clean {
			s.emptied[i] = stampOf(d.path)
		}
	}
	s.execMu.Lock()
	made := s.madeDirs
	s.madeDirs = nil
	s.execMu.Unlock()
	for _, d := range made {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return reapedPeakKB, errors.Join(errs...)
}

// dirStamp identifies a directory and its last change. Creating, removing or
// renaming an entry, and changing the directory's owner, mode or times, sets its
// change time (ctime) to the present, which no process can set back; so a
// directory whose stamp is the one taken when a reset emptied it is still empty
// and as it was restored, and the next reset skips it (one stat instead of
// five system calls each slow under gVisor).
type dirStamp struct {
	valid       bool
	dev, ino    uint64
	ctime       syscall.Timespec
	mode        uint32
	uid, gid    uint32
	nlink, size int64
}

// stampOf returns dir's stamp (not valid if it cannot be read).
func stampOf(dir string) dirStamp {
	var st syscall.Stat_t
	if syscall.Lstat(dir, &st) != nil {
		return dirStamp{}
	}
	return dirStamp{valid: true, dev: st.Dev, ino: st.Ino, ctime: st.Ctim, mode: st.Mode,
		uid: st.Uid, gid: st.Gid, nlink: int64(st.Nlink), size: st.Size}
}

// restoreDir makes dir a directory with mode, owned by the user if user (else
// by root), as the user may have changed it; one stat when it is as it should
// be.
func restoreDir(dir string, mode os.FileMode, user bool) {
	uid := 0
	if user {
		uid = 1000
	}
	want := uint32(mode.Perm())
	if mode&os.ModeSticky != 0 {
		want |= syscall.S_ISVTX
	}
	var st syscall.Stat_t
	if syscall.Lstat(dir, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR &&
		st.Mode&0o7777 == want && int(st.Uid) == uid && int(st.Gid) == uid {
		return
	}
	if err := os.MkdirAll(dir, mode); err == nil {
		_ = os.Chmod(dir, mode)
		if user {
			_ = os.Chown(dir, 1000, 1000)
		}
	}
}

// killUserProcesses SIGKILLs every process whose real uid is not root and
// returns how many it found.
func killUserProcesses() int {
	names, err := readDirNames("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 1 {
			continue
		}
		if uid, ok := realUID(name); ok && uid != "0" {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// reapNoticeLocked returns a channel closed at the next reap of a process
// (see reap): taken with the state it guards, before the caller acts, a wait
// on it misses no reap. Called with forkMu held.
func (s *Server) reapNoticeLocked() <-chan struct{} {
	if s.reapedCh == nil {
		s.reapedCh = make(chan struct{})
	}
	return s.reapedCh
}

// awaitReap waits until reaped is closed (a process was reaped) or d passes.
func awaitReap(reaped <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-reaped:
	case <-t.C:
	}
}

// exited delivers the end of process pid to its execution, or keeps it for a
// registration still to come. Called with forkMu held.
func (s *Server) exited(pid int, res waitResult) {
	if s.reported[pid] {
		delete(s.reported, pid)
		s.reapedPeakKB = max(s.reapedPeakKB, res.rusage.Maxrss)
		return
	}
	if p := s.procs[pid]; p != nil {
		delete(s.procs, pid)
		p.exited <- res
		return
	}
	s.early[pid] = earlyExit{res: res, at: time.Now()}
}

// reap is PID 1's duty: collect every child that exits. Exits of execution main
// processes are delivered to their supervisors; orphans are just collected.
func (s *Server) reap(sigs <-chan os.Signal) {
	for range sigs {
		s.forkMu.Lock()
		for {
			var ws syscall.WaitStatus
			var ru syscall.Rusage
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, &ru)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			if lang, ok := s.zygotePIDs[pid]; ok {
				delete(s.zygotePIDs, pid)
				s.logf("%s zygote exited: %v", lang, ws)
				go s.zygoteExited(lang, pid)
				continue
			}
			s.exited(pid, waitResult{status: ws, rusage: ru})
		}
		if s.reapedCh != nil {
			close(s.reapedCh)
			s.reapedCh = nil
		}
		s.forkMu.Unlock()
	}
}
