package files

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// beneath resolves paths inside one directory tree without following symlinks: the
// shared core of Unpack and Remove.
type beneath struct {
	fd   int    // the top directory, open
	name string // its path, for messages
}

func openBeneath(dir string) (*beneath, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	return &beneath{fd: fd, name: dir}, nil
}

func (b *beneath) Close() error { return unix.Close(b.fd) }

// relative turns name into a clean path relative to the top directory, or fails with
// ErrUnsafePath if it leaves it. Leading slashes are dropped first, so "/etc/passwd"
// means <top>/etc/passwd while "/../x" leaves the tree just as "../x" does. The result
// is "." for the top directory itself.
func relative(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafePath)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafePath)
	}
	rel := filepath.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: leaves the directory", ErrUnsafePath)
	}
	return rel, nil
}

// owner is whom the directories openParent has to create belong to.
type owner struct{ uid, gid int }

// openParent opens the directory holding rel (from relative, not ".") and returns its
// descriptor, which the caller closes, and rel's last component.
//
// Each directory on the way is checked with fstatat(AT_SYMLINK_NOFOLLOW) relative to
// its already-open parent, so a symlink is refused with an error naming it, and then
// opened with O_NOFOLLOW|O_DIRECTORY, so one that turns into a symlink after the check
// is refused too instead of followed. With create set, missing directories are made
// with mode 0755 and that owner; without, a missing directory (or a file where one
// should be) returns an error matching unix.ENOENT or unix.ENOTDIR.
func (b *beneath) openParent(rel string, create *owner) (int, string, error) {
	dir, last := filepath.Split(rel)
	fd, err := unix.FcntlInt(uintptr(b.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, "", err
	}
	walked := b.name
	for c := range strings.SplitSeq(strings.TrimSuffix(dir, "/"), "/") {
		if c == "" {
			break // rel is a single component
		}
		walked = filepath.Join(walked, c)
		next, err := openDir(fd, c, walked, create)
		unix.Close(fd)
		if err != nil {
			return -1, "", err
		}
		fd = next
	}
	return fd, last, nil
}

// openDir opens the directory name inside the directory open as parent, as described
// for openParent; walked is its path, for messages.
func openDir(parent int, name, walked string, create *owner) (int, error) {
	var st unix.Stat_t
	err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	created := false
	switch {
	case errors.Is(err, unix.ENOENT) && create != nil:
		if err := unix.Mkdirat(parent, name, 0o700); err != nil {
			return -1, fmt.Errorf("creating %s: %w", walked, err)
		}
		created = true
	case err != nil:
		return -1, fmt.Errorf("%s: %w", walked, err)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return -1, fmt.Errorf("%w: %s is a symlink", ErrUnsafePath, walked)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return -1, fmt.Errorf("%s: %w", walked, unix.ENOTDIR)
	}
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("%w: %s turned into a symlink", ErrUnsafePath, walked)
	} else if err != nil {
		return -1, fmt.Errorf("%s: %w", walked, err)
	}
	if created {
		// Through the descriptor: by now the name may point elsewhere.
		if err := unix.Fchown(fd, create.uid, create.gid); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("chown %s: %w", walked, err)
		}
		if err := unix.Fchmod(fd, 0o755); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("chmod %s: %w", walked, err)
		}
	}
	return fd, nil
}
