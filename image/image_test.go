package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const busybox = "/usr/bin/busybox"

// requireRoot skips tests that unpack layers keeping their owners.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: layers keep their files' owners (the server runs as root)")
	}
}

// skipOrFail skips a test whose prerequisite is missing, except in CI, where
// nothing may silently not run.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func requireBusybox(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(busybox)
	if err != nil {
		skipOrFail(t, "needs a static busybox at %s (apt-get install busybox-static): %v", busybox, err)
	}
	return b
}

// entry is one entry of a layer built in memory.
type entry struct {
	tar.Header
	Body []byte
}

func file(name, body string) entry {
	return entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, Body: []byte(body)}
}

func dir(name string) entry {
	return entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func symlink(name, target string) entry {
	return entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) entry {
	return entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func buildTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.Header
		h.Format = tar.FormatPAX
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	b := buildTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func diffID(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	d, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// baseLayer holds busybox and its applets as symlinks, and files the next layer
// deletes.
func baseLayer(t *testing.T) v1.Layer {
	bb := requireBusybox(t)
	e := entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))}, Body: bb}
	return layer(t, dir("bin/"), e, symlink("bin/sh", "busybox"), symlink("bin/echo", "/bin/busybox"),
		dir("etc/"), file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), file("etc/gone", "deleted above"),
		dir("opq/"), file("opq/old", "hidden above"), dir("opq/sub/"), file("opq/sub/deep", "hidden too"))
}

// topLayer adds a file and a hard link to it, deletes a file with a whiteout and
// makes a directory opaque.
func topLayer(t *testing.T) v1.Layer {
	return layer(t, dir("etc/"), file("etc/.wh.gone", ""), file("etc/motd", "hello\n"), hardlink("etc/motd.link", "etc/motd"),
		dir("opq/"), file("opq/.wh..wh..opq", ""), file("opq/new", "new"))
}

var testConfig = v1.Config{
	Env:        []string{"PATH=/bin", "FOO=bar"},
	WorkingDir: "/work",
	User:       "1000:1000",
	Entrypoint: []string{"/bin/sh", "-c"},
	Cmd:        []string{"echo hi"},
}

func buildImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, testConfig
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func dockerArchive(t *testing.T, img v1.Image, tag string) []byte {
	t.Helper()
	var b bytes.Buffer
	ref, err := name.ParseReference(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Write(ref, img, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// ociArchive writes img as an OCI image layout, named refName if not "", and tars it.
func ociArchive(t *testing.T, img v1.Image, refName string) []byte {
	t.Helper()
	d := t.TempDir()
	p, err := layout.Write(d, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refName}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err = filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == d {
			return err
		}
		rel, _ := filepath.Rel(d, p)
		fi, err := de.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = rel
		if de.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if de.Type().IsRegular() {
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(body)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rewriteTar returns archive with the body of each entry passed through edit.
func rewriteTar(t *testing.T, archive []byte, edit func(name string, body []byte) []byte) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		body = edit(h.Name, body)
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func openStore(t *testing.T, d string, opt Options) *Store {
	t.Helper()
	opt.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	s, err := Open(d, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func importBytes(t *testing.T, s *Store, archive []byte, ref string) Image {
	t.Helper()
	imgs, err := s.Import(context.Background(), bytes.NewReader(archive), ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 {
		t.Fatalf("imported %d images, want 1", len(imgs))
	}
	return imgs[0]
}

// names lists a directory.
func names(t *testing.T, d string) []string {
	t.Helper()
	entries, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// assertClean checks that nothing temporary is left in the store.
func assertClean(t *testing.T, d string) {
	t.Helper()
	for _, sub := range []string{"", layersDir, imagesDir} {
		for _, n := range names(t, filepath.Join(d, sub)) {
			if strings.HasPrefix(n, tmpPrefix) {
				t.Errorf("left behind: %s", filepath.Join(sub, n))
			}
		}
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestImport(t *testing.T) {
	requireRoot(t)
	base, top := baseLayer(t), topLayer(t)
	img := buildImage(t, base, top)
	tests := []struct {
		format  string
		archive []byte
		ref     string
		names   []string
	}{
		{"docker-archive", dockerArchive(t, img, "busybox:test"), "", []string{"docker.io/library/busybox:test"}},
		{"oci-layout", ociArchive(t, img, "ghcr.io/acme/busybox:oci"), "extra:1",
			[]string{"docker.io/library/extra:1", "ghcr.io/acme/busybox:oci"}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			d := t.TempDir()
			s := openStore(t, d, Options{})
			got := importBytes(t, s, tt.archive, tt.ref)
			if !reflect.DeepEqual(got.Names, tt.names) {
				t.Errorf("names %v, want %v", got.Names, tt.names)
			}
			want := Config{Env: testConfig.Env, WorkingDir: "/work", User: "1000:1000", Entrypoint: testConfig.Entrypoint, Cmd: testConfig.Cmd}
			if !reflect.DeepEqual(got.Config, want) {
				t.Errorf("config %+v, want %+v", got.Config, want)
			}
			if wantLayers := []string{diffID(t, base).String(), diffID(t, top).String()}; !reflect.DeepEqual(got.Layers, wantLayers) {
				t.Errorf("layers %v, want %v", got.Layers, wantLayers)
			}
			if got.Size < int64(len(requireBusybox(t))) || got.CreatedAt.IsZero() || got.LastUsed.IsZero() {
				t.Errorf("size %d, created %v, last used %v", got.Size, got.CreatedAt, got.LastUsed)
			}
			for _, ref := range append([]string{got.Digest, strings.TrimPrefix(got.Digest, "sha256:")}, tt.names...) {
				if g, err := s.Get(ref); err != nil || g.Digest != got.Digest {
					t.Errorf("Get(%q) = %v, %v", ref, g.Digest, err)
				}
			}
			if _, err := s.Get("busybox:other"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "busybox:other") {
				t.Errorf("Get(busybox:other) = %v, want ErrNotFound naming it", err)
			}
			if l := s.List(); len(l) != 1 || l[0].Digest != got.Digest {
				t.Errorf("List = %v", l)
			}
			checkRootFS(t, got.RootFS)
			if !strings.HasPrefix(got.RootFS, d) {
				t.Errorf("rootfs %s outside the store %s", got.RootFS, d)
			}
			assertClean(t, d)
		})
	}
	t.Run("docker.io name", func(t *testing.T) {
		s := openStore(t, t.TempDir(), Options{})
		importBytes(t, s, dockerArchive(t, img, "busybox:test"), "")
		for _, ref := range []string{"busybox:test", "docker.io/library/busybox:test", "index.docker.io/library/busybox:test", "library/busybox:test"} {
			if _, err := s.Get(ref); err != nil {
				t.Errorf("Get(%q): %v", ref, err)
			}
		}
		importBytes(t, s, dockerArchive(t, img, "busybox:latest"), "")
		if g, err := s.Get("busybox"); err != nil || !slices.Contains(g.Names, "docker.io/library/busybox:latest") {
			t.Errorf("Get(busybox) = %v, %v; want the :latest image", g.Names, err)
		}
	})
}

func checkRootFS(t *testing.T, root string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(root, "bin/busybox"), "echo", "hi").Output()
	if err != nil || string(out) != "hi\n" {
		t.Errorf("busybox echo = %q, %v", out, err)
	}
	for link, want := range map[string]string{"bin/sh": "busybox", "bin/echo": "/bin/busybox"} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != want {
			t.Errorf("%s → %q, %v; want %q", link, got, err, want)
		}
	}
	for _, gone := range []string{"etc/gone", "etc/.wh.gone", "opq/old", "opq/sub", "opq/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s should not exist: %v", gone, err)
		}
	}
	for p, want := range map[string]string{"etc/motd": "hello\n", "etc/motd.link": "hello\n", "opq/new": "new", "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"} {
		if got, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	if inode(t, filepath.Join(root, "etc/motd")) != inode(t, filepath.Join(root, "etc/motd.link")) {
		t.Error("etc/motd.link is not a hard link to etc/motd")
	}
	fi, err := os.Stat(filepath.Join(root, "etc"))
	if err != nil || fi.Mode().Perm() != 0o755 || !fi.ModTime().Equal(time.Unix(1700000000, 0)) {
		t.Errorf("etc: %v %v, %v; want 0755 and the layer's mtime", fi.Mode(), fi.ModTime(), err)
	}
}

func TestSharedLayers(t *testing.T) {
	requireRoot(t)
	base := baseLayer(t)
	imgA := buildImage(t, base, topLayer(t))
	imgB := buildImage(t, base, layer(t, dir("app/"), file("app/main", "b")))
	d := t.TempDir()
	s := openStore(t, d, Options{})
	a := importBytes(t, s, dockerArchive(t, imgA, "a:1"), "")
	b := importBytes(t, s, ociArchive(t, imgB, ""), "b:1")
	if a.Layers[0] != b.Layers[0] {
		t.Fatalf("base layers differ: %s, %s", a.Layers[0], b.Layers[0])
	}
	if ia, ib := inode(t, filepath.Join(a.RootFS, "bin/busybox")), inode(t, filepath.Join(b.RootFS, "bin/busybox")); ia != ib {
		t.Errorf("bin/busybox: inodes %d and %d, want one file", ia, ib)
	}
	if l := names(t, filepath.Join(d, layersDir)); len(l) != 3 {
		t.Errorf("layers %v, want 3 (the base once)", l)
	}

	// State survives reopening.
	before := s.List()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, d, Options{})
	if after := s.List(); !reflect.DeepEqual(before, after) {
		t.Errorf("after reopening:\n%+v\nwant\n%+v", after, before)
	}

	if err := s.Remove("a:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("a:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(a:1) after Remove: %v", err)
	}
	if l := names(t, filepath.Join(d, layersDir)); len(l) != 2 || !slices.Contains(l, strings.TrimPrefix(b.Layers[0], "sha256:")) {
		t.Errorf("layers %v, want b's two", l)
	}
	checkBusybox(t, b.RootFS)
	if err := s.Remove("b:1"); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{layersDir, imagesDir} {
		if l := names(t, filepath.Join(d, sub)); len(l) != 0 {
			t.Errorf("%s holds %v after removing every image", sub, l)
		}
	}
	if l := s.List(); len(l) != 0 {
		t.Errorf("List = %v", l)
	}
}

func checkBusybox(t *testing.T, root string) {
	t.Helper()
	if out, err := exec.Command(filepath.Join(root, "bin/busybox"), "true").CombinedOutput(); err != nil {
		t.Errorf("busybox in %s: %v %s", root, err, out)
	}
}

func TestRemoveAndAcquire(t *testing.T) {
	requireRoot(t)
	s := openStore(t, t.TempDir(), Options{})
	img := importBytes(t, s, dockerArchive(t, buildImage(t, baseLayer(t)), "one:1"), "two:2")
	if !reflect.DeepEqual(img.Names, []string{"docker.io/library/one:1", "docker.io/library/two:2"}) {
		t.Fatalf("names %v", img.Names)
	}
	acquired, release, err := s.Acquire("one:1")
	if err != nil {
		t.Fatal(err)
	}
	if !acquired.LastUsed.After(img.LastUsed) {
		t.Errorf("LastUsed %v not after %v", acquired.LastUsed, img.LastUsed)
	}
	if err := s.Remove("one:1"); err != nil { // another name is left
		t.Fatal(err)
	}
	if err := s.Remove("two:2"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove(last name) while acquired = %v, want ErrInUse", err)
	}
	if err := s.Remove(img.Digest); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove(digest) while acquired = %v, want ErrInUse", err)
	}
	checkBusybox(t, acquired.RootFS)
	release()
	release() // idempotent
	if err := s.Remove("two:2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(img.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(digest) after removing = %v", err)
	}
	if err := s.Remove("two:2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove again = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Acquire("two:2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Acquire(removed) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get("Not A Reference"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get(bad reference) = %v, want ErrInvalid", err)
	}
}

func TestRetag(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	s := openStore(t, d, Options{})
	old := importBytes(t, s, dockerArchive(t, buildImage(t, layer(t, file("v", "1"))), "app:latest"), "")
	cur := importBytes(t, s, dockerArchive(t, buildImage(t, layer(t, file("v", "2"))), "app:latest"), "")
	if g, err := s.Get("app"); err != nil || g.Digest != cur.Digest {
		t.Fatalf("Get(app) = %v, %v; want the new image", g.Digest, err)
	}
	if _, err := s.Get(old.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("the image that lost its only name is still there: %v", err)
	}
	if l := names(t, filepath.Join(d, layersDir)); len(l) != 1 {
		t.Errorf("layers %v, want the new image's only", l)
	}
	// Importing the same image again only adds the name.
	again := importBytes(t, s, dockerArchive(t, buildImage(t, layer(t, file("v", "2"))), "app:2"), "")
	if again.Digest != cur.Digest || !reflect.DeepEqual(again.Names, []string{"docker.io/library/app:2", "docker.io/library/app:latest"}) {
		t.Errorf("re-import: %s %v", again.Digest, again.Names)
	}
}

// randomImage has one layer holding a file of size random bytes.
func randomImage(t *testing.T, size int) v1.Image {
	body := make([]byte, size)
	rand.Read(body)
	return buildImage(t, layer(t, dir("data/"), entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "data/blob", Mode: 0o644, Size: int64(size)}, Body: body}))
}

func TestEviction(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	s := openStore(t, d, Options{})
	a := importBytes(t, s, dockerArchive(t, randomImage(t, 256<<10), "a:1"), "")
	importBytes(t, s, dockerArchive(t, randomImage(t, 256<<10), "b:1"), "")
	s.Close()
	// Room for two and a half images.
	s = openStore(t, d, Options{MaxBytes: a.Size*5/2 + 1})

	// a is the least recently used, but acquired: b goes instead.
	_, releaseA, err := s.Acquire("a:1")
	if err != nil {
		t.Fatal(err)
	}
	_, releaseB, err := s.Acquire("b:1")
	if err != nil {
		t.Fatal(err)
	}
	releaseB()
	importBytes(t, s, dockerArchive(t, randomImage(t, 256<<10), "c:1"), "")
	if got := imageNames(s); !reflect.DeepEqual(got, []string{"docker.io/library/a:1", "docker.io/library/c:1"}) {
		t.Fatalf("after importing c: %v, want a (acquired) and c", got)
	}
	releaseA()
	// Now a, used before c was imported, is the least recently used.
	importBytes(t, s, dockerArchive(t, randomImage(t, 256<<10), "d:1"), "")
	if got := imageNames(s); !reflect.DeepEqual(got, []string{"docker.io/library/c:1", "docker.io/library/d:1"}) {
		t.Fatalf("after importing d: %v, want c and d", got)
	}
	if l := names(t, filepath.Join(d, layersDir)); len(l) != 2 {
		t.Errorf("layers %v, want 2", l)
	}
	if l := names(t, filepath.Join(d, imagesDir)); len(l) != 2 {
		t.Errorf("images %v, want 2", l)
	}
	assertClean(t, d)
}

func imageNames(s *Store) []string {
	var out []string
	for _, img := range s.List() {
		out = append(out, img.Names...)
	}
	return out
}

func TestImportRejects(t *testing.T) {
	requireRoot(t)
	outside := t.TempDir()
	base := baseLayer(t)
	bad := func(entries ...entry) []byte {
		return dockerArchive(t, buildImage(t, base, layer(t, entries...)), "bad:1")
	}
	// A layer whose blob is replaced by another valid one: only the digests tell.
	good, other := layer(t, file("a", "good")), layer(t, file("a", "evil"))
	goodImg := buildImage(t, base, good)
	goodDigest, _ := good.Digest()
	otherBlob, _ := other.Compressed()
	otherBytes, _ := io.ReadAll(otherBlob)
	swap := func(suffix string) func(string, []byte) []byte {
		return func(n string, body []byte) []byte {
			if strings.HasSuffix(n, suffix) {
				return otherBytes
			}
			return body
		}
	}
	flip := func(n string, body []byte) []byte {
		if strings.HasSuffix(n, goodDigest.Hex) {
			body = bytes.Clone(body)
			body[len(body)/2] ^= 0xff
		}
		return body
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("not a tar"))
	zw.Close()
	garbage := make([]byte, 10000)
	rand.Read(garbage)

	tests := []struct {
		name    string
		archive []byte
		mention string // the error names it
	}{
		{"dot-dot entry", bad(file("../evil", "x")), "../evil"},
		{"absolute escaping entry", bad(file("/../../evil", "x")), "/../../evil"},
		{"nested dot-dot entry", bad(dir("a/"), file("a/../../evil", "x")), "a/../../evil"},
		{"write through symlink", bad(symlink("lnk", outside), file("lnk/evil", "x")), "lnk/evil"},
		{"write through relative symlink", bad(symlink("lnk", "../../../../../../../.."+outside), file("lnk/evil", "x")), "lnk/evil"},
		{"hard link outside", bad(hardlink("l", "../../../../etc/passwd")), "../../../../etc/passwd"},
		{"hard link through symlink", bad(symlink("lnk", outside), hardlink("l", "lnk/x")), "lnk/x"},
		{"char device", bad(entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}), "dev/null"},
		{"block device", bad(entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o666, Devmajor: 8}}), "dev/sda"},
		{"fifo", bad(entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o666}}), "fifo"},
		{"whiteout of parent", bad(dir("etc/"), file("etc/.wh..", "")), ".wh.."},
		{"docker-archive layer swapped", rewriteTar(t, dockerArchive(t, goodImg, "bad:1"), swap(goodDigest.Hex+".tar.gz")), diffID(t, good).Hex},
		{"oci layer swapped", rewriteTar(t, ociArchive(t, goodImg, "bad:1"), swap(goodDigest.Hex)), diffID(t, good).Hex},
		{"oci layer corrupt", rewriteTar(t, ociArchive(t, goodImg, "bad:1"), flip), diffID(t, good).Hex},
		{"oci layer not a tar", rewriteTar(t, ociArchive(t, goodImg, "bad:1"), func(n string, body []byte) []byte {
			if strings.HasSuffix(n, goodDigest.Hex) {
				return gz.Bytes()
			}
			return body
		}), diffID(t, good).Hex},
		{"oci manifest swapped", rewriteTar(t, ociArchive(t, goodImg, "bad:1"), func(n string, body []byte) []byte {
			if bytes.Contains(body, []byte(`"layers"`)) {
				return append(bytes.Clone(body), ' ') // same JSON, another digest
			}
			return body
		}), "manifest"},
		{"oci symlink", ociWithSymlink(t, ociArchive(t, goodImg, "bad:1")), "blobs/sha256/evil"},
		{"garbage", garbage, "not a tar archive"},
		{"gzip", gz.Bytes(), "not a tar archive"},
		{"empty", nil, "empty archive"},
		{"other tar", buildTar(t, file("hello.txt", "hi")), "neither a docker-archive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			s := openStore(t, d, Options{})
			imgs, err := s.Import(context.Background(), bytes.NewReader(tt.archive), "")
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Import = %v, %v; want ErrInvalid", imgs, err)
			}
			t.Log(err)
			if strings.Contains(err.Error(), d) {
				t.Errorf("error %q shows the store's path", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if l := s.List(); len(l) != 0 {
				t.Errorf("List = %v", l)
			}
			for _, sub := range []string{layersDir, imagesDir} {
				if l := names(t, filepath.Join(d, sub)); len(l) != 0 {
					t.Errorf("%s holds %v", sub, l)
				}
			}
			assertClean(t, d)
			if l := names(t, outside); len(l) != 0 {
				t.Fatalf("written outside the store: %v", l)
			}
		})
	}
}

