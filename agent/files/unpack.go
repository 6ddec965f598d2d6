package files

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// UnpackOptions bound and attribute what Unpack writes.
type UnpackOptions struct {
	MaxBytes   int64 // total size of file contents; 0 = unlimited
	MaxEntries int   // archive entries read; 0 = unlimited
	// UID and GID own every entry, unless KeepOwner is set: then each entry keeps the
	// owner in its header, and its setuid and setgid bits, which are stripped
	// otherwise. Parent directories Unpack has to create are owned by UID and GID
	// either way.
	UID, GID  int
	KeepOwner bool
	// HardLinks accepts hard link entries (rejected otherwise). A link's target must
	// be an earlier file or symlink entry of the same archive, named as entries are
	// (leading slashes dropped, never leaving dest) and reached beneath dest without
	// following symlinks; the new name links to that object itself, never to what a
	// symlink there points to. Container image layers need this: real images hold
	// hard links.
	HardLinks bool
}

// Unpack extracts a tar stream under dest (an existing directory, which the caller
// chose and which may itself be reached through symlinks) and returns the number of
// entries written. The archive is hostile; these rules keep every write inside dest:
//
//   - Names are cleaned after dropping leading slashes ("/etc/x" lands in dest/etc/x)
//     and must stay inside dest: an empty name or one that climbs out with ".." is an
//     error naming the entry. A directory entry naming dest itself ("./") is skipped;
//     any other entry naming it is an error.
//   - No directory on the way from dest to an entry may be a symlink, including one
//     made by an earlier entry of the same archive; the error names it. Missing ones
//     are created (mode 0755, owned by UID and GID).
//   - A regular file replaces whatever file, symlink or other non-directory is there
//     (removed first, never written through, so neither a symlink nor a hard link to
//     a file elsewhere is followed) and is created with O_CREAT|O_EXCL|O_NOFOLLOW; an
//     existing directory in its place is an error.
//   - A directory may already exist (its owner and mode are then updated); a
//     non-directory in its place is replaced.
//   - A symlink is created verbatim, replacing a non-directory like a file does: its
//     target is neither checked nor followed, since only the sandbox ever resolves it,
//     and later entries may not write through it (rule 2).
//   - A hard link is created only with UnpackOptions.HardLinks, under the rules
//     described there, replacing a non-directory like a file does; a target that is
//     not an earlier entry, or leaves dest, is an error wrapping ErrUnsafePath.
//   - Device nodes, FIFOs, every other type, and hard links without HardLinks are
//     rejected with an error wrapping errors.ErrUnsupported.
//   - Exceeding MaxBytes (by declared file sizes, checked before writing) or
//     MaxEntries is an error wrapping ErrLimit.
//
// Owner (see UnpackOptions), mode and modification time come from the header and are
// applied after the content is written; directory times are applied last, once
// nothing more is created inside them. On error Unpack stops and returns it, leaving
// what it had written so far.
func Unpack(dest string, r io.Reader, opt UnpackOptions) (int, error) {
	b, err := openBeneath(dest)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	u := unpacker{b: b, opt: opt, dirTimes: make(map[string]time.Time)}
	if opt.HardLinks {
		u.linkable = make(map[string]bool)
	}
	tr := tar.NewReader(r)
	read, written := 0, 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			return written, fmt.Errorf("reading archive after %d entries: %w", read, err)
		}
		read++
		if opt.MaxEntries > 0 && read > opt.MaxEntries {
			return written, fmt.Errorf("%w: more than %d entries", ErrLimit, opt.MaxEntries)
		}
		ok, err := u.entry(h, tr)
		if err != nil {
			return written, fmt.Errorf("unpacking %q: %w", h.Name, err)
		}
		if ok {
			written++
		}
	}
	for rel, mtime := range u.dirTimes {
		if err := u.setTime(rel, mtime); err != nil {
			return written, err
		}
	}
	return written, nil
}

type unpacker struct {
	b        *beneath
	opt      UnpackOptions
	bytes    int64                // file content so far
	dirTimes map[string]time.Time // directory (relative path) → mtime, applied at the end
	linkable map[string]bool      // with HardLinks: files and symlinks written so far
}

