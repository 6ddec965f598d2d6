package e2e

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faas-platform/faas/client"
	"github.com/faas-platform/faas/internal/testserver"
)

func createKey(t *testing.T, s *testserver.Server, body string) (key, id string) {
	t.Helper()
	status, b, _ := s.Do(context.Background(), "POST", "/api/v1/keys", []byte(body))
	var k struct{ Key, ID string }
	if status != http.StatusCreated || json.Unmarshal(b, &k) != nil || k.Key == "" {
		t.Fatalf("creating key %s: %d %s", body, status, b)
	}
	return k.Key, k.ID
}

func TestAuthAndScopes(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	execKey, execID := createKey(t, s, `{"name":"runner","scopes":["execute"]}`)
	snapKey, _ := createKey(t, s, `{"name":"snapshots only","scopes":["snapshots"]}`)
	run := []byte(`{"code":"print(1)"}`)

	tests := []struct {
		name   string
		key    string
		method string
		path   string
		body   []byte
		status int
		code   string
	}{
		{"no key", "", "POST", "/api/v1/execute", run, 401, "unauthorized"},
		{"unknown key", "faas_0000", "POST", "/api/v1/execute", run, 401, "unauthorized"},
		{"execute scope runs", execKey, "POST", "/api/v1/execute", run, 200, ""},
		{"wrong scope", snapKey, "POST", "/api/v1/execute", run, 403, "forbidden"},
		{"non-admin creates a key", execKey, "POST", "/api/v1/keys", []byte(`{"name":"x"}`), 403, "forbidden"},
		{"non-admin lists keys", execKey, "GET", "/api/v1/keys", nil, 403, "forbidden"},
		{"any key reads its usage", snapKey, "GET", "/api/v1/usage/current", nil, 200, ""},
		{"unknown scope", s.Key, "POST", "/api/v1/keys", []byte(`{"scopes":["root"]}`), 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b, _ := s.DoWithKey(ctx, tt.key, tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, b)
			}
			if tt.code != "" && !strings.Contains(string(b), `"code":"`+tt.code+`"`) {
				t.Errorf("body %s lacks code %q", b, tt.code)
			}
		})
	}

	t.Run("x-api-key header", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.URL+"/api/v1/pools", nil)
		req.Header.Set("x-api-key", execKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})

	t.Run("listing shows prefixes, never keys", func(t *testing.T) {
		_, b, _ := s.Do(ctx, "GET", "/api/v1/keys", nil)
		if strings.Contains(string(b), execKey) || !strings.Contains(string(b), execKey[:13]) {
			t.Errorf("listing: %s", b)
		}
	})

	t.Run("revoked key", func(t *testing.T) {
		if status, b, _ := s.Do(ctx, "DELETE", "/api/v1/keys/"+execID, nil); status != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", status, b)
		}
		status, b, _ := s.DoWithKey(ctx, execKey, "POST", "/api/v1/execute", run)
		if status != 401 || !strings.Contains(string(b), "revoked") {
			t.Errorf("revoked key: %d %s", status, b)
		}
		if status, _, _ := s.Do(ctx, "DELETE", "/api/v1/keys/key_nope", nil); status != 404 {
			t.Errorf("revoking an unknown key: %d", status)
		}
	})
}

