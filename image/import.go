package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/faas-platform/faas/agent/files"
)

// Annotations of an OCI image layout's index.json that name an image.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
)

// imageSource is one image to add to the store.
type imageSource struct {
	img   v1.Image
	names []string // normalised
	label string   // names the image in messages: a name, the reference pulled, …
	want  v1.Hash  // the manifest's digest, when known beforehand
	// docker: from a docker-archive, which records no blob digests: layers are read
	// uncompressed and checked against their diff ids only. configName is the
	// config's file name there, a digest in archives docker writes.
	docker     bool
	configName string
	registry   bool // pulled: read errors mean the registry is unreachable
}

// Import adds the images of an archive: a docker-archive (as written by `docker
// save`) or a tar of an OCI image layout, told apart by their contents. Each image's
// tags become its names: RepoTags of a docker-archive; for an OCI layout the
// "io.containerd.image.name" annotation and "org.opencontainers.image.ref.name" when
// it is a full reference ("busybox:1.36", not the bare tag "1.36", which names no
// repository). name, if not "", is one more name, for an archive holding exactly one
// image. A name already pointing at another image moves to the imported one (and an
// image left without names goes, unless acquired); an image given no name at all is
// kept, reachable by its digest, until removed or evicted.
//
// The archive is copied to the store directory first (no larger than MaxBytes, if
// set). Images are added one by one, each completely or not at all: on error, those
// of the archive added before it stay. Then images are evicted if the store is over
// its bound, never the ones just imported.
func (s *Store) Import(ctx context.Context, r io.Reader, ref string) ([]Image, error) {
	var extra string
	if ref != "" {
		n, err := normalise(ref)
		if err != nil {
			return nil, err
		}
		extra = n
	}
	work, err := os.MkdirTemp(s.dir, tmpPrefix+"import-")
	if err != nil {
		return nil, err
	}
	defer removeAll(s.log, []string{work})
	archive := filepath.Join(work, "archive.tar")
	if err := s.copyArchive(ctx, archive, r); err != nil {
		return nil, err
	}
	srcs, err := s.readArchive(work, archive)
	if err != nil {
		return nil, err
	}
	if extra != "" {
		if len(srcs) != 1 {
			return nil, fmt.Errorf("%w: the archive holds %d images; a name applies to exactly one", ErrInvalid, len(srcs))
		}
		srcs[0].names = append(srcs[0].names, extra)
		if srcs[0].label == "" {
			srcs[0].label = ref
		}
	}
	for i, src := range srcs {
		if src.label == "" {
			src.label = fmt.Sprintf("image %d of the archive", i+1)
		}
	}

	s.importMu.Lock()
	defer s.importMu.Unlock()
	keep := make(map[string]bool)
	var out []Image
	for _, src := range srcs {
		img, err := s.add(ctx, src)
		if err != nil {
			s.evict(keep)
			return nil, err
		}
		keep[img.Digest] = true
		out = append(out, img)
	}
	s.evict(keep)
	for i := range out { // names may have moved between images of the archive
		if img, err := s.Get(out[i].Digest); err == nil {
			out[i] = img
		}
	}
	return out, nil
}

// copyArchive copies the archive to p, bounded by MaxBytes.
func (s *Store) copyArchive(ctx context.Context, p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	src := &source{ctx: ctx, r: r}
	var in io.Reader = src
	if s.opt.MaxBytes > 0 {
		in = io.LimitReader(src, s.opt.MaxBytes+1)
	}
	n, err := io.Copy(f, in)
	switch {
	case src.err != nil && ctx.Err() != nil:
		return fmt.Errorf("reading archive: %w", ctx.Err())
	case src.err != nil:
		return fmt.Errorf("%w: reading archive: %w", ErrInvalid, src.err)
	case err != nil:
		return fmt.Errorf("storing archive: %w", err)
	case s.opt.MaxBytes > 0 && n > s.opt.MaxBytes:
		return fmt.Errorf("%w: archive larger than the image store (%d bytes)", ErrInvalid, s.opt.MaxBytes)
	}
	return f.Close()
}

