package agent

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// launchPTY starts p's process on a new pseudo-terminal: the process leads a new
// session with the terminal as its controlling tty, and everything it writes comes
// back as stdout.
func (s *Server) launchPTY(p *process, argv0 string, fail func(error)) {
	req := p.req
	master, tty, err := pty.Open()
	if err != nil {
		fail(fmt.Errorf("opening a terminal: %w", err))
		return
	}
	if req.PTY.Rows > 0 && req.PTY.Cols > 0 {
		_ = pty.Setsize(master, &pty.Winsize{Rows: req.PTY.Rows, Cols: req.PTY.Cols})
	}
	_ = os.Chown(tty.Name(), req.UID, req.GID)
	term := req.PTY.Term
	if term == "" {
		term = "xterm-256color"
	}
	env := append(append([]string{}, req.Env...), "TERM="+term)
	attr := &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   env,
		Files: []uintptr{tty.Fd(), tty.Fd(), tty.Fd()},
		Sys: &syscall.SysProcAttr{
			Setsid:     true,
			Setctty:    true,
			Ctty:       0,
			Credential: &syscall.Credential{Uid: uint32(req.UID), Gid: uint32(req.GID), Groups: []uint32{}},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	p.start = time.Now()
	s.makeCgroup(p)
	pid, err := s.forkExec(p, argv0, req.Argv, attr)
	tty.Close()
	if err != nil {
		master.Close()
		s.removeCgroup(p)
		fail(fmt.Errorf("starting %s: %w", req.Argv[0], err))
		return
	}
	p.killMu.Lock()
	p.pty = master
	p.killMu.Unlock()
	if p.stdin != nil {
		go func() {
			for b := range p.stdin {
				_, _ = master.Write(b)
			}
			// The host closed stdin: on a terminal that is an end-of-file character.
			_, _ = master.Write([]byte{4})
		}()
	}
	s.sendJSON(FrameStarted, p.id, Started{PID: pid})
	p.killMu.Lock()
	killedEarly := p.killed
	p.killMu.Unlock()
	if killedEarly {
		s.killTree(p)
	}
	go s.supervise(p, master, nil)
}
