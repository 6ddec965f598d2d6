package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/coder/websocket"
)

// streamFirstByte measures a streamed execution: from opening the WebSocket
// (GET /api/v1/execute/stream) and sending the request to the first stdout frame
// of print(1); the rest of the stream is read untimed.
func streamFirstByte(ctx context.Context, b *bench) (benchResult, error) {
	op := func(ctx context.Context) error { return b.srv.streamFirstStdout(ctx) }
	if err := op(ctx); err != nil {
		return benchResult{}, err
	}
	ds, err := b.measure(ctx, b.srv.waitIdle, op)
	return benchResult{durations: ds}, err
}

func (s *benchServer) streamFirstStdout(ctx context.Context) error {
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/api/v1/execute/stream"
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + s.key}}})
	if err != nil {
		return fmt.Errorf("opening the stream: %w", err)
	}
	defer c.CloseNow()
	req, _ := json.Marshal(map[string]string{"type": "exec", "language": "python", "code": pythonPrint})
	if err := c.Write(ctx, websocket.MessageText, req); err != nil {
		return err
	}
	first := true
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return fmt.Errorf("reading the stream: %w", err)
		}
		var f struct{ Type, Data, Error string }
		if err := json.Unmarshal(msg, &f); err != nil {
			return err
		}
		switch f.Type {
		case "stdout":
			if first && !strings.HasPrefix(f.Data, "1") {
				return fmt.Errorf("first stdout frame %q, want 1", f.Data)
			}
			if first {
				first = false
				// The timed part ends here; the exit frame follows at once.
				go func() { _, _, _ = c.Read(context.WithoutCancel(ctx)) }()
				return nil
			}
		case "error":
			return fmt.Errorf("stream error: %s", f.Error)
		case "exit":
			return fmt.Errorf("the stream ended without output")
		}
	}
}
