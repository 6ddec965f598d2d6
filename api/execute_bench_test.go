package api

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// BenchmarkDecodeExecute is the API's own work on every execution before the
// engine: reading and decoding the body (decodeJSON) and converting it to the
// engine's request (toEngine), for a README-style body and an original-SDK-style one.
// Run: go test -run '^$' -bench . ./api/
func BenchmarkDecodeExecute(b *testing.B) {
	bodies := []struct{ name, body string }{
		{"readme", `{"code": "import sys\nfor i in range(3):\n    print(i, file=sys.stderr)\nprint('done')\n",
			"language": "python", "mode": "ephemeral", "timeout_ms": 30000,
			"env_vars": {"API_URL": "http://example", "DEBUG": "1"},
			"resources": {"cpu_cores": 1, "memory_mb": 512}, "stdin": "hello\n"}`},
		{"sdk", `{"command": ["python3", "-c", "print(1)"], "image": "python:3.12",
			"env_vars": [["API_URL", "http://example"], ["DEBUG", "1"]],
			"cpu_cores": 0.5, "memory_mb": 256, "working_dir": "/workspace", "unknown_field": null}`},
	}
	p := Principal{KeyID: "key_0123456789abcdef", Account: "default", Scopes: []string{ScopeExecute}}
	for _, c := range bodies {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("POST", "/api/v1/execute", bytes.NewReader(body))
				var req ExecuteRequest
				if err := decodeJSON(r, &req); err != nil {
					b.Fatal(err)
				}
				if _, err := req.toEngine(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
