// Package files holds the filesystem operations the platform runs inside a sandbox:
// listing a tree with content hashes (Manifest), packing paths into a tar stream
// (Pack), extracting one (Unpack) and deleting paths (Remove). They back the merge of
// branches' filesystem changes and the upload and download of instance files. The
// agent binary runs them as an ordinary process (`/.faas/agent manifest /workspace`,
// see cmd/faas-agent), as root inside the sandbox.
//
// Everything these functions read may have been shaped by hostile user code: trees
// full of symlinks, archives with `..` names, files swapped while they are read. The
// rules that keep a write where it belongs are in Unpack and Remove: every directory
// on the way to a path is opened relative to its already-open parent with
// O_NOFOLLOW, so a symlink among the parents is refused even if it appears between
// the check and the use, and the last component is only ever touched through calls
// that do not follow it. Reading (Manifest, Pack) never follows symlinks either, but
// it does not need the same care: what it reads is the sandbox's own.
//
// Modes are encoded as in stat(2), chmod(2) and tar headers, not as os.FileMode: the
// permission bits plus 0o4000 (setuid), 0o2000 (setgid) and 0o1000 (sticky).
package files

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Errors for the categories a caller may want to tell apart (for instance to answer
// an upload with 400 or 413). Unsupported entry types wrap errors.ErrUnsupported.
var (
	// ErrUnsafePath: a path leaves its root or goes through a symlink.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrLimit: an archive exceeds UnpackOptions.MaxBytes or MaxEntries.
	ErrLimit = errors.New("limit exceeded")
)

// Entry types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// modeBits are the bits of st_mode an Entry keeps: permissions, setuid, setgid, sticky.
const modeBits = 0o7777

// Entry describes one filesystem object.
type Entry struct {
	Path string `json:"path"` // absolute, clean
	Type string `json:"type"` // TypeFile, TypeDir or TypeSymlink
	// Mode holds the permission bits plus 0o4000 (setuid), 0o2000 (setgid) and
	// 0o1000 (sticky), as in stat(2) and tar headers (not os.FileMode).
	Mode   uint32 `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size,omitempty"`   // files: bytes hashed
	SHA256 string `json:"sha256,omitempty"` // files: hex SHA-256 of the content
	Target string `json:"target,omitempty"` // symlinks: the target, verbatim
}

// Manifest walks each root (absolute paths; a missing root is skipped, not an error)
// without following symlinks and writes one JSON Entry per line to w, roots
// themselves included, sorted by path (byte-wise string order) with duplicates from
// overlapping roots written once. Sockets, FIFOs and device nodes are skipped, and so
// are objects that vanish during the walk. A path or symlink target that is not valid
// UTF-8 is an error: JSON would silently replace its invalid bytes, and a merge would
// then act on another name. A file's Size and SHA256 describe the same
// bytes even if the file changes while it is read; the tree as a whole is not a
// snapshot.
func Manifest(roots []string, w io.Writer) error {
	var entries []Entry
	for _, root := range roots {
		if !filepath.IsAbs(root) {
			return fmt.Errorf("manifest root %q: %w: not absolute", root, ErrUnsafePath)
		}
		err := filepath.WalkDir(filepath.Clean(root), func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // a missing root, or gone since its directory was read
				}
				return err
			}
			e, ok, err := stat(p)
			if err != nil || !ok {
				return err
			}
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			return fmt.Errorf("manifest of %s: %w", root, err)
		}
	}
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	entries = slices.CompactFunc(entries, func(a, b Entry) bool { return a.Path == b.Path })

	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("writing manifest: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// stat describes p; ok is false for the types a manifest skips and for a p that no
// longer exists.
func stat(p string) (e Entry, ok bool, err error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return Entry{}, false, ignoreNotExist(err)
	}
	if !utf8.ValidString(p) {
		return Entry{}, false, fmt.Errorf("path %q is not valid UTF-8", p)
	}
	e = Entry{Path: p}
	switch fi.Mode().Type() {
	case fs.ModeDir:
		e.Type = TypeDir
	case fs.ModeSymlink:
		e.Type = TypeSymlink
		if e.Target, err = os.Readlink(p); err != nil {
			return Entry{}, false, ignoreNotExist(err)
		}
		if !utf8.ValidString(e.Target) {
			return Entry{}, false, fmt.Errorf("target %q of %s is not valid UTF-8", e.Target, p)
		}
	case 0:
		return hashFile(p)
	default:
		return Entry{}, false, nil
	}
	st := fi.Sys().(*syscall.Stat_t)
	e.Mode, e.UID, e.GID = st.Mode&modeBits, int(st.Uid), int(st.Gid)
	return e, true, nil
}

// hashFile describes the regular file p from the descriptor it reads, so metadata and
// hash belong to the same file even if p is replaced meanwhile.
func hashFile(p string) (Entry, bool, error) {
	f, st, err := openRegular(p)
	if err != nil || f == nil {
		return Entry{}, false, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading %s: %w", p, err)
	}
	return Entry{
		Path:   p,
		Type:   TypeFile,
		Mode:   st.Mode & modeBits,
		UID:    int(st.Uid),
		GID:    int(st.Gid),
		Size:   n,
		SHA256: hex.EncodeToString(h.Sum(nil)),
	}, true, nil
}

// openRegular opens p for reading without following a symlink and without blocking
// on a FIFO. It returns a nil file, and no error, if p is gone or is no longer a
// regular file.
func openRegular(p string) (*os.File, *syscall.Stat_t, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) { // replaced by a symlink since Lstat
			return nil, nil, nil
		}
		return nil, nil, ignoreNotExist(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, nil
	}
	return f, fi.Sys().(*syscall.Stat_t), nil
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// ReadManifest parses what Manifest wrote. The input comes from a sandbox, so each
// entry is checked: an absolute clean path, a known type, a non-negative size and,
// for files, a SHA-256 in hex.
func ReadManifest(r io.Reader) ([]Entry, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var entries []Entry
	for {
		var e Entry
		if err := dec.Decode(&e); err == io.EOF {
			return entries, nil
		} else if err != nil {
			return nil, fmt.Errorf("reading manifest entry %d: %w", len(entries)+1, err)
		}
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("manifest entry %d (%q): %w", len(entries)+1, e.Path, err)
		}
		entries = append(entries, e)
	}
}

func (e Entry) validate() error {
	switch {
	case !filepath.IsAbs(e.Path) || filepath.Clean(e.Path) != e.Path || strings.ContainsRune(e.Path, 0):
		return fmt.Errorf("%w: not an absolute clean path", ErrUnsafePath)
	case e.Type != TypeFile && e.Type != TypeDir && e.Type != TypeSymlink:
		return fmt.Errorf("unknown type %q", e.Type)
	case e.Mode&^modeBits != 0:
		return fmt.Errorf("mode %#o has bits beyond %#o", e.Mode, modeBits)
	case e.UID < 0 || e.GID < 0:
		return fmt.Errorf("negative owner %d:%d", e.UID, e.GID)
	case e.Size < 0:
		return fmt.Errorf("negative size %d", e.Size)
	case e.Type == TypeFile && !isSHA256(e.SHA256):
		return fmt.Errorf("sha256 %q is not 64 lowercase hex digits", e.SHA256)
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