// TestAccountIsolation checks one account cannot see another's executions.
func TestAccountIsolation(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	a, b := s.ClientWithKey(s.NewKey(ctx, "execute")), s.ClientWithKey(s.NewKey(ctx, "execute"))
	res, err := a.Execute(ctx, client.ExecuteRequest{Language: "python", Code: "print('a')"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetExecution(ctx, res.ExecutionID); err != nil {
		t.Errorf("the owner cannot read its execution: %v", err)
	}
	if _, err := b.GetExecution(ctx, res.ExecutionID); !client.IsNotFound(err) {
		t.Errorf("another account reading the execution: %v, want 404", err)
	}
}

func TestRateLimit(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	key, _ := createKey(t, s, `{"name":"slow","scopes":["execute"],"rate_per_minute":6,"burst":3}`)
	for i := range 3 {
		status, b, hdr := s.DoWithKey(ctx, key, "GET", "/api/v1/pools", nil)
		if status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, status, b)
		}
		if hdr.Get("RateLimit-Limit") != "3" || hdr.Get("RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Errorf("request %d headers: limit %q remaining %q", i, hdr.Get("RateLimit-Limit"), hdr.Get("RateLimit-Remaining"))
		}
	}
	status, b, hdr := s.DoWithKey(ctx, key, "GET", "/api/v1/pools", nil)
	retry, _ := strconv.Atoi(hdr.Get("Retry-After"))
	if status != http.StatusTooManyRequests || retry < 1 || retry > 11 || !strings.Contains(string(b), "rate_limited") {
		t.Errorf("after the burst: %d Retry-After %q %s", status, hdr.Get("Retry-After"), b)
	}
	// Another key is not affected.
	if status, _, _ := s.Do(ctx, "GET", "/api/v1/pools", nil); status != 200 {
		t.Errorf("the admin key was limited too: %d", status)
	}
}

func TestQuotas(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_QUOTA_EXECUTIONS=1", "FAAS_QUOTA_MEMORY_MB=1024"}})
	ctx := context.Background()
	status, b, _ := s.Do(ctx, "POST", "/api/v1/execute", []byte(`{"code":"print(1)","memory_mb":2048}`))
	if status != http.StatusTooManyRequests || !strings.Contains(string(b), "quota_exceeded") || !strings.Contains(string(b), "memory") {
		t.Errorf("over the memory quota: %d %s", status, b)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, _ = s.Client().Execute(cctx, client.ExecuteRequest{Language: "python", Code: "import time; time.sleep(4)"})
	}()
	time.Sleep(1500 * time.Millisecond)
	status, b, hdr := s.Do(ctx, "POST", "/api/v1/execute", []byte(`{"code":"print(1)"}`))
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(string(b), "executions") {
		t.Errorf("over the executions quota: %d %s", status, b)
	}
	// Another account has its own quota.
	other := s.ClientWithKey(s.NewKey(ctx, "execute"))
	if res, err := other.Execute(ctx, client.ExecuteRequest{Language: "python", Code: "print(2)"}); err != nil || res.Stdout != "2\n" {
		t.Errorf("another account was refused: %v", err)
	}
	wg.Wait()
	if status, b, _ := s.Do(ctx, "POST", "/api/v1/execute", []byte(`{"code":"print(1)"}`)); status != 200 {
		t.Errorf("after the running execution ended: %d %s", status, b)
	}
}

