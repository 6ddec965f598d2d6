// Package gvisor is the sandbox driver built on gVisor's runsc (systrap platform):
// a user-space kernel between user code and the host, one OCI bundle per sandbox,
// no network, the image read-only under a private writable layer in memory, and
// memory, CPU and process limits held by host cgroups and the agent.
package gvisor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/sandbox"
)

// Config configures the driver.
type Config struct {
	// Runsc is the runsc binary. It must be a static (CGO_ENABLED=0) build.
	Runsc string
	// Agent is the static faas-agent binary mounted into every sandbox.
	Agent string
	// StateDir holds the driver's state: runsc's state root, one bundle directory
	// per sandbox and the prepared images. Nothing else may live there.
	StateDir string
	// Platform is runsc's platform; default "systrap".
	Platform string
	// DefaultMemoryMB and DefaultCPUCores apply when a Spec leaves them zero.
	DefaultMemoryMB int
	DefaultCPUCores float64
	// WritableLayerMB bounds the private writable layer and /tmp (each; they are
	// held in the sandbox's memory) unless a Spec sets DiskMB; it is never more
	// than a quarter of the sandbox's memory. 0: a quarter of the memory.
	WritableLayerMB int
	// DebugLogDir, when set, collects runsc debug logs there (one file per command).
	DebugLogDir string
	Logger      *slog.Logger
}

// Driver runs sandboxes with runsc.
type Driver struct {
	cfg      Config
	log      *slog.Logger
	runRoot  string // runsc --root
	bundles  string
	imageDir string

	mu   sync.Mutex
	live map[string]*Sandbox
}

// cgroupParent is the cgroup (under each controller) that holds every sandbox's own.
const cgroupParent = "faas"

