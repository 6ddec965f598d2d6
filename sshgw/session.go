package sshgw

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// Limits on what a client may put in a session's environment.
const (
	maxEnvVars     = 64
	maxEnvNameLen  = 256
	maxEnvValueLen = 32 << 10
)

// session serves one "session" channel: it collects pty-req and env
// requests, starts one process on shell, exec or subsystem, and wires the
// channel to it.
//
// run's goroutine (the request loop) sets the fields; pumpStdin and wait
// start once ch, proc, out and waited are set and only read those. exited is
// the one field written while other goroutines read it.
type session struct {
	backend Backend
	target  string
	log     *slog.Logger

	ch  ssh.Channel
	pty *PTY
	env map[string]string

	started bool          // shell, exec or subsystem was requested
	proc    Process       // nil until started
	out     *output       // the writers handed to Backend.Start
	waited  chan struct{} // closed when wait has returned
	exited  atomic.Bool   // Wait returned an exit code: nothing to kill
}

// run serves the channel until it is closed, by the client, by wait after
// the process ended, or because the connection went away. When it returns,
// the process has been killed unless it ended by itself. ctx is the
// connection's; the ctx given to Backend.Start is cancelled when run returns.
func (s *session) run(ctx context.Context, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		s.log.Debug("accepting ssh session channel", "err", err)
		return
	}
	s.ch = ch
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	for req := range reqs {
		ok, after := s.handle(ctx, req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		// Goroutines that may close the channel start only after the reply,
		// so that the reply cannot come after the channel's close.
		if after != nil {
			after()
		}
	}

	if s.proc != nil {
		if !s.exited.Load() {
			s.log.Debug("ssh session ended before its process; killing it")
			if err := s.proc.Kill(); err != nil {
				s.log.Warn("killing process of closed ssh session", "err", err)
			}
		}
		cancel() // Wait returns now if the process ignores the kill.
		<-s.waited
	}
	ch.Close()
}

// handle answers one channel request. after, when not nil, runs once the
// reply has been sent.
func (s *session) handle(ctx context.Context, req *ssh.Request) (ok bool, after func()) {
	switch req.Type {
	case "pty-req":
		var p struct {
			Term                      string
			Cols, Rows, Width, Height uint32
			Modes                     string
		}
		if s.started || ssh.Unmarshal(req.Payload, &p) != nil {
			return false, nil
		}
		s.pty = &PTY{Term: p.Term, Rows: dim(p.Rows, 24), Cols: dim(p.Cols, 80)}
		return true, nil

	case "env":
		var e struct{ Name, Value string }
		if s.started || ssh.Unmarshal(req.Payload, &e) != nil || !validEnv(e.Name, e.Value) {
			return false, nil
		}
		if s.env == nil {
			s.env = make(map[string]string)
		}
		if _, dup := s.env[e.Name]; !dup && len(s.env) >= maxEnvVars {
			return false, nil
		}
		s.env[e.Name] = e.Value
		return true, nil

	case "window-change":
		var w struct{ Cols, Rows, Width, Height uint32 }
		if s.pty == nil || ssh.Unmarshal(req.Payload, &w) != nil {
			return false, nil
		}
		s.pty.Rows, s.pty.Cols = dim(w.Rows, s.pty.Rows), dim(w.Cols, s.pty.Cols)
		if s.proc != nil {
			if err := s.proc.Resize(s.pty.Rows, s.pty.Cols); err != nil {
				s.log.Debug("resizing terminal", "err", err)
				return false, nil
			}
		}
		return true, nil

	case "shell":
		if s.started {
			return false, nil
		}
		return s.start(ctx, "shell", Command{PTY: s.ptyCopy(), Env: s.env})

	case "exec":
		var e struct{ Command string }
		if s.started || ssh.Unmarshal(req.Payload, &e) != nil {
			return false, nil
		}
		return s.start(ctx, "exec", Command{
			Argv: []string{"/bin/sh", "-c", e.Command},
			PTY:  s.ptyCopy(),
			Env:  s.env,
		})

	case "subsystem":
		var sub struct{ Name string }
		if s.started || ssh.Unmarshal(req.Payload, &sub) != nil || sub.Name != "sftp" {
			return false, nil
		}
		// sftp speaks a binary protocol: never on a terminal.
		return s.start(ctx, "sftp", Command{Argv: []string{SFTPServer}, Env: s.env})

	case "signal":
		var sig struct{ Signal string }
		if s.proc == nil || ssh.Unmarshal(req.Payload, &sig) != nil {
			return false, nil
		}
		switch sig.Signal {
		case "KILL", "TERM", "INT":
			// Best effort: Process has no way to deliver a gentler signal.
			if err := s.proc.Kill(); err != nil {
				s.log.Debug("killing process on signal request", "signal", sig.Signal, "err", err)
				return false, nil
			}
			return true, nil
		}
		return false, nil

	default:
		// x11-req, auth-agent-req@openssh.com, break, keepalive@openssh.com
		// (a failure reply still proves the server alive), ...
		return false, nil
	}
}

