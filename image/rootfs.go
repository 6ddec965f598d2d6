package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// assemble builds the root filesystem of the image digest from its unpacked layers
// (directories, lowest first) under a temporary directory, renamed to
// images/<digest-hex> once complete.
//
// Each layer is applied over the ones below as overlayfs would show them: in every
// directory its whiteouts go first (".wh..wh..opq" empties the directory of what
// lower layers put there, ".wh.<name>" deletes <name>), then its entries replace what
// is there, except that a directory merges with a directory. Regular files are hard
// links to the layer's; symlinks and directories are recreated, directories getting
// their owner, mode and times once everything is in place.
//
// The layers are the store's own, unpacked safely; the care here is to never follow
// a symlink in the root filesystem being built: every path assembled goes through
// directories this function made (a symlink or file in the way of a directory is
// replaced first), and metadata is applied by a final walk that does not follow
// symlinks.
func (s *Store) assemble(ctx context.Context, digest string, layers []string) (err error) {
	dest := s.imagePath(digest)
	tmp, err := os.MkdirTemp(filepath.Dir(dest), tmpPrefix+strings.TrimPrefix(digest, "sha256:")[:12]+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			removeAll(s.log, []string{tmp})
		}
	}()
	a := assembler{ctx: ctx, root: filepath.Join(tmp, "rootfs"), dirs: make(map[string]*syscall.Stat_t)}
	if err := os.Mkdir(a.root, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(a.root, 0o755); err != nil { // whatever the umask
		return err
	}
	for _, l := range layers {
		if err := a.apply(l, "."); err != nil {
			return fmt.Errorf("applying layer %s: %w", l, err)
		}
	}
	if err := a.finish(); err != nil {
		return err
	}
	removeAll(s.log, []string{dest}) // a leftover the index did not know
	return os.Rename(tmp, dest)
}

type assembler struct {
	ctx  context.Context
	root string
	dirs map[string]*syscall.Stat_t // relative path → attributes of the topmost layer's directory
}

// apply applies the directory rel of the layer in layerDir.
func (a *assembler) apply(layerDir, rel string) error {
	if err := a.ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(layerDir, rel))
	if err != nil {
		return err
	}
	dst := filepath.Join(a.root, rel)
	for _, e := range entries {
		if e.Name() == whiteoutOpaque {
			lower, err := os.ReadDir(dst)
			if err != nil {
				return err
			}
			for _, l := range lower {
				if err := os.RemoveAll(filepath.Join(dst, l.Name())); err != nil {
					return err
				}
			}
		}
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, whiteoutPrefix) && !strings.HasPrefix(n, whiteoutMeta) {
			// checkWhiteouts made sure the name is one component, not "." or "..".
			if err := os.RemoveAll(filepath.Join(dst, n[len(whiteoutPrefix):])); err != nil {
				return err
			}
		}
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, whiteoutPrefix) {
			continue
		}
		src, d, r := filepath.Join(layerDir, rel, n), filepath.Join(dst, n), filepath.Join(rel, n)
		fi, err := os.Lstat(src)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.IsDir():
			cur, err := os.Lstat(d)
			if err == nil && !cur.IsDir() {
				if err := os.Remove(d); err != nil {
					return err
				}
			}
			if err != nil || !cur.IsDir() {
				if err := os.Mkdir(d, 0o700); err != nil {
					return err
				}
			}
			a.dirs[r] = st
			if err := a.apply(layerDir, r); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.RemoveAll(d); err != nil {
				return err
			}
			if err := os.Symlink(target, d); err != nil {
				return err
			}
			if err := os.Lchown(d, int(st.Uid), int(st.Gid)); err != nil && os.Geteuid() == 0 {
				return err
			}
			if err := setTimes(d, st); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := os.RemoveAll(d); err != nil {
				return err
			}
			if err := os.Link(src, d); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %s: unexpected file type %v", ErrInvalid, r, fi.Mode().Type())
		}
	}
	return nil
}

// finish gives every directory the attributes of the topmost layer's, walking the
// finished tree without following symlinks.
func (a *assembler) finish() error {
	return filepath.WalkDir(a.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == a.root {
			return err
		}
		rel, err := filepath.Rel(a.root, p)
		if err != nil {
			return err
		}
		st := a.dirs[rel]
		if st == nil {
			return errors.New("directory " + rel + " of no layer")
		}
		// Through a descriptor opened with O_NOFOLLOW: nothing is followed, even in
		// principle.
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		defer unix.Close(fd)
		if os.Geteuid() == 0 {
			if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("chown %s: %w", p, err)
			}
		}
		if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
		return setTimes(p, st)
	})
}

// setTimes gives p (itself if a symlink, not what it points to) the times in st.
func setTimes(p string, st *syscall.Stat_t) error {
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
