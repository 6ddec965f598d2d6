// Package image keeps container images on local disk for sandboxes to run: it imports
// them from archives (`docker save` output or OCI image layout tarballs) or pulls them
// from registries, verifies them, unpacks every layer once, and assembles for each
// image a root filesystem that a sandbox (gVisor) uses read-only as its root, writing
// to a private overlay above it.
//
// # Storage layout
//
// Everything lives under the directory given to Open (mode 0700):
//
//	index.json             what the store holds: images, their names, configs, layers,
//	                       sizes and times; replaced atomically (write, fsync, rename)
//	lock                   flock'ed while a Store has the directory open
//	layers/<diffid-hex>/   one layer unpacked, once, whatever number of images use it;
//	                       whiteouts kept as empty marker files (.wh.<name>, .wh..wh..opq)
//	images/<digest-hex>/rootfs
//	                       the image's root filesystem: its layers applied in order,
//	                       whiteouts applied, files HARD-LINKED from layers/ (so a file
//	                       of a shared layer exists once on disk), directories and
//	                       symlinks recreated
//	.tmp-*                 work in progress (also inside layers/ and images/)
//
// A layer or image is built under a .tmp- name and renamed into place only when
// complete; the index is written after that. On failure what was built is removed,
// and Open removes leftover .tmp- entries and directories the index does not know
// (a crash between a rename and the index write), so nothing half-imported is ever
// listed. Because root filesystems share inodes with layers/, they must only be used
// read-only: a write through one would change the layer for every image.
//
// # Safety
//
// Archives and registries are untrusted. Every manifest, config and layer is checked
// against the digest that names it (a layer's compressed blob against its digest, its
// uncompressed tar against its diff id, both while it is read, in a single pass), and
// layers are unpacked with agent/files.Unpack: no entry is written outside its layer
// directory or through a symlink, symlink targets are stored verbatim (only the
// sandbox resolves them), hard links must point to earlier entries of the same layer,
// and device nodes and FIFOs are refused. Archives of the OCI layout are unpacked
// under the same rules, and must not contain symlinks at all.
//
// # Errors
//
// Every error returned wraps ErrNotFound, ErrInvalid, ErrUnreachable or ErrInUse,
// except internal faults (a full disk, say). Messages name the image and, for a bad
// layer, the layer and the offending entry, and are meant for API clients; registry
// credentials never appear in them or in logs.
package image

import (
	"errors"
	"log/slog"
	"time"
)

// Error categories; see the package documentation.
var (
	// ErrNotFound: no image or name matches, locally or in the registry.
	ErrNotFound = errors.New("image not found")
	// ErrInvalid: a malformed reference, or an archive, manifest, config or layer
	// that is corrupt, unsafe or unsupported.
	ErrInvalid = errors.New("invalid image")
	// ErrUnreachable: the registry could not be reached or failed to answer.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrInUse: the image is acquired by a sandbox; it cannot be removed now.
	ErrInUse = errors.New("image in use")
)

// Options configure a Store.
type Options struct {
	// MaxBytes bounds the disk the store's layers may use. After an import or pull
	// that goes beyond it, least recently used images that are not acquired are
	// evicted (and layers no remaining image uses) until it is met again. 0: no bound.
	MaxBytes int64
	// Auth holds credentials by registry host ("ghcr.io", "docker.io",
	// "localhost:5000"). They are never logged.
	Auth map[string]Auth
	// Logger receives the store's log; nil discards it.
	Logger *slog.Logger
}

// Auth is a registry login.
type Auth struct{ Username, Password string }

// Config is what a sandbox needs from an image's configuration to run it.
type Config struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// Image is one image in the store.
type Image struct {
	// Digest is the sha256 digest of the image manifest ("sha256:<hex>"), the
	// image's identity. For a docker-archive, which holds no manifest, it is the
	// digest of the manifest go-containerregistry derives from the archive.
	Digest string `json:"digest"`
	// Names are the normalised references that point at the image
	// ("docker.io/library/busybox:test"); a name points at one image at a time.
	Names []string `json:"names"`
	// RootFS is the absolute path of the unpacked root filesystem; read-only use.
	RootFS    string    `json:"-"`
	Config    Config    `json:"config"`
	Size      int64     `json:"size"`   // bytes on disk of its layers, shared ones included
	Layers    []string  `json:"layers"` // diff ids, lowest first
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used"` // set on import and by Acquire
}
