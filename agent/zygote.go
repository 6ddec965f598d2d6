package agent

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed zygote.py
var zygotePython string

// zygote is a pre-started interpreter that forks processes ahead of time, each
// ready to become one execution (see zygote.py). Those standby processes are the
// agent's children (re-parented to PID 1), reaped by its reaper like any other; the
// agent sends each its request directly over the control socket the zygote handed
// over, and asks the zygote for a replacement.
type zygote struct {
	language string
	config   Warm // the identity and limits its processes get
	pid      int  // 0 when the agent starts the standbys itself (start)
	sock     int  // our end of the SOCK_SEQPACKET pair
	// start, when set, starts one standby process (for a language that cannot
	// fork, such as node); the zygote then has no process of its own. gen is
	// the generation it is started in (see dropUserStandbys).
	start func(gen int)
	// asUser marks standbys that run as the sandbox user before their request
	// (bash): every reset kills them, and a request that finds none ready runs
	// in a new interpreter at once rather than wait.
	asUser   bool
	want     int // how many ready standbys it keeps
	standbys chan standby
	arrived  chan struct{} // signalled when a standby is ready
	gone     chan struct{} // closed by kill

	mu   sync.Mutex
	dead bool
	// owed counts standbys handed out and not yet asked to be replaced: forking
	// waits for the sandbox's reset (a sandbox used once, never reset, needs none).
	owed int
	// failures counts standbys in a row that never said ready; broken is set
	// (for good: the zygote is not restarted) when they reach maxStandbyFailures.
	failures int
	broken   bool
	// inflight counts standbys being started (start only); gen counts the
	// resets that dropped this zygote's standbys: one started before the last
	// of them is not used.
	inflight int
	gen      int
	// usedGen is the generation of the last request for a standby (asUser
	// only): standbys dropped unused are replaced only for a zygote in use.
	usedGen int
}

// standby is a process waiting to become an execution.
type standby struct {
	PID     int    `json:"pid"`
	Cgroup  string `json:"cgroup"`
	control int    // its end is in the process; ours takes the request
	// stdio are our ends of the pipes the process already has as its stdin,
	// stdout and stderr (made when it arrived, off any request's path).
	stdio [3]*os.File
	// cpuStat is its cpuacct group's usage file (nil without one), and cpuFrom
	// what it read as the standby arrived: its getting ready, not billed.
	cpuStat *cpuStatFile
	cpuFrom cpuMS
	// request, for a bash standby, is the pipe its request is written to.
	request *os.File
}

// close lets go of a standby that will not be used: it exits when its control
// socket closes.
func (sb *standby) close() {
	syscall.Close(sb.control)
	closeFiles(sb.stdio[:]...)
	sb.cpuStat.close()
	closeFiles(sb.request)
}

// openCPUStat opens the standby's cpuacct group's usage file, if it has one,
// and reads it: the standby waits for a request from now on and uses no CPU.
func (sb *standby) openCPUStat() {
	if sb.Cgroup == "" {
		return
	}
	if sb.cpuStat = openCPUStat(filepath.Join(cpuacctRoot, filepath.Base(sb.Cgroup))); sb.cpuStat != nil {
		sb.cpuFrom, _ = readCPUStat(sb.cpuStat)
	}
}

// stdioPipes makes the pipes of a standby's stdin, stdout and stderr: its ends
// (stdin's read end, the others' write ends), plain blocking descriptors
// (close-on-exec) to hand over and close, and ours, non-blocking files read
// through Go's poller. They belong to uid and gid, the user the process runs
// its code as (see userPipe). Made with fewer system calls than os.Pipe's
// files would take to hand over (each end registered with the poller, then set
// back to blocking), which matters under gVisor for a pipe set per execution.
func stdioPipes(uid, gid int) (theirs [3]int, ours [3]*os.File, err error) {
	theirs = [3]int{-1, -1, -1}
	fail := func(err error) ([3]int, [3]*os.File, error) {
		closeFDs(theirs[:]...)
		closeFiles(ours[:]...)
		return [3]int{-1, -1, -1}, [3]*os.File{}, err
	}
	for i := range theirs {
		var p [2]int
		if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
			return fail(err)
		}
		their, our := p[1], p[0] // the process writes, we read
		if i == 0 {
			their, our = p[0], p[1]
		}
		theirs[i], ours[i] = their, os.NewFile(uintptr(our), "|stdio") // non-blocking: polled
		if err := syscall.Fchown(their, uid, gid); err != nil {
			return fail(err)
		}
		if err := setBlocking(their); err != nil {
			return fail(err)
		}
	}
	return theirs, ours, nil
}

