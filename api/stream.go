package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/faas-platform/faas/engine"
)

// Streaming protocol: JSON text frames tagged by type.
//
// Server to client: started {execution_id}; stdout {data}; stderr {data};
// exit {code, execution_id, result}; error {error, code}; heartbeat.
// Client to server: exec {...the execute request's fields} (first, on
// /api/v1/execute/stream only); stdin {data}; stdin_close; stop.
type streamFrame struct {
	Type        string           `json:"type"`
	Data        string           `json:"data,omitempty"`
	ExecutionID string           `json:"execution_id,omitempty"`
	Code        *int             `json:"code,omitempty"`
	Error       string           `json:"error,omitempty"`
	ErrorCode   string           `json:"error_code,omitempty"`
	Result      *ExecuteResponse `json:"result,omitempty"`
}

// clientFrame is what a client sends on a stream.
type clientFrame struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

// execFrame is the first message of /api/v1/execute/stream: the execute request,
// optionally tagged {"type": "exec"}.
type execFrame struct {
	Type string `json:"type"`
	ExecuteRequest
}

const streamWriteTimeout = time.Minute

func acceptWebSocket(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	// Any origin may connect: authentication is by API key, never by cookie, so
	// a foreign page gains nothing it does not already hold.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(MaxBodyBytes)
	return c, nil
}

// closeWithError sends an error frame and closes with 4000+status.
func closeWithError(ctx context.Context, c *websocket.Conn, err error) {
	ae := toAPIError(err)
	writeFrame(ctx, c, streamFrame{Type: "error", Error: ae.msg, ErrorCode: ae.code})
	reason := ae.msg
	if len(reason) > 120 {
		reason = reason[:120]
	}
	c.Close(websocket.StatusCode(4000+ae.status), reason)
}

func writeFrame(ctx context.Context, c *websocket.Conn, f streamFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, streamWriteTimeout)
	defer cancel()
	return c.Write(wctx, websocket.MessageText, b)
}

// executeStream is GET /api/v1/execute/stream: the client sends an execute request
// as its first message and follows the execution live.
func (s *Server) executeStream(w http.ResponseWriter, r *http.Request) {
	c, err := acceptWebSocket(w, r)
	if err != nil {
		return // Accept has answered the client
	}
	defer c.CloseNow()
	ctx := r.Context()

	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, msg, err := c.Read(rctx)
	cancel()
	if err != nil {
		c.Close(websocket.StatusPolicyViolation, "expected the execute request as the first message")
		return
	}
	var f execFrame
	if err := json.Unmarshal(msg, &f); err != nil {
		closeWithError(ctx, c, newError(http.StatusBadRequest, "invalid_json", "the first message must be the execute request as a JSON object: "+err.Error()))
		return
	}
	if f.Type != "" && f.Type != "exec" {
		closeWithError(ctx, c, newError(http.StatusBadRequest, "invalid_request", fmt.Sprintf("the first message must be of type exec, not %q", f.Type)))
		return
	}
	req, err := f.ExecuteRequest.toEngine(principalFrom(ctx))
	if err != nil {
		closeWithError(ctx, c, err)
		return
	}
	// Without a fixed stdin the program's stdin is the client's stdin frames.
	req.Interactive = !req.HasStdin
	l, err := s.engine.Start(ctx, req)
	if err != nil {
		closeWithError(ctx, c, err)
		return
	}
	if writeFrame(ctx, c, streamFrame{Type: "started", ExecutionID: l.ID}) != nil {
		l.CloseStdin()
		return
	}
	s.follow(ctx, c, l)
}

// attachStream is GET /api/v1/executions/{id}/stream: replay a running or recently
// finished execution's output from the start, then follow it live.
func (s *Server) attachStream(w http.ResponseWriter, r *http.Request) {
	l, err := s.engine.Attach(principalFrom(r.Context()).Account, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := acceptWebSocket(w, r)
	if err != nil {
		return
	}
	defer c.CloseNow()
	if writeFrame(r.Context(), c, streamFrame{Type: "started", ExecutionID: l.ID}) != nil {
		return
	}
	s.follow(r.Context(), c, l)
}

// follow sends l's events to c until the exit (then closes c normally), and
// passes the client's stdin and stop frames to l. A client that reads slowly only
// slows its own connection: events are read from the execution's own bounded log.
func (s *Server) follow(ctx context.Context, c *websocket.Conn, l *engine.Live) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel()
		defer l.CloseStdin() // a client that goes away ends the program's stdin
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			var f clientFrame
			if json.Unmarshal(msg, &f) != nil {
				continue
			}
			switch f.Type {
			case "stdin":
				if err := l.WriteStdin(ctx, []byte(f.Data)); err != nil && ctx.Err() == nil {
					_ = writeFrame(ctx, c, streamFrame{Type: "error", Error: err.Error(), ErrorCode: "invalid_request"})
				}
			case "stdin_close", "eof":
				l.CloseStdin()
			case "stop":
				l.Stop()
			}
		}
	}()
	err := s.events(ctx, l, func(f streamFrame) error { return writeFrame(ctx, c, f) })
	if err != nil {
		return
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// events calls send with every frame of l from the start, heartbeats while idle,
// until the exit frame (sent last).
func (s *Server) events(ctx context.Context, l *engine.Live, send func(streamFrame) error) error {
	for cursor := 0; ; {
		nctx, cancel := context.WithTimeout(ctx, s.heartbeat)
		evs, err := l.Next(nctx, cursor)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			if err := send(streamFrame{Type: "heartbeat"}); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		cursor += len(evs)
		for _, ev := range evs {
			f := streamFrame{Type: ev.Type, Data: string(ev.Data)}
			if ev.Type == engine.EventExit {
				res, rerr := l.Result()
				if rerr != nil {
					ae := toAPIError(rerr)
					return send(streamFrame{Type: "error", Error: ae.msg, ErrorCode: ae.code, ExecutionID: l.ID})
				}
				resp := toExecuteResponse(res)
				f.Code, f.ExecutionID, f.Result = &resp.ExitCode, l.ID, &resp
			}
			if err := send(f); err != nil {
				return err
			}
			if ev.Type == engine.EventExit {
				return nil
			}
		}
	}
}

// eventsSSE is GET /api/v1/executions/{id}/events: the same frames as Server-Sent
// Events (event: <type>, data: <frame JSON>), for clients without WebSocket.
func (s *Server) eventsSSE(w http.ResponseWriter, r *http.Request) {
	l, err := s.engine.Attach(principalFrom(r.Context()).Account, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(f streamFrame) error {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		b, _ := json.Marshal(f)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", f.Type, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send(streamFrame{Type: "started", ExecutionID: l.ID}) != nil {
		return
	}
	_ = s.events(r.Context(), l, send)
}
