package files

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Remove deletes the given absolute paths, directories with their contents, under
// root ("/" inside a sandbox). A path outside root, root itself, or a path with a
// symlink among its parent components is refused with ErrUnsafePath; all paths are
// checked before anything is deleted. A symlink as the last component is removed
// itself, and nothing below a removed directory is followed. Missing paths (a missing
// parent, or a file where a parent should be) are not an error.
func Remove(root string, paths []string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("remove: %w: root %q is not absolute", ErrUnsafePath, root)
	}
	root = filepath.Clean(root)
	rels := make([]string, len(paths))
	for i, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("removing %q: %w: not absolute", p, ErrUnsafePath)
		}
		rel, err := filepath.Rel(root, filepath.Clean(p))
		if err == nil {
			rel, err = relative(rel)
		}
		if err != nil || rel == "." {
			return fmt.Errorf("removing %q: %w: not below %s", p, ErrUnsafePath, root)
		}
		rels[i] = rel
	}

	b, err := openBeneath(root)
	if err != nil {
		return err
	}
	defer b.Close()
	for pass := range 2 { // check all, then remove
		for i, rel := range rels {
			parent, name, err := b.openParent(rel, nil)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue
			} else if err != nil {
				return fmt.Errorf("removing %q: %w", paths[i], err)
			}
			if pass == 1 {
				err = removeAt(parent, name, filepath.Join(root, rel))
			}
			unix.Close(parent)
			if err != nil {
				return fmt.Errorf("removing %q: %w", paths[i], err)
			}
		}
	}
	return nil
}

// RemoveContents empties the directory dir, below root, of everything in it,
// keeping dir itself (which may be a mount point, as /tmp is), without following
// symlinks on the way to it or below it.
func RemoveContents(root, dir string) error {
	if !filepath.IsAbs(root) || !filepath.IsAbs(dir) {
		return fmt.Errorf("emptying %q: %w: not absolute", dir, ErrUnsafePath)
	}
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(dir))
	if err == nil {
		rel, err = relative(rel)
	}
	if err != nil || rel == "." {
		return fmt.Errorf("emptying %q: %w: not below %s", dir, ErrUnsafePath, root)
	}
	b, err := openBeneath(filepath.Clean(root))
	if err != nil {
		return err
	}
	defer b.Close()
	parent, name, err := b.openParent(rel, nil)
	if errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("emptying %q: %w", dir, err)
	}
	fd, err := openDir(parent, name, dir, nil)
	unix.Close(parent)
	if errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("emptying %q: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	return removeIn(d)
}

// removeIn removes everything in the directory open as d.
func removeIn(d *os.File) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeAt(int(d.Fd()), n, filepath.Join(d.Name(), n)); err != nil {
			return err
		}
	}
	return nil
}

// removeAt removes name, inside the directory open as parent, with everything below
// it, without following symlinks; path is for messages.
func removeAt(parent int, name, path string) error {
	unlinkErr := unix.Unlinkat(parent, name, 0)
	if unlinkErr == nil || errors.Is(unlinkErr, unix.ENOENT) {
		return nil
	}
	// Linux says EISDIR for a directory, POSIX EPERM: try it as one either way.
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	} else if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%s: %w", path, unlinkErr)
	} else if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	d := os.NewFile(uintptr(fd), path)
	defer d.Close()
	if err := removeIn(d); err != nil {
		return err
	}
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
