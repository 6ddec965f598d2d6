package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/faas-platform/faas/agent/files"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh." // aufs metadata; .wh..wh..opq is the only one with a meaning
	whiteoutOpaque = ".wh..wh..opq"
	maxLayerFiles  = 1 << 20 // entries of one layer
)

// errMismatch marks content that does not match the digest naming it.
var errMismatch = errors.New("content does not match its digest")

// verifier hashes what is read through it and fails at the end of the stream (or
// once it is longer than declared) unless it has the wanted digest and size.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	want v1.Hash
	size int64 // -1: unknown
	n    int64
	what string // "blob", "uncompressed content", for messages
	err  error
}

func newVerifier(r io.Reader, want v1.Hash, size int64, what string) (*verifier, error) {
	if want.Algorithm != "sha256" {
		return nil, fmt.Errorf("unsupported digest algorithm %q", want.Algorithm)
	}
	return &verifier{r: r, h: sha256.New(), want: want, size: size, what: what}, nil
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%w: %s is longer than its declared %d bytes", errMismatch, v.what, v.size)
		return n, v.err
	}
	if err == io.EOF {
		got := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", v.h.Sum(nil))}
		switch {
		case v.size >= 0 && v.n != v.size:
			v.err = fmt.Errorf("%w: %s has %d bytes, not the declared %d", errMismatch, v.what, v.n, v.size)
		case got != v.want:
			v.err = fmt.Errorf("%w: %s has digest %s, not %s", errMismatch, v.what, got, v.want)
		default:
			return n, io.EOF
		}
		return n, v.err
	}
	return n, err
}

// source reads the stream a layer comes from, remembering its error: that one is
// the registry's or the archive's, not the layer content's.
type source struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (s *source) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// decompress recognises gzip and zstd by their magic numbers; anything else is read
// as an uncompressed tar.
func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// layerSource says how to read one layer.
type layerSource struct {
	layer  v1.Layer
	diffID v1.Hash
	// blob, if set, is the digest and size of the compressed blob, verified while it
	// is read; unset for docker-archives, where it is not recorded: there the
	// uncompressed content is read and only the diff id can be checked.
	blob     *v1.Descriptor
	registry bool // read from a registry: a read error means it is unreachable
}

// unpackLayer reads, verifies and unpacks one layer into a new directory under
// layers/, renamed into place once complete, and returns its size on disk. The error
// is ready for the client (see layerError).
func (s *Store) unpackLayer(ctx context.Context, label string, ls layerSource) (int64, error) {
	dest := s.layerPath(ls.diffID.String())
	tmp, err := os.MkdirTemp(filepath.Dir(dest), tmpPrefix+ls.diffID.Hex[:12]+"-")
	if err != nil {
		return 0, err
	}
	fail := func(src *source, err error) error { return s.layerError(label, ls, src, hidePath(err, tmp)) }
	done := false
	defer func() {
		if !done {
			removeAll(s.log, []string{tmp})
		}
	}()
	var rc io.ReadCloser
	if ls.blob != nil {
		rc, err = ls.layer.Compressed()
	} else {
		rc, err = ls.layer.Uncompressed()
	}
	if err != nil {
		return 0, fail(&source{err: err}, err)
	}
	defer rc.Close()
	src := &source{ctx: ctx, r: rc}
	var r io.Reader = src
	if ls.blob != nil {
		if r, err = newVerifier(src, ls.blob.Digest, ls.blob.Size, "blob "+ls.blob.Digest.String()); err != nil {
			return 0, fail(src, err)
		}
	}
	br := bufio.NewReaderSize(r, 1<<16)
	dr, closeDecompressor, err := decompress(br)
	if err != nil {
		return 0, fail(src, fmt.Errorf("decompressing: %w", err))
	}
	defer closeDecompressor()
	diff, err := newVerifier(dr, ls.diffID, -1, "uncompressed content")
	if err != nil {
		return 0, fail(src, err)
	}
	opt := files.UnpackOptions{HardLinks: true, MaxBytes: s.opt.MaxBytes, MaxEntries: maxLayerFiles}
	if os.Geteuid() == 0 {
		opt.KeepOwner = true
	} else {
		opt.UID, opt.GID = os.Geteuid(), os.Getegid()
	}
	_, err = files.Unpack(tmp, diff, opt)
	// Read the rest (tar padding, the end of the compressed stream) so both digests
	// are checked over everything.
	if err == nil {
		_, err = io.Copy(io.Discard, diff)
	}
	if err == nil && ls.blob != nil {
		_, err = io.Copy(io.Discard, br)
	}
	if err != nil {
		return 0, fail(src, err)
	}
	if err := checkWhiteouts(tmp); err != nil {
		return 0, fail(src, err)
	}
	size, err := diskUsage(tmp)
	if err != nil {
		return 0, err
	}
	removeAll(s.log, []string{dest}) // a leftover the index did not know
	if err := os.Rename(tmp, dest); err != nil {
		return 0, err
	}
	done = true
	return size, nil
}

