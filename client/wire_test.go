package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/faas-platform/faas/api"
	"github.com/faas-platform/faas/engine"
)

// jsonFields maps the JSON names of t's fields to whether they are omitempty.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = slices.Contains(strings.Split(opts, ","), "omitempty")
	}
	return out
}

// TestWireTypesMatchTheServer compares the SDK's types with the server's JSON
// types field by field, so a field the server adds is not silently dropped by
// the SDK. Answers must match exactly (name and omitempty, so that encoding a
// decoded answer gives it back) but for the server's aliases of a field;
// requests may leave out fields but must not send any the server ignores.
func TestWireTypesMatchTheServer(t *testing.T) {
	answers := []struct {
		server, sdk any
		aliases     []string // server fields the SDK reads under another name
	}{
		{api.ExecuteResponse{}, ExecuteResult{}, nil},
		{api.ExecutionResponse{}, Execution{}, nil},
		{api.InstanceResponse{}, Instance{}, []string{"instance_id", "status"}},
		{api.SnapshotResponse{}, Snapshot{}, []string{"snapshot_id"}},
		{api.SessionResponse{}, Session{}, []string{"session_id"}},
		{api.KeyResponse{}, Key{}, nil},
		{api.UsageResponse{}, UsageReport{}, nil},
		{api.UsageRow{}, UsageRow{}, nil},
		{api.SnapshotUsage{}, SnapshotUsage{}, nil},
		{api.CurrentUsageResponse{}, CurrentUsage{}, nil},
		{engine.PriceList{}, PriceList{}, nil},
	}
	for _, tt := range answers {
		st, ct := reflect.TypeOf(tt.server), reflect.TypeOf(tt.sdk)
		t.Run(ct.Name(), func(t *testing.T) {
			server, sdk := jsonFields(st), jsonFields(ct)
			for name, omit := range server {
				sdkOmit, ok := sdk[name]
				switch {
				case !ok && !slices.Contains(tt.aliases, name):
					t.Errorf("%s has no field for %s's %q", ct.Name(), st, name)
				case ok && omit != sdkOmit && ct != reflect.TypeOf(Execution{}): // Execution decodes its times itself
					t.Errorf("%s's %q: omitempty %v, the server's %v", ct.Name(), name, sdkOmit, omit)
				}
			}
			for name := range sdk {
				if _, ok := server[name]; !ok {
					t.Errorf("%s's %q is not in %s", ct.Name(), name, st)
				}
			}
		})
	}

	requests := []struct{ server, sdk any }{
		{api.ExecuteRequest{}, ExecuteRequest{}},
		{api.CreateKeyRequest{}, KeyRequest{}},
	}
	for _, tt := range requests {
		st, ct := reflect.TypeOf(tt.server), reflect.TypeOf(tt.sdk)
		t.Run(ct.Name(), func(t *testing.T) {
			server := jsonFields(st)
			for name := range jsonFields(ct) {
				if _, ok := server[name]; !ok {
					t.Errorf("%s sends %q, which %s does not read", ct.Name(), name, st)
				}
			}
		})
	}
}

func TestExecuteResultInstance(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = nil
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		io.WriteString(w, `{"execution_id":"e","status":"succeeded","exit_code":0,"mode":"persistent","instance_id":"i-7"}`)
	}))
	defer srv.Close()
	res, err := New(srv.URL, "k").Execute(context.Background(), ExecuteRequest{Code: "x", Mode: ModePersistent})
	if err != nil || res.InstanceID != "i-7" || res.Mode != ModePersistent {
		t.Fatalf("result = %+v, %v", res, err)
	}
	if mustJSON(t, got) != `{"code":"x","mode":"persistent"}` {
		t.Errorf("body = %v", got)
	}
	if _, err := New(srv.URL, "k").Execute(context.Background(), ExecuteRequest{Code: "y", InstanceID: "i-7"}); err != nil {
		t.Fatal(err)
	}
	if mustJSON(t, got) != `{"code":"y","instance_id":"i-7"}` {
		t.Errorf("body = %v", got)
	}
}
