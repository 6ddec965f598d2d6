package files

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips tests that chown or create files owned by others.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sets file owners (the agent runs these operations as root)")
	}
}

// tarEntry is one entry of an archive built in memory; Body is the content of a
// regular file.
type tarEntry struct {
	tar.Header
	Body string
}

func file(name, body string) tarEntry {
	return tarEntry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, Body: body}
}

func dir(name string, mode int64) tarEntry {
	return tarEntry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func symlink(name, target string) tarEntry {
	return tarEntry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func buildTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.Header
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sandbox returns dest, an empty directory to unpack into, and its empty sibling
// outside, which nothing may touch.
func sandbox(t testing.TB) (dest, outside string) {
	t.Helper()
	base := t.TempDir()
	dest, outside = filepath.Join(base, "dest"), filepath.Join(base, "outside")
	for _, d := range []string{dest, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dest, outside
}

func assertEmpty(t testing.TB, dir string) {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Fatalf("%s should be empty, holds %v", dir, names)
	}
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lstat(t testing.TB, path string) (fs.FileInfo, *syscall.Stat_t) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi, fi.Sys().(*syscall.Stat_t)
}

func TestUnpackNames(t *testing.T) {
	tests := []struct {
		name    string
		entry   tarEntry
		wantErr bool
		want    string // where the file lands, relative to dest
	}{
		{name: "dotdot", entry: file("../outside/x", "evil"), wantErr: true},
		{name: "dotdot inside", entry: file("a/../../outside/x", "evil"), wantErr: true},
		{name: "absolute dotdot", entry: file("/../outside/x", "evil"), wantErr: true},
		{name: "bare dotdot", entry: dir("..", 0o755), wantErr: true},
		{name: "empty", entry: file("", "x"), wantErr: true},
		{name: "dest itself as file", entry: file(".", "x"), wantErr: true},
		{name: "slash as symlink", entry: symlink("/", "x"), wantErr: true},
		{name: "absolute", entry: file("/etc/passwd", "ok"), want: "etc/passwd"},
		{name: "unclean", entry: file("a/./b/../c", "ok"), want: "a/c"},
		{name: "dotdot staying inside", entry: file("a/b/../../c", "ok"), want: "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, outside := sandbox(t)
			n, err := Unpack(dest, bytes.NewReader(buildTar(t, tt.entry)), UnpackOptions{})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Unpack wrote %d entries, want an error", n)
				}
				if !strings.Contains(err.Error(), `"`+tt.entry.Name+`"`) {
					t.Errorf("error %q does not name the entry %q", err, tt.entry.Name)
				}
				assertEmpty(t, outside)
				return
			}
			if err != nil || n != 1 {
				t.Fatalf("Unpack = %d, %v", n, err)
			}
			if got := readFile(t, filepath.Join(dest, tt.want)); got != "ok" {
				t.Errorf("%s holds %q", tt.want, got)
			}
			assertEmpty(t, outside)
		})
	}
}

// A "./" directory entry, as `tar -C dir -c .` writes, is skipped: dest belongs to
// the caller, the archive does not get to change its mode.
func TestUnpackDotDirSkipped(t *testing.T) {
	dest, _ := sandbox(t)
	n, err := Unpack(dest, bytes.NewReader(buildTar(t, dir("./", 0o777), file("./a", "x"))), UnpackOptions{})
	if err != nil || n != 1 {
		t.Fatalf("Unpack = %d, %v; want 1 entry", n, err)
	}
	if fi, _ := lstat(t, dest); fi.Mode().Perm() != 0o755 {
		t.Errorf("dest mode %v changed", fi.Mode())
	}
}