// New checks the configuration and prepares the state directory. It fails with an
// error wrapping sandbox.ErrUnavailable when runsc or the agent is missing.
func New(cfg Config) (*Driver, error) {
	if cfg.Platform == "" {
		cfg.Platform = "systrap"
	}
	if cfg.DefaultMemoryMB == 0 {
		cfg.DefaultMemoryMB = 512
	}
	if cfg.DefaultCPUCores == 0 {
		cfg.DefaultCPUCores = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckExecutable(cfg.Runsc); err != nil {
		return nil, fmt.Errorf("%w: runsc %v; build it with `make runsc` (or scripts/setup.sh), or point FAAS_RUNSC at a static runsc", sandbox.ErrUnavailable, err)
	}
	if err := CheckExecutable(cfg.Agent); err != nil {
		return nil, fmt.Errorf("%w: agent %v; build it with `make build`, or point FAAS_AGENT at faas-agent", sandbox.ErrUnavailable, err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: gVisor sandboxes need root (cgroups and namespaces); run faas serve as root", sandbox.ErrUnavailable)
	}
	d := &Driver{
		cfg:      cfg,
		log:      cfg.Logger,
		runRoot:  filepath.Join(cfg.StateDir, "runsc"),
		bundles:  filepath.Join(cfg.StateDir, "bundles"),
		imageDir: filepath.Join(cfg.StateDir, "images"),
		live:     make(map[string]*Sandbox),
	}
	for _, dir := range []string{d.runRoot, d.bundles, d.imageDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	if err := prepareHostImage(filepath.Join(d.imageDir, "host")); err != nil {
		return nil, err
	}
	return d, nil
}

// CheckExecutable says why path is not an executable file (nil if it is).
func CheckExecutable(path string) error {
	if path == "" {
		return errors.New("not found")
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("not found at %s", path)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "gvisor" }

// Version implements sandbox.Driver.
func (d *Driver) Version(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, d.cfg.Runsc, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: runsc --version: %v", sandbox.ErrUnavailable, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "runsc version")), nil
}

// Live implements sandbox.Driver.
func (d *Driver) Live() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.live)
}

func (d *Driver) runsc(args ...string) []string {
	base := []string{
		"--root=" + d.runRoot,
		"--platform=" + d.cfg.Platform,
		"--network=none",
		"--host-uds=none",
	}
	if d.cfg.DebugLogDir != "" {
		base = append(base, "--debug", "--debug-log="+d.cfg.DebugLogDir+"/")
	}
	return append(base, args...)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "sb-" + hex.EncodeToString(b[:])
}

// Create implements sandbox.Driver.
func (d *Driver) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	return d.start(ctx, spec, "")
}

// Restore implements sandbox.Restorer: it starts a new sandbox from a checkpoint
// image written by Checkpoint. spec must be the checkpointed sandbox's.
func (d *Driver) Restore(ctx context.Context, spec sandbox.Spec, imageDir string) (sandbox.Sandbox, error) {
	if _, err := os.Stat(filepath.Join(imageDir, "checkpoint.img")); err != nil {
		return nil, fmt.Errorf("%w: no checkpoint image in %s", sandbox.ErrBadCheckpoint, imageDir)
	}
	return d.start(ctx, spec, imageDir)
}

// start boots a sandbox: a fresh one, or restored from the checkpoint in imageDir.
func (d *Driver) start(ctx context.Context, spec sandbox.Spec, imageDir string) (_ *Sandbox, err error) {
	if spec.Image == "" {
		spec.Image = "host"
	}
	if spec.Image != "host" {
		if spec.RootFS == "" || !filepath.IsAbs(spec.RootFS) {
			return nil, fmt.Errorf("image %q: no root filesystem given", spec.Image)
		}
		if err := prepareImageRoot(spec.RootFS); err != nil {
			return nil, fmt.Errorf("image %q: %w", spec.Image, err)
		}
	}
	if spec.Network {
		return nil, errors.New("sandboxes with a network are not available yet")
	}
	if spec.MemoryMB <= 0 {
		spec.MemoryMB = d.cfg.DefaultMemoryMB
	}
	if spec.CPUCores <= 0 {
		spec.CPUCores = d.cfg.DefaultCPUCores
	}
	// Spec tells the size the writable layer gets, defaulted or not: a sandbox
	// made ahead of a request serves only one that asks for the same.
	spec.DiskMB = writableLayerMB(spec, d.cfg.WritableLayerMB)
	id := newID()
	bundle := filepath.Join(d.bundles, id)
	sb := &Sandbox{d: d, id: id, spec: spec, bundle: bundle, cgroup: cgroupParent + "/" + id}

	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		}
	}()
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return nil, fmt.Errorf("creating bundle: %w", err)
	}
	cleanups = append(cleanups, func() { os.RemoveAll(bundle) })

	cfgJSON, err := json.Marshal(d.ociSpec(sb))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfgJSON, 0o600); err != nil {
		return nil, err
	}

	// The sandbox's stdin and stdout are the agent's channel; its stderr (the agent's
	// own complaints and runsc's start-up errors) goes to a file in the bundle.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	logPath := filepath.Join(bundle, "console.log")
	logF, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	// The writable layer lives in the sandbox's memory (it counts against its
	// memory limit), bounded well below it so that filling it is a clean ENOSPC.
	overlay := "--overlay2=root:memory"
	if disk := writableLayerMB(spec, d.cfg.WritableLayerMB); disk > 0 {
		overlay += ",size=" + strconv.Itoa(disk) + "m"
	}
	args := []string{overlay, "run", "--detach", "--bundle=" + bundle, id}
	if imageDir != "" {
		args = []string{overlay, "restore", "--detach", "--bundle=" + bundle, "--image-path=" + imageDir, id}
	}
	cmd := exec.Command(d.cfg.Runsc, d.runsc(args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, logF
	runErr := cmd.Run()
	inR.Close()
	outW.Close()
	logF.Close()
	cleanups = append(cleanups, func() {
		inW.Close()
		outR.Close()
		d.destroy(id)
	})
	if runErr != nil {
		if imageDir != "" {
			return nil, fmt.Errorf("%w: restoring sandbox: %v: %s", sandbox.ErrBadCheckpoint, runErr, tail(logPath))
		}
		return nil, fmt.Errorf("starting sandbox: %v: %s", runErr, tail(logPath))
	}
	sb.in, sb.out = inW, outR
	sb.conn = agent.NewConn(outR, inW)
	sb.conn.Logf = func(format string, args ...any) {
		d.log.Debug(fmt.Sprintf(format, args...), "sandbox", id)
	}
	// A boot takes a fraction of a second, but many at once on a loaded machine
	// take their turns: a slow boot is better than a failed request.
	helloCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := sb.conn.Hello(helloCtx); err != nil {
		return nil, fmt.Errorf("waiting for the agent: %w: %s", err, tail(logPath))
	}
	d.mu.Lock()
	d.live[id] = sb
	d.mu.Unlock()
	return sb, nil
}

// writableLayerMB is the size of a sandbox's writable layer (and of its /tmp):
// the spec's, else the configured default, else a quarter of its memory; the
// default is never more than that, so a full disk is ENOSPC, not the memory limit.
func writableLayerMB(spec sandbox.Spec, def int) int {
	disk := cmp.Or(spec.DiskMB, def)
	if quarter := spec.MemoryMB / 4; quarter > 0 && (disk == 0 || disk > quarter) && spec.DiskMB == 0 {
		disk = quarter
	}
	return disk
}

// tail returns the end of a log file for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// destroy kills and deletes the runsc container and removes its bundle. It is safe
// to call for a container that never started or is already gone.
func (d *Driver) destroy(id string) error {
	var errs []error
	out, err := exec.Command(d.cfg.Runsc, d.runsc("delete", "--force", id)...).CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("does not exist")) && !bytes.Contains(out, []byte("not found")) {
		errs = append(errs, fmt.Errorf("runsc delete %s: %v: %s", id, err, bytes.TrimSpace(out)))
	}
	if err := os.RemoveAll(filepath.Join(d.bundles, id)); err != nil {
		errs = append(errs, err)
	}
	removeCgroups(cgroupParent + "/" + id)
	return errors.Join(errs...)
}

