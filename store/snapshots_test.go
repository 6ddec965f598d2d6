package store

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testSnapshots(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	root := Snapshot{ID: "snap_root", Account: "acct_a", KeyID: "key_a", Name: "base", SessionID: "ses_1",
		Image: "host", Language: "python", MemoryMB: 512, CPUMilli: 1000, SizeBytes: 1 << 20, SHA256: "ab", Status: SnapshotReady, CreatedAt: ts(0)}
	child := root
	child.ID, child.ParentID, child.Name, child.SizeBytes, child.CreatedAt = "snap_child", "snap_root", "", 3<<20, ts(10)
	other := root
	other.ID, other.Account = "snap_other", "acct_b"
	for _, sn := range []Snapshot{root, child, other} {
		if err := s.CreateSnapshot(ctx, sn); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSnapshot(ctx, root); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate id: %v", err)
	}
	got, err := s.GetSnapshot(ctx, "acct_a", "snap_child")
	if err != nil {
		t.Fatal(err)
	}
	if got.ParentID != "snap_root" || got.SizeBytes != 3<<20 || got.MemoryMB != 512 || !got.CreatedAt.Equal(ts(10)) || got.DeletedAt != nil {
		t.Errorf("got %+v", got)
	}
	if _, err := s.GetSnapshot(ctx, "acct_b", "snap_child"); !errors.Is(err, ErrNotFound) {
		t.Errorf("other account sees it: %v", err)
	}
	if _, err := s.GetSnapshot(ctx, "", "snap_child"); err != nil {
		t.Errorf("any account: %v", err)
	}
	list, err := s.ListSnapshots(ctx, "acct_a")
	if err != nil || len(list) != 2 || list[0].ID != "snap_root" || list[1].ID != "snap_child" {
		t.Errorf("list: %+v %v", list, err)
	}
	if n, err := s.SnapshotBytes(ctx, "acct_a"); err != nil || n != 4<<20 {
		t.Errorf("bytes: %d %v", n, err)
	}
	if err := s.MarkSnapshotBroken(ctx, "snap_child", "truncated"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSnapshot(ctx, "acct_a", "snap_child"); got.Status != SnapshotBroken || got.Error != "truncated" {
		t.Errorf("broken: %+v", got)
	}
	if err := s.DeleteSnapshot(ctx, "acct_b", "snap_child", ts(20)); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete by other account: %v", err)
	}
	if err := s.DeleteSnapshot(ctx, "acct_a", "snap_child", ts(20)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, "acct_a", "snap_child", ts(21)); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.GetSnapshot(ctx, "acct_a", "snap_child"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted snapshot still found: %v", err)
	}
	if n, _ := s.SnapshotBytes(ctx, "acct_a"); n != 1<<20 {
		t.Errorf("bytes after delete: %d", n)
	}
	// Storage billed over [ts(5), ts(30)): root 1 MiB for 25 s, child 3 MiB for 10 s.
	bs, err := s.SnapshotByteSeconds(ctx, "acct_a", ts(5), ts(30))
	if want := float64(1<<20)*25 + float64(3<<20)*10; err != nil || math.Abs(bs-want) > 1 {
		t.Errorf("byte-seconds = %v, want %v (%v)", bs, want, err)
	}
}

func testInstances(t *testing.T, b backend) {
	ctx := t.Context()
	s := b.fresh(t).open(t)
	in := Instance{ID: "i-1", Account: "acct_a", KeyID: "key_a", Name: "dev", Image: "host", Language: "python", MemoryMB: 512,
		CPUMilli: 1000, DiskMB: 1024, EnableSSH: true, State: InstanceRunning, IdleTTL: 90 * time.Second, Exposures: "[]", CreatedAt: ts(0)}
	if err := s.CreateInstance(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateInstance(ctx, in); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate: %v", err)
	}
	got, err := s.GetInstance(ctx, "acct_a", "i-1")
	if err != nil || !got.EnableSSH || got.IdleTTL != 90*time.Second || got.State != InstanceRunning || got.DiskMB != 1024 {
		t.Fatalf("got %+v %v", got, err)
	}
	if _, err := s.GetInstance(ctx, "acct_b", "i-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("other account: %v", err)
	}
	got.State, got.AutoResume, got.SSHKeys, got.Exposures = InstancePaused, true, "ssh-ed25519 AAAA x", `[{"name":"web"}]`
	if err := s.UpdateInstance(ctx, got); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListInstances(ctx, "")
	if err != nil || len(list) != 1 || list[0].State != InstancePaused || !list[0].AutoResume || list[0].SSHKeys != "ssh-ed25519 AAAA x" {
		t.Errorf("list: %+v %v", list, err)
	}
	if err := s.DeleteInstance(ctx, "acct_b", "i-1", ts(5)); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete by other: %v", err)
	}
	if err := s.DeleteInstance(ctx, "acct_a", "i-1", ts(5)); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateInstance(ctx, got); !errors.Is(err, ErrNotFound) {
		t.Errorf("update after delete: %v", err)
	}
	if list, _ := s.ListInstances(ctx, "acct_a"); len(list) != 0 {
		t.Errorf("deleted instance listed")
	}
}

// TestSQLiteCorruptFile: a damaged database file is refused at open with a clear
// message, not used.
func TestSQLiteCorruptFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := s.CreateKey(t.Context(), Key{ID: fmt.Sprintf("key_%d", i), Account: "a", Name: strings.Repeat("n", 200), Prefix: "p", Hash: fmt.Sprintf("h%d", i), Scopes: []string{"admin"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SQLiteFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 5*4096 {
		t.Fatalf("database only %d bytes", len(b))
	}
	for page := 1; page*4096 < len(b); page++ { // every b-tree page's header
		for i := page * 4096; i < page*4096+12; i++ {
			b[i] ^= 0x5a
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), "", dir)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("opening a corrupt database: %v", err)
	}
}

// testLostConnection: PostgreSQL drops the store's connections (a restart, a
// failover); the store's calls fail with an error or succeed, and within a few
// calls it works again, reads and writes.
func testLostConnection(t *testing.T, b backend) {
	if b.driver != DriverPostgres {
		return // an SQLite file has no connection to lose
	}
	ctx := t.Context()
	db := b.fresh(t)
	u, err := url.Parse(db.url)
	if err != nil {
		t.Fatal(err)
	}
	app := fmt.Sprintf("faas_lost_%d", time.Now().UnixNano())
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	s := database{url: u.String()}.open(t)
	key := Key{ID: "key_1", Account: "a", Name: "k", Prefix: "p", Hash: "h1", Scopes: []string{"admin"}}
	if err := s.CreateKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", os.Getenv("FAAS_TEST_DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var killed int
	if err := admin.QueryRowContext(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminating the store's connections: %d %v", killed, err)
	}
	var lastErr error
	recovered := false
	for range 5 {
		if _, err := s.KeyByHash(ctx, "h1"); err != nil {
			lastErr = err
			continue
		}
		recovered = true
		break
	}
	if !recovered {
		t.Fatalf("the store did not recover from lost connections: %v", lastErr)
	}
	key.ID, key.Hash = "key_2", "h2"
	for i := range 5 {
		if err = s.CreateKey(ctx, key); err == nil || errors.Is(err, ErrConflict) {
			break
		}
		t.Logf("write %d after the connections were lost: %v", i, err)
	}
	if _, err := s.KeyByHash(ctx, "h2"); err != nil {
		t.Fatalf("write after the connections were lost: %v", err)
	}
}