// setBlocking clears O_NONBLOCK on a pipe end made by pipe2 (whose only status
// flag it is) in one call.
func setBlocking(fd int) error {
	_, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFL, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// closeFDs closes the descriptors that are not -1.
func closeFDs(fds ...int) {
	for _, fd := range fds {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

// userPipe makes a pipe that belongs to uid and gid: a process of that user can
// open it again by name (/dev/stdout, /dev/stderr, /proc/self/fd/N), as it can
// the pipes a shell gives it; a pipe of root's is refused to it ("Permission
// denied" for `echo x > /dev/stderr`).
func userPipe(uid, gid int) (r, w *os.File, err error) {
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, err
	}
	if err = r.Chown(uid, gid); err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	return r, w, nil
}

// giveStdio makes the pipes a new standby will use as its stdin, stdout and
// stderr, and sends it their far ends (it takes them while it prepares).
func (sb *standby) giveStdio(uid, gid int) error {
	theirs, ours, err := stdioPipes(uid, gid)
	if err != nil {
		return err
	}
	sb.stdio = ours
	defer closeFDs(theirs[:]...)
	rights := syscall.UnixRights(theirs[:]...)
	if err := syscall.Sendmsg(sb.control, []byte("stdio"), rights, nil, 0); err != nil {
		closeFiles(sb.stdio[:]...)
		return err
	}
	return nil
}

var errZygoteDead = errors.New("zygote is not running")

// zygoteStandbys is how many prepared standbys a zygote keeps.
const zygoteStandbys = 2

// maxStandbyFailures is how many standbys in a row may fail to get ready before
// the zygote is given up.
const maxStandbyFailures = 3

// zygoteFor returns the language's running zygote for processes configured as w,
// starting it if needed.
func (s *Server) zygoteFor(w Warm) (*zygote, error) {
	s.zygoteMu.Lock()
	defer s.zygoteMu.Unlock()
	if z := s.zygotes[w.Language]; z != nil && !z.isDead() {
		if !z.config.sameProcesses(w) {
			return nil, fmt.Errorf("the %s zygote serves other limits", w.Language)
		}
		return z, nil
	} else if z != nil && z.isBroken() {
		return nil, fmt.Errorf("the %s zygote's standbys kept failing", w.Language)
	}
	z, err := s.startZygote(w)
	if err != nil {
		return nil, err
	}
	s.zygotes[w.Language] = z
	return z, nil
}

// warmOf is the zygote configuration a request needs.
func warmOf(req ExecRequest) Warm {
	return Warm{Language: req.Zygote, UID: req.UID, GID: req.GID, MaxProcs: req.MaxProcs, MaxOpenFiles: req.MaxOpenFiles, MaxFileBytes: req.MaxFileBytes, Env: req.Env}
}

func (z *zygote) isBroken() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.broken
}

func (z *zygote) isDead() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.dead
}

