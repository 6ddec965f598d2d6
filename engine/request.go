package engine

import (
	"fmt"
	"math"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Modes of execution.
const (
	ModeEphemeral    = "ephemeral"
	ModeCached       = "cached"
	ModeCheckpointed = "checkpointed"
	ModeBranched     = "branched"
	ModePersistent   = "persistent"
)

var allModes = []string{ModeEphemeral, ModeCached, ModeCheckpointed, ModeBranched, ModePersistent}

// availableModes are the modes this version serves.
var availableModes = []string{ModeEphemeral, ModeCached, ModeCheckpointed, ModeBranched}

// Request is one execution as the engine sees it (decoded and defaulted by the API).
type Request struct {
	Account string
	KeyID   string

	Mode     string
	Language string // with Code
	Code     string
	Command  string // run by sh -c; exclusive with Code
	Image    string

	Stdin    string
	HasStdin bool
	// Interactive keeps stdin open for Live.WriteStdin until Live.CloseStdin
	// (instead of Stdin).
	Interactive bool
	Env         map[string]string

	Timeout    time.Duration // 0: the configured default
	CPUCores   float64       // 0: default
	MemoryMB   int           // 0: default
	WorkingDir string        // "": /workspace

	// Sessions and snapshots (modes checkpointed and branched). SessionID runs
	// the code in that live session (created on first use); SnapshotID restores a
	// snapshot into a new session first, ParentSnapshot does the same as a branch;
	// CheckpointAfter snapshots the session once the code has run.
	CheckpointAfter bool
	SnapshotID      string
	ParentSnapshot  string
	SessionID       string
	// kernel and kernelCode are set by the engine for a run in a session: the
	// agent's kernel and the code it runs (TypeScript compiled).
	kernel, kernelCode string
	// kernelSession names the agent's session the kernel runs in ("": main).
	kernelSession string
	// keepBackground lets background processes outlive the execution (instances).
	keepBackground bool
	// fanOut marks one branch of a Branch request, which refills the branch stock
	// itself once every branch has run.
	fanOut bool

	// InstanceID names a persistent instance, which this version does not serve:
	// a request that sets it is refused rather than silently run another way.
	InstanceID string
}

// inSession reports whether the request runs in a session (a live interpreter
// that keeps its state) rather than a process of its own.
func (r *Request) inSession() bool {
	return r.Mode == ModeCheckpointed || r.Mode == ModeBranched
}

// Limits bound what a request may ask for, and give the defaults.
type Limits struct {
	DefaultTimeout  time.Duration
	MaxTimeout      time.Duration
	DefaultMemoryMB int
	MinMemoryMB     int
	MaxMemoryMB     int
	DefaultCPUCores float64
	MaxCPUCores     float64
	// MaxProcs bounds processes and threads per execution.
	MaxProcs int
	// MaxOutputBytes bounds what is kept of stdout and of stderr each.
	MaxOutputBytes int64
	// MaxOpenFiles bounds open files per process.
	MaxOpenFiles int
	// MaxFileBytes bounds the size of any single file written.
	MaxFileBytes int64
	// MaxEnvVars and MaxEnvBytes bound the environment a request passes.
	MaxEnvVars  int
	MaxEnvBytes int
}

// DefaultLimits are the limits used when the operator configures none.
func DefaultLimits() Limits {
	return Limits{
		DefaultTimeout:  30 * time.Second,
		MaxTimeout:      15 * time.Minute,
		DefaultMemoryMB: 512,
		MinMemoryMB:     64,
		MaxMemoryMB:     8192,
		DefaultCPUCores: 1,
		MaxCPUCores:     2,
		MaxProcs:        128,
		MaxOutputBytes:  1 << 20,
		MaxOpenFiles:    1024,
		MaxFileBytes:    1 << 30,
		MaxEnvVars:      256,
		MaxEnvBytes:     256 << 10,
	}
}

// languages maps accepted language names (and aliases) to canonical names.
var languages = map[string]string{
	"python": "python", "python3": "python", "py": "python",
	"javascript": "javascript", "js": "javascript", "node": "javascript", "nodejs": "javascript",
	"typescript": "typescript", "ts": "typescript",
	"bash": "bash", "sh": "bash", "shell": "bash",
}

// Languages lists the canonical language names.
func Languages() []string {
	var out []string
	for _, v := range languages {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// normalize validates r against l and fills in defaults. The returned error wraps
// ErrInvalid or ErrUnavailable with a message for the client.
func (r *Request) normalize(l Limits) error {
	r.Mode = strings.ToLower(strings.TrimSpace(r.Mode))
	if r.Mode == "" {
		switch {
		case r.ParentSnapshot != "":
			r.Mode = ModeBranched
		case r.SessionID != "" || r.SnapshotID != "" || r.CheckpointAfter:
			r.Mode = ModeCheckpointed
		default:
			r.Mode = ModeEphemeral
		}
	}
	if !slices.Contains(allModes, r.Mode) {
		return invalid(fmt.Sprintf("unknown mode %q; modes are %s", r.Mode, strings.Join(allModes, ", ")))
	}
	if !slices.Contains(availableModes, r.Mode) {
		return unavailable(fmt.Sprintf("mode %q is not available in this version yet; available: %s", r.Mode, strings.Join(availableModes, ", ")))
	}
	if r.InstanceID != "" || r.Mode == ModePersistent {
		return invalid("mode persistent runs in an instance: POST /api/v1/instances/{id}/exec (or execute with instance_id)")
	}
	if err := r.normalizeSession(); err != nil {
		return err
	}

	hasCode, hasCmd := strings.TrimSpace(r.Code) != "", strings.TrimSpace(r.Command) != ""
	switch {
	case hasCode && hasCmd:
		return invalid("give either code (with language) or command, not both")
	case !hasCode && !hasCmd:
		return invalid("code is required (or command, run by sh -c)")
	case hasCode:
		lang := strings.ToLower(strings.TrimSpace(r.Language))
		if lang == "" && r.inSession() && (r.SessionID != "" || r.SnapshotID != "" || r.ParentSnapshot != "") {
			break // the session's or snapshot's language, filled in by the engine
		}
		if lang == "" {
			lang = "python"
		}
		canon, ok := languages[lang]
		if !ok {
			return invalid(fmt.Sprintf("unknown language %q; languages are %s", r.Language, strings.Join(Languages(), ", ")))
		}
		r.Language = canon
	default:
		if r.Language != "" {
			if _, ok := languages[strings.ToLower(r.Language)]; !ok {
				return invalid(fmt.Sprintf("unknown language %q; languages are %s", r.Language, strings.Join(Languages(), ", ")))
			}
		}
		r.Language = ""
	}
	if strings.ContainsRune(r.Code, 0) || strings.ContainsRune(r.Command, 0) {
		return invalid("code and command must not contain NUL bytes")
	}
	if n := max(len(r.Code), len(r.Command)); n > MaxCodeBytes {
		return invalid(fmt.Sprintf("code (or command) is %d bytes; the limit is %d: write larger programs to files and run them", n, MaxCodeBytes))
	}
	if r.Image == "" {
		r.Image = "host"
	}

	switch {
	case r.Timeout < 0:
		return invalid("timeout_ms must not be negative")
	case r.Timeout == 0:
		r.Timeout = l.DefaultTimeout
	case r.Timeout > l.MaxTimeout:
		return invalid(fmt.Sprintf("timeout_ms %d is above the limit of %d", r.Timeout.Milliseconds(), l.MaxTimeout.Milliseconds()))
	}
	switch {
	case r.MemoryMB < 0:
		return invalid("memory_mb must not be negative")
	case r.MemoryMB == 0:
		r.MemoryMB = l.DefaultMemoryMB
	case r.MemoryMB < l.MinMemoryMB:
		return invalid(fmt.Sprintf("memory_mb must be at least %d", l.MinMemoryMB))
	case r.MemoryMB > l.MaxMemoryMB:
		return invalid(fmt.Sprintf("memory_mb %d is above the limit of %d", r.MemoryMB, l.MaxMemoryMB))
	}
	switch {
	case math.IsNaN(r.CPUCores) || r.CPUCores < 0:
		return invalid("cpu_cores must be a positive number")
	case r.CPUCores == 0:
		r.CPUCores = l.DefaultCPUCores
	case r.CPUCores < 0.05:
		return invalid("cpu_cores must be at least 0.05")
	case r.CPUCores > l.MaxCPUCores:
		return invalid(fmt.Sprintf("cpu_cores %g is above the limit of %g", r.CPUCores, l.MaxCPUCores))
	}
	// Without one, the host image works in /workspace and other images in their
	// own WorkingDir (see runIn).
	if r.WorkingDir == "" && r.Image == "host" {
		r.WorkingDir = "/workspace"
	}
	if r.WorkingDir != "" {
		if !path.IsAbs(r.WorkingDir) || strings.ContainsRune(r.WorkingDir, 0) {
			return invalid("working_dir must be an absolute path")
		}
		r.WorkingDir = path.Clean(r.WorkingDir)
	}
	if len(r.Env) > l.MaxEnvVars {
		return invalid(fmt.Sprintf("env_vars has %d entries; the limit is %d", len(r.Env), l.MaxEnvVars))
	}
	size := 0
	for k, v := range r.Env {
		size += len(k) + len(v)
		if k == "" || strings.ContainsAny(k, "=\x00") || !utf8.ValidString(k) {
			return invalid(fmt.Sprintf("env_vars: invalid variable name %q", k))
		}
		if strings.ContainsRune(v, 0) {
			return invalid(fmt.Sprintf("env_vars: value of %s contains a NUL byte", k))
		}
	}
	if size > l.MaxEnvBytes {
		return invalid(fmt.Sprintf("env_vars total %d bytes; the limit is %d", size, l.MaxEnvBytes))
	}
	return nil
}

// sessionLanguages are the request languages a session can run, with the kernel
// that runs each (TypeScript is compiled to JavaScript on the host).
var sessionLanguages = map[string]string{"python": "python", "javascript": "javascript", "typescript": "javascript"}

// normalizeSession checks the fields of sessions and snapshots against the mode.
func (r *Request) normalizeSession() error {
	if !r.inSession() {
		switch {
		case r.CheckpointAfter:
			return invalid(fmt.Sprintf("checkpoint_after needs mode %q (a session to snapshot), not %q", ModeCheckpointed, r.Mode))
		case r.SessionID != "":
			return invalid(fmt.Sprintf("session_id needs mode %q, not %q", ModeCheckpointed, r.Mode))
		case r.SnapshotID != "":
			return invalid(fmt.Sprintf("snapshot_id needs mode %q, not %q", ModeCheckpointed, r.Mode))
		case r.ParentSnapshot != "":
			return invalid(fmt.Sprintf("parent_snapshot needs mode %q, not %q", ModeBranched, r.Mode))
		}
		return nil
	}
	if r.Mode == ModeBranched && r.ParentSnapshot == "" && r.SessionID == "" {
		return invalid("mode branched needs parent_snapshot (or branch_from): the snapshot to branch from, or session_id of a branch")
	}
	if r.SnapshotID != "" && r.ParentSnapshot != "" {
		return invalid("give snapshot_id or parent_snapshot, not both")
	}
	for name, id := range map[string]string{"session_id": r.SessionID, "snapshot_id": r.SnapshotID, "parent_snapshot": r.ParentSnapshot} {
		if id != "" && !validID(id) {
			return invalid(fmt.Sprintf("%s must be 1 to 128 letters, digits, '-', '_' or '.'", name))
		}
	}
	switch {
	case strings.TrimSpace(r.Command) != "":
		return invalid("sessions run code (python, javascript or typescript), not a command")
	case r.HasStdin || r.Interactive:
		return invalid("sessions do not take stdin")
	}
	if r.Language != "" {
		lang := languages[strings.ToLower(strings.TrimSpace(r.Language))]
		if _, ok := sessionLanguages[lang]; !ok {
			return invalid(fmt.Sprintf("language %q has no sessions; sessions run python, javascript and typescript", r.Language))
		}
	}
	return nil
}

// validID reports whether id is a well-formed object id or client-chosen name.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// normalizeInstance validates an exec in an instance: an execution request
// without a mode of its own.
func (r *Request) normalizeInstance(l Limits) error {
	r.Mode = ModeEphemeral
	if err := r.normalize(l); err != nil {
		return err
	}
	r.Mode = ModePersistent
	return nil
}
