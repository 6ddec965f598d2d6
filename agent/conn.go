package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrClosed is returned for work on a connection whose agent is gone (the sandbox
// died or was destroyed) or that was closed.
var ErrClosed = errors.New("agent connection closed")

// Conn is the host side of the protocol: it multiplexes executions over one channel
// to one agent. It is safe for concurrent use.
type Conn struct {
	w *FrameWriter
	r *FrameReader

	mu      sync.Mutex
	nextID  uint32
	execs   map[uint32]*pending
	dones   map[uint32]chan Done
	ready   map[string]chan Ready
	tunnels map[uint32]*Tunnel
	err     error // set once the read loop ends
	done    chan struct{}

	// Logf receives the agent's diagnostic log lines; nil drops them.
	Logf func(format string, args ...any)
}

// Output receives one execution's output as it arrives. Writes happen on the
// connection's reader goroutine, so they should not block for long.
type Output struct {
	Stdout io.Writer
	Stderr io.Writer
}

type pending struct {
	out     Output
	started chan Started
	exit    chan ExitStatus
}

// NewConn starts a connection that reads frames from r and writes them to w.
func NewConn(r io.Reader, w io.Writer) *Conn {
	c := &Conn{
		w:       NewFrameWriter(w),
		r:       NewFrameReader(r),
		execs:   make(map[uint32]*pending),
		dones:   make(map[uint32]chan Done),
		ready:   make(map[string]chan Ready),
		tunnels: make(map[uint32]*Tunnel),
		done:    make(chan struct{}),
	}
	go c.readLoop()
	return c
}

// Done is closed when the agent's channel has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err reports why the channel ended (nil while it is open).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) readLoop() {
	var err error
	for {
		var f Frame
		f, err = c.r.ReadFrame()
		if err != nil {
			break
		}
		c.dispatch(f)
	}
	if errors.Is(err, io.EOF) {
		err = ErrClosed
	} else {
		err = fmt.Errorf("%w: %v", ErrClosed, err)
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.done)
}

func (c *Conn) dispatch(f Frame) {
	switch f.Type {
	case FrameReady:
		var r Ready
		if json.Unmarshal(f.Payload, &r) != nil {
			return
		}
		c.mu.Lock()
		ch := c.ready[r.Nonce]
		delete(c.ready, r.Nonce)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	case FrameDone:
		var d Done
		if json.Unmarshal(f.Payload, &d) != nil {
			d.Error = "malformed answer from agent"
		}
		c.mu.Lock()
		ch := c.dones[f.ID]
		delete(c.dones, f.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- d
		}
	case FrameTunnelReady, FrameTunnelData, FrameTunnelClose:
		c.mu.Lock()
		t := c.tunnels[f.ID]
		c.mu.Unlock()
		if t == nil {
			return
		}
		switch f.Type {
		case FrameTunnelReady:
			var d Done
			if json.Unmarshal(f.Payload, &d) != nil {
				d.Error = "malformed answer from agent"
			}
			select {
			case t.ready <- d:
			default:
			}
		case FrameTunnelData:
			select {
			case t.data <- f.Payload:
			case <-t.closed():
			}
		case FrameTunnelClose:
			t.end()
		}
	case FrameLog:
		if c.Logf != nil {
			c.Logf("agent: %s", f.Payload)
		}
	default:
		c.mu.Lock()
		p := c.execs[f.ID]
		c.mu.Unlock()
		if p == nil {
			return
		}
		switch f.Type {
		case FrameStarted:
			var s Started
			_ = json.Unmarshal(f.Payload, &s)
			select {
			case p.started <- s:
			default:
			}
		case FrameStdout:
			if p.out.Stdout != nil {
				_, _ = p.out.Stdout.Write(f.Payload)
			}
		case FrameStderr:
			if p.out.Stderr != nil {
				_, _ = p.out.Stderr.Write(f.Payload)
			}
		case FrameExit:
			var st ExitStatus
			if err := json.Unmarshal(f.Payload, &st); err != nil {
				st = ExitStatus{ExitCode: -1, Error: "malformed exit status from agent"}
			}
			c.mu.Lock()
			delete(c.execs, f.ID)
			c.mu.Unlock()
			p.exit <- st
		}
	}
}