// readArchive recognises the archive's format and returns its images.
func (s *Store) readArchive(work, archive string) ([]*imageSource, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	has := make(map[string]bool)
	entries := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%w: not a tar archive (a docker-archive or an OCI image layout): %w", ErrInvalid, err)
		}
		entries++
		has[path.Clean(h.Name)] = true
	}
	switch {
	case entries == 0:
		return nil, fmt.Errorf("%w: empty archive", ErrInvalid)
	case has["manifest.json"]:
		// Docker 25 and later write both formats in one archive; manifest.json has
		// the full names.
		return readDockerArchive(archive)
	case has["index.json"] && has["oci-layout"]:
		return s.readLayout(filepath.Join(work, "layout"), archive)
	}
	return nil, fmt.Errorf("%w: neither a docker-archive (no manifest.json) nor an OCI image layout (no index.json and oci-layout)", ErrInvalid)
}

func readDockerArchive(archive string) ([]*imageSource, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(archive) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("%w: docker-archive manifest.json: %w", ErrInvalid, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: the docker-archive holds no image", ErrInvalid)
	}
	var srcs []*imageSource
	for i, d := range m {
		var tag *name.Tag
		if len(m) > 1 {
			if len(d.RepoTags) == 0 {
				return nil, fmt.Errorf("%w: the docker-archive holds %d images and image %d has no tag", ErrInvalid, len(m), i+1)
			}
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, fmt.Errorf("%w: docker-archive tag %q: %w", ErrInvalid, d.RepoTags[0], err)
			}
			tag = &t
		}
		src := &imageSource{docker: true, configName: d.Config}
		for _, t := range d.RepoTags {
			n, err := normalise(t)
			if err != nil {
				return nil, fmt.Errorf("docker-archive tag: %w", err)
			}
			src.names = append(src.names, n)
		}
		if len(src.names) > 0 {
			src.label = src.names[0]
		}
		if src.img, err = tarball.Image(opener, tag); err != nil {
			return nil, fmt.Errorf("%w: docker-archive image %d: %w", ErrInvalid, i+1, err)
		}
		srcs = append(srcs, src)
	}
	return srcs, nil
}

// readLayout unpacks an OCI image layout archive into dir and returns its images:
// those its index.json lists, and for each nested index (a multi-platform image) the
// linux image for this machine's architecture.
func (s *Store) readLayout(dir, archive string) ([]*imageSource, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	opt := files.UnpackOptions{UID: os.Geteuid(), GID: os.Getegid(), MaxEntries: maxLayerFiles}
	if _, err := files.Unpack(dir, f, opt); err != nil {
		if localFault(err) {
			return nil, fmt.Errorf("unpacking OCI image layout: %w", err)
		}
		return nil, fmt.Errorf("%w: unpacking OCI image layout: %w", ErrInvalid, hidePath(err, dir))
	}
	// Blobs are read by path: a symlink could make one of any file of this machine.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			return fmt.Errorf("%w: OCI image layout entry %q is not a regular file", ErrInvalid, rel)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	invalid := func(what string, err error) error {
		return fmt.Errorf("%w: OCI image layout: %s: %w", ErrInvalid, what, err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, invalid("opening", err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, invalid("index.json", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, invalid("index.json", err)
	}
	var srcs []*imageSource
	for _, desc := range im.Manifests {
		src := &imageSource{names: s.layoutNames(desc.Annotations), want: desc.Digest}
		if len(src.names) > 0 {
			src.label = src.names[0]
		}
		switch {
		case desc.MediaType.IsImage():
			if src.img, err = idx.Image(desc.Digest); err != nil {
				return nil, invalid("image "+desc.Digest.String(), err)
			}
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return nil, invalid("index "+desc.Digest.String(), err)
			}
			raw, err := child.RawManifest()
			if err != nil {
				return nil, invalid("index "+desc.Digest.String(), err)
			}
			if got, _, _ := v1.SHA256(bytes.NewReader(raw)); got != desc.Digest {
				return nil, invalid("index "+desc.Digest.String(), fmt.Errorf("%w: has digest %s", errMismatch, got))
			}
			cm, err := child.IndexManifest()
			if err != nil {
				return nil, invalid("index "+desc.Digest.String(), err)
			}
			var pick *v1.Descriptor
			for i, d := range cm.Manifests {
				if p := d.Platform; d.MediaType.IsImage() && p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
					pick = &cm.Manifests[i]
					break
				}
			}
			if pick == nil {
				return nil, invalid("index "+desc.Digest.String(), fmt.Errorf("no linux/%s image", runtime.GOARCH))
			}
			if src.img, err = child.Image(pick.Digest); err != nil {
				return nil, invalid("image "+pick.Digest.String(), err)
			}
			src.want = pick.Digest
		default:
			s.log.Info("OCI image layout: skipping descriptor", "digest", desc.Digest, "media_type", desc.MediaType)
			continue
		}
		srcs = append(srcs, src)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("%w: the OCI image layout holds no image", ErrInvalid)
	}
	return srcs, nil
}

