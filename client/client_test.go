package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These are unit tests of the SDK's own mechanics against httptest servers;
// the platform's acceptance tests run the SDK against a real server.

// newTestClient returns a client for srv whose waits are recorded, not slept.
func newTestClient(srv *httptest.Server, waits *[]time.Duration, opts ...Option) *Client {
	c := New(srv.URL+"/", "k3y", opts...)
	c.sleep = func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	}
	return c
}

func TestExecuteRequestAndHeaders(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/execute" {
			t.Errorf("request %s %s", r.Method, r.URL.Path)
		}
		for h, want := range map[string]string{
			"Authorization": "Bearer k3y",
			"Content-Type":  "application/json",
		} {
			if v := r.Header.Get(h); v != want {
				t.Errorf("%s = %q, want %q", h, v, want)
			}
		}
		if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "faas-go/") {
			t.Errorf("User-Agent = %q", ua)
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		io.WriteString(w, `{"execution_id":"e1","request_id":"e1","status":"failed","exit_code":3,
			"stdout":"out","stderr":"err","stdout_truncated":true,"timed_out":false,"oom_killed":true,
			"duration_ms":12,"mode":"ephemeral","language":"python","unknown":1,
			"usage":{"cpu_ms":5,"memory_peak_mb":7,"cost_usd":0.25}}`)
	}))
	defer srv.Close()

	var waits []time.Duration
	res, err := newTestClient(srv, &waits).Execute(context.Background(), ExecuteRequest{
		Language: "python", Code: "print(1)", Env: map[string]string{"A": "b"},
		TimeoutMS: 1500, Resources: &Resources{CPUCores: 0.5, MemoryMB: 256},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"language": "python", "code": "print(1)", "env_vars": map[string]any{"A": "b"},
		"timeout_ms": 1500.0, "resources": map[string]any{"cpu_cores": 0.5, "memory_mb": 256.0},
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("body = %s\nwant %s", g, w)
	}
	if res.ExecutionID != "e1" || res.Status != StatusFailed || res.ExitCode != 3 ||
		res.Stdout != "out" || res.Stderr != "err" || !res.StdoutTruncated || !res.OOMKilled ||
		res.Duration() != 12*time.Millisecond || res.Usage != (Usage{CPUMS: 5, MemoryPeakMB: 7, CostUSD: 0.25}) {
		t.Errorf("result = %+v", res)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantCode   string
		wantMsg    string
		notFound   bool
		unauthzed  bool
		retryAfter string
	}{
		{name: "json", status: 404, body: `{"error":"execution x not found","code":"not_found"}`,
			wantCode: "not_found", wantMsg: "execution x not found", notFound: true},
		{name: "auth", status: 401, body: `{"error":"missing API key","code":"unauthorized"}`,
			wantCode: "unauthorized", wantMsg: "missing API key", unauthzed: true},
		{name: "html", status: 502, body: "<html>\n<b>bad   gateway</b></html>",
			wantMsg: "502 Bad Gateway: <html> <b>bad gateway</b></html>"},
		{name: "empty", status: 500, body: "", wantMsg: "500 Internal Server Error (empty body)"},
		{name: "long", status: 400, body: strings.Repeat("x", 1000), wantMsg: "400 Bad Request: " + strings.Repeat("x", 200) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			var waits []time.Duration
			_, err := newTestClient(srv, &waits).GetExecution(context.Background(), "x")
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.StatusCode != tt.status || ae.Code != tt.wantCode || ae.Message != tt.wantMsg {
				t.Errorf("got %#v", ae)
			}
			if IsNotFound(err) != tt.notFound || IsUnauthorized(err) != tt.unauthzed {
				t.Errorf("IsNotFound/IsUnauthorized wrong for %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"command":"true"}` {
			t.Errorf("attempt %d body = %q", calls.Load(), b)
		}
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":"slow down","code":"rate_limited"}`)
		case 2:
			w.Header().Set("Retry-After", "3600") // capped
			w.WriteHeader(503)
			io.WriteString(w, `{"error":"busy","code":"busy"}`)
		case 3:
			w.WriteHeader(503) // no Retry-After: back-off
			io.WriteString(w, `{"error":"busy","code":"busy"}`)
		default:
			io.WriteString(w, `{"execution_id":"e","status":"succeeded"}`)
		}
	}))
	defer srv.Close()

	var waits []time.Duration
	res, err := newTestClient(srv, &waits).Execute(context.Background(), ExecuteRequest{Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusSucceeded || calls.Load() != 4 {
		t.Fatalf("status %q after %d calls", res.Status, calls.Load())
	}
	if len(waits) != 3 || waits[0] != 2*time.Second || waits[1] != maxRetryWait ||
		waits[2] < baseBackoff<<2/2 || waits[2] >= baseBackoff<<2 {
		t.Errorf("waits = %v", waits)
	}
}

func TestRetriesExhaustedAndNotRetried(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		opts      []Option
		wantCalls int32
	}{
		{"default retries", 503, nil, 4},
		{"no retries", 429, []Option{WithRetries(0)}, 1},
		{"500 not retried", 500, nil, 1},
		{"400 not retried", 400, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(tt.status)
				io.WriteString(w, `{"error":"no","code":"x"}`)
			}))
			defer srv.Close()
			var waits []time.Duration
			_, err := newTestClient(srv, &waits, tt.opts...).Execute(context.Background(), ExecuteRequest{Command: "true"})
			var ae *APIError
			if !errors.As(err, &ae) || ae.StatusCode != tt.status || ae.RetryAfter != time.Second {
				t.Fatalf("err = %#v", err)
			}
			if calls.Load() != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls.Load(), tt.wantCalls)
			}
		})
	}
}