// Sweep implements sandbox.Driver: every container in runsc's state root and every
// bundle directory belongs to this driver, and at start-up none of them is live.
func (d *Driver) Sweep(ctx context.Context) (int, error) {
	seen := map[string]bool{}
	if entries, err := os.ReadDir(d.bundles); err == nil {
		for _, e := range entries {
			seen[e.Name()] = true
		}
	}
	out, _ := exec.CommandContext(ctx, d.cfg.Runsc, d.runsc("list", "-quiet")...).Output()
	for _, id := range strings.Fields(string(out)) {
		seen[id] = true
	}
	var errs []error
	for id := range seen {
		d.mu.Lock()
		_, isLive := d.live[id]
		d.mu.Unlock()
		if isLive {
			continue
		}
		if err := d.destroy(id); err != nil {
			errs = append(errs, err)
		}
	}
	return len(seen), errors.Join(errs...)
}

// Close implements sandbox.Driver: it destroys any sandbox still alive and unmounts
// the empty network namespace runsc keeps in its state root for gofers.
func (d *Driver) Close() error {
	_, err := d.Sweep(context.Background())
	// Concurrent first starts can stack more than one mount there: unmount until
	// none is left.
	nsPath := filepath.Join(d.runRoot, "null-netns")
	for range 16 {
		uerr := syscall.Unmount(nsPath, syscall.MNT_DETACH)
		if uerr == syscall.EINVAL || uerr == syscall.ENOENT {
			break
		}
		if uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmounting %s: %w", nsPath, uerr))
			break
		}
	}
	return err
}

// Sandbox is one gVisor sandbox.
type Sandbox struct {
	d      *Driver
	id     string
	spec   sandbox.Spec
	bundle string
	cgroup string
	in     *os.File
	out    *os.File
	conn   *agent.Conn

	destroyOnce sync.Once
	destroyErr  error
}

// ID implements sandbox.Sandbox.
func (s *Sandbox) ID() string { return s.id }

// Spec implements sandbox.Sandbox.
func (s *Sandbox) Spec() sandbox.Spec { return s.spec }

// Agent implements sandbox.Sandbox.
func (s *Sandbox) Agent() *agent.Conn { return s.conn }

