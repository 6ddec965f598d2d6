package gvisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const cgroupV1 = "/sys/fs/cgroup"

// agentCaps are the capabilities of the agent (PID 1). User processes it starts
// run as SandboxUID and lose them all at setuid.
var agentCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETUID",
	"CAP_SETGID", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE",
}

// ociSpec builds the OCI runtime spec of a sandbox.
func (d *Driver) ociSpec(sb *Sandbox) *specs.Spec {
	spec := sb.spec
	mem := int64(spec.MemoryMB) << 20
	period := uint64(100000)
	quota := int64(spec.CPUCores * float64(period))
	swappiness := uint64(0)
	ro := []string{"rbind", "ro", "nosuid", "nodev"}
	rootPath := filepath.Join(d.imageDir, "host")
	hostImage := spec.Image == "host" || spec.Image == ""
	if !hostImage {
		rootPath = spec.RootFS
	}
	out := &specs.Spec{
		Version:  specs.Version,
		Hostname: "sandbox",
		Root: &specs.Root{
			Path:     rootPath,
			Readonly: false, // writes land in gVisor's private overlay, never on the host
		},
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: []string{"/.faas/agent"},
			Env:  []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "HOME=/root"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: agentCaps, Effective: agentCaps, Permitted: agentCaps,
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20},
			},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			// Shared memory is held in the sandbox's memory too: at most 64 MB, and
			// no more than the writable layer.
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.Itoa(min(max(writableLayerMB(spec, d.cfg.WritableLayerMB), 16), 64)) + "m"}},
			// Without a mount of its own, runsc gives /tmp a tmpfs bounded by nothing
			// but the memory limit; this one is as large as the writable layer.
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.Itoa(max(writableLayerMB(spec, d.cfg.WritableLayerMB), 16)) + "m"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/.faas/agent", Type: "bind", Source: d.cfg.Agent, Options: ro},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + sb.cgroup,
			Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &mem, Swap: &mem, Swappiness: &swappiness},
				CPU:    &specs.LinuxCPU{Period: &period, Quota: &quota},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
		},
	}
	if hostImage {
		// The host image is the host's /usr, read-only.
		out.Mounts = append(out.Mounts, specs.Mount{Destination: "/usr", Type: "bind", Source: "/usr", Options: ro})
	}
	return out
}

// removeCgroups removes a sandbox's cgroup from every v1 controller (runsc normally
// does this; this catches a runsc that died half way).
func removeCgroups(rel string) {
	entries, err := os.ReadDir(cgroupV1)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ",") {
			continue // co-mounted controllers appear under each name as links
		}
		_ = os.Remove(filepath.Join(cgroupV1, e.Name(), rel))
	}
}