// ociWithSymlink adds a blob that is a symlink to a file outside.
func ociWithSymlink(t *testing.T, archive []byte) []byte {
	t.Helper()
	archive = archive[:len(archive)-1024] // drop the end-of-archive blocks
	extra := buildTar(t, symlink("blobs/sha256/evil", "/etc/passwd"))
	return append(bytes.Clone(archive), extra...)
}

func TestOpenRemovesLeftovers(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	s := openStore(t, d, Options{})
	img := importBytes(t, s, dockerArchive(t, buildImage(t, baseLayer(t)), "keep:1"), "")
	if _, err := Open(d, Options{}); err == nil {
		t.Fatal("a second Open of the same directory succeeded")
	}
	s.Close()
	orphan := strings.Repeat("ab", 32)
	for _, p := range []string{".tmp-import-1/x", "layers/.tmp-abc/etc/x", "images/.tmp-abc/rootfs/x", "layers/" + orphan + "/x", "images/" + orphan + "/rootfs/x"} {
		if err := os.MkdirAll(filepath.Join(d, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, d, Options{})
	assertClean(t, d)
	for _, sub := range []string{layersDir, imagesDir} {
		if l := names(t, filepath.Join(d, sub)); len(l) != 1 {
			t.Errorf("%s holds %v, want only the image's", sub, l)
		}
	}
	if g, err := s.Get("keep:1"); err != nil || g.Digest != img.Digest {
		t.Errorf("Get(keep:1) = %v, %v", g.Digest, err)
	}
	checkBusybox(t, img.RootFS)
}

func TestPull(t *testing.T) {
	requireRoot(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img := buildImage(t, baseLayer(t), topLayer(t))
	ref := host + "/acme/busybox:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	d := t.TempDir()
	s := openStore(t, d, Options{Auth: map[string]Auth{host: {Username: "u", Password: "secret"}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := s.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want.String() || !reflect.DeepEqual(got.Names, []string{ref}) {
		t.Errorf("pulled %s %v, want %s [%s]", got.Digest, got.Names, want, ref)
	}
	checkRootFS(t, got.RootFS)
	byDigest, err := s.Pull(ctx, host+"/acme/busybox@"+want.String())
	if err != nil || byDigest.Digest != got.Digest || len(byDigest.Names) != 2 {
		t.Errorf("pull by digest: %v %v, %v", byDigest.Digest, byDigest.Names, err)
	}
	for _, missing := range []string{host + "/acme/busybox:nope", host + "/acme/nothing:v1"} {
		if _, err := s.Pull(ctx, missing); !errors.Is(err, ErrNotFound) {
			t.Errorf("Pull(%s) = %v, want ErrNotFound", missing, err)
		}
	}
	if _, err := s.Pull(ctx, "UPPER/case"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Pull(bad reference) = %v, want ErrInvalid", err)
	}
	assertClean(t, d)
}

func TestPullUnreachable(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Pull(ctx, "127.0.0.1:1/x:y")
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1/x:y") {
		t.Fatalf("Pull = %v, want ErrUnreachable naming the image", err)
	}
	t.Log(err)
}

// TestConcurrent imports images sharing a layer while others read and acquire; run
// with -race.
func TestConcurrent(t *testing.T) {
	requireRoot(t)
	base := baseLayer(t)
	d := t.TempDir()
	s := openStore(t, d, Options{})
	importBytes(t, s, dockerArchive(t, buildImage(t, base), "first:1"), "")
	var wg sync.WaitGroup
	for i := range 4 {
		archive := dockerArchive(t, buildImage(t, base, layer(t, file("n", string(rune('a'+i))))), "img:"+string(rune('a'+i)))
		wg.Go(func() {
			if _, err := s.Import(context.Background(), bytes.NewReader(archive), ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			img, release, err := s.Acquire("first:1")
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := os.Lstat(filepath.Join(img.RootFS, "bin/busybox")); err != nil {
				t.Error(err)
			}
			s.List()
			release()
		}
	})
	wg.Wait()
	if l := s.List(); len(l) != 5 {
		t.Errorf("%d images, want 5", len(l))
	}
	if l := names(t, filepath.Join(d, layersDir)); len(l) != 5 {
		t.Errorf("layers %v, want 5 (the base once)", l)
	}
	assertClean(t, d)
}