// layerError sorts a failure to read or unpack a layer into the error categories.
func (s *Store) layerError(label string, ls layerSource, src *source, err error) error {
	what := "layer " + ls.diffID.String()
	if ls.blob != nil {
		what += " (blob " + ls.blob.Digest.String() + ")"
	}
	switch {
	case errors.Is(err, errMismatch):
	case src.err != nil && ls.registry:
		return fmt.Errorf("%w: pulling %q: downloading %s: %w", ErrUnreachable, label, what, err)
	case src.err != nil && (errors.Is(src.err, context.Canceled) || errors.Is(src.err, context.DeadlineExceeded)):
		return fmt.Errorf("importing %q: %w", label, src.err)
	case localFault(err):
		return fmt.Errorf("unpacking %q: %s: %w", label, what, err)
	}
	if errors.Is(err, files.ErrLimit) && s.opt.MaxBytes > 0 {
		err = fmt.Errorf("larger than the image store (%d bytes): %w", s.opt.MaxBytes, err)
	}
	return fmt.Errorf("%w %q: %s: %w", ErrInvalid, label, what, err)
}

// localFault reports errors of this machine rather than of the content.
func localFault(err error) bool {
	for _, e := range []error{unix.ENOSPC, unix.EDQUOT, unix.EIO, unix.EROFS, unix.EMFILE, unix.ENFILE, unix.ENOMEM, unix.EPERM, unix.EACCES} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkWhiteouts refuses whiteouts that name no sibling (".wh.", ".wh..", ".wh...")
// or are not plain marker files.
func checkWhiteouts(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n := d.Name()
		if !strings.HasPrefix(n, whiteoutPrefix) || strings.HasPrefix(n, whiteoutMeta) {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if t := n[len(whiteoutPrefix):]; t == "" || t == "." || t == ".." {
			return fmt.Errorf("whiteout %q names no entry", rel)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("whiteout %q is not a file", rel)
		}
		return nil
	})
}

// diskUsage is the space dir's tree takes: the blocks of each inode, counted once.
func diskUsage(dir string) (int64, error) {
	seen := make(map[uint64]bool)
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
		return nil
	})
	return n, err
}

// pathlessError is an error whose message no longer shows the store's paths, which
// are none of an API client's business; it still wraps the original.
type pathlessError struct {
	msg string
	err error
}

func (e *pathlessError) Error() string { return e.msg }
func (e *pathlessError) Unwrap() error { return e.err }

// hidePath makes the paths under dir in err's message relative to it.
func hidePath(err error, dir string) error {
	msg := err.Error()
	clean := strings.ReplaceAll(strings.ReplaceAll(msg, dir+"/", ""), dir, ".")
	if clean == msg {
		return err
	}
	return &pathlessError{msg: clean, err: err}
}
