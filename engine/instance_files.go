package engine

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
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

// UploadArchive unpacks a tar stream under dest in a running instance, owned by
// the sandbox user; with replace, dest is emptied first. Names are checked here
// (relative, no "..") and again by the agent, which never writes through a
// symlink. It returns the number of entries written.
func (e *Engine) UploadArchive(ctx context.Context, account, id, dest string, r io.Reader, replace bool) (int, error) {
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
	pr, pw := io.Pipe()
	var checkErr error
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		checkErr = rebase(r, pw, dest)
		pw.CloseWithError(checkErr)
	}()
	var out strings.Builder
	err = e.rootExec(ctx, b, []string{agentPath, "unpack", "--uid", fmt.Sprint(UserUID), "--gid", fmt.Sprint(UserGID),
		"--max-bytes", fmt.Sprint(int64(1) << 30), "--max-entries", "100000", "/"}, pr, &out)
	pr.CloseWithError(errUnpackEnded)
	<-checked
	if errors.Is(checkErr, errUnpackEnded) {
		checkErr = nil // the unpacker stopped reading: its error says why
	}
	if checkErr != nil {
		return 0, invalid("archive rejected: " + checkErr.Error())
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
// that are absolute or climb with "..", and entry types the agent would refuse.
func rebase(r io.Reader, w io.Writer, dest string) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
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