func TestUnpackSymlinkParent(t *testing.T) {
	tests := []struct {
		name     string
		existing func(t *testing.T, dest, outside string) // prepares dest
		entries  []tarEntry
		wantPath string // the symlink the error must name, relative to dest
	}{
		{
			name: "existing symlink out",
			existing: func(t *testing.T, dest, outside string) {
				must(t, os.Symlink(outside, filepath.Join(dest, "link")))
			},
			entries:  []tarEntry{file("link/x", "evil")},
			wantPath: "link",
		},
		{
			name: "existing symlink deeper",
			existing: func(t *testing.T, dest, outside string) {
				must(t, os.MkdirAll(filepath.Join(dest, "a/b"), 0o755))
				must(t, os.Symlink("../../../outside", filepath.Join(dest, "a/b/link")))
			},
			entries:  []tarEntry{file("a/b/link/c/x", "evil")},
			wantPath: "a/b/link",
		},
		{
			name:     "symlink from same archive",
			entries:  []tarEntry{symlink("link", "../outside"), file("link/x", "evil")},
			wantPath: "link",
		},
		{
			name:     "absolute symlink from same archive",
			entries:  []tarEntry{symlink("link", "/"), dir("link/etc/", 0o755)},
			wantPath: "link",
		},
		{
			// Even a symlink that stays inside dest is refused as a parent.
			name:     "symlink within dest",
			entries:  []tarEntry{dir("real/", 0o755), symlink("link", "real"), symlink("link/x", "/etc")},
			wantPath: "link",
		},
		{
			name:     "file replaced by symlink, then used",
			entries:  []tarEntry{file("d", "x"), symlink("d", "../outside"), file("d/x", "evil")},
			wantPath: "d",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, outside := sandbox(t)
			if tt.existing != nil {
				tt.existing(t, dest, outside)
			}
			_, err := Unpack(dest, bytes.NewReader(buildTar(t, tt.entries...)), UnpackOptions{})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Unpack: %v, want ErrUnsafePath", err)
			}
			if want := filepath.Join(dest, tt.wantPath); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			assertEmpty(t, outside)
		})
	}
}

func TestUnpackReplacesFinalComponent(t *testing.T) {
	tests := []struct {
		name     string
		existing func(t *testing.T, at, outside string)
	}{
		{"symlink to file outside", func(t *testing.T, at, outside string) {
			writeFile(t, filepath.Join(outside, "secret"), "secret")
			must(t, os.Symlink(filepath.Join(outside, "secret"), at))
		}},
		{"dangling symlink outside", func(t *testing.T, at, outside string) {
			must(t, os.Symlink(filepath.Join(outside, "new"), at))
		}},
		{"hard link to file outside", func(t *testing.T, at, outside string) {
			writeFile(t, filepath.Join(outside, "secret"), "secret")
			if err := os.Link(filepath.Join(outside, "secret"), at); err != nil {
				t.Fatal(err)
			}
		}},
		{"file", func(t *testing.T, at, _ string) { writeFile(t, at, "old content, longer") }},
		{"fifo", func(t *testing.T, at, _ string) { must(t, unix.Mkfifo(at, 0o644)) }},
	}
	for _, tt := range tests {
		for _, entry := range []tarEntry{file("x", "new"), symlink("x", "target")} {
			t.Run(tt.name+"/"+string(entry.Typeflag), func(t *testing.T) {
				dest, outside := sandbox(t)
				at := filepath.Join(dest, "x")
				tt.existing(t, at, outside)
				before := snapshot(t, outside)
				if _, err := Unpack(dest, bytes.NewReader(buildTar(t, entry)), UnpackOptions{}); err != nil {
					t.Fatal(err)
				}
				if entry.Typeflag == tar.TypeReg {
					if fi, _ := lstat(t, at); !fi.Mode().IsRegular() || readFile(t, at) != "new" {
						t.Errorf("x is %v holding %q", fi.Mode(), readFile(t, at))
					}
				} else if target, err := os.Readlink(at); err != nil || target != "target" {
					t.Errorf("x: Readlink = %q, %v", target, err)
				}
				if after := snapshot(t, outside); !reflect.DeepEqual(before, after) {
					t.Errorf("outside changed: %v → %v", before, after)
				}
			})
		}
	}
}

