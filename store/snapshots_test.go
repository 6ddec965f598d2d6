package store

import (
	"errors"
	"math"
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
