package agent

import (
	"bufio"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed kernel.py
var kernelPython string

//go:embed kernel.js
var kernelJavaScript string

// SessionLanguages are the languages whose code can run in a session: one live
// interpreter (a kernel) that keeps its globals, imports and open files across
// executions, like a notebook kernel (ExecRequest.Session).
var SessionLanguages = []string{"python", "javascript"}

// cellDir holds the FIFOs that carry one cell's stdout and stderr.
const cellDir = "/run/faas-cells"

// interruptGrace is how long a cell that ran out of time gets to unwind after an
// interrupt (SIGINT: KeyboardInterrupt in Python) before its kernel is killed.
const interruptGrace = 2 * time.Second

// session is a running kernel. Cells run one at a time.
type session struct {
	name     string
	language string
	proc     *process // the kernel, supervised by the reaper like any process
	ctl      *os.File // cells go here (the kernel's fd 3)
	replies  chan cellReply
	gone     chan struct{} // closed when the kernel has exited
	exit     waitResult    // valid once gone is closed
	run      sync.Mutex    // held for the whole of a cell
	peakKB   int64         // the highest peak the kernel has reported; under run
}

type cellReply struct {
	Token    string `json:"token"`
	ExitCode int    `json:"exit_code"`
	MaxRSSKB int64  `json:"maxrss_kb"` // the kernel's peak so far
}

type cellRequest struct {
	Token  string            `json:"token"`
	Code   string            `json:"code"`
	Stdout string            `json:"stdout"`
	Stderr string            `json:"stderr"`
	Dir    string            `json:"dir,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
}

func (ss *session) isGone() bool {
	select {
	case <-ss.gone:
		return true
	default:
		return false
	}
}

// sessionFor returns the running session named in req, starting its kernel when
// there is none (or the last one ended).
func (s *Server) sessionFor(req ExecRequest) (*session, error) {
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	if ss := s.sessions[req.Session]; ss != nil && !ss.isGone() {
		if ss.language != req.Language {
			return nil, fmt.Errorf("session %q runs %s, not %s", req.Session, ss.language, req.Language)
		}
		return ss, nil
	}
	// A sandbox with a session runs nothing else: its zygotes would only weigh
	// down every snapshot of it.
	s.stopZygotes()
	ss, err := s.startKernel(req)
	if err != nil {
		return nil, err
	}
	s.sessions[req.Session] = ss
	return ss, nil
}

func (s *Server) startKernel(req ExecRequest) (*session, error) {
	var argv []string
	switch req.Language {
	case "python":
		argv = []string{"python3", "-u", "-c", kernelPython}
	case "javascript":
		argv = []string{"node", "-e", kernelJavaScript}
	default:
		return nil, fmt.Errorf("no session kernel for %q (sessions run %s)", req.Language, strings.Join(SessionLanguages, ", "))
	}
	argv0, err := lookPath(argv[0], req.Env)
	if err != nil {
		return nil, err
	}
	if req.Dir == "" {
		req.Dir = "/"
	}
	if _, err := ensureDir(req.Dir, req.UID, req.GID); err != nil {
		return nil, fmt.Errorf("working directory %s: %w", req.Dir, err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	cellR, cellW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	replyR, replyW, err := os.Pipe()
	if err != nil {
		cellR.Close()
		cellW.Close()
		return nil, err
	}
	attr := &syscall.ProcAttr{
		Dir: req.Dir,
		Env: req.Env,
		// The kernel's own complaints (not its cells') go to the agent's stderr.
		Files: []uintptr{devnull.Fd(), devnull.Fd(), os.Stderr.Fd(), cellR.Fd(), replyW.Fd()},
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: &syscall.Credential{Uid: uint32(req.UID), Gid: uint32(req.GID), Groups: []uint32{}},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	p := &process{req: req, exited: make(chan waitResult, 1), start: time.Now()}
	s.makeCgroupNamed(p, "session-"+strconv.FormatUint(uint64(s.nextSession.Add(1)), 10))
	_, err = s.forkExec(p, argv0, argv, attr) // p.pid holds it
	cellR.Close()
	replyW.Close()
	if err != nil {
		cellW.Close()
		replyR.Close()
		s.removeCgroup(p)
		return nil, fmt.Errorf("starting the %s session kernel: %w", req.Language, err)
	}
	ss := &session{name: req.Session, language: req.Language, proc: p, ctl: cellW, replies: make(chan cellReply, 1), gone: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(replyR)
		for sc.Scan() {
			var r cellReply
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				select {
				case ss.replies <- r:
				default: // nobody asked: a reply the user's code forged
				}
			}
		}
		replyR.Close()
	}()
	go func() {
		ss.exit = <-p.exited
		s.killTree(p)
		cellW.Close()
		s.removeCgroup(p)
		close(ss.gone)
		s.sessionMu.Lock()
		if s.sessions[ss.name] == ss {
			delete(s.sessions, ss.name)
		}
		s.sessionMu.Unlock()
	}()
	return ss, nil
}

// runCell runs req.Code in the session req.Session and reports it as execution id,
// with the same frames (Started, Stdout, Stderr, Exit) as a process.
func (s *Server) runCell(id uint32, req ExecRequest) {
	fail := func(err error) {
		s.execMu.Lock()
		delete(s.execs, id)
		s.execMu.Unlock()
		s.sendJSON(FrameExit, id, ExitStatus{ExitCode: 127, Error: err.Error()})
	}
	ss, err := s.sessionFor(req)
	if err != nil {
		fail(err)
		return
	}
	ss.run.Lock()
	defer ss.run.Unlock()
	if ss.isGone() {
		// It ended while this cell waited for the one before: start again.
		if ss, err = s.sessionFor(req); err != nil {
			fail(err)
			return
		}
	}
	s.execMu.Lock()
	cp := s.execs[id]
	s.execMu.Unlock()
	if cp == nil {
		fail(errors.New("execution vanished"))
		return
	}
	// Kill and timeouts act on the kernel: its process group and cgroup.
	s.forkMu.Lock()
	cp.pid, cp.cgroup, cp.start = ss.proc.pid, ss.proc.cgroup, time.Now()
	s.forkMu.Unlock()

	token := randomToken()
	paths := [2]string{filepath.Join(cellDir, token+".out"), filepath.Join(cellDir, token+".err")}
	defer os.Remove(paths[0])
	defer os.Remove(paths[1])
	var readers, holders [2]*os.File
	defer func() {
		for _, f := range append(readers[:], holders[:]...) {
			if f != nil {
				f.Close()
			}
		}
	}()
	if err := os.MkdirAll(cellDir, 0o711); err != nil {
		fail(err)
		return
	}
	for i, path := range paths {
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			fail(fmt.Errorf("cell output: %w", err))
			return
		}
		if err := os.Chown(path, req.UID, req.GID); err != nil {
			fail(err)
			return
		}
		// The reader opens first (non-blocking); the agent holds a writer too, so
		// the reader sees no end of file before the kernel has opened its end.
		rfd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			fail(err)
			return
		}
		readers[i] = os.NewFile(uintptr(rfd), path)
		wfd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			fail(err)
			return
		}
		holders[i] = os.NewFile(uintptr(wfd), path)
	}
	env := map[string]string{}
	for _, kv := range req.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	line, _ := json.Marshal(cellRequest{Token: token, Code: req.Code, Stdout: paths[0], Stderr: paths[1], Dir: req.Dir, Env: env})
	cpuBefore := procCPU(ss.proc.pid)
	s.sendJSON(FrameStarted, id, Started{PID: ss.proc.pid})

	var wg sync.WaitGroup
	var outN, errN int64
	var outTrunc, errTrunc bool
	wg.Add(2)
	go func() { defer wg.Done(); outN, outTrunc = s.pump(cp, FrameStdout, readers[0]) }()
	go func() { defer wg.Done(); errN, errTrunc = s.pump(cp, FrameStderr, readers[1]) }()

	st := ExitStatus{ExitCode: -1}
	replied, reply := false, cellReply{}
	if _, err := ss.ctl.Write(append(line, '\n')); err != nil {
		st.Error = "the session's interpreter is not reading: " + err.Error()
	} else {
		var timer <-chan time.Time
		if req.TimeoutMS > 0 {
			t := time.NewTimer(time.Duration(req.TimeoutMS) * time.Millisecond)
			defer t.Stop()
			timer = t.C
		}
		wait := func(extra <-chan time.Time) bool {
			for {
				select {
				case r := <-ss.replies:
					if r.Token == token {
						st.ExitCode, replied, reply = r.ExitCode, true, r
						return true
					}
				case <-ss.gone:
					return true
				case <-extra:
					return false
				}
			}
		}
		if !wait(timer) {
			cp.killMu.Lock()
			cp.timeout = true
			cp.killMu.Unlock()
			_ = syscall.Kill(ss.proc.pid, syscall.SIGINT)
			if !wait(time.After(interruptGrace)) {
				s.killTree(cp)
				<-ss.gone
			}
		}
	}
	if !replied && ss.isGone() {
		res := ss.exit
		switch {
		case res.status.Exited():
			st.ExitCode = res.status.ExitStatus()
		case res.status.Signaled():
			st.ExitCode = 128 + int(res.status.Signal())
			st.Signal = signalName(res.status.Signal())
		}
		st.Error = "the session's interpreter ended; its state is lost (the next execution in this session starts a new one)"
	}
	// The kernel has closed its ends; what the cell started in the background may
	// still hold them, so do not wait for it long.
	holders[0].Close()
	holders[1].Close()
	holders = [2]*os.File{}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(200 * time.Millisecond):
		readers[0].Close()
		readers[1].Close()
		<-done
	}
	cpuAfter := procCPU(ss.proc.pid)
	st.UserMS, st.SystemMS = max(0, cpuAfter[0]-cpuBefore[0]), max(0, cpuAfter[1]-cpuBefore[1])
	st.MaxRSSKB = procHWM(ss.proc.pid)
	if replied && reply.MaxRSSKB > ss.peakKB {
		// A peak higher than any before was reached in this cell: it is the
		// cell's. (Otherwise the cell's peak is unknown, and the memory held at
		// its end stands for it.)
		st.MaxRSSKB = max(st.MaxRSSKB, reply.MaxRSSKB)
		ss.peakKB = reply.MaxRSSKB
	}
	st.StdoutBytes, st.StderrBytes, st.StdoutTruncated, st.StderrTruncated = outN, errN, outTrunc, errTrunc
	st.DurationMS = time.Since(cp.start).Milliseconds()
	cp.killMu.Lock()
	st.TimedOut, st.Killed = cp.timeout, cp.killed
	cp.killMu.Unlock()
	s.execMu.Lock()
	delete(s.execs, id)
	s.execMu.Unlock()
	s.sendJSON(FrameExit, id, st)
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// procCPU returns a process's user and system CPU time in milliseconds.
func procCPU(pid int) [2]int64 {
	b, err := readSmallFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return [2]int64{}
	}
	// Fields after the command name (which may hold spaces) start at state (3).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return [2]int64{}
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return [2]int64{}
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100
	return [2]int64{utime * 1000 / ticksPerSecond, stime * 1000 / ticksPerSecond}
}

// procHWM returns a process's peak resident memory in KiB, or (where the kernel
// keeps no peak, as gVisor's) its resident memory now.
func procHWM(pid int) int64 {
	b, err := readSmallFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	var rss int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "VmHWM" || k == "VmRSS" {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = max(rss, n)
		}
	}
	return rss
}

// hasSessionKernel reports whether language has a session kernel.
func hasSessionKernel(language string) bool { return slices.Contains(SessionLanguages, language) }

// stopZygotes kills every zygote and the standby processes it prepared.
func (s *Server) stopZygotes() {
	s.zygoteMu.Lock()
	zs := s.zygotes
	s.zygotes = make(map[string]*zygote)
	s.zygoteMu.Unlock()
	for _, z := range zs {
		z.kill()
		s.dropStandbys(z)
	}
}
