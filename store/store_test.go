package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"
)

// The conformance suite: every case runs against SQLite (in a temporary
// directory) and PostgreSQL (in a fresh schema of the database named by
// FAAS_TEST_DATABASE_URL, dropped afterwards). Start a PostgreSQL with
// scripts/postgres.sh. Without the variable the PostgreSQL half skips, except
// in CI (CI non-empty), where it fails.

// database is one empty database for one test case. Open it as many times as
// the case needs; every Store is closed at the end of the test.
type database struct {
	url string // "" for SQLite
	dir string
}

func (d database) open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), d.url, d.dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

type backend struct {
	name   string
	driver string
	// fresh returns a new, empty database, removed when t ends.
	fresh func(t *testing.T) database
}

func sqliteBackend() backend {
	return backend{
		name:   "sqlite",
		driver: DriverSQLite,
		fresh: func(t *testing.T) database {
			return database{dir: t.TempDir()}
		},
	}
}

// postgresBackend returns the PostgreSQL backend, skipping t (or failing it,
// in CI) when no PostgreSQL is configured.
func postgresBackend(t *testing.T) backend {
	base := os.Getenv("FAAS_TEST_DATABASE_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("FAAS_TEST_DATABASE_URL is not set: PostgreSQL is required in CI (start one with scripts/postgres.sh and export the URL it prints)")
		}
		t.Skip("FAAS_TEST_DATABASE_URL is not set, skipping the PostgreSQL store tests (run scripts/postgres.sh as root and export the URL it prints)")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("opening FAAS_TEST_DATABASE_URL: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	if err := admin.PingContext(t.Context()); err != nil {
		t.Fatalf("connecting to FAAS_TEST_DATABASE_URL: %v", err)
	}
	return backend{
		name:   "postgres",
		driver: DriverPostgres,
		fresh: func(t *testing.T) database {
			// A schema per case, so cases (and reruns) never see each
			// other's rows; the store is pointed at it by search_path.
			var b [8]byte
			rand.Read(b[:])
			schema := "faas_test_" + hex.EncodeToString(b[:])
			if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
				t.Fatalf("creating schema: %v", err)
			}
			t.Cleanup(func() {
				// Runs after the case's stores are closed (cleanups are LIFO).
				if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
					t.Errorf("dropping schema %s: %v", schema, err)
				}
			})
			u, err := url.Parse(base)
			if err != nil {
				t.Fatalf("parsing FAAS_TEST_DATABASE_URL: %v", err)
			}
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return database{url: u.String()}
		},
	}
}

var cases = []struct {
	name string
	run  func(t *testing.T, b backend)
}{
	{"Driver and Ping", testDriverPing},
	{"Keys", testKeys},
	{"Conflicts", testConflicts},
	{"Executions", testExecutions},
	{"ExecutionAccountIsolation", testExecutionAccountIsolation},
	{"FailRunningExecutions", testFailRunningExecutions},
	{"MigrationsIdempotent", testMigrationsIdempotent},
	{"ConcurrentOpen", testConcurrentOpen},
	{"ConcurrentWriters", testConcurrentWriters},
	{"TimeRoundTrip", testTimeRoundTrip},
	{"KeyRateLimits", testKeyRateLimits},
	{"Usage", testUsage},
	{"Snapshots", testSnapshots},
	{"Instances", testInstances},
	{"LostConnection", testLostConnection},
}

