package sshgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// SFTPServer is the program the "sftp" subsystem runs in the target (scp uses
// sftp since OpenSSH 9.0). Targets must have it (Debian: openssh-sftp-server).
const SFTPServer = "/usr/lib/openssh/sftp-server"

const (
	// handshakeTimeout bounds key exchange and authentication of a new
	// connection.
	handshakeTimeout = 30 * time.Second
	// maxSessions is how many session channels one connection may have open
	// at once (OpenSSH's MaxSessions default).
	maxSessions = 10
	// extTarget is the ssh.Permissions extension holding the target that
	// Backend.Authorize returned.
	extTarget = "faas-target"
)

// Config configures a Server.
type Config struct {
	// HostKeyPath is a file holding the gateway's host key (OpenSSH PEM). It is
	// created (ed25519, mode 0600, parent directories 0700) if missing, so the
	// host key survives restarts.
	HostKeyPath string
	// Backend authorizes users and runs their commands. Required.
	Backend Backend
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// IdleTimeout closes a connection when no bytes have gone either way on it
	// for that long; its running processes are killed. Zero means never.
	//
	// Any traffic counts, so a client that sends keepalives (OpenSSH's
	// ServerAliveInterval) keeps a quiet session open, while a client that
	// vanished without closing its TCP connection is dropped after IdleTimeout.
	IdleTimeout time.Duration
}

// Server is an SSH server in front of a Backend. Its zero value is not usable;
// call New.
//
// It offers public-key authentication only, and session channels only:
// port forwarding ("direct-tcpip", "tcpip-forward"), agent and X11 forwarding
// are refused.
type Server struct {
	cfg    Config
	log    *slog.Logger
	signer ssh.Signer
	sshCfg *ssh.ServerConfig

	// ctx is the parent of every connection's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	// wg counts connection handlers; Add only under mu with closed false.
	wg sync.WaitGroup
}

// New loads (or creates) the host key and returns a Server ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("sshgw: no Backend")
	}
	if cfg.HostKeyPath == "" {
		return nil, errors.New("sshgw: no HostKeyPath")
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("sshgw: negative IdleTimeout %v", cfg.IdleTimeout)
	}
	signer, err := loadOrCreateHostKey(cfg.HostKeyPath)
	if err != nil {
		return nil, fmt.Errorf("sshgw: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       log,
		signer:    signer,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	s.sshCfg = &ssh.ServerConfig{
		// No PasswordCallback and no KeyboardInteractiveCallback: those
		// methods are not offered at all.
		PublicKeyCallback: s.authorize,
		ServerVersion:     "SSH-2.0-faas-sshgw",
	}
	s.sshCfg.AddHostKey(signer)
	return s, nil
}

// HostKey is the gateway's public host key, for clients' known_hosts
// (golang.org/x/crypto/ssh/knownhosts.Line formats a line).
func (s *Server) HostKey() ssh.PublicKey {
	return s.signer.PublicKey()
}

// authorize is the PublicKeyCallback. x/crypto/ssh calls it once per key and
// connection (the answer is cached for the signature check that follows).
func (s *Server) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	target, ok := s.cfg.Backend.Authorize(meta.User(), key)
	if !ok {
		// The fingerprint is a hash of a public key: enough to tell which key
		// was tried, nothing secret.
		s.log.Debug("ssh public key refused",
			"user", meta.User(), "remote", meta.RemoteAddr().String(),
			"key_type", key.Type(), "fingerprint", ssh.FingerprintSHA256(key))
		return nil, errors.New("public key not authorized")
	}
	return &ssh.Permissions{Extensions: map[string]string{extTarget: target}}, nil
}

// Serve accepts connections on ln until ln is closed or Close is called, and
// then returns nil. It may be called for several listeners at once. Close
// closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return nil
			}
			if !isTransientAcceptError(err) {
				return fmt.Errorf("sshgw: accepting: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("ssh accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0

		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.handleConn(c)
		}()
	}
}

// isTransientAcceptError reports whether Accept may succeed again later
// (out of file descriptors or memory).
func isTransientAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the server: it closes every listener given to Serve and every
// connection, kills the processes that sessions were running (Process.Kill)
// and returns once all connection handlers have finished. Calling it again
// does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sshgw: closing listeners: %w", err)
	}
	return nil
}

// handleConn runs one client connection from handshake to end.
func (s *Server) handleConn(raw net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	log := s.log.With("remote", raw.RemoteAddr().String())

	nc := raw
	if s.cfg.IdleTimeout > 0 {
		ic := newIdleConn(raw, s.cfg.IdleTimeout, func() {
			log.Info("closing idle ssh connection", "idle_timeout", s.cfg.IdleTimeout)
		})
		defer ic.stop()
		nc = ic
	}

	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		log.Debug("ssh handshake failed", "err", err)
		return
	}
	raw.SetDeadline(time.Time{})
	defer sconn.Close()

	target := sconn.Permissions.Extensions[extTarget]
	log = log.With("user", sconn.User(), "target", target)
	log.Info("ssh connection opened")
	defer log.Info("ssh connection closed")

	// Global requests: keepalive@openssh.com gets a failure reply, which
	// OpenSSH takes as proof of life; forwarding requests are refused.
	go ssh.DiscardRequests(reqs)

	var sessions sync.WaitGroup
	var open atomic.Int32
	for nch := range chans {
		if nch.ChannelType() != "session" {
			log.Debug("ssh channel refused", "type", nch.ChannelType())
			nch.Reject(ssh.Prohibited, "only session channels are allowed")
			continue
		}
		if open.Add(1) > maxSessions {
			open.Add(-1)
			nch.Reject(ssh.ResourceShortage, "too many sessions")
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			defer open.Add(-1)
			ss := &session{
				backend: s.cfg.Backend,
				target:  target,
				log:     log,
			}
			ss.run(ctx, nch)
		}()
	}
	// The connection is gone: stop pending Starts and Waits, and wait for the
	// sessions to kill their processes.
	cancel()
	sessions.Wait()
}

// idleConn is a net.Conn that closes itself when no bytes have been read or
// written for a while.
type idleConn struct {
	net.Conn
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds of the last read or write
	onIdle  func()

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

func newIdleConn(c net.Conn, timeout time.Duration, onIdle func()) *idleConn {
	ic := &idleConn{Conn: c, timeout: timeout, onIdle: onIdle}
	ic.touch()
	ic.mu.Lock()
	ic.timer = time.AfterFunc(timeout, ic.check)
	ic.mu.Unlock()
	return ic
}

func (c *idleConn) touch() { c.last.Store(time.Now().UnixNano()) }

// check runs when the timer fires: it closes the connection if it has been
// idle for the whole timeout, and otherwise re-arms the timer for the rest.
func (c *idleConn) check() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if idle := time.Since(time.Unix(0, c.last.Load())); idle < c.timeout {
		c.timer.Reset(c.timeout - idle)
		return
	}
	c.stopped = true
	c.onIdle()
	c.Conn.Close()
}

// stop disarms the timer; once it returns, onIdle is not called any more.
func (c *idleConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.timer.Stop()
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}
