package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestReadSmallFile(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, 4095, 4096, 4097, 100_000} {
		want := bytes.Repeat([]byte("x"), size)
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readSmallFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("size %d: got %d bytes, %v", size, len(got), err)
		}
	}
	// A kernel file, whose size stat does not tell.
	got, err := readSmallFile("/proc/self/status")
	if err != nil || !bytes.Contains(got, []byte("\nUid:")) {
		t.Errorf("/proc/self/status: %q, %v", got, err)
	}
	if _, err := readSmallFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v, want not-exist", err)
	}
}

func TestReadDirNames(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := range 300 { // more than one getdents buffer
		name := "an-entry-with-a-long-name-" + strconv.Itoa(i)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	got, err := readDirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("got %d names, want %d (no . or ..)", len(got), len(want))
	}
}

func TestRealUID(t *testing.T) {
	uid, ok := realUID(strconv.Itoa(os.Getpid()))
	if !ok || uid != strconv.Itoa(os.Getuid()) {
		t.Errorf("realUID(self) = %q, %v; want %d", uid, ok, os.Getuid())
	}
	if _, ok := realUID("999999999"); ok {
		t.Error("realUID of no process: ok")
	}
	for _, c := range []struct {
		status, uid string
		ok          bool
	}{
		{"Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t0\n", "1000", true},
		{"Uid:\t0\t0\t0\t0\n", "0", true},
		{"Name:\tx\nUid:\t10", "", false}, // cut inside the line: read on
		{"Name:\tx\n", "", false},
	} {
		if uid, ok := uidIn(c.status); uid != c.uid || ok != c.ok {
			t.Errorf("uidIn(%q) = %q, %v; want %q, %v", c.status, uid, ok, c.uid, c.ok)
		}
	}
}

// TestDirStamp checks what the reset relies on to skip a directory it left
// empty: any entry made or removed, and any change of its mode or times
// (even to the times it had), gives it another stamp.
func TestDirStamp(t *testing.T) {
	dir := t.TempDir()
	changes := []func() error{
		func() error { return os.WriteFile(filepath.Join(dir, "f"), nil, 0o644) },
		func() error { return os.Remove(filepath.Join(dir, "f")) },
		func() error { return os.Mkdir(filepath.Join(dir, "d"), 0o755) },
		func() error { return os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "e")) },
		func() error { return os.Chmod(dir, 0o700) },
		func() error {
			st, err := os.Stat(dir)
			if err != nil {
				return err
			}
			return os.Chtimes(dir, st.ModTime(), st.ModTime()) // the same times again
		},
	}
	for i, change := range changes {
		before := stampOf(dir)
		if !before.valid || stampOf(dir) != before {
			t.Fatalf("change %d: stamp not stable: %+v", i, before)
		}
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if stampOf(dir) == before {
			t.Errorf("change %d: same stamp after it", i)
		}
	}
	if stampOf(filepath.Join(dir, "missing")).valid {
		t.Error("stamp of a missing directory is valid")
	}
}
