package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Snapshot images are kept as runsc wrote them while they are in use, so restores
// read them directly; a snapshot not restored for Config.SnapshotCompressAfter
// is compressed with zstd (its memory pages shrink about five times), and
// decompressed again by the next restore. The manifest's sizes and hashes are
// those of the uncompressed files; the record's size is what the disk holds,
// which is what storage is billed by.

const zstSuffix = ".zst"

// snapshotLocks serialises compression and decompression of each snapshot.
type snapshotLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.RWMutex
	used  map[string]time.Time // last restore (or creation) by this process
}

// get returns a snapshot's lock, marking the snapshot used now.
func (l *snapshotLocks) get(id string) *sync.RWMutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locks == nil {
		l.locks, l.used = map[string]*sync.RWMutex{}, map[string]time.Time{}
	}
	m := l.locks[id]
	if m == nil {
		m = &sync.RWMutex{}
		l.locks[id] = m
	}
	l.used[id] = time.Now()
	return m
}

// lock takes a snapshot's image for changing it (compression).
func (l *snapshotLocks) lock(id string) func() {
	m := l.get(id)
	m.Lock()
	return m.Unlock
}

// lastUsed reports when this process last used a snapshot (zero if never).
func (l *snapshotLocks) lastUsed(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used[id]
}

func (l *snapshotLocks) forget(id string) {
	l.mu.Lock()
	delete(l.used, id)
	delete(l.locks, id)
	l.mu.Unlock()
}

// diskSize sums the files of a snapshot's directory.
func diskSize(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n, nil
}

// compressImage compresses every image file of dir (the manifest stays plain),
// each written beside the original and renamed over it only when complete.
func compressImage(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if name == manifestName || strings.HasSuffix(name, zstSuffix) || !e.Type().IsRegular() {
			continue
		}
		if err := transcode(filepath.Join(dir, name), filepath.Join(dir, name+zstSuffix), true); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// decompressImage restores the plain image files of dir.
func decompressImage(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".part") {
			os.Remove(filepath.Join(dir, e.Name())) // an interrupted transcoding
			continue
		}
		name, ok := strings.CutSuffix(e.Name(), zstSuffix)
		if !ok {
			continue
		}
		if err := transcode(filepath.Join(dir, e.Name()), filepath.Join(dir, name), false); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// transcode writes src compressed (or decompressed) to dst, atomically.
func transcode(src, dst string, compress bool) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".part"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	if compress {
		zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			return err
		}
		if _, err := io.Copy(zw, in); err != nil {
			zw.Close()
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
	} else {
		zr, err := zstd.NewReader(in)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, zr)
		zr.Close()
		if err != nil {
			return fmt.Errorf("decompressing %s: %w", filepath.Base(src), err)
		}
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// compressCold compresses the images of snapshots not used for the configured
// time, and records their new size.
func (e *Engine) compressCold() {
	after := e.cfg.SnapshotCompressAfter
	list, err := e.store.ListSnapshots(e.ctx, "")
	if err != nil {
		return
	}
	for _, sn := range list {
		if e.ctx.Err() != nil {
			return
		}
		used := e.snapLocks.lastUsed(sn.ID)
		if used.IsZero() {
			used = sn.CreatedAt
		}
		if time.Since(used) < after {
			continue
		}
		dir := filepath.Join(e.cfg.SnapshotDir, sn.ID)
		if _, err := os.Stat(filepath.Join(dir, "pages.img")); err != nil {
			continue // compressed already (or no image)
		}
		unlock := e.snapLocks.lock(sn.ID)
		e.compressOne(sn.ID, dir)
		unlock()
	}
}

func (e *Engine) compressOne(id, dir string) {
	before, _ := diskSize(dir)
	if err := compressImage(dir); err != nil {
		e.log.Warn("compressing snapshot", "snapshot", id, "err", err)
		// Whatever is half done is undone by the next restore's decompression.
		return
	}
	after, err := diskSize(dir)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := e.store.SetSnapshotSize(ctx, id, after); err != nil {
		e.log.Warn("recording snapshot size", "snapshot", id, "err", err)
	}
	e.log.Debug("compressed snapshot", "snapshot", id, "before", before, "after", after)
}

// prepareImage makes a snapshot's image restorable (decompressing it if needed)
// and marks it used; it returns the function that ends the use. Many restores of
// one snapshot may use it at once.
func (e *Engine) prepareImage(id string) (func(), error) {
	m := e.snapLocks.get(id)
	dir := filepath.Join(e.cfg.SnapshotDir, id)
	m.Lock()
	if _, err := os.Stat(filepath.Join(dir, "pages.img"+zstSuffix)); err == nil {
		if err := decompressImage(dir); err != nil {
			m.Unlock()
			return nil, err
		}
		if n, err := diskSize(dir); err == nil {
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			_ = e.store.SetSnapshotSize(ctx, id, n)
			cancel()
		}
	}
	m.Unlock()
	m.RLock()
	return m.RUnlock, nil
}