// ptyCopy is the requested terminal, if any, as a value of its own: s.pty
// changes on window-change, the Command's must not.
func (s *session) ptyCopy() *PTY {
	if s.pty == nil {
		return nil
	}
	p := *s.pty
	return &p
}

// start starts the session's process. If the Backend cannot, the request
// still succeeds and the client gets a message on stderr and exit status 255:
// OpenSSH drops stderr that came before a failure reply, and the message is
// the only explanation the client gets.
func (s *session) start(ctx context.Context, kind string, cmd Command) (bool, func()) {
	s.started = true
	out := &output{ch: s.ch}
	proc, err := s.backend.Start(ctx, s.target, cmd, out.stdout(), out.stderr())
	if err != nil {
		// The cause goes to the log; the client gets a message meant for it.
		s.log.Warn("starting ssh session process", "kind", kind, "err", err)
		return true, func() {
			io.WriteString(s.ch.Stderr(), "faas: cannot start "+kind+" in "+s.target+"\r\n")
			s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{255}))
			s.ch.CloseWrite()
			s.ch.Close()
		}
	}
	s.log.Debug("ssh session process started", "kind", kind, "pty", cmd.PTY != nil)
	s.proc, s.out, s.waited = proc, out, make(chan struct{})
	return true, func() {
		go s.pumpStdin(proc)
		go s.wait(ctx, proc, kind)
	}
}

// pumpStdin copies channel data to the process's stdin until the client
// sends EOF (then closes stdin) or the channel closes.
func (s *session) pumpStdin(proc Process) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.ch.Read(buf)
		if n > 0 {
			if werr := proc.WriteStdin(buf[:n]); werr != nil {
				// The process reads no more: drop what the client still
				// sends rather than leave it blocked on a full window.
				io.Copy(io.Discard, s.ch)
				return
			}
		}
		if err != nil {
			if err == io.EOF && !s.exited.Load() {
				if cerr := proc.CloseStdin(); cerr != nil {
					s.log.Debug("closing stdin", "err", cerr)
				}
			}
			return
		}
	}
}

// wait waits for the process to end, then sends its exit status and closes
// the channel. Output the Backend wrote before Wait returned is on the
// channel before the exit status (see output).
func (s *session) wait(ctx context.Context, proc Process, kind string) {
	defer close(s.waited)
	code, err := proc.Wait(ctx)
	s.out.close()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("waiting for ssh session process", "kind", kind, "err", err)
		}
		s.ch.Close()
		return
	}
	s.exited.Store(true)
	s.log.Debug("ssh session process ended", "kind", kind, "exit_code", code)
	status := uint32(code)
	if code < 0 {
		status = 255
	}
	s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
	s.ch.CloseWrite()
	s.ch.Close()
}

// output serializes the Backend's writes to a channel's stdout and stderr.
// x/crypto/ssh channels do not allow concurrent writes to one stream, nor a
// write concurrent with CloseWrite.
//
// close waits for a write in progress to finish and makes later writes
// fail: once it returns, everything the Backend wrote has been handed to
// the channel (in order, ahead of the exit status), and nothing more will be.
type output struct {
	ch     ssh.Channel
	mu     sync.Mutex
	closed bool
}

func (o *output) stdout() io.Writer { return outputWriter{o, false} }
func (o *output) stderr() io.Writer { return outputWriter{o, true} }

func (o *output) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

type outputWriter struct {
	o      *output
	stderr bool
}

func (w outputWriter) Write(p []byte) (int, error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.o.closed {
		return 0, io.ErrClosedPipe
	}
	if w.stderr {
		return w.o.ch.Stderr().Write(p)
	}
	return w.o.ch.Write(p)
}

// dim converts a terminal dimension from the wire, using def for 0 (OpenSSH
// sends 0x0 when its own stdin is not a terminal, as with ssh -tt < file).
func dim(v uint32, def uint16) uint16 {
	switch {
	case v == 0:
		return def
	case v > 0xffff:
		return 0xffff
	}
	return uint16(v)
}

func validEnv(name, value string) bool {
	return name != "" && len(name) <= maxEnvNameLen && len(value) <= maxEnvValueLen &&
		!strings.ContainsAny(name, "=\x00") && !strings.Contains(value, "\x00")
}
