package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

// Benchmarks of the frame protocol's hot paths: output streaming (32 KiB
// stdout frames, the agent's read size) and small JSON control frames.
// Run: go test -run '^$' -bench . ./agent/

func BenchmarkFrameRoundTrip(b *testing.B) {
	stdout := bytes.Repeat([]byte("0123456789abcdef"), 32<<10/16)
	exec, err := json.Marshal(ExecRequest{
		Argv: []string{"/usr/bin/python3", "-c", "print(1)"}, Env: []string{"PATH=/usr/bin:/bin", "HOME=/workspace", "LANG=C.UTF-8"},
		Dir: "/workspace", UID: 1000, GID: 1000, TimeoutMS: 30000, MaxOutputBytes: 1 << 20, MaxProcs: 256,
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		typ     FrameType
		payload []byte
	}{
		{"stdout-32KiB", FrameStdout, stdout},
		{"control-exec", FrameExec, exec},
	} {
		// buffer: encode then decode through memory, no goroutines.
		b.Run(c.name+"/buffer", func(b *testing.B) {
			var buf bytes.Buffer
			fw, fr := NewFrameWriter(&buf), NewFrameReader(&buf)
			b.SetBytes(int64(len(c.payload)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := fw.WriteFrame(c.typ, uint32(i), c.payload); err != nil {
					b.Fatal(err)
				}
				f, err := fr.ReadFrame()
				if err != nil {
					b.Fatal(err)
				}
				if len(f.Payload) != len(c.payload) {
					b.Fatalf("read %d bytes, wrote %d", len(f.Payload), len(c.payload))
				}
			}
		})
		// pipe: writer and reader in two goroutines, as over the sandbox's stdio.
		b.Run(c.name+"/pipe", func(b *testing.B) {
			pr, pw := io.Pipe()
			fw, fr := NewFrameWriter(pw), NewFrameReader(pr)
			b.SetBytes(int64(len(c.payload)))
			b.ReportAllocs()
			done := make(chan error, 1)
			n := b.N
			go func() {
				for range n {
					if _, err := fr.ReadFrame(); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			b.ResetTimer()
			for i := range n {
				if err := fw.WriteFrame(c.typ, uint32(i), c.payload); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			pw.Close()
		})
	}
}

// BenchmarkControlJSON is a whole control exchange as the host and the agent
// do it: marshal, frame, read, unmarshal, for an ExecRequest one way and an
// ExitStatus the other.
func BenchmarkControlJSON(b *testing.B) {
	req := ExecRequest{
		Argv: []string{"/usr/bin/python3", "-c", "print(1)"}, Env: []string{"PATH=/usr/bin:/bin", "HOME=/workspace"},
		Dir: "/workspace", UID: 1000, GID: 1000, TimeoutMS: 30000, MaxOutputBytes: 1 << 20,
	}
	exit := ExitStatus{ExitCode: 0, UserMS: 12, SystemMS: 4, MaxRSSKB: 9000, StdoutBytes: 2, DurationMS: 18}
	var buf bytes.Buffer
	fw, fr := NewFrameWriter(&buf), NewFrameReader(&buf)
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range []any{&req, &exit} {
			p, err := json.Marshal(v)
			if err != nil {
				b.Fatal(err)
			}
			if err := fw.WriteFrame(FrameExec, 7, p); err != nil {
				b.Fatal(err)
			}
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(f.Payload, v); err != nil {
				b.Fatal(err)
			}
		}
	}
}