func testKeyRateLimits(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	want := Key{ID: "key_r", Account: "a", Name: "r", Prefix: "p", Hash: "h_r", Scopes: []string{"execute"}, CreatedAt: ts(1), RatePerMin: 120, Burst: 7}
	if err := s.CreateKey(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.KeyByHash(ctx, "h_r")
	if err != nil {
		t.Fatal(err)
	}
	if got.RatePerMin != 120 || got.Burst != 7 {
		t.Errorf("rate limits = %d/min burst %d, want 120/min burst 7", got.RatePerMin, got.Burst)
	}
	if err := s.CreateKey(ctx, Key{ID: "key_n", Account: "a", Hash: "h_n", RatePerMin: -1}); err == nil {
		t.Error("a negative rate limit was accepted")
	}
}

func testUsage(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	day1 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	day2 := day1.Add(24 * time.Hour)
	execs := []Execution{
		{ID: "e1", Account: "a", Mode: "ephemeral", Status: StatusSucceeded, CPUMS: 10, DurationMS: 100, MemoryPeakMB: 20, CostMicroUSD: 3, CreatedAt: day1},
		{ID: "e2", Account: "a", Mode: "cached", Status: StatusFailed, CPUMS: 5, DurationMS: 50, MemoryPeakMB: 10, CostMicroUSD: 1, CreatedAt: day1.Add(time.Hour)},
		{ID: "e3", Account: "a", Mode: "cached", Status: StatusTimeout, CPUMS: 1000, DurationMS: 1000, MemoryPeakMB: 100, CostMicroUSD: 30, CreatedAt: day2},
		{ID: "e4", Account: "a", Mode: "cached", Status: StatusRunning, CPUMS: 0, CreatedAt: day2},                                 // not finished: not counted
		{ID: "e5", Account: "b", Mode: "cached", Status: StatusSucceeded, CostMicroUSD: 1000, CreatedAt: day2},                     // another account
		{ID: "e6", Account: "a", Mode: "cached", Status: StatusSucceeded, CostMicroUSD: 1000, CreatedAt: day2.Add(48 * time.Hour)}, // out of range
	}
	for _, e := range execs {
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	from, to := day1.Add(-time.Hour), day2.Add(time.Hour)
	tests := []struct {
		group string
		want  []UsageRow
	}{
		{GroupNone, []UsageRow{{Group: "", Executions: 3, CPUMS: 1015, DurationMS: 1150, MemoryMBMS: 20*100 + 10*50 + 100*1000, CostMicroUSD: 34}}},
		{GroupDay, []UsageRow{
			{Group: "2026-03-01", Executions: 2, CPUMS: 15, DurationMS: 150, MemoryMBMS: 2500, CostMicroUSD: 4},
			{Group: "2026-03-02", Executions: 1, CPUMS: 1000, DurationMS: 1000, MemoryMBMS: 100000, CostMicroUSD: 30},
		}},
		{GroupMode, []UsageRow{
			{Group: "cached", Executions: 2, CPUMS: 1005, DurationMS: 1050, MemoryMBMS: 100500, CostMicroUSD: 31},
			{Group: "ephemeral", Executions: 1, CPUMS: 10, DurationMS: 100, MemoryMBMS: 2000, CostMicroUSD: 3},
		}},
	}
	for _, tt := range tests {
		got, err := s.Usage(ctx, "a", from, to, tt.group)
		if err != nil {
			t.Fatalf("Usage(%q): %v", tt.group, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Usage(%q) = %+v, want %+v", tt.group, got, tt.want)
		}
	}
	if _, err := s.Usage(ctx, "a", from, to, "week"); err == nil {
		t.Error("an unknown grouping was accepted")
	}
}

func TestStore(t *testing.T) {
	backends := []func(t *testing.T) backend{
		func(*testing.T) backend { return sqliteBackend() },
		postgresBackend,
	}
	for i, mk := range backends {
		t.Run([]string{"sqlite", "postgres"}[i], func(t *testing.T) {
			b := mk(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b) })
			}
		})
	}
}

// ts is a fixed UTC time a few seconds after a base, with microseconds, for
// deterministic ordering.
func ts(sec int) time.Time {
	return time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC).Add(time.Duration(sec) * time.Second)
}

