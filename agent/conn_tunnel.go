package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Resize changes the terminal size of an execution started with a PTY.
func (e *Exec) Resize(rows, cols uint16) error {
	b, _ := json.Marshal(Winsize{Rows: rows, Cols: cols})
	return e.c.w.WriteFrame(FrameResize, e.id, b)
}

// Tunnel is a TCP connection to a port on the sandbox's loopback, through the
// agent. It is an io.ReadWriteCloser; CloseWrite ends the host's direction only.
type Tunnel struct {
	c     *Conn
	id    uint32
	data  chan []byte   // closed (by the connection's reader only) when the sandbox side has no more to send
	gone  chan struct{} // closed by Close
	ready chan Done
	buf   []byte

	closeOnce sync.Once
	endOnce   sync.Once
}

// tunnelBuffer is how many frames of a tunnel the connection holds for a reader
// that is behind; past that, the connection waits for it.
const tunnelBuffer = 256

// Dial opens a tunnel to port on the sandbox's loopback. It fails if nothing
// listens there.
func (c *Conn) Dial(ctx context.Context, port int) (*Tunnel, error) {
	t := &Tunnel{c: c, data: make(chan []byte, tunnelBuffer), gone: make(chan struct{}), ready: make(chan Done, 1)}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.nextID++
	t.id = c.nextID
	c.tunnels[t.id] = t
	c.mu.Unlock()
	b, _ := json.Marshal(TunnelOpen{Port: port})
	if err := c.w.WriteFrame(FrameTunnelOpen, t.id, b); err != nil {
		t.forget()
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	select {
	case d := <-t.ready:
		if d.Error != "" {
			t.forget()
			return nil, errors.New(d.Error)
		}
		return t, nil
	case <-c.done:
		t.forget()
		return nil, c.Err()
	case <-ctx.Done():
		_ = t.Close()
		return nil, ctx.Err()
	}
}

func (t *Tunnel) forget() {
	t.c.mu.Lock()
	delete(t.c.tunnels, t.id)
	t.c.mu.Unlock()
}

// end marks the sandbox side finished (called by the connection's reader).
func (t *Tunnel) end() { t.endOnce.Do(func() { close(t.data) }) }

func (t *Tunnel) closed() <-chan struct{} { return t.gone }

// Read reads what the sandbox side sent.
func (t *Tunnel) Read(p []byte) (int, error) {
	if len(t.buf) == 0 {
		select {
		case b, ok := <-t.data:
			if !ok {
				return 0, io.EOF
			}
			t.buf = b
		case <-t.gone:
			return 0, io.ErrClosedPipe
		case <-t.c.done:
			// Deliver what arrived before the end.
			select {
			case b, ok := <-t.data:
				if ok {
					t.buf = b
					break
				}
				return 0, io.EOF
			default:
				return 0, t.c.Err()
			}
		}
	}
	n := copy(p, t.buf)
	t.buf = t.buf[n:]
	return n, nil
}

// Write sends p to the sandbox side.
func (t *Tunnel) Write(p []byte) (int, error) {
	if err := t.c.w.WriteFrame(FrameTunnelData, t.id, p); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return len(p), nil
}

// CloseWrite tells the sandbox side no more data comes.
func (t *Tunnel) CloseWrite() error {
	return t.c.w.WriteFrame(FrameTunnelClose, t.id, []byte("w"))
}

// Close closes the tunnel in both directions.
func (t *Tunnel) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.forget()
		close(t.gone)
		err = t.c.w.WriteFrame(FrameTunnelClose, t.id, nil)
	})
	return err
}