// snapshot maps each file under dir to its content.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			m[p] = readFile(t, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUnpackDirectoryInTheWay(t *testing.T) {
	for _, entry := range []tarEntry{file("d", "x"), symlink("d", "x")} {
		t.Run(string(entry.Typeflag), func(t *testing.T) {
			dest, _ := sandbox(t)
			writeFile(t, filepath.Join(dest, "d/keep"), "keep")
			_, err := Unpack(dest, bytes.NewReader(buildTar(t, entry)), UnpackOptions{})
			if !errors.Is(err, syscall.EISDIR) {
				t.Fatalf("Unpack: %v, want EISDIR", err)
			}
			if got := readFile(t, filepath.Join(dest, "d/keep")); got != "keep" {
				t.Errorf("d/keep holds %q", got)
			}
		})
	}
}

// A regular file with a directory below it in the archive is not a parent to write
// through: the walk stops at a non-directory.
func TestUnpackFileAsParent(t *testing.T) {
	dest, _ := sandbox(t)
	_, err := Unpack(dest, bytes.NewReader(buildTar(t, file("f", "x"), file("f/g", "y"))), UnpackOptions{})
	if !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("Unpack: %v, want ENOTDIR", err)
	}
}

func TestUnpackDirectories(t *testing.T) {
	dest, _ := sandbox(t)
	if err := os.Mkdir(filepath.Join(dest, "existing"), 0o700); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink("elsewhere", filepath.Join(dest, "wasLink")))
	writeFile(t, filepath.Join(dest, "wasFile"), "x")
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
	entries := []tarEntry{
		dir("existing/", 0o750),
		dir("new/", 0o711),
		dir("wasLink/", 0o755),
		dir("wasFile/", 0o755),
		dir("tmp/", 0o1777),
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "dated/", Mode: 0o755, ModTime: mtime}},
		file("dated/inside", "written after the directory"),
		file("implicit/parent/f", "x"),
	}
	n, err := Unpack(dest, bytes.NewReader(buildTar(t, entries...)), UnpackOptions{})
	if err != nil || n != len(entries) {
		t.Fatalf("Unpack = %d, %v", n, err)
	}
	for name, want := range map[string]fs.FileMode{
		"existing":        0o750,
		"new":             0o711,
		"wasLink":         0o755,
		"wasFile":         0o755,
		"tmp":             0o777 | fs.ModeSticky,
		"implicit":        0o755,
		"implicit/parent": 0o755,
	} {
		fi, _ := lstat(t, filepath.Join(dest, name))
		if !fi.IsDir() || fi.Mode()&^fs.ModeDir != want {
			t.Errorf("%s: mode %v, want directory %v", name, fi.Mode(), want)
		}
	}
	if fi, _ := lstat(t, filepath.Join(dest, "dated")); !fi.ModTime().Equal(mtime) {
		t.Errorf("dated: mtime %v, want %v", fi.ModTime(), mtime)
	}
}

func TestUnpackFileAttributes(t *testing.T) {
	dest, _ := sandbox(t)
	mtime := time.Date(2021, 6, 7, 8, 9, 10, 500, time.UTC)
	e := file("f", "content")
	e.Mode, e.ModTime = 0o640, mtime
	l := symlink("l", "f")
	l.ModTime = mtime
	if _, err := Unpack(dest, bytes.NewReader(buildTar(t, e, l)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"f", "l"} {
		fi, _ := lstat(t, filepath.Join(dest, name))
		if !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), mtime)
		}
	}
	if fi, _ := lstat(t, filepath.Join(dest, "f")); fi.Mode() != 0o640 {
		t.Errorf("f: mode %v, want 0640", fi.Mode())
	}
}