func TestRetryRespectsContext(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(429)
		io.WriteString(w, `{"error":"slow down","code":"rate_limited"}`)
	}))
	defer srv.Close()

	// A deadline shorter than Retry-After: give up at once with the APIError.
	c := New(srv.URL, "k")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Execute(ctx, ExecuteRequest{Command: "true"})
	if !IsRateLimited(err) || calls.Load() != 1 {
		t.Fatalf("err = %v after %d calls", err, calls.Load())
	}

	// Cancelled while waiting: the error says both.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = c.Execute(ctx, ExecuteRequest{Command: "true"})
	if !IsRateLimited(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestHealth(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || r.Header.Get("Authorization") != "" {
			t.Errorf("%s with Authorization %q", r.URL.Path, r.Header.Get("Authorization"))
		}
		w.WriteHeader(int(status.Load()))
		if status.Load() == 200 {
			// The shape of the server's answer (api/server.go healthResponse).
			io.WriteString(w, `{"status":"ok","version":"1","runtime":{"name":"gvisor","version":"x","ready":true},
				"database":{"driver":"sqlite","ok":true},
				"sandboxes":{"live":5,"stocked":1,"sessions":2,"branch_stocked":1,"instances":1}}`)
		} else {
			io.WriteString(w, `{"status":"degraded","version":"1","runtime":{"name":"gvisor","ready":false,"error":"runsc missing"},
				"database":{"driver":"postgres","ok":false,"error":"connection refused"},"sandboxes":{}}`)
		}
	}))
	defer srv.Close()
	c := New(srv.URL, "k")
	h, err := c.Health(context.Background())
	if err != nil || !h.OK() || !h.Runtime.Ready || h.Runtime.Name != "gvisor" ||
		h.Database != (DatabaseInfo{Driver: "sqlite", OK: true}) ||
		h.Sandboxes != (SandboxCounts{Live: 5, Stocked: 1, Sessions: 2, BranchStocked: 1, Instances: 1}) {
		t.Fatalf("health = %+v, %v", h, err)
	}
	status.Store(503)
	h, err = c.Health(context.Background())
	if err != nil || h.OK() || h.Runtime.Error != "runsc missing" || h.Database.OK || h.Database.Error != "connection refused" {
		t.Fatalf("degraded health = %+v, %v", h, err)
	}
}

func TestGetExecution(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.EscapedPath() != "/api/v1/executions/a%2Fb" {
			t.Errorf("path %q", r.URL.EscapedPath())
		}
		io.WriteString(w, `{"execution_id":"a/b","status":"running","created_at":"2025-01-02T03:04:05Z","finished_at":"","usage":{"cpu_ms":1}}`)
	}))
	defer srv.Close()
	ex, err := New(srv.URL, "k").GetExecution(context.Background(), "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if ex.ExecutionID != "a/b" || ex.Status != "running" || !ex.FinishedAt.IsZero() ||
		!ex.CreatedAt.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) || ex.Usage.CPUMS != 1 {
		t.Errorf("execution = %+v", ex)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"0.5":                           500 * time.Millisecond,
		"-1":                            0,
		"soon":                          0,
		"Wed, 01 Jan 2025 00:00:07 GMT": 7 * time.Second,
		"Tue, 31 Dec 2024 00:00:07 GMT": 0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNewEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://h:1/":     "http://h:1",
		"127.0.0.1:8080":  "http://127.0.0.1:8080",
		"https://x/faas/": "https://x/faas",
	} {
		if got := New(in, "").Endpoint(); got != want {
			t.Errorf("New(%q).Endpoint() = %q, want %q", in, got, want)
		}
	}
}