// layoutNames returns the names an OCI index descriptor's annotations give.
func (s *Store) layoutNames(ann map[string]string) []string {
	var out []string
	for _, key := range []string{annotationContainerName, annotationRefName} {
		v := ann[key]
		if v == "" || key == annotationRefName && !bytes.ContainsAny([]byte(v), "/:") {
			continue // a bare tag names no repository
		}
		n, err := normalise(v)
		if err != nil {
			s.log.Warn("OCI image layout: ignoring annotation", "key", key, "value", v, "err", err)
			continue
		}
		if !containsString(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Pull fetches an image from its registry (the linux image for this machine's
// architecture, for a multi-platform one) and adds it under ref, normalised. Layers
// the store has are not downloaded. Credentials come from Options.Auth. An image
// already present only gets the name. Afterwards images are evicted if the store is
// over its bound, never the one pulled. ctx bounds the whole pull.
func (s *Store) Pull(ctx context.Context, ref string) (Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return Image{}, fmt.Errorf("%w: reference %q: %w", ErrInvalid, ref, err)
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithAuthFromKeychain(keychain(s.opt.Auth)),
		remote.WithUserAgent("faas"),
		remote.WithRetryBackoff(remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return Image{}, remoteError(ref, err)
	}
	src := &imageSource{img: img, names: []string{normaliseRef(r)}, label: ref, registry: true}
	if d, ok := r.(name.Digest); ok {
		if src.want, err = v1.NewHash(d.DigestStr()); err != nil {
			return Image{}, fmt.Errorf("%w: reference %q: %w", ErrInvalid, ref, err)
		}
	}
	s.importMu.Lock()
	defer s.importMu.Unlock()
	out, err := s.add(ctx, src)
	if err != nil {
		return Image{}, err
	}
	s.evict(map[string]bool{out.Digest: true})
	return s.Get(out.Digest)
}

// remoteError sorts a registry failure into the error categories.
func remoteError(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return fmt.Errorf("%w: %q is not in its registry", ErrNotFound, ref)
			}
		}
		switch te.StatusCode {
		case 404:
			return fmt.Errorf("%w: %q is not in its registry", ErrNotFound, ref)
		case 401, 403:
			return fmt.Errorf("%w: %q: the registry denied access (does the repository exist? are the credentials right?)", ErrNotFound, ref)
		}
		return fmt.Errorf("%w: pulling %q: %w", ErrUnreachable, ref, err)
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: pulling %q: %w", ErrUnreachable, ref, err)
	}
	return fmt.Errorf("%w: pulling %q: %w", ErrInvalid, ref, err)
}

// keychain hands go-containerregistry the credentials of Options.Auth.
type keychain map[string]Auth

func (k keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	host := r.RegistryStr()
	a, ok := k[host]
	if !ok && host == name.DefaultRegistry {
		if a, ok = k["docker.io"]; !ok {
			a, ok = k["registry-1.docker.io"]
		}
	}
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password}), nil
}

// evict runs eviction after an import, keeping the images imported.
func (s *Store) evict(keep map[string]bool) {
	s.mu.Lock()
	trash := s.evictLocked(keep)
	s.mu.Unlock()
	removeAll(s.log, trash)
}