// Symlinks are created verbatim: targets are the sandbox's business.
func TestUnpackSymlinkTargets(t *testing.T) {
	dest, outside := sandbox(t)
	targets := map[string]string{"abs": "/etc/shadow", "up": "../../../outside", "dangling": "nothing/here", "self": "self"}
	var entries []tarEntry
	for name, target := range targets {
		entries = append(entries, symlink(name, target))
	}
	if _, err := Unpack(dest, bytes.NewReader(buildTar(t, entries...)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range targets {
		if got, err := os.Readlink(filepath.Join(dest, name)); err != nil || got != want {
			t.Errorf("%s → %q, %v; want %q", name, got, err, want)
		}
	}
	assertEmpty(t, outside)
}

func TestUnpackRejectsTypes(t *testing.T) {
	for _, typ := range []byte{tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeCont, 'Z'} {
		t.Run(string(typ), func(t *testing.T) {
			dest, _ := sandbox(t)
			h := tar.Header{Typeflag: typ, Name: "x", Linkname: "f", Mode: 0o644, Devmajor: 1, Devminor: 3}
			n, err := Unpack(dest, bytes.NewReader(buildTar(t, file("f", "x"), tarEntry{Header: h})), UnpackOptions{})
			if !errors.Is(err, errors.ErrUnsupported) || n != 1 {
				t.Fatalf("Unpack = %d, %v; want 1 entry and ErrUnsupported", n, err)
			}
			if _, err := os.Lstat(filepath.Join(dest, "x")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("x was created: %v", err)
			}
		})
	}
}

func TestUnpackSpecialBitsAndOwner(t *testing.T) {
	requireRoot(t)
	entries := func() []tarEntry {
		f := file("suid", "x")
		f.Mode, f.Uid, f.Gid = 0o6755, 1000, 1001
		d := dir("sgid/", 0o3775)
		d.Uid, d.Gid = 1000, 1001
		l := symlink("sgid/l", "../suid")
		l.Uid, l.Gid = 1000, 1001
		return []tarEntry{f, d, l, file("implicit/f", "x")}
	}
	tests := []struct {
		name     string
		opt      UnpackOptions
		suidMode fs.FileMode
		sgidMode fs.FileMode
		uid, gid uint32 // of the entries
	}{
		{"stripped", UnpackOptions{UID: 1000, GID: 1000}, 0o755, 0o775 | fs.ModeSticky, 1000, 1000},
		{"kept", UnpackOptions{KeepOwner: true, UID: 2000, GID: 2000}, 0o755 | fs.ModeSetuid | fs.ModeSetgid, 0o775 | fs.ModeSetgid | fs.ModeSticky, 1000, 1001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, _ := sandbox(t)
			if _, err := Unpack(dest, bytes.NewReader(buildTar(t, entries()...)), tt.opt); err != nil {
				t.Fatal(err)
			}
			if fi, _ := lstat(t, filepath.Join(dest, "suid")); fi.Mode() != tt.suidMode {
				t.Errorf("suid: mode %v, want %v", fi.Mode(), tt.suidMode)
			}
			if fi, _ := lstat(t, filepath.Join(dest, "sgid")); fi.Mode()&^fs.ModeDir != tt.sgidMode {
				t.Errorf("sgid: mode %v, want %v", fi.Mode(), tt.sgidMode)
			}
			for _, name := range []string{"suid", "sgid", "sgid/l"} {
				if _, st := lstat(t, filepath.Join(dest, name)); st.Uid != tt.uid || st.Gid != tt.gid {
					t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, tt.uid, tt.gid)
				}
			}
			// Created parents belong to UID:GID in both modes.
			if _, st := lstat(t, filepath.Join(dest, "implicit")); int(st.Uid) != tt.opt.UID || int(st.Gid) != tt.opt.GID {
				t.Errorf("implicit: owner %d:%d, want %d:%d", st.Uid, st.Gid, tt.opt.UID, tt.opt.GID)
			}
		})
	}
}

