package agent

import (
	"bytes"
	"errors"
	"testing"
)

// TestWholeFrame checks a request frame above MaxPayload goes in one frame, which
// the agent's reader takes and the host's refuses.
func TestWholeFrame(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 3*MaxPayload)
	var buf bytes.Buffer
	if err := NewFrameWriter(&buf).WriteWholeFrame(FrameExec, 7, payload); err != nil {
		t.Fatal(err)
	}
	f, err := NewRequestReader(bytes.NewReader(buf.Bytes())).ReadFrame()
	if err != nil || f.Type != FrameExec || f.ID != 7 || !bytes.Equal(f.Payload, payload) {
		t.Fatalf("the agent read %v %d %d bytes, %v", f.Type, f.ID, len(f.Payload), err)
	}
	if _, err := NewFrameReader(bytes.NewReader(buf.Bytes())).ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("the host's reader took a %d-byte frame: %v", len(payload), err)
	}
	if err := NewFrameWriter(&buf).WriteWholeFrame(FrameExec, 8, make([]byte, MaxRequestPayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("a frame above MaxRequestPayload was written: %v", err)
	}
}
