package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faas-platform/faas/client"
)

// benchServer is a faas server running in this process for `faas bench`.
type benchServer struct {
	url    string
	key    string
	stock  int
	hc     *http.Client
	client *client.Client

	cancel  context.CancelFunc
	done    chan error // serve's result
	logPath string     // "" when the log goes to the terminal
	logFile *os.File
}

// server returns the running server with stock pre-booted sandboxes,
// stopping a running one with another stock first: one server at a time, so
// one's sandboxes never weigh on the other's figures.
func (b *bench) server(ctx context.Context, stock int) (*benchServer, error) {
	if b.srv != nil && b.srv.stock == stock {
		return b.srv, nil
	}
	b.stopServer()
	s, err := startBenchServer(ctx, b.opts, b.tmp, stock)
	if err != nil {
		return nil, err
	}
	b.srv = s
	// Let the stock fill before the first measurement.
	if err := s.waitIdle(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// stopServer stops the running server, if any: serve drains executions in
// flight and destroys every sandbox before it returns.
func (b *bench) stopServer() {
	if b.srv == nil {
		return
	}
	s := b.srv
	b.srv = nil
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			fmt.Fprintf(os.Stderr, "faas bench: in-process server: %v\n", err)
		}
	case <-time.After(90 * time.Second):
		fmt.Fprintln(os.Stderr, "faas bench: the in-process server did not stop within 90s")
	}
	s.hc.CloseIdleConnections()
	if s.logFile != nil {
		s.logFile.Close()
	}
}

// printLogTail shows the end of the server's log after a failure, since the
// temporary directory holding it is removed at exit.
func (b *bench) printLogTail() {
	if b.srv == nil || b.srv.logPath == "" {
		return
	}
	data, err := os.ReadFile(b.srv.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(0, len(lines)-15):]
	fmt.Fprintf(os.Stderr, "    last lines of the server's log:\n")
	for _, l := range lines {
		fmt.Fprintf(os.Stderr, "    | %s\n", l)
	}
}

