package agent

import (
	"bytes"
	"testing"
)

// FuzzFrameReader feeds arbitrary bytes to the frame reader: it must never panic
// or allocate past MaxPayload, and what it reads must write back identically.
func FuzzFrameReader(f *testing.F) {
	var b bytes.Buffer
	w := NewFrameWriter(&b)
	_ = w.WriteFrame(FrameExec, 1, []byte(`{"argv":["true"]}`))
	_ = w.WriteFrame(FrameStdout, 7, []byte("hello"))
	_ = w.WriteFrame(FrameStdinClose, 2, nil)
	f.Add(b.Bytes())
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0})                // length below the header
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0}) // absurd length
	f.Add([]byte{0, 0, 0, 9, 66, 0, 0, 0, 1, 'a'})       // truncated payload
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewFrameReader(bytes.NewReader(data))
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				return // any error ends the stream; only panics and huge payloads are bugs
			}
			if len(fr.Payload) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(fr.Payload))
			}
			var out bytes.Buffer
			if err := NewFrameWriter(&out).WriteFrame(fr.Type, fr.ID, fr.Payload); err != nil {
				t.Fatal(err)
			}
			back, err := NewFrameReader(&out).ReadFrame()
			if err != nil || back.Type != fr.Type || back.ID != fr.ID || !bytes.Equal(back.Payload, fr.Payload) {
				t.Fatalf("frame %+v did not round-trip: %+v %v", fr, back, err)
			}
		}
	})
}
