package image

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sys/unix"
)

const (
	indexFile = "index.json"
	lockFile  = "lock"
	layersDir = "layers"
	imagesDir = "images"
	tmpPrefix = ".tmp-"
)

// Store is a local image store; see the package documentation. Its methods are safe
// for concurrent use. Imports and pulls run one at a time (so a layer is unpacked
// once), while Get, List, Acquire and Remove proceed meanwhile.
type Store struct {
	dir  string
	opt  Options
	log  *slog.Logger
	lock *os.File

	importMu sync.Mutex // held by Import and Pull

	mu     sync.Mutex
	images map[string]*Image // by digest; RootFS set
	names  map[string]string // normalised name → digest
	layers map[string]int64  // diff id → bytes on disk
	refs   map[string]int    // digest → acquisitions not yet released
	pinned map[string]int    // diff id → imports using it whose image is not indexed yet
}

// index is the format of index.json.
type index struct {
	Version int              `json:"version"`
	Images  []*Image         `json:"images"`
	Layers  map[string]int64 `json:"layers"` // diff id → bytes on disk
}

// Open opens the store in dir, creating it (mode 0700) if needed, and loads its
// index. It removes what an interrupted import left behind: temporary entries, and
// layers and images the index does not list; an indexed image whose files are
// missing is dropped. Only one Store may have dir open at a time, in any process;
// Close releases it.
func Open(dir string, opt Options) (*Store, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, layersDir), filepath.Join(dir, imagesDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening image store: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("image store %s is open elsewhere: %w", dir, err)
	}
	s := &Store{
		dir: dir, opt: opt, log: opt.Logger, lock: lock,
		images: make(map[string]*Image), names: make(map[string]string),
		layers: make(map[string]int64), refs: make(map[string]int), pinned: make(map[string]int),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the store directory. Images acquired stay usable on disk, but the
// Store must not be used any more.
func (s *Store) Close() error { return s.lock.Close() }

// load reads the index and reconciles it with the directories.
func (s *Store) load() error {
	var idx index
	b, err := os.ReadFile(filepath.Join(s.dir, indexFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading image store index: %w", err)
	default:
		if err := json.Unmarshal(b, &idx); err != nil {
			return fmt.Errorf("image store index %s is corrupt: %w", filepath.Join(s.dir, indexFile), err)
		}
	}
	changed := false
	for diffID, size := range idx.Layers {
		if !isDir(s.layerPath(diffID)) {
			s.log.Warn("layer missing on disk; dropped", "layer", diffID)
			changed = true
			continue
		}
		s.layers[diffID] = size
	}
	for _, img := range idx.Images {
		if img == nil || !validDigest(img.Digest) {
			changed = true
			continue
		}
		img.RootFS = s.rootfsPath(img.Digest)
		ok := isDir(img.RootFS)
		for _, l := range img.Layers {
			_, has := s.layers[l]
			ok = ok && has
		}
		if !ok {
			s.log.Warn("image incomplete on disk; dropped", "image", img.Digest, "names", img.Names)
			changed = true
			continue
		}
		s.images[img.Digest] = img
		for _, n := range img.Names {
			s.names[n] = img.Digest
		}
	}
	// Leftovers: temporary entries, and whatever the index does not know.
	var trash []string
	for _, sub := range []string{"", layersDir, imagesDir} {
		entries, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return fmt.Errorf("reading image store: %w", err)
		}
		for _, e := range entries {
			n, p := e.Name(), filepath.Join(s.dir, sub, e.Name())
			switch {
			case strings.HasPrefix(n, tmpPrefix):
			case sub == layersDir && !hasKey(s.layers, "sha256:"+n):
			case sub == imagesDir && s.images["sha256:"+n] == nil:
			default:
				continue
			}
			trash = append(trash, p)
		}
	}
	if trash := append(trash, s.gcLayers()...); len(trash) > 0 {
		s.log.Info("removing leftovers", "paths", len(trash))
		removeAll(s.log, trash)
		changed = true
	}
	if changed {
		return s.saveIndex()
	}
	return nil
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// validDigest reports whether d is "sha256:" and 64 lowercase hex digits.
func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

func (s *Store) layerPath(diffID string) string {
	return filepath.Join(s.dir, layersDir, strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) imagePath(digest string) string {
	return filepath.Join(s.dir, imagesDir, strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) rootfsPath(digest string) string {
	return filepath.Join(s.imagePath(digest), "rootfs")
}

// saveIndex writes the index atomically; s.mu is held.
func (s *Store) saveIndex() error {
	idx := index{Version: 1, Layers: s.layers}
	for _, img := range s.images {
		idx.Images = append(idx.Images, img)
	}
	slices.SortFunc(idx.Images, func(a, b *Image) int { return strings.Compare(a.Digest, b.Digest) })
	b, err := json.MarshalIndent(idx, "", "\t")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, tmpPrefix+indexFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing image store index: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, indexFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing image store index: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// normalise returns the canonical form of a reference: "busybox" and
// "index.docker.io/library/busybox:latest" are both "docker.io/library/busybox:latest";
// a digest reference keeps its digest ("docker.io/library/busybox@sha256:…").
func normalise(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%w: reference %q: %w", ErrInvalid, ref, err)
	}
	return normaliseRef(r), nil
}

func normaliseRef(r name.Reference) string {
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	base := reg + "/" + r.Context().RepositoryStr()
	if d, ok := r.(name.Digest); ok {
		return base + "@" + d.DigestStr()
	}
	return base + ":" + r.Identifier()
}

// asDigest recognises an image id: "sha256:<hex>" or the bare 64 hex digits.
func asDigest(ref string) (string, bool) {
	if validDigest(ref) {
		return ref, true
	}
	if validDigest("sha256:" + ref) {
		return "sha256:" + ref, true
	}
	return "", false
}

// lookup finds an image by name or digest; s.mu is held.
func (s *Store) lookup(ref string) (*Image, error) {
	if d, ok := asDigest(ref); ok {
		if img := s.images[d]; img != nil {
			return img, nil
		}
		return nil, fmt.Errorf("%w: %q", ErrNotFound, ref)
	}
	n, err := normalise(ref)
	if err != nil {
		return nil, err
	}
	if img := s.images[s.names[n]]; img != nil {
		return img, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNotFound, ref)
}

func (img *Image) clone() Image {
	c := *img
	c.Names = slices.Clone(img.Names)
	c.Layers = slices.Clone(img.Layers)
	c.Config.Env = slices.Clone(img.Config.Env)
	c.Config.Entrypoint = slices.Clone(img.Config.Entrypoint)
	c.Config.Cmd = slices.Clone(img.Config.Cmd)
	return c
}

// Get returns the image a name ("busybox:test" is "docker.io/library/busybox:test";
// no tag means ":latest") or a digest ("sha256:<hex>", or the bare hex) points at.
func (s *Store) Get(ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	return img.clone(), nil
}

// List returns every image, ordered by first name (unnamed ones last) then digest.
func (s *Store) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, img.clone())
	}
	slices.SortFunc(out, func(a, b Image) int {
		an, bn := len(a.Names) > 0, len(b.Names) > 0
		switch {
		case an && !bn:
			return -1
		case !an && bn:
			return 1
		case an && bn:
			if c := strings.Compare(a.Names[0], b.Names[0]); c != 0 {
				return c
			}
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	return out
}

// Remove removes a name; the image goes with its last name, and with it the layers no
// other image uses. Given a digest, Remove removes the image and all its names. An
// image that would go while acquired is refused with ErrInUse; removing one of
// several names of an acquired image is fine.
func (s *Store) Remove(ref string) error {
	s.mu.Lock()
	img, err := s.lookup(ref)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	n, byDigest := "", false
	if _, byDigest = asDigest(ref); !byDigest {
		n, _ = normalise(ref)
	}
	drop := byDigest || len(img.Names) <= 1
	if drop && s.refs[img.Digest] > 0 {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q is used by %d sandbox(es)", ErrInUse, ref, s.refs[img.Digest])
	}
	var trash []string
	if drop {
		trash = s.dropImage(img)
		trash = append(trash, s.gcLayers()...)
	} else {
		img.Names = slices.DeleteFunc(img.Names, func(x string) bool { return x == n })
		delete(s.names, n)
	}
	err = s.saveIndex()
	s.mu.Unlock()
	s.log.Info("removed", "ref", ref, "image", img.Digest, "image_removed", drop)
	removeAll(s.log, trash)
	return err
}

// Acquire returns the image for a sandbox to run and marks it in use until the
// returned func is called (once; further calls do nothing): it is neither evicted nor
// removed meanwhile. It updates LastUsed, which orders eviction.
func (s *Store) Acquire(ref string) (Image, func(), error) {
	s.mu.Lock()
	img, err := s.lookup(ref)
	if err != nil {
		s.mu.Unlock()
		return Image{}, nil, err
	}
	s.refs[img.Digest]++
	img.LastUsed = time.Now().UTC()
	if err := s.saveIndex(); err != nil {
		s.log.Warn("saving last use", "image", img.Digest, "err", err)
	}
	out, digest := img.clone(), img.Digest
	s.mu.Unlock()
	release := sync.OnceFunc(func() {
		s.mu.Lock()
		if s.refs[digest]--; s.refs[digest] <= 0 {
			delete(s.refs, digest)
		}
		trash := s.evictLocked(nil)
		s.mu.Unlock()
		removeAll(s.log, trash)
	})
	return out, release, nil
}

// setNames points names at img, taking them from any image they pointed at. An image
// left without names that is not acquired is removed, as by Remove (one acquired
// stays, unnamed, until removed by digest or evicted). s.mu is held; it returns the
// paths to remove.
func (s *Store) setNames(img *Image, names []string) []string {
	var trash []string
	for _, n := range names {
		if old := s.images[s.names[n]]; old != nil && old != img {
			old.Names = slices.DeleteFunc(old.Names, func(x string) bool { return x == n })
			if len(old.Names) == 0 && s.refs[old.Digest] == 0 {
				s.log.Info("image lost its last name; removed", "image", old.Digest, "name", n)
				trash = append(trash, s.dropImage(old)...)
			}
		}
		s.names[n] = img.Digest
		if !slices.Contains(img.Names, n) {
			img.Names = append(img.Names, n)
		}
	}
	slices.Sort(img.Names)
	return append(trash, s.gcLayers()...)
}

// dropImage forgets img and moves its directory aside (a rename, fast) for the caller
// to remove once s.mu is released; s.mu is held.
func (s *Store) dropImage(img *Image) []string {
	delete(s.images, img.Digest)
	for _, n := range img.Names {
		if s.names[n] == img.Digest {
			delete(s.names, n)
		}
	}
	return s.moveAside(s.imagePath(img.Digest))
}

// gcLayers forgets the layers that no image uses and no import has pinned, and moves
// their directories aside; s.mu is held.
func (s *Store) gcLayers() []string {
	used := make(map[string]bool)
	for _, img := range s.images {
		for _, l := range img.Layers {
			used[l] = true
		}
	}
	var trash []string
	for l := range s.layers {
		if !used[l] && s.pinned[l] == 0 {
			delete(s.layers, l)
			trash = append(trash, s.moveAside(s.layerPath(l))...)
		}
	}
	return trash
}

// moveAside renames p to a temporary name in the same directory, which Open would
// remove if the process died first, and returns the path to remove.
func (s *Store) moveAside(p string) []string {
	aside := filepath.Join(filepath.Dir(p), fmt.Sprintf("%sdel-%s-%d", tmpPrefix, filepath.Base(p), time.Now().UnixNano()))
	if err := os.Rename(p, aside); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("moving aside", "path", p, "err", err)
			return []string{p}
		}
		return nil
	}
	return []string{aside}
}

// usage is the bytes on disk of all layers; s.mu is held.
func (s *Store) usage() int64 {
	var n int64
	for _, size := range s.layers {
		n += size
	}
	return n
}

// evictLocked removes least recently used images that are not acquired, and are not
// in keep, until the store fits in MaxBytes; s.mu is held. It returns the paths to
// remove.
func (s *Store) evictLocked(keep map[string]bool) []string {
	if s.opt.MaxBytes <= 0 || s.usage() <= s.opt.MaxBytes {
		return nil
	}
	var trash []string
	for s.usage() > s.opt.MaxBytes {
		var victim *Image
		for _, img := range s.images {
			if s.refs[img.Digest] > 0 || keep[img.Digest] {
				continue
			}
			if victim == nil || img.LastUsed.Before(victim.LastUsed) ||
				img.LastUsed.Equal(victim.LastUsed) && img.Digest < victim.Digest {
				victim = img
			}
		}
		if victim == nil {
			s.log.Warn("image store over its bound; every image is in use", "bytes", s.usage(), "max_bytes", s.opt.MaxBytes)
			break
		}
		s.log.Info("evicting image", "image", victim.Digest, "names", victim.Names, "last_used", victim.LastUsed)
		trash = append(trash, s.dropImage(victim)...)
		trash = append(trash, s.gcLayers()...)
	}
	if len(trash) > 0 {
		if err := s.saveIndex(); err != nil {
			s.log.Warn("saving index after eviction", "err", err)
		}
	}
	return trash
}

// removeAll removes trees, making directories writable first if it must (layers hold
// read-only directories).
func removeAll(log *slog.Logger, paths []string) {
	for _, p := range paths {
		if err := os.RemoveAll(p); err == nil {
			continue
		}
		filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(q, 0o700)
			}
			return nil
		})
		if err := os.RemoveAll(p); err != nil {
			log.Warn("removing", "path", p, "err", err)
		}
	}
}