func startBenchServer(ctx context.Context, o *benchOptions, tmp string, stock int) (*benchServer, error) {
	c, err := parseServe(nil)
	if err != nil {
		return nil, err
	}
	var kb [24]byte
	_, _ = rand.Read(kb[:])
	name := fmt.Sprintf("server-stock%d", stock)
	c.host, c.port = "127.0.0.1", 0
	c.dataDir = filepath.Join(tmp, name)
	c.databaseURL = "" // SQLite in the temporary data directory
	c.runsc, c.agent = o.runsc, o.agent
	c.stock = stock
	c.sshPort = 0 // no gateway: nothing measured needs it, and no fixed port to collide on
	if stock == 0 {
		c.branchStockMax = 0 // the cold server restores nothing ahead of demand either
	}
	c.debugRunsc = false
	c.shutdownDur = 30 * time.Second
	c.adminKey = "faas_" + hex.EncodeToString(kb[:])
	// The bench polls the server between runs; its key must not be rate limited.
	c.rate.PerMinute = 0

	s := &benchServer{key: c.adminKey, stock: stock, done: make(chan error, 1)}
	var logOut io.Writer = os.Stderr
	if !o.verbose {
		s.logPath = filepath.Join(tmp, name+".log")
		f, err := os.Create(s.logPath)
		if err != nil {
			return nil, err
		}
		s.logFile, logOut = f, f
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// The server's lifetime is ours to end (stopServer), not the command's
	// context: on Ctrl-C the deferred stop still drains and cleans up.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	ready := make(chan string, 1)
	go func() { s.done <- serve(sctx, c, log, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-s.done:
		cancel()
		if s.logFile != nil {
			s.logFile.Close()
		}
		if err == nil {
			err = errors.New("stopped before accepting connections")
		}
		return nil, fmt.Errorf("starting the in-process server: %w", err)
	case <-ctx.Done():
		cancel()
		<-s.done
		if s.logFile != nil {
			s.logFile.Close()
		}
		return nil, ctx.Err()
	}
	s.url = "http://" + addr
	s.hc = &http.Client{Transport: &http.Transport{
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64, // concurrent clients keep their connections
		IdleConnTimeout:     time.Minute,
	}}
	// No retries: a 503 is a result to report, not to hide.
	s.client = client.New(s.url, s.key, client.WithHTTPClient(s.hc), client.WithRetries(0))
	return s, nil
}

// waitIdle waits until the server is at rest: its stock is full and no other
// sandbox is alive (the previous execution's has been destroyed).
func (s *benchServer) waitIdle(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	var h struct {
		Sandboxes struct {
			Live          int `json:"live"`
			Stocked       int `json:"stocked"`
			Sessions      int `json:"sessions"`
			BranchStocked int `json:"branch_stocked"`
			Instances     int `json:"instances"`
		} `json:"sandboxes"`
	}
	var p struct {
		Pools []struct {
			Idle  int `json:"idle"`
			InUse int `json:"in_use"`
		} `json:"pools"`
	}
	for {
		if err := s.get(ctx, "/health", &h); err != nil {
			return fmt.Errorf("waiting for the server to settle: %w", err)
		}
		if err := s.get(ctx, "/api/v1/pools?all=true", &p); err != nil {
			return fmt.Errorf("waiting for the server to settle: %w", err)
		}
		// At rest: the stock full, and every other sandbox idle in a warm pool.
		idle, busy := 0, 0
		for _, pool := range p.Pools {
			idle += pool.Idle
			busy += pool.InUse
		}
		if h.Sandboxes.Stocked == s.stock && busy == 0 && h.Sandboxes.Live == s.stock+idle+h.Sandboxes.Sessions+h.Sandboxes.BranchStocked+h.Sandboxes.Instances {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not settle within 60s: %d sandboxes alive, %d of %d stocked, %d idle warm",
				h.Sandboxes.Live, h.Sandboxes.Stocked, s.stock, idle)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// waitBranchStock waits (untimed) until at least n sandboxes are restored ahead
// of demand.
func (s *benchServer) waitBranchStock(ctx context.Context, n int) error {
	var h struct {
		Sandboxes struct {
			BranchStocked int `json:"branch_stocked"`
		} `json:"sandboxes"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := s.get(ctx, "/health", &h); err != nil {
			return err
		}
		if h.Sandboxes.BranchStocked >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d branch sandboxes restored ahead of demand after 60s", h.Sandboxes.BranchStocked, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitWarm waits (untimed) until the account's warm pool has an idle sandbox.
func (s *benchServer) waitWarm(ctx context.Context) error {
	for range 200 {
		var p struct {
			Pools []struct {
				Idle int `json:"idle"`
			} `json:"pools"`
		}
		if err := s.get(ctx, "/api/v1/pools", &p); err != nil {
			return err
		}
		if len(p.Pools) > 0 && p.Pools[0].Idle > 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("no warm sandbox came back to the pool within 2 s")
}

// executePrintsOne runs req through the SDK and checks that it printed 1.
func (s *benchServer) executePrintsOne(ctx context.Context, req client.ExecuteRequest) error {
	res, err := s.client.Execute(ctx, req)
	if err != nil {
		return err
	}
	if res.Status != client.StatusSucceeded || strings.TrimSpace(res.Stdout) != "1" {
		return fmt.Errorf("execution %s: status %s, exit %d, stdout %q, stderr %q, error %q",
			res.ExecutionID, res.Status, res.ExitCode, res.Stdout, res.Stderr, res.Error)
	}
	return nil
}

// httpError is an error answer to a request sent without the SDK (for API
// surface the SDK does not cover yet).
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.msg, e.status, e.code)
}

func (s *benchServer) get(ctx context.Context, path string, out any) error {
	return s.do(ctx, http.MethodGet, path, nil, out)
}

func (s *benchServer) post(ctx context.Context, path string, in, out any) error {
	return s.do(ctx, http.MethodPost, path, in, out)
}

func (s *benchServer) delete(ctx context.Context, path string) error {
	return s.do(ctx, http.MethodDelete, path, nil, nil)
}

func (s *benchServer) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newHTTPError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding %s %s answer: %w", method, path, err)
	}
	return nil
}

func newHTTPError(status int, body []byte) *httpError {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
		if len(e.Error) > 200 {
			e.Error = e.Error[:200] + "..."
		}
	}
	return &httpError{status: status, code: e.Code, msg: e.Error}
}

// notAvailableOr turns an answer saying this build lacks a feature into
// errNotAvailable: 501, or, for a request to an endpoint that takes no id
// (route), a 404 meaning the endpoint itself does not exist yet. Other errors
// are returned as they are.
func notAvailableOr(err error, route bool) error {
	status, msg := 0, ""
	var ae *client.APIError
	var he *httpError
	switch {
	case errors.As(err, &ae):
		status, msg = ae.StatusCode, ae.Message
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	default:
		return err
	}
	if status == http.StatusNotImplemented || (route && status == http.StatusNotFound) {
		return errNotAvailable{fmt.Sprintf("%d: %s", status, msg)}
	}
	return err
}
