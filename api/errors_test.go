package api

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWriteErrorClientGone: a request its client abandoned is not logged as a
// server failure; the same error with the client still there is.
func TestWriteErrorClientGone(t *testing.T) {
	var logs bytes.Buffer
	s := New(nil, nil, Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	err := fmt.Errorf("booting a sandbox: %w", context.Canceled)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	s.writeError(w, httptest.NewRequest("POST", "/api/v1/execute", nil).WithContext(ctx), err)
	if w.Code != statusClientClosed || logs.Len() != 0 {
		t.Errorf("client gone: status %d, logs %q; want %d and nothing logged", w.Code, logs.String(), statusClientClosed)
	}

	w = httptest.NewRecorder()
	s.writeError(w, httptest.NewRequest("POST", "/api/v1/execute", nil), err)
	if w.Code != 500 || !strings.Contains(logs.String(), "request failed") {
		t.Errorf("client there: status %d, logs %q; want 500 and an error logged", w.Code, logs.String())
	}
}