// Stats implements sandbox.Sandbox. It reads the sandbox's host cgroups.
func (s *Sandbox) Stats(ctx context.Context) (sandbox.Stats, error) {
	var st sandbox.Stats
	mem := filepath.Join(cgroupV1, "memory", s.cgroup)
	if v, err := readInt(filepath.Join(mem, "memory.max_usage_in_bytes")); err == nil {
		st.MemoryPeakBytes = v
	} else {
		return st, fmt.Errorf("reading memory use of %s: %w", s.id, err)
	}
	if v, err := readInt(filepath.Join(mem, "memory.usage_in_bytes")); err == nil {
		st.MemoryBytes = v
	}
	if b, err := os.ReadFile(filepath.Join(mem, "memory.oom_control")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok && strings.TrimSpace(v) != "0" {
				st.OOMKilled = true
			}
		}
	}
	if v, err := readInt(filepath.Join(cgroupV1, "cpuacct", s.cgroup, "cpuacct.usage")); err == nil {
		st.CPUTime = time.Duration(v)
	}
	return st, nil
}

// ResetMemoryPeak implements sandbox.PeakMeter: the host cgroup's high-water
// mark restarts at the usage now when written 0.
func (s *Sandbox) ResetMemoryPeak() (int64, error) {
	path := filepath.Join(cgroupV1, "memory", s.cgroup, "memory.max_usage_in_bytes")
	if err := os.WriteFile(path, []byte("0"), 0); err != nil {
		return 0, fmt.Errorf("resetting the memory peak of %s: %w", s.id, err)
	}
	return readInt(path)
}

// MemoryPeak implements sandbox.PeakMeter.
func (s *Sandbox) MemoryPeak() (int64, error) {
	return readInt(filepath.Join(cgroupV1, "memory", s.cgroup, "memory.max_usage_in_bytes"))
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Destroy implements sandbox.Sandbox.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.destroyOnce.Do(func() {
		s.in.Close()
		s.destroyErr = s.d.destroy(s.id)
		s.out.Close()
		<-s.conn.Done()
		s.d.mu.Lock()
		delete(s.d.live, s.id)
		s.d.mu.Unlock()
		if s.destroyErr != nil {
			s.d.log.Warn("destroying sandbox", "sandbox", s.id, "err", s.destroyErr)
		}
	})
	return s.destroyErr
}

// Checkpoint implements sandbox.Checkpointer: runsc saves the sandbox's memory and
// its in-memory writable layer into dir (which must exist and be empty) and lets
// the sandbox run on.
func (s *Sandbox) Checkpoint(ctx context.Context, dir string) error {
	out, err := exec.CommandContext(ctx, s.d.cfg.Runsc, s.d.runsc("checkpoint", "--leave-running", "--image-path="+dir, s.id)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("checkpointing sandbox %s: %v: %s", s.id, err, bytes.TrimSpace(out))
	}
	return nil
}

// Resize implements sandbox.Resizer by rewriting the sandbox's host cgroup limits.
func (s *Sandbox) Resize(ctx context.Context, cpuCores float64, memoryMB int) error {
	if memoryMB > 0 && memoryMB != s.spec.MemoryMB {
		mem := filepath.Join(cgroupV1, "memory", s.cgroup)
		v := []byte(strconv.FormatInt(int64(memoryMB)<<20, 10))
		limit, memsw := filepath.Join(mem, "memory.limit_in_bytes"), filepath.Join(mem, "memory.memsw.limit_in_bytes")
		// memory+swap must stay >= memory: order the writes by direction.
		order := []string{limit, memsw}
		if memoryMB > s.spec.MemoryMB {
			order = []string{memsw, limit}
		}
		for i, p := range order {
			if err := os.WriteFile(p, v, 0); err != nil && !(p == memsw && os.IsNotExist(err)) {
				return fmt.Errorf("setting memory limit of %s (step %d): %w", s.id, i, err)
			}
		}
		s.spec.MemoryMB = memoryMB
	}
	if cpuCores > 0 && cpuCores != s.spec.CPUCores {
		quota := strconv.FormatInt(int64(cpuCores*100000), 10)
		if err := os.WriteFile(filepath.Join(cgroupV1, "cpu", s.cgroup, "cpu.cfs_quota_us"), []byte(quota), 0); err != nil {
			return fmt.Errorf("setting CPU limit of %s: %w", s.id, err)
		}
		s.spec.CPUCores = cpuCores
	}
	return nil
}