func TestUnpackLimits(t *testing.T) {
	archive := buildTar(t, file("a", "12345"), dir("d/", 0o755), file("d/b", "678"))
	tests := []struct {
		name    string
		opt     UnpackOptions
		wantErr bool
	}{
		{"unlimited", UnpackOptions{}, false},
		{"bytes at limit", UnpackOptions{MaxBytes: 8}, false},
		{"bytes over", UnpackOptions{MaxBytes: 7}, true},
		{"entries at limit", UnpackOptions{MaxEntries: 3}, false},
		{"entries over", UnpackOptions{MaxEntries: 2}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, _ := sandbox(t)
			n, err := Unpack(dest, bytes.NewReader(archive), tt.opt)
			if tt.wantErr {
				if !errors.Is(err, ErrLimit) {
					t.Fatalf("Unpack = %d, %v; want ErrLimit", n, err)
				}
				if _, err := os.Lstat(filepath.Join(dest, "d/b")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("d/b was written past the limit: %v", err)
				}
				return
			}
			if err != nil || n != 3 {
				t.Fatalf("Unpack = %d, %v", n, err)
			}
		})
	}
}

func TestUnpackTruncatedArchive(t *testing.T) {
	dest, _ := sandbox(t)
	archive := buildTar(t, file("a", strings.Repeat("x", 2000)))
	if _, err := Unpack(dest, bytes.NewReader(archive[:1024]), UnpackOptions{}); err == nil {
		t.Fatal("Unpack of a truncated archive succeeded")
	}
}

// tree builds a source tree with every kind of entry Manifest and Pack handle.
func tree(t *testing.T, root string) {
	t.Helper()
	writeFile(t, filepath.Join(root, "a.txt"), "alpha")
	writeFile(t, filepath.Join(root, "sub/deep/b.bin"), string([]byte{0, 1, 2, 255}))
	writeFile(t, filepath.Join(root, "sub/empty-file"), "")
	writeFile(t, filepath.Join(root, "sub-x"), "sorted before sub/, walked after it")
	must(t, os.Mkdir(filepath.Join(root, "empty"), 0o700))
	must(t, os.Chmod(filepath.Join(root, "a.txt"), 0o600))
	must(t, unix.Chmod(filepath.Join(root, "sub/deep/b.bin"), 0o4755))
	must(t, unix.Chmod(filepath.Join(root, "sub"), 0o2775))
	must(t, os.Symlink("a.txt", filepath.Join(root, "rel-link")))
	must(t, os.Symlink("/nonexistent/abs", filepath.Join(root, "sub/abs-link")))
	must(t, os.Symlink("sub", filepath.Join(root, "dir-link")))
	must(t, os.Link(filepath.Join(root, "a.txt"), filepath.Join(root, "hardlink")))
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	must(t, os.Chown(filepath.Join(root, "sub/empty-file"), 1000, 1000))
	must(t, os.Lchown(filepath.Join(root, "rel-link"), 1000, 1001))
	for i, name := range datedPaths {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: 1600000000 + int64(i), Nsec: 123456789}}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, name), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// datedPaths get a modification time of their own in tree, set last so that nothing