func testDriverPing(t *testing.T, b backend) {
	s := b.fresh(t).open(t)
	if got := s.Driver(); got != b.driver {
		t.Errorf("Driver() = %q, want %q", got, b.driver)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testKeys(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)

	keys := []Key{
		{ID: "key_a1", Account: "acct_a", Name: "admin", Prefix: "faas_a1", Hash: "h_a1", Scopes: []string{"admin"}, CreatedAt: ts(1)},
		{ID: "key_b1", Account: "acct_b", Name: "ci", Prefix: "faas_b1", Hash: "h_b1", Scopes: []string{"execute", "snapshots"}, CreatedAt: ts(2)},
		{ID: "key_a2", Account: "acct_a", Name: "", Prefix: "faas_a2", Hash: "h_a2", Scopes: nil, CreatedAt: ts(3)},
	}
	for _, k := range keys {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatalf("CreateKey(%s): %v", k.ID, err)
		}
	}

	for _, k := range keys {
		got, err := s.KeyByHash(ctx, k.Hash)
		if err != nil {
			t.Fatalf("KeyByHash(%s): %v", k.Hash, err)
		}
		if !reflect.DeepEqual(got, k) {
			t.Errorf("KeyByHash(%s) = %+v, want %+v", k.Hash, got, k)
		}
	}
	if _, err := s.KeyByHash(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("KeyByHash(unknown) error = %v, want ErrNotFound", err)
	}

	for _, tc := range []struct {
		account string
		want    []string
	}{
		{"acct_a", []string{"key_a1", "key_a2"}},
		{"acct_b", []string{"key_b1"}},
		{"", []string{"key_a1", "key_b1", "key_a2"}},
		{"acct_none", nil},
	} {
		list, err := s.ListKeys(ctx, tc.account)
		if err != nil {
			t.Fatalf("ListKeys(%q): %v", tc.account, err)
		}
		var ids []string
		for _, k := range list {
			ids = append(ids, k.ID)
		}
		if !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("ListKeys(%q) = %v, want %v", tc.account, ids, tc.want)
		}
	}

	n, err := s.CountKeys(ctx)
	if err != nil || n != 3 {
		t.Errorf("CountKeys = %d, %v; want 3", n, err)
	}

	// Revoke, then revoke again: the first time sticks.
	if err := s.RevokeKey(ctx, "key_a1", ts(10)); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if err := s.RevokeKey(ctx, "key_a1", ts(20)); err != nil {
		t.Fatalf("RevokeKey again: %v", err)
	}
	got, err := s.KeyByHash(ctx, "h_a1")
	if err != nil {
		t.Fatalf("KeyByHash(revoked): %v", err)
	}
	if got.RevokedAt == nil || !got.RevokedAt.Equal(ts(10)) {
		t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, ts(10))
	}
	if other, _ := s.KeyByHash(ctx, "h_a2"); other.RevokedAt != nil {
		t.Errorf("revoking key_a1 revoked key_a2 too")
	}
	if err := s.RevokeKey(ctx, "key_missing", ts(10)); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeKey(unknown) error = %v, want ErrNotFound", err)
	}
	if n, _ := s.CountKeys(ctx); n != 3 {
		t.Errorf("CountKeys after revoke = %d, want 3 (revoked keys count)", n)
	}

	// A scope with a comma cannot be stored faithfully.
	if err := s.CreateKey(ctx, Key{ID: "key_bad", Account: "a", Hash: "h_bad", Scopes: []string{"a,b"}}); err == nil {
		t.Errorf("CreateKey with a comma in a scope succeeded")
	}
}