func (s *Server) startZygote(w Warm) (*zygote, error) {
	language := w.Language
	switch language {
	case "node":
		return s.startedStandbys(w, nodeStandbys, false, s.startNodeStandby), nil
	case "bash":
		return s.startedStandbys(w, bashStandbys, true, s.startBashStandby), nil
	}
	if language != "python" {
		return nil, fmt.Errorf("no zygote for %q", language)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "zygote-socket")
	defer theirs.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		syscall.Close(fds[0])
		return nil, err
	}
	defer devnull.Close()
	python, err := lookPath("python3", nil)
	if err != nil {
		syscall.Close(fds[0])
		return nil, err
	}
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"},
		Files: []uintptr{devnull.Fd(), os.Stderr.Fd(), os.Stderr.Fd(), theirs.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	s.forkMu.Lock()
	cfg := map[string]any{
		"uid": w.UID, "gid": w.GID, "standby": zygoteStandbys,
		"rlimits": rlimitsOf(ExecRequest{MaxProcs: w.MaxProcs, MaxOpenFiles: w.MaxOpenFiles, MaxFileBytes: w.MaxFileBytes}),
	}
	if len(w.Env) > 0 {
		cfg["env"] = envMap(w.Env)
	}
	if s.cgroups {
		cfg["cgroup_root"] = cgroupRoot
		if s.cpuacct {
			cfg["cpuacct_root"] = cpuacctRoot
		}
		if w.MaxProcs > 0 {
			cfg["max_procs"] = w.MaxProcs
		}
	}
	cfgJSON, _ := json.Marshal(cfg)
	pid, err := syscall.ForkExec(python, []string{"python3", "-I", "-c", zygotePython, string(cfgJSON)}, attr)
	if err == nil {
		s.zygotePIDs[pid] = language
	}
	s.forkMu.Unlock()
	if err != nil {
		syscall.Close(fds[0])
		return nil, fmt.Errorf("starting %s zygote: %w", language, err)
	}
	z := &zygote{language: language, config: w, pid: pid, sock: fds[0], want: zygoteStandbys, standbys: make(chan standby, 16), arrived: make(chan struct{}, 1), gone: make(chan struct{})}
	// Wait for it to say it is ready, but not forever.
	tv := syscall.Timeval{Sec: 20}
	_ = syscall.SetsockoptTimeval(z.sock, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	buf := make([]byte, 256)
	n, err := syscall.Read(z.sock, buf)
	if err != nil || n <= 0 {
		z.kill()
		return nil, fmt.Errorf("%s zygote did not start: %v", language, err)
	}
	_ = syscall.SetsockoptTimeval(z.sock, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{})
	go s.readZygote(z)
	return z, nil
}

// readZygote receives standby processes from the zygote until it dies.
func (s *Server) readZygote(z *zygote) {
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(4))
	for {
		// Close-on-exec from the start: a process the agent starts meanwhile
		// must not hold a standby's control socket.
		n, oobn, _, _, err := syscall.Recvmsg(z.sock, buf, oob, syscall.MSG_CMSG_CLOEXEC)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		var sb standby
		sb.control = -1
		if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if fds, err := syscall.ParseUnixRights(&m); err == nil {
					for _, fd := range fds {
						if sb.control < 0 {
							sb.control = fd
						} else {
							syscall.Close(fd)
						}
					}
				}
			}
		}
		if json.Unmarshal(buf[:n], &sb) != nil || sb.control < 0 {
			if sb.control >= 0 {
				syscall.Close(sb.control)
			}
			continue
		}
		if !z.arrive(sb, sb.giveStdio(z.config.UID, z.config.GID) == nil && standbyReady(sb.control)) {
			break // executions start new interpreters from now on
		}
	}
	z.kill()
}

// arrive takes a new standby into the zygote's set if it got ready, and counts a
// failure otherwise (its replacement is asked for at once, unless they keep
// failing). It returns false once the zygote is given up.
func (z *zygote) arrive(sb standby, ready bool) bool {
	if !ready {
		sb.close()
		z.mu.Lock()
		z.owed++
		z.failures++
		broken := z.failures >= maxStandbyFailures
		z.broken = z.broken || broken
		z.mu.Unlock()
		if broken {
			return false
		}
		z.refill()
		return true
	}
	z.mu.Lock()
	z.failures = 0
	z.mu.Unlock()
	sb.openCPUStat()
	select {
	case z.standbys <- sb:
		z.signalArrived()
	default:
		sb.close() // more than we asked for
	}
	return true
}

// arriveStarted takes a started standby (see arrive), unless a reset dropped
// the zygote's standbys since it was started: it is let go then.
func (s *Server) arriveStarted(z *zygote, sb standby, gen int, ready bool) bool {
	z.mu.Lock()
	z.inflight--
	stale := gen != z.gen
	z.mu.Unlock()
	if stale {
		s.discard(sb)
		z.signalArrived()
		return true
	}
	if !ready && sb.PID > 0 { // arrive lets it go; it may not have ended
		_ = syscall.Kill(sb.PID, syscall.SIGKILL)
		go s.removeCgroup(&process{cgroup: sb.Cgroup})
	}
	return z.arrive(sb, ready)
}