// changes it afterwards.
var datedPaths = []string{"rel-link", "sub/deep/b.bin", "sub/deep", "sub"}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func manifest(t *testing.T, roots ...string) []Entry {
	t.Helper()
	var b bytes.Buffer
	if err := Manifest(roots, &b); err != nil {
		t.Fatal(err)
	}
	entries, err := ReadManifest(&b)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestManifest(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	tree(t, root)
	got := manifest(t, root, filepath.Join(root, "sub"), filepath.Join(root, "missing"))
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	_, st := lstat(t, root)
	want := []Entry{
		{Path: root, Type: TypeDir, Mode: st.Mode & 0o7777},
		{Path: root + "/a.txt", Type: TypeFile, Mode: 0o600, Size: 5, SHA256: sum("alpha")},
		{Path: root + "/dir-link", Type: TypeSymlink, Mode: 0o777, Target: "sub"},
		{Path: root + "/empty", Type: TypeDir, Mode: 0o700},
		{Path: root + "/hardlink", Type: TypeFile, Mode: 0o600, Size: 5, SHA256: sum("alpha")},
		{Path: root + "/rel-link", Type: TypeSymlink, Mode: 0o777, UID: 1000, GID: 1001, Target: "a.txt"},
		{Path: root + "/sub", Type: TypeDir, Mode: 0o2775},
		{Path: root + "/sub-x", Type: TypeFile, Mode: 0o644, Size: 35, SHA256: sum("sorted before sub/, walked after it")},
		{Path: root + "/sub/abs-link", Type: TypeSymlink, Mode: 0o777, Target: "/nonexistent/abs"},
		{Path: root + "/sub/deep", Type: TypeDir, Mode: 0o755},
		{Path: root + "/sub/deep/b.bin", Type: TypeFile, Mode: 0o4755, Size: 4, SHA256: sum("\x00\x01\x02\xff")},
		{Path: root + "/sub/empty-file", Type: TypeFile, Mode: 0o644, UID: 1000, GID: 1000, SHA256: sum("")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("manifest:\n%s\nwant:\n%s", show(got), show(want))
	}

	// A root that is a symlink is listed, not followed.
	if got := manifest(t, root+"/dir-link"); len(got) != 1 || got[0].Type != TypeSymlink {
		t.Errorf("manifest of a symlink root: %s", show(got))
	}
	var b bytes.Buffer
	if err := Manifest([]string{"relative"}, &b); err == nil {
		t.Error("Manifest accepted a relative root")
	}
}

// JSON would turn invalid UTF-8 into U+FFFD, naming another file: Manifest refuses.
func TestManifestInvalidUTF8(t *testing.T) {
	for name, create := range map[string]func(dir string) error{
		"path":   func(dir string) error { return os.WriteFile(filepath.Join(dir, "bad\xff"), nil, 0o644) },
		"target": func(dir string) error { return os.Symlink("bad\xff", filepath.Join(dir, "link")) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, create(dir))
			if err := Manifest([]string{dir}, io.Discard); err == nil || !strings.Contains(err.Error(), "UTF-8") {
				t.Errorf("Manifest: %v, want an error about UTF-8", err)
			}
		})
	}
}

func show(entries []Entry) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range entries {
		enc.Encode(e)
	}
	return b.String()
}

func TestReadManifestRejects(t *testing.T) {
	for _, line := range []string{
		`{"path":"relative","type":"file","mode":420,"uid":0,"gid":0,"sha256":"` + strings.Repeat("a", 64) + `"}`,
		`{"path":"/a/../b","type":"dir","mode":493,"uid":0,"gid":0}`,
		`{"path":"/a","type":"fifo","mode":420,"uid":0,"gid":0}`,
		`{"path":"/a","type":"file","mode":420,"uid":0,"gid":0,"sha256":"xyz"}`,
		`{"path":"/a","type":"dir","mode":70000,"uid":0,"gid":0}`,
		`{"path":"/a","type":"dir","mode":493,"uid":-1,"gid":0}`,
		`{"path":"/a","type":"dir","mode":493,"uid":0,"gid":0,"extra":1}`,
		`{"path":"/a","type":"dir"`,
	} {
		if _, err := ReadManifest(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("ReadManifest accepted %s", line)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	tree(t, src)
	var archive bytes.Buffer
	if err := Pack([]string{src}, true, &archive); err != nil {
		t.Fatal(err)
	}
	dest, outside := sandbox(t)
	if _, err := Unpack(dest, &archive, UnpackOptions{KeepOwner: true}); err != nil {
		t.Fatal(err)
	}
	want := manifest(t, src)
	got := manifest(t, filepath.Join(dest, src))
	for i := range got {
		got[i].Path = strings.TrimPrefix(got[i].Path, dest)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("unpacked manifest:\n%s\nwant:\n%s", show(got), show(want))
	}
	for _, name := range datedPaths {
		srcInfo, _ := lstat(t, filepath.Join(src, name))
		destInfo, _ := lstat(t, filepath.Join(dest, src, name))
		if !destInfo.ModTime().Equal(srcInfo.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", name, destInfo.ModTime(), srcInfo.ModTime())
		}
	}
	assertEmpty(t, outside)
}

// tarNames lists the entries of an archive as "type name [linkname]".
func tarNames(t *testing.T, archive []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			return names
		}
		s := string(h.Typeflag) + " " + h.Name
		if h.Linkname != "" {
			s += " " + h.Linkname
		}
		names = append(names, s)
	}
}

