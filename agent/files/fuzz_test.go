package files

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzUnpack feeds arbitrary archives to Unpack: it must never panic, and whatever
// it writes must stay inside dest, which it checks by keeping an empty sibling
// directory, outside, that the seeds aim at.
func FuzzUnpack(f *testing.F) {
	hardlink := tarEntry{Header: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../outside/x"}}
	fifo := tarEntry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o644}}
	long := string(bytes.Repeat([]byte("a/"), 60)) + "f" // a PAX path record
	for _, seed := range [][]tarEntry{
		{dir("d/", 0o755), file("d/f", "content"), symlink("d/l", "../.."), file("/abs/f", "x"), file(long, "x")},
		{file("../outside/x", "evil")},
		{file("/../outside/x", "evil")},
		{file("a/../../outside/x", "evil")},
		{symlink("l", "../outside"), file("l/x", "evil")},
		{symlink("l", "../outside"), dir("l/d/", 0o755)},
		{symlink("l", "/"), dir("l/tmp/", 0o755)},
		{file("a", "1"), symlink("a", "../outside/a"), file("a", "2")},
		{symlink("x", "../outside/x"), file("x", "replaces the link, not its target")},
		{hardlink, fifo},
	} {
		// Without the two zero blocks that end an archive (the reader takes EOF for the
		// end as well): smaller seeds minimize faster.
		archive := buildTar(f, seed...)
		f.Add(archive[:len(archive)-1024])
	}
	tmp := fuzzTempDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		base, err := os.MkdirTemp(tmp, "")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(base)
		dest, outside := filepath.Join(base, "dest"), filepath.Join(base, "outside")
		for _, d := range []string{dest, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		opt := UnpackOptions{MaxBytes: 1 << 20, MaxEntries: 64, UID: 1000, GID: 1000, KeepOwner: len(data)%2 == 1}
		_, _ = Unpack(dest, bytes.NewReader(data), opt) // errors are expected; escapes are not
		assertEmpty(t, outside)
		names, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 2 {
			t.Fatalf("beside dest and outside: %v", names)
		}
	})
}

// fuzzTempDir returns the directory the fuzz iterations work in. Every iteration
// creates and deletes a few files, and on a disk that costs milliseconds (26 ms per
// execution on ext4 on the development VM, 0.1 ms on tmpfs), which leaves the fuzzer
// minimizing its first finds for the whole of a short -fuzztime; so it uses
// /dev/shm when there is one.
func fuzzTempDir(f *testing.F) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "FuzzUnpack"); err == nil {
			f.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return f.TempDir()
}
