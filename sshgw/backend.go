package sshgw

import (
	"context"
	"io"

	"golang.org/x/crypto/ssh"
)

// Backend is what the gateway serves: it decides who may log in to which target
// (an instance) and runs commands there. The engine implements it.
//
// The gateway calls its methods from many goroutines at once (one per
// connection and session).
type Backend interface {
	// Authorize says which target a user name and public key give access to;
	// ok is false when they give none. It is called during the SSH handshake,
	// once per key a client offers, so it should answer quickly.
	Authorize(user string, key ssh.PublicKey) (target string, ok bool)
	// Start runs cmd in target, writing its output to stdout and stderr (for a
	// command on a PTY, everything comes to stdout) as it is produced.
	//
	// Writes to stdout and stderr may block (the client's window is full) and
	// fail once the session is gone. The Backend must have finished writing
	// everything before Wait returns: the gateway sends the exit status as soon
	// as Wait returns, and writes after that fail with io.ErrClosedPipe.
	//
	// ctx is cancelled when the session ends (the client closes it or
	// disconnects, or the gateway closes); the gateway also calls Kill then,
	// unless Wait has already returned an exit code. Start may return before
	// the process ends; ctx need not bound it.
	Start(ctx context.Context, target string, cmd Command, stdout, stderr io.Writer) (Process, error)
}

// Command is a process to start in a target.
type Command struct {
	// Argv is the program and its arguments; nil means the target user's login
	// shell (interactive with a PTY).
	Argv []string
	// PTY, when not nil, runs the process on a terminal of that size.
	PTY *PTY
	// Env adds variables to the process's environment.
	Env map[string]string
}

// PTY is a terminal's type and size.
type PTY struct {
	// Term is the client's terminal type (its TERM, e.g. "xterm-256color");
	// the Backend sets TERM from it.
	Term string
	// Rows and Cols are the size in characters, never 0 (the gateway uses
	// 24x80 when the client sends none).
	Rows, Cols uint16
}

// Process is a running command.
//
// Its methods may be called concurrently with each other (stdin comes from one
// goroutine, Resize and Kill from another, Wait from a third), and any of them
// may be called after the process has ended: they must then return (an error
// or nil), not block.
type Process interface {
	// WriteStdin sends bytes to the process's stdin. It may block while the
	// process does not read (the client is then held back by flow control),
	// but must return once the process is killed. It must not keep b after
	// returning. An error makes the gateway stop feeding stdin.
	WriteStdin(b []byte) error
	// CloseStdin closes its stdin (on a PTY: sends end-of-file).
	CloseStdin() error
	// Resize changes its terminal's size (no effect without a PTY).
	Resize(rows, cols uint16) error
	// Kill kills its whole process tree. It may be called more than once.
	Kill() error
	// Wait waits for it to end and returns its exit code (128+n for signal n).
	// It returns early with an error when ctx is cancelled. The gateway calls
	// it once.
	Wait(ctx context.Context) (exitCode int, err error)
}