func TestPack(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "d/f"), "x")
	must(t, os.Symlink("d", filepath.Join(root, "link")))
	must(t, unix.Mkfifo(filepath.Join(root, "d/fifo"), 0o644))
	name := strings.TrimPrefix(root, "/")
	tests := []struct {
		name      string
		paths     []string
		recursive bool
		want      []string
	}{
		{"directory alone", []string{root + "/d"}, false, []string{"5 " + name + "/d/"}},
		{"recursive", []string{root + "/d"}, true, []string{"5 " + name + "/d/", "0 " + name + "/d/f"}},
		{"symlink not followed", []string{root + "/link"}, true, []string{"2 " + name + "/link d"}},
		{"through symlinks in the walk", []string{root}, true, []string{"5 " + name + "/", "5 " + name + "/d/", "0 " + name + "/d/f", "2 " + name + "/link d"}},
		{"duplicates once", []string{root + "/d/f", root + "/d/", root + "/d"}, true, []string{"0 " + name + "/d/f", "5 " + name + "/d/"}},
		{"fifo skipped", []string{root + "/d/fifo"}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Pack(tt.paths, tt.recursive, &b); err != nil {
				t.Fatal(err)
			}
			if got := tarNames(t, b.Bytes()); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("archive holds %q, want %q", got, tt.want)
			}
		})
	}
	for _, paths := range [][]string{{root + "/missing"}, {"relative"}} {
		if err := Pack(paths, true, &bytes.Buffer{}); err == nil {
			t.Errorf("Pack(%q) succeeded", paths)
		}
	}
}

func TestRemove(t *testing.T) {
	root, outside := sandbox(t)
	writeFile(t, filepath.Join(root, "f"), "x")
	writeFile(t, filepath.Join(root, "d/e/f"), "x")
	writeFile(t, filepath.Join(outside, "keep"), "keep")
	must(t, os.Symlink(outside, filepath.Join(root, "d/e/link-out")))
	must(t, os.Symlink(outside, filepath.Join(root, "link")))
	writeFile(t, filepath.Join(root, "g"), "x")

	err := Remove(root, []string{root + "/f", root + "/d", root + "/link", root + "/missing/x", root + "/g/under-file"})
	if err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(root)
	if len(names) != 1 || names[0].Name() != "g" {
		t.Errorf("root holds %v, want only g", names)
	}
	if got := readFile(t, filepath.Join(outside, "keep")); got != "keep" {
		t.Errorf("outside/keep holds %q", got)
	}
}

func TestRemoveContents(t *testing.T) {
	root, outside := sandbox(t)
	writeFile(t, filepath.Join(root, "dir/f"), "x")
	writeFile(t, filepath.Join(root, "dir/sub/g"), "x")
	must(t, os.Symlink(outside, filepath.Join(root, "dir/link-out")))
	writeFile(t, filepath.Join(outside, "keep"), "keep")
	must(t, os.Symlink(outside, filepath.Join(root, "link")))
	if err := RemoveContents(root, root+"/dir"); err != nil {
		t.Fatal(err)
	}
	if names, err := os.ReadDir(filepath.Join(root, "dir")); err != nil || len(names) != 0 {
		t.Errorf("dir holds %v (%v), want it empty and there", names, err)
	}
	for _, bad := range []string{root + "/link", root, outside} {
		if err := RemoveContents(root, bad); err == nil {
			t.Errorf("emptying %s: no error", bad)
		}
	}
	if err := RemoveContents(root, root+"/missing"); err != nil {
		t.Errorf("emptying a missing directory: %v", err)
	}
	if got := readFile(t, filepath.Join(outside, "keep")); got != "keep" {
		t.Errorf("outside/keep holds %q", got)
	}
}

