package agent

import (
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"time"
)

// tunnel is a TCP connection from the agent to a port on the sandbox's loopback,
// carried over the channel for the host (which proxies exposed ports through it:
// the sandbox itself has no network).
type tunnel struct {
	in   chan []byte // from the host; nil element: the host will send no more
	once sync.Once
}

func (t *tunnel) close() { t.once.Do(func() { close(t.in) }) }

func (s *Server) tunnelFrame(f Frame) {
	s.tunnelMu.Lock()
	t := s.tunnels[f.ID]
	s.tunnelMu.Unlock()
	switch f.Type {
	case FrameTunnelOpen:
		var o TunnelOpen
		if err := json.Unmarshal(f.Payload, &o); err != nil || o.Port <= 0 || o.Port > 65535 || t != nil {
			s.sendJSON(FrameTunnelReady, f.ID, Done{Error: "bad tunnel request"})
			return
		}
		t = &tunnel{in: make(chan []byte, 64)}
		s.tunnelMu.Lock()
		s.tunnels[f.ID] = t
		s.tunnelMu.Unlock()
		go s.runTunnel(f.ID, t, o.Port)
	case FrameTunnelData:
		if t != nil {
			t.in <- f.Payload
		}
	case FrameTunnelClose:
		if t == nil {
			return
		}
		if string(f.Payload) == "w" {
			t.in <- nil
			return
		}
		s.tunnelMu.Lock()
		delete(s.tunnels, f.ID)
		s.tunnelMu.Unlock()
		t.close()
	}
}

func (s *Server) runTunnel(id uint32, t *tunnel, port int) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		s.tunnelMu.Lock()
		delete(s.tunnels, id)
		s.tunnelMu.Unlock()
		t.close()
		go func() {
			for range t.in { // drain what the host sent meanwhile
			}
		}()
		s.sendJSON(FrameTunnelReady, id, Done{Error: "nothing listens on port " + strconv.Itoa(port) + " in the sandbox"})
		return
	}
	s.sendJSON(FrameTunnelReady, id, Done{})
	go func() {
		// Host to sandbox, until the host closes the tunnel.
		for b := range t.in {
			if b == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				continue
			}
			if _, err := conn.Write(b); err != nil {
				conn.Close()
			}
		}
		conn.Close()
	}()
	// Sandbox to host, until the port's side ends.
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if werr := s.w.WriteFrame(FrameTunnelData, id, buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = s.w.WriteFrame(FrameTunnelClose, id, []byte("w"))
}