// dropUserStandbys lets go of every waiting standby that runs as the sandbox
// user (the reset then kills them with the user's processes) and of those
// still starting, so none that shared the sandbox with an execution serves
// the next one. Those dropped unused are replaced while the zygote is in use
// (asked for a standby in the last two generations).
func (s *Server) dropUserStandbys() {
	s.zygoteMu.Lock()
	defer s.zygoteMu.Unlock()
	for _, z := range s.zygotes {
		if !z.asUser {
			continue
		}
		z.mu.Lock()
		dropped := s.dropStandbys(z)
		if z.gen-z.usedGen < 2 {
			z.owed = max(z.owed, dropped)
		}
		z.gen++
		z.mu.Unlock()
	}
}

// dropStandbys discards the waiting standbys; it returns how many there were.
func (s *Server) dropStandbys(z *zygote) int {
	n := 0
	for {
		select {
		case sb := <-z.standbys:
			s.discard(sb)
			n++
		default:
			return n
		}
	}
}

// discard kills a standby that will not be used and lets it go, its cgroups
// removed once it is gone.
func (s *Server) discard(sb standby) {
	if sb.PID > 0 {
		_ = syscall.Kill(sb.PID, syscall.SIGKILL)
	}
	sb.close()
	go s.removeCgroup(&process{cgroup: sb.Cgroup})
}

// signalArrived wakes awaitStandbys.
func (z *zygote) signalArrived() {
	select {
	case z.arrived <- struct{}{}:
	default:
	}
}