func TestUsageMetering(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	key := s.NewKey(ctx, "execute")
	c := s.ClientWithKey(key)
	cheap, err := c.Execute(ctx, client.ExecuteRequest{Language: "python", Code: "print(1)"})
	if err != nil {
		t.Fatal(err)
	}
	burn, err := c.Execute(ctx, client.ExecuteRequest{Language: "python", Code: "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass", TimeoutMS: 20000})
	if err != nil {
		t.Fatal(err)
	}
	// The CPU it got depends on the machine's load; its price follows what it got:
	// $0.000024 per vCPU-second at least.
	if burn.Usage.CPUMS < 500 || burn.Usage.CostMicroUSD <= cheap.Usage.CostMicroUSD || burn.Usage.CostMicroUSD < burn.Usage.CPUMS*24/1000 {
		t.Errorf("a 1.5 s CPU burn (cpu %d ms, %d µ$) does not bill more than a print (cpu %d ms, %d µ$)",
			burn.Usage.CPUMS, burn.Usage.CostMicroUSD, cheap.Usage.CPUMS, cheap.Usage.CostMicroUSD)
	}
	warm, err := c.Execute(ctx, client.ExecuteRequest{Mode: "cached", Language: "python", Code: "print(1)"})
	if err != nil {
		t.Fatal(err)
	}
	sum := cheap.Usage.CostMicroUSD + burn.Usage.CostMicroUSD + warm.Usage.CostMicroUSD

	// The month so far: every execution, billed exactly as answered.
	var cur struct {
		Usage struct {
			Executions   int64   `json:"executions"`
			CPUSeconds   float64 `json:"cpu_seconds"`
			CostMicroUSD int64   `json:"cost_micro_usd"`
		}
		Tier            string `json:"tier"`
		DiscountPercent int64  `json:"discount_percent"`
		BillMicroUSD    int64  `json:"bill_micro_usd"`
		ProjectedMicro  int64  `json:"projected_micro_usd"`
	}
	status, b, _ := s.DoWithKey(ctx, key, "GET", "/api/v1/usage/current", nil)
	if status != 200 || json.Unmarshal(b, &cur) != nil {
		t.Fatalf("usage/current: %d %s", status, b)
	}
	cpuSum := float64(cheap.Usage.CPUMS+burn.Usage.CPUMS+warm.Usage.CPUMS) / 1000
	if cur.Usage.Executions != 3 || cur.Usage.CostMicroUSD != sum || math.Abs(cur.Usage.CPUSeconds-cpuSum) > 0.0015 ||
		cur.Tier != "starter" || cur.DiscountPercent != 0 || cur.BillMicroUSD != sum || cur.ProjectedMicro < sum {
		t.Errorf("usage/current %s, want 3 executions costing %d µ$ and %.3f CPU seconds", b, sum, cpuSum)
	}

	// Grouped by mode.
	var byMode struct {
		Rows []struct {
			Group        string `json:"group"`
			Executions   int64  `json:"executions"`
			CostMicroUSD int64  `json:"cost_micro_usd"`
		}
		Total struct {
			CostMicroUSD int64 `json:"cost_micro_usd"`
		}
	}
	status, b, _ = s.DoWithKey(ctx, key, "GET", "/api/v1/usage?group_by=mode", nil)
	if status != 200 || json.Unmarshal(b, &byMode) != nil || len(byMode.Rows) != 2 ||
		byMode.Rows[0].Group != "cached" || byMode.Rows[0].Executions != 1 || byMode.Rows[1].Executions != 2 || byMode.Total.CostMicroUSD != sum {
		t.Errorf("usage by mode: %d %s", status, b)
	}
	if status, b, _ := s.DoWithKey(ctx, key, "GET", "/api/v1/usage?group_by=year", nil); status != 400 {
		t.Errorf("bad grouping: %d %s", status, b)
	}

	// Another account's usage is its own.
	status, b, _ = s.DoWithKey(ctx, s.NewKey(ctx), "GET", "/api/v1/usage/current", nil)
	if status != 200 || json.Unmarshal(b, &cur) != nil || cur.Usage.Executions != 0 {
		t.Errorf("a new account's usage: %d %s", status, b)
	}
}

// falseReportPy and falseReportJS find a standby's control socket (the one
// socket among the process's descriptors) and report on it an end with no CPU
// used and a peak of 1 KiB.
const (
	falseReportPy = `import os, socket
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        if fd > 2 and os.readlink("/proc/self/fd/%d" % fd).startswith("socket:"):
            socket.socket(fileno=fd).send(b'{"status": 0, "utime_us": 0, "stime_us": 0, "maxrss_kb": 1}')
    except OSError:
        pass
`
	falseReportJS = `for (const fd of require('fs').readdirSync('/proc/self/fd').map(Number)) {
  try {
    if (fd > 2 && require('fs').readlinkSync('/proc/self/fd/' + fd).startsWith('socket:')) {
      require('fs').writeSync(fd, JSON.stringify({ status: 0, utime_us: 0, stime_us: 0, maxrss_kb: 1 }));
    }
  } catch (e) {}
}
`
)

