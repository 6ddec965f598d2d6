package files

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Pack writes a tar stream (archive/tar, PAX format) of the given absolute paths to
// w; directories are packed with their contents when recursive is set, alone
// otherwise. Names in the archive are the absolute paths without the leading slash
// (directories end in a slash); "/" itself gets no entry of its own. Symlinks are
// packed as symlinks, never followed, and a file with several links is packed as
// plain content each time. Sockets, FIFOs and device nodes are skipped, and a path
// given twice (or inside a directory packed recursively) is packed once.
//
// Each given path must exist; below a recursively packed directory, objects that
// vanish during the walk are skipped. A regular file is packed with the size it had
// when opened; if it shrinks while it is read Pack fails, if it grows the excess is
// left out.
func Pack(paths []string, recursive bool, w io.Writer) error {
	p := packer{tw: tar.NewWriter(w), seen: make(map[string]bool)}
	for _, path := range paths {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("packing %q: %w: not absolute", path, ErrUnsafePath)
		}
		path = filepath.Clean(path)
		if _, err := os.Lstat(path); err != nil {
			return fmt.Errorf("packing %s: %w", path, err)
		}
		var err error
		if recursive {
			err = filepath.WalkDir(path, func(name string, _ fs.DirEntry, err error) error {
				if err != nil {
					return ignoreNotExist(err)
				}
				return p.add(name)
			})
		} else {
			err = p.add(path)
		}
		if err != nil {
			return fmt.Errorf("packing %s: %w", path, err)
		}
	}
	if err := p.tw.Close(); err != nil {
		return fmt.Errorf("packing: %w", err)
	}
	return nil
}

type packer struct {
	tw   *tar.Writer
	seen map[string]bool
}

// add writes the entry for path; it skips unsupported types and paths that are gone.
func (p *packer) add(path string) error {
	if p.seen[path] || path == "/" {
		return nil
	}
	p.seen[path] = true
	fi, err := os.Lstat(path)
	if err != nil {
		return ignoreNotExist(err)
	}
	name := strings.TrimPrefix(path, "/")
	switch fi.Mode().Type() {
	case fs.ModeDir:
		return p.tw.WriteHeader(header(tar.TypeDir, name+"/", fi.Sys().(*syscall.Stat_t)))
	case fs.ModeSymlink:
		target, err := os.Readlink(path)
		if err != nil {
			return ignoreNotExist(err)
		}
		h := header(tar.TypeSymlink, name, fi.Sys().(*syscall.Stat_t))
		h.Linkname = target
		return p.tw.WriteHeader(h)
	case 0:
		return p.addFile(path, name)
	default:
		return nil
	}
}

func (p *packer) addFile(path, name string) error {
	f, st, err := openRegular(path)
	if err != nil || f == nil {
		return err
	}
	defer f.Close()
	h := header(tar.TypeReg, name, st)
	h.Size = st.Size
	if err := p.tw.WriteHeader(h); err != nil {
		return err
	}
	if _, err := io.CopyN(p.tw, f, h.Size); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s shrank while it was packed", path)
		}
		return err
	}
	return nil
}

func header(typ byte, name string, st *syscall.Stat_t) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     int64(st.Mode & modeBits),
		Uid:      int(st.Uid),
		Gid:      int(st.Gid),
		ModTime:  time.Unix(st.Mtim.Unix()),
		Format:   tar.FormatPAX,
	}
}
