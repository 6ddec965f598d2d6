// Package sshgw is the server's SSH gateway: one SSH server (golang.org/x/crypto/ssh)
// in front of every instance. A client logs in with the user name and key that the
// instances API hands out; the Backend maps them to an instance, and shells (with a
// PTY), exec requests and the sftp subsystem (which scp uses) run inside that
// instance only.
//
// What the gateway offers, and refuses:
//   - Authentication by public key only (Backend.Authorize); no password, no
//     keyboard-interactive.
//   - "session" channels only, at most 10 open per connection. Port forwarding
//     ("direct-tcpip" channels, "tcpip-forward" requests), agent and X11
//     forwarding are refused.
//   - In a session: pty-req, env, window-change, signal (KILL, TERM and INT all
//     kill), and one of shell, exec (run as /bin/sh -c) or the sftp subsystem
//     (SFTPServer, never on a PTY). The exit status is sent once the process has
//     ended and all its output is on the channel; exit-signal is not sent (a
//     signal n shows as exit status 128+n).
//
// A process is killed (Process.Kill) when its session ends before it does: the
// client closes the channel or disconnects, the connection goes idle
// (Config.IdleTimeout), or the server closes.
package sshgw