// entry writes one entry; it reports false for the skipped "./".
func (u *unpacker) entry(h *tar.Header, content io.Reader) (bool, error) {
	rel, err := relative(h.Name)
	if err != nil {
		return false, err
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		if !u.opt.HardLinks {
			return false, fmt.Errorf("%w: entry type %q", errors.ErrUnsupported, h.Typeflag)
		}
	default:
		return false, fmt.Errorf("%w: entry type %q", errors.ErrUnsupported, h.Typeflag)
	}
	if rel == "." {
		if h.Typeflag == tar.TypeDir {
			return false, nil // as in `tar -C dir -c .`; dest belongs to the caller
		}
		return false, fmt.Errorf("%w: names the destination itself", ErrUnsafePath)
	}

	uid, gid := u.opt.UID, u.opt.GID
	mode := uint32(h.Mode) & modeBits
	if u.opt.KeepOwner {
		uid, gid = h.Uid, h.Gid
	} else {
		mode &^= unix.S_ISUID | unix.S_ISGID
	}
	if uid < 0 || gid < 0 || int64(uid) >= math.MaxUint32 || int64(gid) >= math.MaxUint32 {
		return false, fmt.Errorf("invalid owner %d:%d", uid, gid)
	}
	var linkTarget string
	if h.Typeflag == tar.TypeLink {
		if linkTarget, err = relative(h.Linkname); err != nil {
			return false, fmt.Errorf("link target %q: %w", h.Linkname, err)
		}
		if !u.linkable[linkTarget] || linkTarget == rel {
			return false, fmt.Errorf("%w: link target %q is not an earlier file or symlink entry", ErrUnsafePath, h.Linkname)
		}
	}
	if h.Typeflag == tar.TypeReg {
		if h.Size < 0 {
			return false, fmt.Errorf("negative size %d", h.Size)
		}
		if u.opt.MaxBytes > 0 && h.Size > u.opt.MaxBytes-u.bytes {
			return false, fmt.Errorf("%w: %d bytes of content would exceed %d", ErrLimit, u.bytes+h.Size, u.opt.MaxBytes)
		}
		u.bytes += h.Size
	}

	parent, name, err := u.b.openParent(rel, &owner{u.opt.UID, u.opt.GID})
	if err != nil {
		return false, err
	}
	defer unix.Close(parent)
	e := target{parent: parent, name: name, path: filepath.Join(u.b.name, rel)}
	isDir, err := e.clear(h.Typeflag == tar.TypeDir)
	if err != nil {
		return false, err
	}
	switch h.Typeflag {
	case tar.TypeReg:
		err = e.writeFile(content, uid, gid, mode, h.ModTime)
	case tar.TypeSymlink:
		err = e.symlink(h.Linkname, uid, gid, h.ModTime)
	case tar.TypeLink:
		err = u.link(linkTarget, e)
	case tar.TypeDir:
		err = e.dir(!isDir, uid, gid, mode)
		u.dirTimes[rel] = h.ModTime
	}
	if err == nil && u.linkable != nil {
		// A directory in place of an earlier file is no link target any more.
		u.linkable[rel] = h.Typeflag != tar.TypeDir
	}
	return err == nil, err
}

// link makes t a hard link to the earlier entry rel. Its owner, mode and times are the
// target's, shared with it.
func (u *unpacker) link(rel string, t target) error {
	parent, name, err := u.b.openParent(rel, nil)
	if err != nil {
		return fmt.Errorf("link target: %w", err)
	}
	defer unix.Close(parent)
	path := filepath.Join(u.b.name, rel)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("link target %s: %w", path, err)
	}
	if typ := st.Mode & unix.S_IFMT; typ != unix.S_IFREG && typ != unix.S_IFLNK {
		return fmt.Errorf("%w: link target %s is not a file or symlink", ErrUnsafePath, path)
	}
	// Flags 0: linkat does not follow a symlink at the target, it links the symlink.
	if err := unix.Linkat(parent, name, t.parent, t.name, 0); err != nil {
		return fmt.Errorf("linking %s to %s: %w", t.path, path, err)
	}
	return nil
}

// target is the last component of an entry's path, inside its open parent.
type target struct {
	parent int
	name   string
	path   string // for messages
}

// clear makes room for a new object: it removes any non-directory at the target and
// reports whether a directory is there, which is an error unless one is wanted.
func (t target) clear(wantDir bool) (isDir bool, err error) {
	var st unix.Stat_t
	err = unix.Fstatat(t.parent, t.name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%s: %w", t.path, err)
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if !wantDir {
			return true, fmt.Errorf("%s: %w", t.path, unix.EISDIR)
		}
		return true, nil
	}
	if err := unix.Unlinkat(t.parent, t.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("replacing %s: %w", t.path, err)
	}
	return false, nil
}

func (t target) writeFile(content io.Reader, uid, gid int, mode uint32, mtime time.Time) error {
	// O_EXCL: the old entry was removed, so whatever is here now was put by someone
	// else since; O_TRUNC on it could truncate a hard link to a file outside dest.
	fd, err := unix.Openat(t.parent, t.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", t.path, err)
	}
	f := os.NewFile(uintptr(fd), t.path)
	// A file not written whole is not left behind (root's, half full, and
	// perhaps filling the disk).
	failed := func(format string, err error) error {
		f.Close()
		_ = unix.Unlinkat(t.parent, t.name, 0)
		return fmt.Errorf(format, t.path, err)
	}
	if _, err := io.Copy(f, content); err != nil {
		return failed("writing %s: %w", err)
	}
	// chown before chmod: chown clears setuid and setgid.
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return failed("chown %s: %w", err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return failed("chmod %s: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = unix.Unlinkat(t.parent, t.name, 0)
		return fmt.Errorf("writing %s: %w", t.path, err)
	}
	return t.setTime(mtime)
}

func (t target) symlink(linkname string, uid, gid int, mtime time.Time) error {
	if err := unix.Symlinkat(linkname, t.parent, t.name); err != nil {
		return fmt.Errorf("creating symlink %s: %w", t.path, err)
	}
	if err := unix.Fchownat(t.parent, t.name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", t.path, err)
	}
	return t.setTime(mtime)
}

func (t target) dir(create bool, uid, gid int, mode uint32) error {
	if create {
		if err := unix.Mkdirat(t.parent, t.name, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", t.path, err)
		}
	}
	// Through a descriptor: fchmodat would follow a symlink put here meanwhile.
	fd, err := openDir(t.parent, t.name, t.path, nil)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", t.path, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", t.path, err)
	}
	return nil
}

// setTime sets the modification time of the target itself, never of what a symlink
// there points to; the access time is left alone. A zero time is not applied.
func (t target) setTime(mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	ts := []unix.Timespec{
		{Nsec: unix.UTIME_OMIT},
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
	}
	if err := unix.UtimesNanoAt(t.parent, t.name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting mtime of %s: %w", t.path, err)
	}
	return nil
}

// setTime sets the mtime of the directory rel once the archive is done.
func (u *unpacker) setTime(rel string, mtime time.Time) error {
	parent, name, err := u.b.openParent(rel, nil)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	return target{parent: parent, name: name, path: filepath.Join(u.b.name, rel)}.setTime(mtime)
}
