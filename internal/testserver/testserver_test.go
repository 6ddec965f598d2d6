package testserver

import (
	"io"
	"net"
	"strconv"
	"testing"
)

// TestStartOnTakenPort checks a start whose SSH port another process holds is
// tried again on new ports instead of failing the test (parallel tests each
// choose free ports, and one may take another's before its server binds it).
func TestStartOnTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	s := Start(t, Options{Env: []string{"FAAS_SSH_PORT=" + strconv.Itoa(taken), "FAAS_STOCK=0"}})
	if s.SSHPort == taken {
		t.Fatalf("the server's SSH port is still the taken %d", taken)
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.SSHPort)))
	if err != nil {
		t.Fatalf("the SSH gateway is not on port %d: %v", s.SSHPort, err)
	}
	defer c.Close()
	banner := make([]byte, 8)
	if _, err := io.ReadFull(c, banner); err != nil || string(banner) != "SSH-2.0-" {
		t.Errorf("port %d answers %q (%v), not an SSH banner", s.SSHPort, banner, err)
	}
	if status, b, _ := s.Do(t.Context(), "GET", "/health", nil); status != 200 {
		t.Errorf("health: %d %s", status, b)
	}
}
