package main

import (
	"context"
	"crypto/subtle"
	"io"

	"golang.org/x/crypto/ssh"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/sshgw"
)

// sshBackend serves the SSH gateway from the engine's instances: the user name
// is the instance id, the keys are those the instance's ssh endpoint handed out.
type sshBackend struct{ e *engine.Engine }

func (b sshBackend) Authorize(user string, key ssh.PublicKey) (string, bool) {
	keys, ok := b.e.SSHKeys(user)
	if !ok {
		return "", false
	}
	want := key.Marshal()
	for _, line := range keys {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err == nil && subtle.ConstantTimeCompare(pk.Marshal(), want) == 1 {
			return user, true
		}
	}
	return "", false
}

func (b sshBackend) Start(ctx context.Context, target string, cmd sshgw.Command, stdout, stderr io.Writer) (sshgw.Process, error) {
	argv := cmd.Argv
	if argv == nil {
		argv = []string{"/bin/bash", "-l"}
	}
	req := agent.ExecRequest{Argv: argv, Stdin: true, Env: engine.Environment(cmd.Env)}
	if cmd.PTY != nil {
		req.PTY = &agent.PTY{Winsize: agent.Winsize{Rows: cmd.PTY.Rows, Cols: cmd.PTY.Cols}, Term: cmd.PTY.Term}
	}
	ex, err := b.e.StartProcess(ctx, "", target, req, agent.Output{Stdout: stdout, Stderr: stderr})
	if err != nil {
		return nil, err
	}
	return sshProcess{ex}, nil
}

type sshProcess struct{ *agent.Exec }

func (p sshProcess) Wait(ctx context.Context) (int, error) {
	st, err := p.Exec.Wait(ctx)
	return st.ExitCode, err
}
