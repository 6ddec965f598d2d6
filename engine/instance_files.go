package engine

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/faas-platform/faas/store"
)

// runningBox returns the sandbox of a running instance, holding the instance
// (shared) until release is called.
func (e *Engine) runningBox(account, id string) (*box, func(), error) {
	in, err := e.rlockInstance(account, id)
	if err != nil {
		return nil, nil, err
	}
	if in.rec.State != store.InstanceRunning {
		in.mu.RUnlock()
		return nil, nil, notRunning(in)
	}
	return in.b, in.mu.RUnlock, nil
}

// Limits of one upload, which the agent enforces too.
const (
	maxUploadEntries = 100_000
	maxUploadBytes   = int64(1) << 30
)

// UploadArchive unpacks a tar archive under dest in a running instance, owned
// by the sandbox user; with replace, dest is emptied first. The archive is read
// whole and checked before anything of it is written (names relative, no "..",
// files, directories and symlinks only, at most 100000 entries and 1 GiB of
// content), kept meanwhile in a temporary file: a bad or cut-off archive
// changes nothing, and replace empties dest only for a good one. The agent
// checks the names again and never writes through a symlink. It returns the
// number of entries written.
func (e *Engine) UploadArchive(ctx context.Context, account, id, dest string, r io.Reader, replace bool) (int, error) {
	_, release, err := e.runningBox(account, id) // answered before the body is read
	if err != nil {
		return 0, err
	}
	release()
	spool, err := os.CreateTemp(e.cfg.InstanceDir, "upload-*.tar") // debris from a crash goes at the next start
	if err != nil {
		return 0, fmt.Errorf("spooling an upload: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	bw := bufio.NewWriterSize(spool, 1<<20)
	if err := rebase(r, bw, dest); err != nil {
		return 0, invalid("archive rejected: " + err.Error())
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("spooling an upload: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	b, release, err := e.runningBox(account, id)
	if err != nil {
		return 0, err
	}
	defer release()
	if replace {
		if err := e.rootExec(ctx, b, []string{agentPath, "remove", "--root", "/", "--contents", dest}, nil, io.Discard); err != nil {
			return 0, fmt.Errorf("emptying %s: %w", dest, err)
		}
	}
	return e.unpack(ctx, b, spool)
}

// UploadStream unpacks a tar stream the server made itself (one file, written
// as it arrives) into a running instance, from its root: nothing is spooled.
// An error reading r stops it (the agent then removes what it had begun).
func (e *Engine) UploadStream(ctx context.Context, account, id string, r io.Reader) (int, error) {
	b, release, err := e.runningBox(account, id)
	if err != nil {
		return 0, err
	}
	defer release()
	return e.unpack(ctx, b, r)
}

// unpack has the agent extract the tar stream r from the sandbox's root, owned
// by the sandbox user, and returns the number of entries written.
func (e *Engine) unpack(ctx context.Context, b *box, r io.Reader) (int, error) {
	pr, pw := io.Pipe()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, r)
		pw.CloseWithError(err)
		copied <- err
	}()
	var out strings.Builder
	err := e.rootExec(ctx, b, []string{agentPath, "unpack", "--uid", fmt.Sprint(UserUID), "--gid", fmt.Sprint(UserGID),
		"--max-bytes", fmt.Sprint(maxUploadBytes), "--max-entries", fmt.Sprint(maxUploadEntries), "/"}, pr, &out)
	pr.CloseWithError(errUnpackEnded)
	copyErr := <-copied
	if errors.Is(copyErr, errUnpackEnded) {
		copyErr = nil // the unpacker stopped reading: its error says why
	}
	if copyErr != nil {
		return 0, invalid("archive rejected: " + copyErr.Error())
	}
	if err != nil {
		return 0, invalid("archive rejected: " + err.Error())
	}
	var n int
	fmt.Sscan(out.String(), &n)
	return n, nil
}

// errUnpackEnded ends the copy into an unpacker that has stopped reading.
var errUnpackEnded = errors.New("unpack ended")

// rebase copies a tar stream, moving every entry under dest and refusing names
// that are absolute or climb with "..", entry types the agent would refuse, and
// more than maxUploadEntries entries or maxUploadBytes of content.
func rebase(r io.Reader, w io.Writer, dest string) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	entries, size := 0, int64(0)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %w", err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if name == "" || name == "." {
			continue
		}
		if path.IsAbs(name) || strings.ContainsRune(name, 0) {
			return fmt.Errorf("entry %q: names must be relative", hdr.Name)
		}
		for _, part := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
			if part == ".." {
				return fmt.Errorf("entry %q: names must not contain '..'", hdr.Name)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		default:
			return fmt.Errorf("entry %q: only files, directories and symlinks are accepted", hdr.Name)
		}
		if entries++; entries > maxUploadEntries {
			return fmt.Errorf("more than %d entries", maxUploadEntries)
		}
		if size += hdr.Size; size > maxUploadBytes {
			return fmt.Errorf("more than %d bytes of content", maxUploadBytes)
		}
		hdr.Name = strings.TrimPrefix(path.Join(dest, name), "/")
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		hdr.Mode &= 0o777 // no setuid, setgid or sticky bits from outside
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// DownloadArchive writes a tar archive of p (a file, or a directory with its
// content) in a running instance to w; the archive is empty if p does not exist.
func (e *Engine) DownloadArchive(ctx context.Context, account, id, p string, w io.Writer) error {
	b, release, err := e.runningBox(account, id)
	if err != nil {
		return err
	}
	defer release()
	// The agent itself (not a program the image may lack) leaves a missing path
	// out: the archive is then empty, which the API answers as not found.
	return e.rootExec(ctx, b, []string{agentPath, "pack", "-r", "-missing-ok", p}, nil, w)
}
