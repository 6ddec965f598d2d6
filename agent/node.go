package agent

import (
	_ "embed"
	"encoding/json"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

//go:embed standby.js
var nodeStandbyJS string

// nodeStandbys is how many started node processes a sandbox keeps waiting (each
// is a whole interpreter, ~40 MB: node cannot fork a prepared one).
const nodeStandbys = 1

// startNodeStandbys returns the "zygote" of node: node cannot fork, so each
// standby is a node process the agent starts ahead of any request (see
// standby.js), prepared like a Python zygote's standby: in a cgroup and process
// group of its own, limits set, stdio pipes in place, root until its request.
// Executions then skip node's start-up as Python ones skip Python's.
func (s *Server) startNodeStandbys(w Warm) *zygote {
	z := &zygote{language: w.Language, config: w, sock: -1, want: nodeStandbys,
		standbys: make(chan standby, 16), arrived: make(chan struct{}, 1), gone: make(chan struct{})}
	z.start = func() {
		sb, err := s.startNodeStandby(w)
		if err != nil {
			s.logf("starting a node standby: %v", err)
		}
		if !z.arrive(sb, err == nil && standbyReady(sb.control)) {
			z.kill() // given up: executions start node themselves
		}
	}
	z.owed = nodeStandbys
	z.refill()
	return z
}

// startNodeStandby starts one node standby process as the agent's child.
func (s *Server) startNodeStandby(w Warm) (standby, error) {
	sb := standby{control: -1}
	node, err := lookPath("node", nil)
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
	stdio, ours, err := stdioPipes()
	if err != nil {
		return sb, err
	}
	sb.stdio = ours
	defer closeFiles(stdio[:]...)
	cfg, _ := json.Marshal(map[string]int{"uid": w.UID, "gid": w.GID})
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"},
		Files: []uintptr{stdio[0].Fd(), stdio[1].Fd(), stdio[2].Fd(), theirs.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	// Its own pids cgroup (as a Python standby makes itself): what the execution
	// starts is counted and killed with it.
	p := &process{req: ExecRequest{MaxProcs: w.MaxProcs, MaxOpenFiles: w.MaxOpenFiles, MaxFileBytes: w.MaxFileBytes}}
	s.makeCgroupNamed(p, "standby-node-"+strconv.FormatUint(nodeStandbySeq.Add(1), 10))
	s.forkMu.Lock()
	pid, err := s.forkLocked(p, node, []string{"node", "-e", nodeStandbyJS, string(cfg)}, attr)
	s.forkMu.Unlock()
	if err != nil {
		s.removeCgroup(p)
		return sb, err
	}
	sb.PID, sb.Cgroup = pid, p.cgroup
	return sb, nil
}

// nodeStandbySeq numbers node standbys' cgroups.
var nodeStandbySeq atomic.Uint64