// TestCPUBilledHonestly: the CPU time billed is every process's of the execution
// (children it never waited for included), and code cannot lower it by writing a
// false end report to the standby's control socket, in Python or JavaScript.
func TestCPUBilledHonestly(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	c := s.Client()
	const burnPy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
	// Each burns a second of CPU, reports a false end, then waits to be told it
	// is done.
	const forgePy = burnPy + falseReportPy + "import time\ntime.sleep(5)\n"
	const forgeJS = `const t = process.cpuUsage();
while ((process.cpuUsage(t).user + process.cpuUsage(t).system) < 1e6) {}
` + falseReportJS + "const end = Date.now() + 5000; while (Date.now() < end) {}\n"
	for _, tc := range []struct {
		name string
		req  client.ExecuteRequest
	}{
		{"python, cached, a false report", client.ExecuteRequest{Mode: "cached", Language: "python", Code: forgePy}},
		{"javascript, cached, a false report", client.ExecuteRequest{Mode: "cached", Language: "javascript", Code: forgeJS}},
		{"python, ephemeral, a false report", client.ExecuteRequest{Language: "python", Code: forgePy}},
		// A child that burns until the main process exits without waiting for it
		// (the child is killed then).
		{"a child not waited for", client.ExecuteRequest{Language: "bash", Code: "python3 -c 'while True: pass' & sleep 1.3; exit 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.TimeoutMS = 30000
			res, err := c.Execute(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Usage.CPUMS < 900 {
				t.Errorf("about a second of CPU used, %d ms billed: %+v", res.Usage.CPUMS, res)
			}
		})
	}
}

// TestMemoryBilledHonestly checks that the memory billed for an execution in a
// sandbox that serves many is what the host saw the execution add, not what its
// process says of itself (code can forge that), and that a session's executions
// are billed for the memory its kernel holds.
func TestMemoryBilledHonestly(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	c := s.Client()
	// Each allocates and touches 200 MB, lets it go, then reports a peak of 1 KiB.
	const forgePy = `x = b"\1" * (200 << 20)
del x
` + falseReportPy
	const forgeJS = "let b = Buffer.alloc(200 << 20, 1); b = null;\n" + falseReportJS
	run := func(t *testing.T, req client.ExecuteRequest) *client.ExecuteResult {
		t.Helper()
		req.TimeoutMS = 30000
		res, err := c.Execute(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 {
			t.Fatalf("exit %d: %+v", res.ExitCode, res)
		}
		return res
	}
	for _, tc := range []struct{ name, language, code string }{
		{"python", "python", forgePy},
		{"javascript", "javascript", forgeJS},
	} {
		t.Run("cached "+tc.name+", a false report", func(t *testing.T) {
			// Twice: the first run may have started the sandbox, the second is
			// warm. The answer has the peak the host saw the sandbox grow by
			// (memory gVisor had freed but kept from an earlier execution is not
			// growth); the record, once the sandbox is reset, has the peak the
			// kernel counted when it reaped the process.
			for range 2 {
				res := run(t, client.ExecuteRequest{Mode: "cached", Language: tc.language, Code: tc.code})
				var rec *client.Execution
				for range 100 {
					var err error
					if rec, err = c.GetExecution(ctx, res.ExecutionID); err != nil {
						t.Fatal(err)
					}
					if rec.Usage.MemoryPeakMB >= 200 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if rec.Usage.MemoryPeakMB < 200 || rec.Usage.CostMicroUSD < res.Usage.CostMicroUSD {
					t.Errorf("200 MB used, %d MB billed: %+v", rec.Usage.MemoryPeakMB, rec.Usage)
				}
			}
		})
	}
	t.Run("cached python, a report out of bounds", func(t *testing.T) {
		// A peak of 4 EiB, once billed as such (and, held a little longer,
		// overflowing into a negative cost): the bill keeps to the limit.
		code := strings.Replace(falseReportPy, `"maxrss_kb": 1`, `"maxrss_kb": 4503599627370496`, 1) + "import time\ntime.sleep(1)\n"
		res := run(t, client.ExecuteRequest{Mode: "cached", Language: "python", Code: code, Resources: &client.Resources{MemoryMB: 256}})
		time.Sleep(time.Second) // the record is mended after the reset, if at all
		rec, err := c.GetExecution(ctx, res.ExecutionID)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []client.Usage{res.Usage, rec.Usage} {
			if u.MemoryPeakMB > 256 || u.CostMicroUSD < 0 || u.CostMicroUSD > 100 {
				t.Errorf("a 256 MB execution of a second billed %+v", u)
			}
		}
	})
	t.Run("cached python print(1) is billed its own memory, not the sandbox's", func(t *testing.T) {
		if res := run(t, client.ExecuteRequest{Mode: "cached", Language: "python", Code: "print(1)"}); res.Usage.MemoryPeakMB < 1 || res.Usage.MemoryPeakMB > 64 {
			t.Errorf("billed %d MB for print(1)", res.Usage.MemoryPeakMB)
		}
	})
	t.Run("a session", func(t *testing.T) {
		for i, tc := range []struct {
			language, code string
			least          int64
		}{
			// Used and freed, each a new peak of the session's kernel (what the
			// host sees the sandbox grow by falls short: gVisor reuses memory
			// it has not yet given back).
			{"python", `x = b"\1" * (100 << 20); del x`, 100},
			{"python", `x = b"\1" * (200 << 20); del x`, 200},
			{"python", `y = b"\1" * (200 << 20)`, 190}, // held by the kernel
			{"python", "print(len(y))", 190},
			{"javascript", "{ const b = Buffer.alloc(100 << 20, 1); }", 100},
			{"javascript", "{ const b = Buffer.alloc(200 << 20, 1); }", 200},
		} {
			res := run(t, client.ExecuteRequest{Mode: "checkpointed", SessionID: "ses_memory_" + tc.language, Language: tc.language, Code: tc.code})
			if res.Usage.MemoryPeakMB < tc.least {
				t.Errorf("execution %d (%s): 200 MB used or held, %d MB billed: %+v", i, tc.language, res.Usage.MemoryPeakMB, res.Usage)
			}
		}
	})
}

// TestExecuteScopes: what an execute request makes or uses beyond an execution
// needs the key's scope for it, as the endpoints made for it do: an instance
// (instances), a snapshot (snapshots). A run refused in the instance made for it
// leaves no instance behind.
func TestExecuteScopes(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	executeOnly := s.NewKey(ctx, "execute")
	for _, body := range []string{
		`{"code": "print(1)", "mode": "persistent"}`,
		`{"code": "print(1)", "instance_id": "i-0123456789abcdef"}`,
		`{"code": "x = 1", "session_id": "s", "checkpoint_after": true}`,
		`{"code": "print(1)", "snapshot_id": "snap_0123"}`,
		`{"code": "print(1)", "mode": "branched", "parent_snapshot": "snap_0123"}`,
	} {
		if status, b, _ := s.DoWithKey(ctx, executeOnly, "POST", "/api/v1/execute", []byte(body)); status != http.StatusForbidden || !strings.Contains(string(b), "scope") {
			t.Errorf("%s with an execute-only key: %d %s", body, status, b)
		}
	}
	if status, b, _ := s.DoWithKey(ctx, executeOnly, "POST", "/api/v1/execute", []byte(`{"code": "print(1)", "session_id": "s"}`)); status != http.StatusOK {
		t.Errorf("a session with an execute-only key: %d %s", status, b)
	}
	if status, b, _ := s.Do(ctx, "POST", "/api/v1/execute", []byte(`{"code": "print(1)", "mode": "persistent", "timeout_ms": 999999999}`)); status != http.StatusBadRequest {
		t.Errorf("a refused run in a new instance: %d %s", status, b)
	}
	if status, b, _ := s.Do(ctx, "GET", "/api/v1/instances", nil); status != http.StatusOK || strings.Contains(string(b), `"i-`) {
		t.Errorf("instances after the refused run: %d %s", status, b)
	}
}
