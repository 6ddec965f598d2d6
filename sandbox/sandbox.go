// Package sandbox is the contract between the engine and the isolation technology
// that runs user code. A Driver creates sandboxes; each Sandbox runs the in-sandbox
// agent (package agent) as PID 1 and exposes the channel to it.
//
// Guarantees every driver gives:
//   - Create returns only a sandbox whose agent has answered, or an error after
//     undoing everything it did (no process, mount or directory is left behind).
//   - A sandbox sees none of the host's files but what its image provides
//     read-only, has a private writable layer that never reaches the host, and has
//     no network unless Spec.Network asks for one.
//   - Spec's limits (memory, CPU, processes) hold for everything inside.
//   - Destroy is idempotent and safe to call concurrently with anything; after it
//     returns nothing of the sandbox remains on the host. Every sandbox a caller
//     creates, the caller must Destroy.
//
// Capabilities some drivers lack (checkpoint/restore, ...) are optional interfaces
// discovered by type assertion, never methods that answer "unsupported".
package sandbox

import (
	"context"
	"errors"
	"time"

	"github.com/faas-platform/faas/agent"
)

// ErrUnavailable reports that the isolation runtime cannot run sandboxes here (for
// example runsc is missing); its message says how to fix that.
var ErrUnavailable = errors.New("sandbox runtime unavailable")

// Spec describes a sandbox to create.
type Spec struct {
	// Image names the root filesystem; "host" is the host's /usr read-only with a
	// generated minimal /etc. Any other image needs RootFS.
	Image string
	// RootFS is the unpacked root filesystem of an image other than "host" (the
	// caller keeps it in place while the sandbox lives); it is used read-only.
	RootFS string
	// CPUCores caps CPU time (1.5 = one and a half cores); 0 means the driver default.
	CPUCores float64
	// MemoryMB caps all memory of the sandbox, its writable layer included.
	MemoryMB int
	// DiskMB caps the private writable layer, which counts against MemoryMB (a
	// sandbox's Spec has the size it got, defaulted or not);
	// 0 means the driver's default.
	DiskMB int
	// Network gives the sandbox a network; false means loopback only.
	Network bool
	// Labels are kept with the sandbox for the caller's bookkeeping (tenant, pool).
	Labels map[string]string
}

// Stats is what the host measured of a sandbox.
type Stats struct {
	CPUTime         time.Duration // all CPU the sandbox used, user and system
	MemoryPeakBytes int64         // highest memory use of the whole sandbox
	MemoryBytes     int64         // memory use now
	OOMKilled       bool          // the memory limit killed something in it
}

// Sandbox is one running sandbox.
type Sandbox interface {
	// ID is unique among the driver's sandboxes.
	ID() string
	// Spec is what the sandbox was created with.
	Spec() Spec
	// Agent is the channel to the agent inside. It reports ErrClosed once the
	// sandbox is gone.
	Agent() *agent.Conn
	// Stats measures the sandbox from the host. It works until Destroy.
	Stats(ctx context.Context) (Stats, error)
	// Destroy stops the sandbox and removes everything it had on the host.
	Destroy(ctx context.Context) error
}

// Driver creates sandboxes of one isolation technology.
type Driver interface {
	// Name is the technology's name, e.g. "gvisor".
	Name() string
	// Version reports the runtime's version, or an error wrapping ErrUnavailable.
	Version(ctx context.Context) (string, error)
	// Create starts a sandbox and waits for its agent.
	Create(ctx context.Context, spec Spec) (Sandbox, error)
	// Sweep destroys sandboxes a previous run of this process left behind (for
	// example after a crash) and returns how many it found. Call it at start-up,
	// before Create.
	Sweep(ctx context.Context) (int, error)
	// Live counts the sandboxes this driver created that are not destroyed yet.
	Live() int
	// Close releases what the driver holds on the host (mounts, state). Call it
	// after every sandbox is destroyed.
	Close() error
}

// Resizer is implemented by sandboxes whose CPU and memory limits can change after
// creation (so a pre-booted sandbox can serve a request with other limits).
type Resizer interface {
	Resize(ctx context.Context, cpuCores float64, memoryMB int) error
}

// PeakMeter is implemented by sandboxes whose peak memory use the host can
// measure over a stretch of time (one execution in a sandbox that serves many),
// out of reach of anything inside.
type PeakMeter interface {
	// ResetMemoryPeak starts a new stretch: the peak restarts at the sandbox's
	// memory use now, which it returns.
	ResetMemoryPeak() (int64, error)
	// MemoryPeak is the highest memory use since the last reset.
	MemoryPeak() (int64, error)
}

// ErrBadCheckpoint reports a checkpoint image that cannot be restored (missing,
// truncated or corrupt).
var ErrBadCheckpoint = errors.New("checkpoint cannot be restored")

// Checkpointer is implemented by sandboxes whose whole state (memory, processes and
// writable layer) can be saved while they keep running.
type Checkpointer interface {
	// Checkpoint writes the sandbox's state into dir, an existing empty directory.
	// The sandbox runs on afterwards.
	Checkpoint(ctx context.Context, dir string) error
}

// Restorer is implemented by drivers that start sandboxes from checkpoints.
type Restorer interface {
	// Restore starts a new sandbox from the checkpoint in dir, with the spec of the
	// sandbox it was taken from, and waits for its agent. Errors about the image
	// itself wrap ErrBadCheckpoint. Many sandboxes may be restored from one dir.
	Restore(ctx context.Context, spec Spec, dir string) (Sandbox, error)
}