// standbyReady waits (not forever) for a new standby to say it is prepared.
func standbyReady(control int) bool {
	tv := syscall.Timeval{Sec: 20}
	_ = syscall.SetsockoptTimeval(control, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	defer syscall.SetsockoptTimeval(control, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{})
	buf := make([]byte, 16)
	for {
		n, err := syscall.Read(control, buf)
		if err == syscall.EINTR {
			continue
		}
		return err == nil && string(buf[:n]) == "ready"
	}
}

// kill stops the zygote; requests waiting for it fail. Processes it started go on:
// they are re-parented to the agent, which reaps them.
func (z *zygote) kill() {
	z.mu.Lock()
	defer z.mu.Unlock()
	if !z.dead {
		z.dead = true
		if z.pid > 0 {
			_ = syscall.Kill(z.pid, syscall.SIGKILL)
			_ = syscall.Shutdown(z.sock, syscall.SHUT_RDWR)
		}
		close(z.gone)
	}
}

// envMap turns KEY=value items into a map (a python standby's environment).
func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

type zygoteRequest struct {
	Code string            `json:"code"`
	Env  map[string]string `json:"env"`
	Dir  string            `json:"dir"`
}

// spawn hands req to one of the zygote's standby processes and returns it: its
// pid, cgroup, stdio (the caller closes them) and the control socket on which the
// process reports its end (the caller closes it). The standby is replaced at the
// sandbox's next reset (see refill), or at once when none is left.
func (z *zygote) spawn(req ExecRequest) (standby, error) {
	var payload []byte
	var err error
	if z.asUser {
		z.mu.Lock()
		z.usedGen = z.gen // (the one waiting, if unused, is replaced at the reset)
		z.mu.Unlock()
		payload, err = bashRequest(req, bashStartEnv(z.config.Env))
	} else {
		payload, err = json.Marshal(zygoteRequest{Code: req.Code, Env: envMap(req.Env), Dir: req.Dir})
	}
	if err != nil {
		return standby{}, err
	}
	var sb standby
	select {
	case sb = <-z.standbys:
	default:
		if z.asUser {
			// Starting one now would take as long as the new interpreter the
			// caller starts instead; one is ready after the next reset (one
			// starting now will have shared the sandbox with this execution).
			z.mu.Lock()
			z.owed = max(z.owed, 1)
			z.mu.Unlock()
			return standby{}, errNoStandby
		}
		z.refill() // none left: ask for the ones owed now
		select {
		case sb = <-z.standbys:
		case <-z.gone:
			return standby{}, errZygoteDead
		case <-time.After(20 * time.Second):
			return standby{}, errors.New("no standby process from the zygote")
		}
	}
	z.mu.Lock()
	z.owed++
	z.mu.Unlock()
	if sb.request != nil {
		_, err = sb.request.Write(payload)
		sb.request.Close()
		sb.request = nil
	} else {
		err = syscall.Sendmsg(sb.control, payload, nil, nil, 0)
	}
	if err != nil {
		sb.close()
		z.refill()
		return standby{}, fmt.Errorf("sending to standby %d: %w", sb.PID, err)
	}
	return sb, nil
}

// errNoStandby says no standby was ready.
var errNoStandby = errors.New("no standby ready")

// refill asks the zygote to fork the standbys owed (or starts them, for a
// language whose standbys are started rather than forked).
func (z *zygote) refill() {
	z.mu.Lock()
	defer z.mu.Unlock()
	for ; z.owed > 0 && !z.dead; z.owed-- {
		if z.start != nil {
			z.inflight++
			go z.start(z.gen)
			continue
		}
		if _, err := syscall.Write(z.sock, []byte("more")); err != nil {
			return
		}
	}
}

// refillZygotes has every zygote fork the standbys it owes, and waits (at most
// d) until each has its full set ready: the next execution then neither waits
// for a fork nor competes with one.
func (s *Server) refillZygotes(d time.Duration) {
	s.zygoteMu.Lock()
	zs := make([]*zygote, 0, len(s.zygotes))
	for _, z := range s.zygotes {
		zs = append(zs, z)
	}
	s.zygoteMu.Unlock()
	deadline := time.Now().Add(d)
	for _, z := range zs {
		z.refill()
		z.awaitStandbys(time.Until(deadline))
	}
}

// awaitStandbys waits (at most d) until the zygote has its full set of standbys
// ready, or is gone.
func (z *zygote) awaitStandbys(d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for len(z.standbys) < z.want && !z.isDead() && z.coming() {
		select {
		case <-z.arrived:
		case <-z.gone:
		case <-deadline.C:
			return
		}
	}
}

// coming reports whether more standbys are on their way: always for a forking
// zygote (it forks what it owes), while some are starting for the others.
func (z *zygote) coming() bool {
	if z.start == nil {
		return true
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.inflight > 0
}

// standbyExit is what a zygote process reports on its control socket as it ends.
type standbyExit struct {
	Status   int   `json:"status"`
	UtimeUS  int64 `json:"utime_us"`
	StimeUS  int64 `json:"stime_us"`
	MaxRSSKB int64 `json:"maxrss_kb"`
}

// awaitReport reads the end report of a zygote process from its control socket
// and delivers it as the process's exit; if the process dies without one (killed,
// or it called os._exit), the reaper delivers its exit instead. A delivered
// report's socket is closed by its release, once the exit is told.
func (s *Server) awaitReport(p *process, control int) {
	buf := make([]byte, 512)
	var n int
	var err error
	for {
		n, err = syscall.Read(control, buf)
		if err != syscall.EINTR {
			break
		}
	}
	var rep standbyExit
	if err != nil || n <= 0 || json.Unmarshal(buf[:n], &rep) != nil || rep.Status < 0 || rep.Status > 255 ||
		rep.UtimeUS < 0 || rep.StimeUS < 0 || rep.MaxRSSKB < 0 {
		syscall.Close(control)
		return
	}
	res := waitResult{
		status: syscall.WaitStatus(rep.Status << 8),
		rusage: syscall.Rusage{
			Utime:  syscall.NsecToTimeval(rep.UtimeUS * 1000),
			Stime:  syscall.NsecToTimeval(rep.StimeUS * 1000),
			Maxrss: rep.MaxRSSKB,
		},
		// The standby waits for this before it exits: its teardown (gVisor
		// releasing its memory) comes after the exit is told, not on its path.
		release: func() { syscall.Close(control) },
	}
	s.forkMu.Lock()
	told := s.procs[p.pid] == p
	if told {
		delete(s.procs, p.pid)
		s.reported[p.pid] = true // its exit, when reaped, is already told
		p.exited <- res
	}
	s.forkMu.Unlock()
	if !told {
		syscall.Close(control) // the reaper told its exit first
	}
}

// rlimitsOf lists the limits a process of req gets (the same for both ways of
// starting one).
func rlimitsOf(req ExecRequest) map[string]uint64 {
	l := map[string]uint64{"core": 0}
	if req.MaxProcs > 0 {
		l["nproc"] = uint64(req.MaxProcs)
	}
	nofile := req.MaxOpenFiles
	if nofile <= 0 {
		nofile = 1024
	}
	l["nofile"] = uint64(nofile)
	if req.MaxFileBytes > 0 {
		l["fsize"] = uint64(req.MaxFileBytes)
	}
	return l
}