func testConflicts(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	if err := s.CreateKey(ctx, Key{ID: "key_1", Account: "a", Hash: "h1", CreatedAt: ts(0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateExecution(ctx, Execution{ID: "exec_1", Account: "a", Status: StatusRunning, CreatedAt: ts(0)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"key same id", s.CreateKey(ctx, Key{ID: "key_1", Account: "a", Hash: "h2", CreatedAt: ts(1)})},
		{"key same hash", s.CreateKey(ctx, Key{ID: "key_2", Account: "b", Hash: "h1", CreatedAt: ts(1)})},
		{"execution same id", s.CreateExecution(ctx, Execution{ID: "exec_1", Account: "b", Status: StatusRunning, CreatedAt: ts(1)})},
	} {
		if !errors.Is(tc.err, ErrConflict) {
			t.Errorf("%s: error = %v, want ErrConflict", tc.name, tc.err)
		}
	}
	if n, _ := s.CountKeys(ctx); n != 1 {
		t.Errorf("CountKeys = %d after conflicts, want 1", n)
	}
}

func testExecutions(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)

	running := Execution{
		ID: "exec_1", Account: "acct_a", KeyID: "key_a", Mode: "ephemeral", Language: "python",
		Image: "host", Status: StatusRunning, CreatedAt: ts(0),
	}
	if err := s.CreateExecution(ctx, running); err != nil {
		t.Fatalf("CreateExecution: %v", err)
	}
	got, err := s.GetExecution(ctx, "acct_a", "exec_1")
	if err != nil {
		t.Fatalf("GetExecution: %v", err)
	}
	if !reflect.DeepEqual(got, running) {
		t.Errorf("GetExecution = %+v, want %+v", got, running)
	}

	finished := ts(2)
	done := running
	done.Status = StatusFailed
	done.ExitCode = 3
	done.Error = "exit status 3"
	done.DurationMS = 1234
	done.CPUMS = 987
	done.MemoryPeakMB = 64
	done.CostMicroUSD = 1_234_567_890_123 // beyond int32
	done.StdoutBytes = 1 << 33
	done.StderrBytes = 17
	done.FinishedAt = &finished
	// Fields FinishExecution does not own must not be overwritten.
	update := done
	update.Account, update.Mode, update.Image = "ignored", "ignored", "ignored"
	if err := s.FinishExecution(ctx, update); err != nil {
		t.Fatalf("FinishExecution: %v", err)
	}
	got, err = s.GetExecution(ctx, "acct_a", "exec_1")
	if err != nil {
		t.Fatalf("GetExecution: %v", err)
	}
	if !reflect.DeepEqual(got, done) {
		t.Errorf("GetExecution after finish = %+v, want %+v", got, done)
	}

	// A memory peak learnt later raises the record's, never lowers it.
	if err := s.RaiseExecutionMemory(ctx, "exec_1", 32, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.RaiseExecutionMemory(ctx, "exec_1", 200, 2_000_000_000_000); err != nil {
		t.Fatal(err)
	}
	done.MemoryPeakMB, done.CostMicroUSD = 200, 2_000_000_000_000
	if got, err := s.GetExecution(ctx, "acct_a", "exec_1"); err != nil || !reflect.DeepEqual(got, done) {
		t.Errorf("after raising the memory peak: %+v (%v), want %+v", got, err, done)
	}

	if err := s.FinishExecution(ctx, Execution{ID: "exec_missing", Status: StatusSucceeded}); !errors.Is(err, ErrNotFound) {
		t.Errorf("FinishExecution(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetExecution(ctx, "acct_a", "exec_missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetExecution(unknown) error = %v, want ErrNotFound", err)
	}

	// FinishExecution without FinishedAt stamps the current time.
	if err := s.CreateExecution(ctx, Execution{ID: "exec_now", Account: "acct_a", Status: StatusRunning, CreatedAt: ts(1)}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.FinishExecution(ctx, Execution{ID: "exec_now", Status: StatusSucceeded}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetExecution(ctx, "acct_a", "exec_now"); got.FinishedAt == nil || got.FinishedAt.Before(before) {
		t.Errorf("FinishedAt = %v, want about now", got.FinishedAt)
	}
}

func testExecutionAccountIsolation(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	// Five executions of acct_a and three of acct_b, interleaved in time.
	var wantA, wantB, wantAll []string
	for i := range 8 {
		e := Execution{ID: fmt.Sprintf("exec_%d", i), Account: "acct_a", Mode: "cached", Status: StatusRunning, CreatedAt: ts(i)}
		if i%3 == 1 {
			e.Account = "acct_b"
		}
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		// newest first
		wantAll = append([]string{e.ID}, wantAll...)
		if e.Account == "acct_a" {
			wantA = append([]string{e.ID}, wantA...)
		} else {
			wantB = append([]string{e.ID}, wantB...)
		}
	}

	for _, tc := range []struct {
		account string
		limit   int
		want    []string
	}{
		{"acct_a", 0, wantA},
		{"acct_a", 2, wantA[:2]},
		{"acct_b", 100, wantB},
		{"", 0, wantAll},
		{"acct_none", 10, nil},
	} {
		list, err := s.ListExecutions(ctx, tc.account, tc.limit)
		if err != nil {
			t.Fatalf("ListExecutions(%q, %d): %v", tc.account, tc.limit, err)
		}
		var ids []string
		for _, e := range list {
			ids = append(ids, e.ID)
		}
		if !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("ListExecutions(%q, %d) = %v, want %v", tc.account, tc.limit, ids, tc.want)
		}
	}

	for _, tc := range []struct {
		account, id string
		found       bool
	}{
		{"acct_a", "exec_0", true},
		{"acct_b", "exec_0", false}, // exists, but not theirs
		{"acct_b", "exec_1", true},
		{"acct_a", "exec_1", false},
		{"", "exec_0", false},
	} {
		_, err := s.GetExecution(ctx, tc.account, tc.id)
		switch {
		case tc.found && err != nil:
			t.Errorf("GetExecution(%q, %q): %v", tc.account, tc.id, err)
		case !tc.found && !errors.Is(err, ErrNotFound):
			t.Errorf("GetExecution(%q, %q) error = %v, want ErrNotFound", tc.account, tc.id, err)
		}
	}
}

func testFailRunningExecutions(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	statuses := map[string]string{
		"exec_r1": StatusRunning, "exec_r2": StatusRunning, "exec_r3": StatusRunning,
		"exec_ok": StatusSucceeded, "exec_to": StatusTimeout,
	}
	for id, st := range statuses {
		e := Execution{ID: id, Account: "a", Status: st, CreatedAt: ts(0)}
		if st != StatusRunning {
			e.FinishedAt = new(ts(1))
		}
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.FailRunningExecutions(ctx, "server restarted", ts(5))
	if err != nil || n != 3 {
		t.Fatalf("FailRunningExecutions = %d, %v; want 3", n, err)
	}
	for id, st := range statuses {
		e, err := s.GetExecution(ctx, "a", id)
		if err != nil {
			t.Fatal(err)
		}
		if st == StatusRunning {
			if e.Status != StatusError || e.Error != "server restarted" || e.FinishedAt == nil || !e.FinishedAt.Equal(ts(5)) {
				t.Errorf("%s after FailRunningExecutions: status %q error %q finished %v", id, e.Status, e.Error, e.FinishedAt)
			}
		} else if e.Status != st || e.Error != "" || !e.FinishedAt.Equal(ts(1)) {
			t.Errorf("%s (%s) was changed: status %q error %q finished %v", id, st, e.Status, e.Error, e.FinishedAt)
		}
	}
	if n, err := s.FailRunningExecutions(ctx, "again", ts(6)); err != nil || n != 0 {
		t.Errorf("second FailRunningExecutions = %d, %v; want 0", n, err)
	}
}

func testMigrationsIdempotent(t *testing.T, b backend) {
	ctx := t.Context()
	db := b.fresh(t)
	s1 := db.open(t)
	if err := s1.CreateKey(ctx, Key{ID: "key_1", Account: "a", Hash: "h1", CreatedAt: ts(0)}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s := db.open(t)
		if n, err := s.CountKeys(ctx); err != nil || n != 1 {
			t.Fatalf("CountKeys after reopen = %d, %v; want 1", n, err)
		}
		assertMigrated(t, s)
	}
}

// assertMigrated checks schema_migrations holds every migration exactly once.
func assertMigrated(t *testing.T, s *Store) {
	t.Helper()
	rows, err := s.read.QueryContext(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	defer rows.Close()
	var got, want []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations {
		want = append(want, m.version)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schema_migrations versions = %v, want %v", got, want)
	}
}

func testConcurrentOpen(t *testing.T, b backend) {
	// Two processes starting at once both migrate the same empty database.
	db := b.fresh(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), db.url, db.dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("concurrent Open %d: %v", i, errs[i])
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	assertMigrated(t, stores[0])
}

func testConcurrentWriters(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	const n = 200
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e := Execution{ID: fmt.Sprintf("exec_%03d", i), Account: "a", Mode: "ephemeral", Status: StatusRunning, CreatedAt: ts(i)}
			if err := s.CreateExecution(ctx, e); err != nil {
				errs <- err
				return
			}
			e.Status = StatusSucceeded
			e.DurationMS = int64(i)
			e.CostMicroUSD = int64(i) * 10
			e.FinishedAt = new(ts(i + 1))
			if err := s.FinishExecution(ctx, e); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent writer: %v", err)
	}

	list, err := s.ListExecutions(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("ListExecutions returned %d executions, want %d", len(list), n)
	}
	for j, e := range list {
		i := n - 1 - j // newest first
		if e.ID != fmt.Sprintf("exec_%03d", i) || e.Status != StatusSucceeded || e.DurationMS != int64(i) ||
			e.CostMicroUSD != int64(i)*10 || e.FinishedAt == nil || !e.FinishedAt.Equal(ts(i+1)) {
			t.Errorf("execution %d = %+v", i, e)
		}
	}
}

func testTimeRoundTrip(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	tokyo := time.FixedZone("UTC+9", 9*3600)
	for i, tc := range []struct {
		name string
		in   time.Time
	}{
		{"microseconds", time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)},
		{"nanoseconds truncated", time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)},
		{"other zone", time.Date(2030, 12, 31, 23, 59, 59, 999999000, tokyo)},
		{"before epoch", time.Date(1969, 7, 20, 20, 17, 40, 1000, time.UTC)},
		{"far future", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{"with monotonic clock", time.Now()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.in.Round(0).Truncate(time.Microsecond).UTC()
			id := fmt.Sprintf("exec_%d", i)
			fin := tc.in.Add(time.Millisecond)
			if err := s.CreateExecution(ctx, Execution{ID: id, Account: "a", Status: StatusRunning, CreatedAt: tc.in}); err != nil {
				t.Fatal(err)
			}
			if err := s.FinishExecution(ctx, Execution{ID: id, Status: StatusSucceeded, FinishedAt: &fin}); err != nil {
				t.Fatal(err)
			}
			e, err := s.GetExecution(ctx, "a", id)
			if err != nil {
				t.Fatal(err)
			}
			if e.CreatedAt != want || e.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt = %v, want %v (UTC)", e.CreatedAt, want)
			}
			if wantFin := fin.Round(0).Truncate(time.Microsecond).UTC(); e.FinishedAt == nil || *e.FinishedAt != wantFin {
				t.Errorf("FinishedAt = %v, want %v", e.FinishedAt, wantFin)
			}

			key := Key{ID: "key_" + id, Account: "a", Hash: "h_" + id, CreatedAt: tc.in}
			if err := s.CreateKey(ctx, key); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeKey(ctx, key.ID, tc.in); err != nil {
				t.Fatal(err)
			}
			k, err := s.KeyByHash(ctx, key.Hash)
			if err != nil {
				t.Fatal(err)
			}
			if k.CreatedAt != want || k.RevokedAt == nil || *k.RevokedAt != want {
				t.Errorf("key times = %v, %v; want %v", k.CreatedAt, k.RevokedAt, want)
			}
		})
	}

	// A zero CreatedAt means "now".
	before := time.Now().Add(-time.Second)
	if err := s.CreateKey(ctx, Key{ID: "key_now", Account: "a", Hash: "h_now"}); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.KeyByHash(ctx, "h_now"); k.CreatedAt.Before(before) || k.CreatedAt.After(time.Now()) {
		t.Errorf("zero CreatedAt stored as %v, want about now", k.CreatedAt)
	}
}

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"UPDATE t SET s = '?', x = ? WHERE y = 'it''s ?' AND z = ?", "UPDATE t SET s = '?', x = $1 WHERE y = 'it''s ?' AND z = $2"},
	} {
		if got := rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestOpenRejectsUnknownURL(t *testing.T) {
	for _, u := range []string{"mysql://x", "sqlite:///tmp/x.db", "postgresx://x"} {
		if s, err := Open(t.Context(), u, t.TempDir()); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", u)
		}
	}
}
