package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/coder/websocket"

	"github.com/faas-platform/faas/agent"
)

// Terminal protocol (GET /api/v1/instances/{id}/terminal, WebSocket): a login
// shell on a PTY in the instance, for browsers (the same thing the SSH gateway
// gives). Query: rows, cols, term (optional). Client to server: {"type":
// "stdin", "data": "..."}, {"type": "resize", "rows": R, "cols": C}; server to
// client: {"type": "stdout", "data": "..."} and finally {"type": "exit",
// "code": N}.
type terminalFrame struct {
	Type string `json:"type"`
	Data string `json:"data,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	Code *int   `json:"code,omitempty"`
}

// wsWriter sends what is written as stdout frames.
type wsWriter struct {
	ctx context.Context
	c   *websocket.Conn
	mu  sync.Mutex
}

func (w *wsWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, _ := json.Marshal(terminalFrame{Type: "stdout", Data: string(p)})
	ctx, cancel := context.WithTimeout(w.ctx, streamWriteTimeout)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Server) terminal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rows, _ := strconv.Atoi(q.Get("rows"))
	cols, _ := strconv.Atoi(q.Get("cols"))
	if rows <= 0 || rows > 1000 {
		rows = 24
	}
	if cols <= 0 || cols > 1000 {
		cols = 80
	}
	c, err := acceptWebSocket(w, r)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out := &wsWriter{ctx: ctx, c: c}
	p := principalFrom(r.Context())
	ex, err := s.engine.StartProcess(ctx, p.Account, r.PathValue("id"), agent.ExecRequest{
		Argv: []string{"/bin/bash", "-l"}, Stdin: true,
		PTY: &agent.PTY{Winsize: agent.Winsize{Rows: uint16(rows), Cols: uint16(cols)}, Term: q.Get("term")},
	}, agent.Output{Stdout: out, Stderr: out})
	if err != nil {
		closeWithError(ctx, c, err)
		return
	}
	go func() {
		defer ex.CloseStdin()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				_ = ex.Kill()
				return
			}
			var f terminalFrame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			switch f.Type {
			case "stdin":
				_ = ex.WriteStdin([]byte(f.Data))
			case "resize":
				if f.Rows > 0 && f.Cols > 0 {
					_ = ex.Resize(f.Rows, f.Cols)
				}
			}
		}
	}()
	st, _ := ex.Wait(context.WithoutCancel(ctx))
	code := st.ExitCode
	out.mu.Lock()
	b, _ := json.Marshal(terminalFrame{Type: "exit", Code: &code})
	_ = c.Write(ctx, websocket.MessageText, b)
	out.mu.Unlock()
	c.Close(websocket.StatusNormalClosure, "")
}
