// Package client is the Go SDK for the faas code execution platform. It speaks
// the server's public HTTP API (/api/v1) and is what the faas command-line
// client itself uses.
//
// A Client is safe for concurrent use. Every call takes a context that bounds
// the whole call, retries included:
//
//	c := client.New("http://127.0.0.1:8080", os.Getenv("FAAS_API_KEY"))
//	res, err := c.Execute(ctx, client.ExecuteRequest{Language: "python", Code: "print(1)"})
//	if err != nil {
//		return err // *client.APIError when the server answered with an error
//	}
//	fmt.Print(res.Stdout)
//
// Answers 429 (Too Many Requests) and 503 (Service Unavailable) are retried,
// honouring the server's Retry-After header (see WithRetries); no other answer
// and no transport error is retried, so a request is never sent twice after
// the server may have acted on it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// modulePath is this module's path, used to find the SDK's version in the
// binary's build information.
const modulePath = "github.com/faas-platform/faas"

// version overrides the version sent in the User-Agent header. It can be set
// at build time with -ldflags "-X github.com/faas-platform/faas/client.version=v1.2.3";
// when empty the module version recorded in the binary is used.
var version = ""

// Defaults for the retry policy.
const (
	defaultRetries = 3
	maxRetryWait   = 30 * time.Second
	baseBackoff    = 250 * time.Millisecond
	maxBackoff     = 8 * time.Second
	// maxErrorBody is how much of an error answer is read.
	maxErrorBody = 64 << 10
	// errorSnippet is how much of a non-JSON error body goes into APIError.Message.
	errorSnippet = 200
)

// Client talks to one faas server. Create it with New; the zero value is not usable.
type Client struct {
	endpoint   string // scheme://host[:port][/prefix], no trailing slash
	apiKey     string
	httpClient *http.Client
	retries    int
	userAgent  string

	// sleep waits for d or until ctx is done; replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

// Option configures a Client in New.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc instead of a
// default *http.Client (which has no overall timeout: contexts bound calls).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.httpClient = hc
		}
	}
}

// WithRetries sets how many times a request answered with 429 or 503 is sent
// again (default 3; 0 disables retries). Each wait honours the answer's
// Retry-After header, capped at 30s, or else backs off exponentially with
// jitter. A wait that would outlast the call's context deadline is not
// started: the last APIError is returned instead.
func WithRetries(n int) Option {
	return func(c *Client) {
		c.retries = max(n, 0)
	}
}

// WithUserAgent replaces the User-Agent header, by default "faas-go/<version>".
func WithUserAgent(ua string) Option {
	return func(c *Client) {
		if ua != "" {
			c.userAgent = ua
		}
	}
}

// New returns a Client for the server at endpoint, such as
// "http://127.0.0.1:8080" (a trailing slash is fine; "http://" is assumed when
// no scheme is given). apiKey is sent as a bearer token; when it is empty no
// Authorization header is sent.
func New(endpoint, apiKey string, opts ...Option) *Client {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint != "" && !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	c := &Client{
		endpoint:   strings.TrimRight(endpoint, "/"),
		apiKey:     apiKey,
		httpClient: &http.Client{},
		retries:    defaultRetries,
		userAgent:  "faas-go/" + sdkVersion(),
		sleep:      sleepCtx,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Endpoint returns the server address the Client sends requests to.
func (c *Client) Endpoint() string { return c.endpoint }

// sdkVersion is the version in the User-Agent header: the link-time override,
// else this module's version as recorded in the binary, else "dev".
var sdkVersion = sync.OnceValue(func() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == modulePath && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, m := range bi.Deps {
			if m.Path == modulePath && m.Version != "" {
				return m.Version
			}
		}
	}
	return "dev"
})

// Execute runs code (or a command) once and waits for it to finish. A program
// that fails or times out is not an error: look at the result's Status and
// ExitCode. An error means the server refused or could not run the request
// (*APIError) or could not be reached.
func (c *Client) Execute(ctx context.Context, req ExecuteRequest) (*ExecuteResult, error) {
	var res ExecuteResult
	if err := c.do(ctx, http.MethodPost, "/api/v1/execute", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// GetExecution returns the record of a past execution (without its output).
// It returns an *APIError for which IsNotFound is true when there is none.
func (c *Client) GetExecution(ctx context.Context, id string) (*Execution, error) {
	if id == "" {
		return nil, errors.New("client: empty execution id")
	}
	var ex Execution
	if err := c.do(ctx, http.MethodGet, "/api/v1/executions/"+url.PathEscape(id), nil, &ex); err != nil {
		return nil, err
	}
	return &ex, nil
}

// Health reports the server's health; it needs no API key and is not retried.
// A degraded server that answers 503 with a health report gives that report
// and no error, so callers can show what is wrong.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	resp, err := c.send(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		var h Health
		if json.Unmarshal(body, &h) == nil && h.Status != "" {
			return &h, nil
		}
		return nil, newAPIError(resp, body)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, readAPIError(resp)
	}
	var h Health
	if err := decode(resp, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// do sends a JSON request, retrying on 429/503, and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("client: encoding request: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, method, path, body)
		if err != nil {
			return err
		}
		if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			err := decode(resp, out)
			drainClose(resp.Body)
			return err
		}
		apiErr := readAPIError(resp)
		drainClose(resp.Body)
		if !retryable(apiErr.StatusCode) || attempt >= c.retries {
			return apiErr
		}
		wait := apiErr.RetryAfter
		if wait <= 0 {
			wait = backoff(attempt)
		}
		wait = min(wait, maxRetryWait)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return apiErr // waiting would only end in a context error
		}
		if err := c.sleep(ctx, wait); err != nil {
			return fmt.Errorf("%w (gave up waiting to retry: %w)", apiErr, err)
		}
	}
}

