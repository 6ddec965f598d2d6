package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/faas-platform/faas/internal/testserver"
)

// TestBadInput checks every client mistake gets a JSON error with a fitting 4xx
// (or 501 for what this version does not offer), never a 500 or an empty body.
func TestBadInput(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	big := `{"language":"python","code":"` + strings.Repeat("x", 11<<20) + `"}`
	longCode := `{"language":"python","code":"` + strings.Repeat("#", 128<<10) + `"}`
	tests := []struct {
		name    string
		method  string
		path    string
		key     string // "" means the admin key; "-" means none
		body    string
		status  int
		code    string
		message string // part of the error message
	}{
		{"malformed JSON", "POST", "/api/v1/execute", "", `{"code": "print(1)",`, 400, "invalid_json", "malformed JSON"},
		{"not an object", "POST", "/api/v1/execute", "", `[1,2]`, 400, "invalid_json", "JSON object"},
		{"empty body", "POST", "/api/v1/execute", "", ``, 400, "invalid_json", "empty"},
		{"wrong type", "POST", "/api/v1/execute", "", `{"code": 5, "language": "python"}`, 400, "invalid_json", `"code"`},
		{"unknown language", "POST", "/api/v1/execute", "", `{"code":"x","language":"cobol"}`, 400, "invalid_request", "cobol"},
		{"unknown mode", "POST", "/api/v1/execute", "", `{"code":"x","mode":"turbo"}`, 400, "invalid_request", "turbo"},
		{"unknown instance", "POST", "/api/v1/execute", "", `{"code":"x","mode":"persistent","instance_id":"i-0000000000000000"}`, 404, "not_found", "i-0000000000000000"},
		{"unknown snapshot", "POST", "/api/v1/execute", "", `{"code":"x","snapshot_id":"snap_1"}`, 404, "not_found", "snap_1"},
		{"missing code", "POST", "/api/v1/execute", "", `{"language":"python"}`, 400, "invalid_request", "code is required"},
		{"blank code", "POST", "/api/v1/execute", "", `{"language":"python","code":"   "}`, 400, "invalid_request", "code is required"},
		{"code and command", "POST", "/api/v1/execute", "", `{"code":"x","command":"ls"}`, 400, "invalid_request", "either"},
		{"oversize body", "POST", "/api/v1/execute", "", big, 413, "body_too_large", "larger than"},
		{"negative timeout", "POST", "/api/v1/execute", "", `{"code":"x","timeout_ms":-1}`, 400, "invalid_request", "timeout_ms"},
		{"huge timeout", "POST", "/api/v1/execute", "", `{"code":"x","timeout_ms":1e15}`, 400, "invalid_request", "timeout_ms"},
		{"fractional timeout", "POST", "/api/v1/execute", "", `{"code":"x","timeout_ms":1.5}`, 400, "invalid_request", "whole number"},
		{"negative memory", "POST", "/api/v1/execute", "", `{"code":"x","resources":{"memory_mb":-5}}`, 400, "invalid_request", "memory_mb"},
		{"huge memory", "POST", "/api/v1/execute", "", `{"code":"x","resources":{"memory_mb":10000000}}`, 400, "invalid_request", "memory_mb"},
		{"tiny memory", "POST", "/api/v1/execute", "", `{"code":"x","memory_mb":1}`, 400, "invalid_request", "at least"},
		{"too many cpus", "POST", "/api/v1/execute", "", `{"code":"x","cpu_cores":64}`, 400, "invalid_request", "cpu_cores"},
		{"zero-ish cpus", "POST", "/api/v1/execute", "", `{"code":"x","cpu_cores":-1}`, 400, "invalid_request", "cpu_cores"},
		{"bad env name", "POST", "/api/v1/execute", "", `{"code":"x","env_vars":{"A=B":"c"}}`, 400, "invalid_request", "env_vars"},
		{"bad env shape", "POST", "/api/v1/execute", "", `{"code":"x","env_vars":[["A"]]}`, 400, "invalid_json", "pairs"},
		{"relative working dir", "POST", "/api/v1/execute", "", `{"code":"x","working_dir":"tmp"}`, 400, "invalid_request", "absolute"},
		{"code too long", "POST", "/api/v1/execute", "", longCode, 400, "invalid_request", "the limit is 131071"},
		{"NUL in code", "POST", "/api/v1/execute", "", `{"code":"print(1)\u0000"}`, 400, "invalid_request", "NUL"},
		{"unknown image", "POST", "/api/v1/execute", "", `{"code":"x","image":"python:3.12"}`, 404, "not_found", "python:3.12"},
		{"typescript syntax error", "POST", "/api/v1/execute", "", `{"code":"const x: = ;","language":"typescript"}`, 400, "invalid_request", "typescript"},
		{"no key", "POST", "/api/v1/execute", "-", `{"code":"print(1)"}`, 401, "unauthorized", "API key is required"},
		{"bad key", "POST", "/api/v1/execute", "faas_nope", `{"code":"print(1)"}`, 401, "unauthorized", "invalid API key"},
		{"unknown path", "GET", "/api/v1/nope", "", ``, 404, "not_found", "/api/v1/nope"},
		{"odd path characters", "GET", "/api/v1/executions/%2e%2e%2F%00", "", ``, 404, "not_found", ""},
		{"unknown execution", "GET", "/api/v1/executions/exec_missing", "", ``, 404, "not_found", "exec_missing"},
		{"wrong method", "GET", "/api/v1/execute", "", ``, 405, "method_not_allowed", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := s.Key
			switch tt.key {
			case "-":
				key = ""
			case "":
			default:
				key = tt.key
			}
			status, b, hdr := s.DoWithKey(context.Background(), key, tt.method, tt.path, []byte(tt.body))
			if status != tt.status {
				t.Errorf("status %d, want %d: %s", status, tt.status, b)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
			var e struct{ Error, Code string }
			if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
				t.Fatalf("body is not a JSON error: %q", b)
			}
			if e.Code != tt.code {
				t.Errorf("code %q, want %q", e.Code, tt.code)
			}
			if !strings.Contains(e.Error, tt.message) {
				t.Errorf("message %q does not contain %q", e.Error, tt.message)
			}
		})
	}

	t.Run("health needs no key", func(t *testing.T) {
		status, b, _ := s.DoWithKey(context.Background(), "", "GET", "/health", nil)
		var h struct {
			Status  string
			Runtime struct {
				Name, Version string
				Ready         bool
			}
		}
		if status != http.StatusOK || json.Unmarshal(b, &h) != nil || h.Status != "ok" || !h.Runtime.Ready || h.Runtime.Name != "gvisor" || h.Runtime.Version == "" {
			t.Errorf("health %d %s", status, b)
		}
	})
}
