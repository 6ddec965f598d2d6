package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The streaming scenario needs a WebSocket client and the standard library
// has none: this is the least of RFC 6455 a client needs (handshake, masked
// text frames out, unfragmented frames in), enough to time a first byte.

// streamFirstStdout opens GET /api/v1/execute/stream, sends an exec message
// and returns when the first stdout frame arrives.
func (s *benchServer) streamFirstStdout(ctx context.Context, language, code string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u, err := url.Parse(s.url + "/api/v1/execute/stream")
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}

	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Authorization", "Bearer "+s.key)
	if err := req.Write(conn); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return newHTTPError(resp.StatusCode, body)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("websocket handshake: wrong Sec-WebSocket-Accept")
	}

	msg, _ := json.Marshal(map[string]string{"type": "exec", "language": language, "code": code})
	if err := writeWSFrame(conn, 0x1, msg); err != nil {
		return err
	}
	for {
		op, payload, err := readWSFrame(br)
		if err != nil {
			return fmt.Errorf("reading the stream: %w", err)
		}
		switch op {
		case 0x8:
			return errors.New("the server closed the stream before any stdout")
		case 0x9:
			if err := writeWSFrame(conn, 0xA, payload); err != nil {
				return err
			}
			continue
		case 0x1:
		default:
			continue
		}
		var m struct {
			Type  string `json:"type"`
			Error string `json:"error"`
			Data  string `json:"data"`
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			return fmt.Errorf("stream message %q: %w", payload, err)
		}
		switch m.Type {
		case "stdout":
			_ = writeWSFrame(conn, 0x8, []byte{0x03, 0xE8}) // close, 1000
			return nil
		case "error":
			return fmt.Errorf("stream error: %s", strings.TrimSpace(m.Error+" "+m.Data))
		case "exit":
			return errors.New("the execution exited without stdout")
		}
	}
}

// writeWSFrame writes one final, masked client frame.
func writeWSFrame(w io.Writer, opcode byte, payload []byte) error {
	hdr := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(payload))
	for i, c := range payload {
		masked[i] = c ^ mask[i%4]
	}
	_, err := w.Write(append(hdr, masked...))
	return err
}

// readWSFrame reads one frame from the server (servers do not mask).
func readWSFrame(r *bufio.Reader) (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	opcode = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("websocket frame of %d bytes", n)
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return opcode, payload, nil
}
