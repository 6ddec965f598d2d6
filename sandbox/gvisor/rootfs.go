package gvisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SandboxUID and SandboxGID are the unprivileged identity user code runs as inside
// every sandbox (the agent stays root so user code cannot touch it).
const (
	SandboxUID = 1000
	SandboxGID = 1000
)

// prepareHostImage lays out the root filesystem of the "host" image in dir: mount
// points, symlinks into /usr (bound read-only from the host at run time) and a
// generated minimal /etc. It never contains a host file's content beyond the
// /etc/alternatives links, the loader cache and os-release, and it is rebuilt at every
// start so it always matches this binary. Sandboxes see it through a private
// writable overlay, so it stays untouched.
func prepareHostImage(dir string) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := buildHostImage(tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("building host image: %w", err)
	}
	old := dir + ".old"
	os.RemoveAll(old)
	if _, err := os.Stat(dir); err == nil {
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

func buildHostImage(root string) error {
	dirs := []struct {
		path string
		mode os.FileMode
		uid  int
	}{
		{"", 0o755, 0}, {"usr", 0o755, 0}, {"etc", 0o755, 0}, {"etc/alternatives", 0o755, 0},
		{"proc", 0o555, 0}, {"sys", 0o555, 0}, {"dev", 0o755, 0}, {"run", 0o755, 0},
		{"var", 0o755, 0}, {"var/tmp", os.ModeSticky | 0o777, 0}, {"opt", 0o755, 0}, {"mnt", 0o755, 0},
		{"root", 0o700, 0}, {"tmp", os.ModeSticky | 0o777, 0}, {"home", 0o755, 0},
		{"home/user", 0o755, SandboxUID}, {"workspace", 0o755, SandboxUID}, {".faas", 0o755, 0},
	}
	for _, d := range dirs {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(p, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
		if d.uid != 0 {
			if err := os.Chown(p, d.uid, d.uid); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, ".faas/agent"), nil, 0o755); err != nil {
		return err
	}
	// Debian's merged /usr: the top-level program and library directories are links.
	for _, name := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		target, err := os.Readlink("/" + name)
		if err != nil {
			continue // not a link on this host (or absent): not provided
		}
		if !strings.HasPrefix(strings.TrimPrefix(target, "/"), "usr/") {
			continue
		}
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			fmt.Sprintf("user:x:%d:%d:user:/home/user:/bin/bash\n", SandboxUID, SandboxGID) +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"etc/group":         fmt.Sprintf("root:x:0:\nuser:x:%d:\nnogroup:x:65534:\n", SandboxGID),
		"etc/hostname":      "sandbox\n",
		"etc/hosts":         "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
		"etc/resolv.conf":   "",
		"etc/shells":        "/bin/sh\n/bin/bash\n/usr/bin/bash\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	// Harmless host files programs look for: the loader cache (paths under /usr) and
	// the OS description.
	for _, name := range []string{"etc/ld.so.cache", "etc/os-release", "etc/debian_version"} {
		if b, err := os.ReadFile("/" + name); err == nil {
			if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
				return err
			}
		}
	}
	// Debian's alternatives (e.g. /usr/bin/nodejs -> /etc/alternatives/nodejs): copy
	// the links that point into /usr, nothing else.
	entries, _ := os.ReadDir("/etc/alternatives")
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/etc/alternatives", e.Name()))
		if err != nil || !strings.HasPrefix(target, "/usr/") {
			continue
		}
		if err := os.Symlink(target, filepath.Join(root, "etc/alternatives", e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// prepareImageRoot makes sure an image's root filesystem has the directories the
// sandbox mounts over (the agent, /proc, /sys, /dev, /tmp), so that its overlay
// need not invent them. It never follows a symlink out of root.
func prepareImageRoot(root string) error {
	for _, d := range []string{".faas", "proc", "sys", "dev", "tmp"} {
		p := filepath.Join(root, d)
		st, err := os.Lstat(p)
		switch {
		case err == nil && st.IsDir():
			continue
		case err == nil:
			return fmt.Errorf("/%s in the image is not a directory", d)
		case !os.IsNotExist(err):
			return err
		}
		if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}