func TestRemoveRefuses(t *testing.T) {
	root, outside := sandbox(t)
	writeFile(t, filepath.Join(outside, "keep"), "keep")
	writeFile(t, filepath.Join(root, "f"), "x")
	must(t, os.MkdirAll(filepath.Join(root, "real"), 0o755))
	must(t, os.Symlink(outside, filepath.Join(root, "link")))
	must(t, os.Symlink("real", filepath.Join(root, "inner-link")))
	tests := []struct {
		name string
		path string
	}{
		{"symlink parent out", root + "/link/keep"},
		{"symlink parent within root", root + "/inner-link/x"},
		{"outside", outside + "/keep"},
		{"dotdot out", root + "/../outside/keep"},
		{"root itself", root},
		{"root with dotdot", root + "/real/.."},
		{"relative", "f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// f comes first: nothing is removed when any path is refused.
			err := Remove(root, []string{root + "/f", tt.path})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Remove: %v, want ErrUnsafePath", err)
			}
			if got := readFile(t, filepath.Join(outside, "keep")); got != "keep" {
				t.Errorf("outside/keep holds %q", got)
			}
			if _, err := os.Lstat(filepath.Join(root, "f")); err != nil {
				t.Errorf("f was removed: %v", err)
			}
		})
	}
}

func hardlink(name, target string) tarEntry {
	return tarEntry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func TestUnpackHardLinks(t *testing.T) {
	dest, outside := sandbox(t)
	entries := []tarEntry{
		file("d/f", "content"), symlink("s", "../outside"),
		hardlink("l1", "d/f"), hardlink("d/l2", "/d/f"), hardlink("ls", "s"),
		file("g", "x"), hardlink("g", "d/f"), // replaces a file
	}
	n, err := Unpack(dest, bytes.NewReader(buildTar(t, entries...)), UnpackOptions{HardLinks: true})
	if err != nil || n != len(entries) {
		t.Fatalf("Unpack = %d, %v", n, err)
	}
	_, f := lstat(t, filepath.Join(dest, "d/f"))
	for _, name := range []string{"l1", "d/l2", "g"} {
		fi, st := lstat(t, filepath.Join(dest, name))
		if !fi.Mode().IsRegular() || st.Ino != f.Ino {
			t.Errorf("%s: mode %v inode %d, want a link to d/f (inode %d)", name, fi.Mode(), st.Ino, f.Ino)
		}
	}
	fi, st := lstat(t, filepath.Join(dest, "ls"))
	_, s := lstat(t, filepath.Join(dest, "s"))
	if fi.Mode()&fs.ModeSymlink == 0 || st.Ino != s.Ino {
		t.Errorf("ls: mode %v inode %d, want a link to the symlink s itself (inode %d)", fi.Mode(), st.Ino, s.Ino)
	}
	assertEmpty(t, outside)
}

func TestUnpackHardLinksRefused(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
	}{
		{"not an entry", []tarEntry{hardlink("l", "existing")}},
		{"leaves dest", []tarEntry{hardlink("l", "../outside/secret")}},
		{"absolute leaving dest", []tarEntry{hardlink("l", "/../outside/secret")}},
		{"through symlink", []tarEntry{symlink("s", "../outside"), hardlink("l", "s/secret")}},
		{"name through symlink", []tarEntry{file("f", "x"), symlink("s", "../outside"), hardlink("s/l", "f")}},
		{"directory", []tarEntry{dir("d", 0o755), hardlink("l", "d")}},
		{"itself", []tarEntry{file("f", "x"), hardlink("f", "f")}},
		{"later entry", []tarEntry{hardlink("l", "f"), file("f", "x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, outside := sandbox(t)
			writeFile(t, filepath.Join(dest, "existing"), "mine")
			writeFile(t, filepath.Join(outside, "secret"), "theirs")
			_, err := Unpack(dest, bytes.NewReader(buildTar(t, tt.entries...)), UnpackOptions{HardLinks: true})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Unpack = %v, want ErrUnsafePath", err)
			}
			_, st := lstat(t, filepath.Join(outside, "secret"))
			if st.Nlink != 1 {
				t.Errorf("outside/secret got linked: %d links", st.Nlink)
			}
			if _, err := os.Lstat(filepath.Join(dest, "l")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("l was created: %v", err)
			}
		})
	}
}