// Hello (re-)opens the channel and waits for the agent's answer. Call it once after
// the sandbox starts and again after every restore onto a new channel.
func (c *Conn) Hello(ctx context.Context) (Ready, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	ch := make(chan Ready, 1)
	c.mu.Lock()
	c.ready[nonce] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.ready, nonce)
		c.mu.Unlock()
	}()
	payload, _ := json.Marshal(Hello{Nonce: nonce})
	if err := c.w.WriteFrame(FrameHello, 0, payload); err != nil {
		return Ready{}, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-c.done:
		return Ready{}, c.Err()
	case <-ctx.Done():
		return Ready{}, ctx.Err()
	}
}

// request sends a Warm or Reset frame and waits for its Done.
func (c *Conn) request(ctx context.Context, t FrameType, v any) error {
	_, err := c.requestDone(ctx, t, v)
	return err
}

// requestDone sends a request frame and waits for its Done.
func (c *Conn) requestDone(ctx context.Context, t FrameType, v any) (Done, error) {
	var payload []byte
	if v != nil {
		var err error
		if payload, err = json.Marshal(v); err != nil {
			return Done{}, err
		}
	}
	ch := make(chan Done, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return Done{}, c.err
	}
	c.nextID++
	id := c.nextID
	c.dones[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.dones, id)
		c.mu.Unlock()
	}()
	if err := c.w.WriteFrame(t, id, payload); err != nil {
		return Done{}, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	select {
	case d := <-ch:
		if d.Error != "" {
			return d, errors.New(d.Error)
		}
		return d, nil
	case <-c.done:
		return Done{}, c.Err()
	case <-ctx.Done():
		return Done{}, ctx.Err()
	}
}

// Warm has the agent start a language's zygote (see ExecRequest.Zygote) and waits
// until it is ready.
func (c *Conn) Warm(ctx context.Context, w Warm) error {
	return c.request(ctx, FrameWarm, w)
}

// Reset kills every user process in the sandbox and empties every directory the
// user can write, so the sandbox can serve another execution as if new. It
// returns Done.ReapedPeakKB: the true peak memory of the standby executions
// since the last reset, whose own reports may understate it.
func (c *Conn) Reset(ctx context.Context) (reapedPeakKB int64, err error) {
	d, err := c.requestDone(ctx, FrameReset, nil)
	return d.ReapedPeakKB, err
}

// Exec is one running execution.
type Exec struct {
	c  *Conn
	id uint32
	p  *pending
}

// Start asks the agent to start a process. Its output goes to out as it arrives.
// The caller must eventually call Wait.
func (c *Conn) Start(req ExecRequest, out Output) (*Exec, error) {
	// Sent in one frame (the agent takes no request in parts), its code not
	// HTML-escaped (< > & would take six bytes each).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		return nil, err
	}
	payload := buf.Bytes()
	if len(payload) > MaxRequestPayload {
		return nil, fmt.Errorf("the exec request is %d bytes; the agent takes at most %d", len(payload), MaxRequestPayload)
	}
	p := &pending{out: out, started: make(chan Started, 1), exit: make(chan ExitStatus, 1)}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.nextID++
	id := c.nextID
	c.execs[id] = p
	c.mu.Unlock()
	if err := c.w.WriteWholeFrame(FrameExec, id, payload); err != nil {
		c.mu.Lock()
		delete(c.execs, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return &Exec{c: c, id: id, p: p}, nil
}

// WriteStdin sends bytes to the process's stdin (the request must have Stdin set).
func (e *Exec) WriteStdin(b []byte) error {
	return e.c.w.WriteFrame(FrameStdin, e.id, b)
}

// CloseStdin closes the process's stdin.
func (e *Exec) CloseStdin() error {
	return e.c.w.WriteFrame(FrameStdinClose, e.id, nil)
}

// Kill kills the execution's whole process tree.
func (e *Exec) Kill() error {
	return e.c.w.WriteFrame(FrameKill, e.id, nil)
}

// Wait waits for the execution to end. If ctx ends first, the process tree is killed
// and Wait still waits (briefly) for its status; if the agent is gone it returns
// an error wrapping ErrClosed.
func (e *Exec) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case st := <-e.p.exit:
		return st, nil
	case <-e.c.done:
		// The exit frame may have been dispatched just before the channel ended.
		select {
		case st := <-e.p.exit:
			return st, nil
		default:
		}
		return ExitStatus{ExitCode: -1}, e.c.Err()
	case <-ctx.Done():
		_ = e.Kill()
		select {
		case st := <-e.p.exit:
			st.Killed = true
			return st, ctx.Err()
		case <-e.c.done:
			return ExitStatus{ExitCode: -1, Killed: true}, ctx.Err()
		}
	}
}
