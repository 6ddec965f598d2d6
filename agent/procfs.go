package agent

import (
	"strings"
	"syscall"
)

// readSmallFile reads a small kernel file (a cgroup's member list, a process's
// status) with plain system calls. os.ReadFile makes about ten calls for one
// (it registers the descriptor with the poller, checks the size, unregisters),
// and each costs tens of microseconds under gVisor; the agent reads several
// such files around every execution.
func readSmallFile(path string) ([]byte, error) {
	fd, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// readDirNames lists the names in a directory with plain system calls (see
// readSmallFile), without "." and "..".
func readDirNames(path string) ([]string, error) {
	fd, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	}
}

func openRead(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// realUID returns the real uid of process pid as its /proc status file gives
// it. The "Uid:" line comes early in the file, so one read usually has it: the
// read to the file's end that readSmallFile makes is skipped.
func realUID(pid string) (string, bool) {
	fd, err := openRead("/proc/" + pid + "/status")
	if err != nil {
		return "", false
	}
	var buf [4096]byte
	n, err := syscall.Read(fd, buf[:])
	for err == syscall.EINTR {
		n, err = syscall.Read(fd, buf[:])
	}
	syscall.Close(fd)
	if err != nil || n <= 0 {
		return "", false
	}
	if uid, ok := uidIn(string(buf[:n])); ok {
		return uid, true
	}
	b, err := readSmallFile("/proc/" + pid + "/status") // a longer file than expected
	if err != nil {
		return "", false
	}
	return uidIn(string(b))
}

// uidIn finds the real uid in the text of a /proc status file; false if no
// whole "Uid:" line is in it.
func uidIn(status string) (string, bool) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		if !strings.HasSuffix(rest, "\n") {
			return "", false
		}
		if f := strings.Fields(rest); len(f) > 0 {
			return f[0], true
		}
		return "", false
	}
	return "", false
}
