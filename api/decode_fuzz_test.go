package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeExecute feeds arbitrary bodies to the execute request decoder: it must
// never panic, and every refusal must be a client error (4xx) with a message.
func FuzzDecodeExecute(f *testing.F) {
	for _, seed := range []string{
		`{"code":"print(1)","language":"python"}`,
		`{"command":["ls","-l"],"env_vars":[["A","1"]],"resources":{"cpu_cores":0.5,"memory_mb":256}}`,
		`{"code":"x","timeout_ms":1e308,"memory_mb":-1,"cpu_cores":"two"}`,
		`{"env_vars":{"A":"B"},"env":[["C","D"]],"stdin":null,"mode":null}`,
		`[1,2,3]`, `null`, `"str"`, `{`, ``, `{"code":"\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/execute", bytes.NewReader(body))
		var req ExecuteRequest
		err := decodeJSON(r, &req)
		if err == nil {
			_, err = req.toEngine(Principal{Account: "a", KeyID: "k"})
		}
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.status < 400 || ae.status > 499 || ae.msg == "" {
			t.Fatalf("body %q: error %v is not a client error with a message", body, err)
		}
	})
}

// TestDecodeFraction: a fraction where a whole number goes is named as such.
func TestDecodeFraction(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/prewarm", bytes.NewReader([]byte(`{"count": 1.5}`)))
	var body PrewarmRequest
	err := decodeJSON(r, &body)
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.msg != `field "count" must be a whole number` {
		t.Errorf("count 1.5: %v", err)
	}
}