// send performs one HTTP request with the common headers.
func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, r)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", c.userAgent)
	if c.apiKey != "" && path != "/health" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, err // *url.Error names the method and URL already
	}
	return resp, nil
}

// decode reads a 2xx JSON answer into out.
func decode(resp *http.Response, out any) error {
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: decoding %s %s answer: %w",
			resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// backoff is the wait before retry number attempt+1 when the server gave no
// Retry-After: exponential from baseBackoff with "full jitter" in [d/2, d).
func backoff(attempt int) time.Duration {
	d := min(baseBackoff<<min(attempt, 16), maxBackoff)
	return d/2 + rand.N(d/2)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drainClose reads a little of what is left of a body, so the connection can
// be reused, and closes it.
func drainClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 4<<10))
	_ = rc.Close()
}

// APIError is returned for every answer with a status outside 2xx.
type APIError struct {
	// StatusCode is the HTTP status, such as 404.
	StatusCode int
	// Code is the server's machine-readable error code, such as "not_found";
	// empty when the answer was not the server's JSON error.
	Code string
	// Message is the server's message meant for the caller; for an answer that
	// was not JSON it is the status text and the start of the body.
	Message string
	// RetryAfter is the wait the server asked for in a Retry-After header
	// (429 and 503 answers), or 0.
	RetryAfter time.Duration
	// Paths lists the conflicting paths of a merge conflict (409
	// merge_conflict).
	Paths []string
}

// Error returns the server's message with the status and code, e.g.
// "execution abc not found (404 not_found)".
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (%d %s)", msg, e.StatusCode, e.Code)
	}
	return fmt.Sprintf("%s (%d)", msg, e.StatusCode)
}

// readAPIError reads an error answer's body into an APIError.
func readAPIError(resp *http.Response) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return newAPIError(resp, body)
}

func newAPIError(resp *http.Response, body []byte) *APIError {
	e := &APIError{
		StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	var wire struct {
		Error   json.RawMessage `json:"error"`
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Paths   []string        `json:"paths"`
	}
	if json.Unmarshal(body, &wire) == nil {
		e.Code, e.Paths = wire.Code, wire.Paths
		// "error" is a string by contract; tolerate {"error": {"message": ...}}.
		var s string
		var obj struct{ Message, Code string }
		switch {
		case json.Unmarshal(wire.Error, &s) == nil && s != "":
			e.Message = s
		case json.Unmarshal(wire.Error, &obj) == nil && obj.Message != "":
			e.Message = obj.Message
			if e.Code == "" {
				e.Code = obj.Code
			}
		default:
			e.Message = wire.Message
		}
		if e.Message != "" {
			return e
		}
	}
	e.Message = nonJSONMessage(resp, body)
	return e
}

// nonJSONMessage describes an error answer that is not the server's JSON
// error, e.g. from a proxy: "502 Bad Gateway: <html>...".
func nonJSONMessage(resp *http.Response, body []byte) string {
	status := resp.Status
	if status == "" {
		status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	snippet := strings.Join(strings.Fields(string(body)), " ")
	if len(snippet) > errorSnippet {
		cut := errorSnippet
		for cut > 0 && !isRuneStart(snippet[cut]) {
			cut--
		}
		snippet = snippet[:cut] + "..."
	}
	if snippet == "" {
		return status + " (empty body)"
	}
	return status + ": " + snippet
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// parseRetryAfter understands both forms of Retry-After: delay-seconds and an
// HTTP date. It returns 0 when the header is absent or unusable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, 24*60*60) * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// IsNotFound reports whether err is (or wraps) an APIError with status 404.
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsUnauthorized reports whether err is (or wraps) an APIError with status 401
// or 403: a missing, wrong or insufficient API key.
func IsUnauthorized(err error) bool {
	return hasStatus(err, http.StatusUnauthorized) || hasStatus(err, http.StatusForbidden)
}

// IsRateLimited reports whether err is (or wraps) an APIError with status 429.
func IsRateLimited(err error) bool { return hasStatus(err, http.StatusTooManyRequests) }

func hasStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == status
}