// add verifies one image and adds it: its layers not yet in the store are unpacked,
// its root filesystem assembled, and it is indexed under its names. The layers it
// uses are pinned meanwhile so that no eviction or removal takes them.
func (s *Store) add(ctx context.Context, src *imageSource) (Image, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalid, src.label, fmt.Sprintf(format, args...))
	}
	fail := func(what string, err error) error {
		if src.registry {
			return remoteError(src.label, fmt.Errorf("%s: %w", what, err))
		}
		return fmt.Errorf("%w %q: %s: %w", ErrInvalid, src.label, what, err)
	}
	raw, err := src.img.RawManifest()
	if err != nil {
		return Image{}, fail("manifest", err)
	}
	digest, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return Image{}, err
	}
	if src.want != (v1.Hash{}) && digest != src.want {
		return Image{}, invalid("manifest has digest %s, not %s", digest, src.want)
	}
	s.mu.Lock()
	if img := s.images[digest.String()]; img != nil {
		trash := s.setNames(img, src.names)
		err := s.saveIndex()
		out := img.clone()
		s.mu.Unlock()
		removeAll(s.log, trash)
		s.log.Info("image already present", "image", out.Digest, "names", out.Names)
		return out, err
	}
	s.mu.Unlock()

	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return Image{}, invalid("manifest: %v", err)
	}
	cfgRaw, err := src.img.RawConfigFile()
	if err != nil {
		return Image{}, fail("config", err)
	}
	cfgDigest, _, _ := v1.SHA256(bytes.NewReader(cfgRaw))
	if cfgDigest != m.Config.Digest {
		return Image{}, invalid("config has digest %s, not %s", cfgDigest, m.Config.Digest)
	}
	if base := trimExt(path.Base(src.configName)); src.configName != "" && validDigest("sha256:"+base) && "sha256:"+base != cfgDigest.String() {
		return Image{}, invalid("config %s has digest %s", src.configName, cfgDigest)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return Image{}, invalid("config: %v", err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return Image{}, invalid("built for %s, not linux", cfg.OS)
	}
	layers, err := src.img.Layers()
	if err != nil {
		return Image{}, fail("layers", err)
	}
	if n := len(cfg.RootFS.DiffIDs); n != len(m.Layers) || n != len(layers) {
		return Image{}, invalid("config lists %d layers, manifest %d", n, len(m.Layers))
	}

	var pinned []string
	defer func() {
		s.mu.Lock()
		for _, l := range pinned {
			if s.pinned[l]--; s.pinned[l] <= 0 {
				delete(s.pinned, l)
			}
		}
		trash := s.gcLayers()
		if len(trash) > 0 {
			if err := s.saveIndex(); err != nil {
				s.log.Warn("saving index", "err", err)
			}
		}
		s.mu.Unlock()
		removeAll(s.log, trash)
	}()
	var (
		total   int64
		diffIDs []string
		dirs    []string
		counted = make(map[string]bool)
	)
	for i, l := range layers {
		d := cfg.RootFS.DiffIDs[i]
		if d.Algorithm != "sha256" {
			return Image{}, invalid("layer %d: unsupported digest %s", i+1, d)
		}
		key := d.String()
		s.mu.Lock()
		size, ok := s.layers[key]
		if ok {
			s.pinned[key]++
			pinned = append(pinned, key)
		}
		s.mu.Unlock()
		if !ok {
			ls := layerSource{layer: l, diffID: d, registry: src.registry}
			if !src.docker {
				ls.blob = &m.Layers[i]
			}
			start := time.Now()
			if size, err = s.unpackLayer(ctx, src.label, ls); err != nil {
				return Image{}, err
			}
			s.mu.Lock()
			s.layers[key] = size
			s.pinned[key]++
			pinned = append(pinned, key)
			s.mu.Unlock()
			s.log.Info("unpacked layer", "layer", key, "bytes", size, "took", time.Since(start))
		}
		if !counted[key] {
			counted[key] = true
			total += size
		}
		diffIDs = append(diffIDs, key)
		dirs = append(dirs, s.layerPath(key))
	}
	if err := s.assemble(ctx, digest.String(), dirs); err != nil {
		if errors.Is(err, ErrInvalid) {
			return Image{}, fmt.Errorf("image %q: %w", src.label, err)
		}
		return Image{}, fmt.Errorf("assembling root filesystem of %q: %w", src.label, err)
	}
	now := time.Now().UTC()
	img := &Image{
		Digest: digest.String(),
		RootFS: s.rootfsPath(digest.String()),
		Config: Config{
			Env: cfg.Config.Env, WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User,
			Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd,
		},
		Size: total, Layers: diffIDs, CreatedAt: now, LastUsed: now,
	}
	s.mu.Lock()
	s.images[img.Digest] = img
	trash := s.setNames(img, src.names)
	err = s.saveIndex()
	out := img.clone()
	s.mu.Unlock()
	removeAll(s.log, trash)
	s.log.Info("added image", "image", out.Digest, "names", out.Names, "layers", len(diffIDs), "bytes", total)
	return out, err
}

func trimExt(p string) string { return p[:len(p)-len(path.Ext(p))] }
