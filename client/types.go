package client

import (
	"encoding/json"
	"fmt"
	"time"
)

// Languages accepted in ExecuteRequest.Language.
const (
	LanguagePython     = "python"
	LanguageJavaScript = "javascript"
	LanguageTypeScript = "typescript"
	LanguageBash       = "bash"
)

// Execution modes accepted in ExecuteRequest.Mode.
const (
	// ModeEphemeral runs in a fresh sandbox that is destroyed afterwards (the
	// default without a session, snapshot or instance).
	ModeEphemeral = "ephemeral"
	// ModeCached runs in a warm, reused sandbox.
	ModeCached = "cached"
	// ModeCheckpointed runs in a session: a live interpreter whose state stays
	// for the next execution naming the same SessionID, and which can be
	// snapshotted (CheckpointAfter, Client.CreateSnapshot).
	ModeCheckpointed = "checkpointed"
	// ModeBranched runs in a new branch restored from
	// ExecuteRequest.ParentSnapshot (or in the branch named by SessionID).
	ModeBranched = "branched"
	// ModePersistent runs in a long-lived instance: the one named by
	// ExecuteRequest.InstanceID, or else a new one whose id comes back in
	// ExecuteResult.InstanceID. The instance keeps running (and is billed)
	// until Client.DeleteInstance.
	ModePersistent = "persistent"
)

// Statuses of an execution.
const (
	// StatusSucceeded: the program exited with status 0.
	StatusSucceeded = "succeeded"
	// StatusFailed: the program exited with a non-zero status (ExitCode).
	StatusFailed = "failed"
	// StatusTimeout: the program was stopped at its time limit.
	StatusTimeout = "timeout"
	// StatusError: the platform could not run the program (see Error).
	StatusError = "error"
)

// ExecuteRequest is the body of POST /api/v1/execute. Give either Code (with
// its Language), or Command (run by `sh -c`); every other field is optional.
type ExecuteRequest struct {
	// Code is the program's source, run as Language.
	Code string `json:"code,omitempty"`
	// Language is one of the Language* constants; empty means the language
	// of the session (SessionID, SnapshotID, ParentSnapshot) when there is
	// one, else LanguagePython.
	Language string `json:"language,omitempty"`
	// Command is a shell command line run by `sh -c`, instead of Code.
	Command string `json:"command,omitempty"`
	// Image is the container image to run in; the server picks one by default.
	Image string `json:"image,omitempty"`
	// Mode is one of the Mode* constants. Empty lets the server pick:
	// ModeBranched with ParentSnapshot; else ModeCheckpointed with SessionID,
	// SnapshotID or CheckpointAfter; else ModeEphemeral. A request with
	// InstanceID runs in that instance (ModePersistent) whatever its Mode.
	Mode string `json:"mode,omitempty"`
	// Stdin is fed to the program's standard input.
	Stdin string `json:"stdin,omitempty"`
	// Env holds environment variables for the program.
	Env map[string]string `json:"env_vars,omitempty"`
	// TimeoutMS is the program's time limit in milliseconds; 0 means the
	// server's default.
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// Resources limits CPU and memory; nil means the server's defaults.
	Resources *Resources `json:"resources,omitempty"`
	// WorkingDir is the program's working directory inside the sandbox.
	WorkingDir string `json:"working_dir,omitempty"`
	// SessionID names the session (or branch) to run in; a new name starts a
	// new session. Sessions keep globals, imports and open files between
	// executions (python, javascript, typescript).
	SessionID string `json:"session_id,omitempty"`
	// SnapshotID restores that snapshot into a new session first.
	SnapshotID string `json:"snapshot_id,omitempty"`
	// ParentSnapshot restores that snapshot into a new branch first
	// (ModeBranched).
	ParentSnapshot string `json:"parent_snapshot,omitempty"`
	// CheckpointAfter asks for a snapshot of the sandbox after the run; its
	// id comes back in ExecuteResult.SnapshotID.
	CheckpointAfter bool `json:"checkpoint_after,omitempty"`
	// InstanceID names a persistent instance to run in (see ModePersistent).
	InstanceID string `json:"instance_id,omitempty"`
}

// Resources are the limits of one execution's sandbox.
type Resources struct {
	// CPUCores is the number of CPUs, possibly fractional (0.5).
	CPUCores float64 `json:"cpu_cores,omitempty"`
	// MemoryMB is the memory limit in mebibytes.
	MemoryMB int `json:"memory_mb,omitempty"`
}

// ExecuteResult is the answer to POST /api/v1/execute. Its fields are the
// server's, in the server's order, so that encoding a result as JSON gives
// back what the server sent (unknown fields aside).
type ExecuteResult struct {
	// ExecutionID identifies the execution (see Client.GetExecution).
	ExecutionID string `json:"execution_id"`
	// RequestID equals ExecutionID; kept for older clients.
	RequestID string `json:"request_id"`
	// Status is one of the Status* constants.
	Status string `json:"status"`
	// ExitCode is the program's exit status (-1 when it never exited).
	ExitCode int `json:"exit_code"`
	// Stdout and Stderr are the program's output streams, possibly cut at
	// the server's output limit (see StdoutTruncated, StderrTruncated).
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// Output equals Stdout and Logs equals Stderr; kept for older clients.
	Output string `json:"output"`
	Logs   string `json:"logs"`
	// StdoutTruncated and StderrTruncated report that output was dropped.
	StdoutTruncated bool `json:"stdout_truncated"`
	StderrTruncated bool `json:"stderr_truncated"`
	// TimedOut reports that the program was stopped at its time limit.
	TimedOut bool `json:"timed_out"`
	// OOMKilled reports that the program was killed for exceeding its memory limit.
	OOMKilled bool `json:"oom_killed"`
	// Error explains a StatusError (or other platform trouble); often empty.
	Error string `json:"error,omitempty"`
	// DurationMS is the execution's wall-clock time in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Mode and Language echo how the program was run (Language is empty for
	// a Command).
	Mode     string `json:"mode"`
	Language string `json:"language,omitempty"`
	// SnapshotID is the snapshot made after the run, when one was asked for;
	// SnapshotError says why none was made.
	SnapshotID    string `json:"snapshot_id,omitempty"`
	SnapshotError string `json:"snapshot_error,omitempty"`
	// SessionID is the session the execution ran in (modes checkpointed and
	// branched); BranchID repeats it for a branch.
	SessionID string `json:"session_id,omitempty"`
	BranchID  string `json:"branch_id,omitempty"`
	// InstanceID is the instance a persistent execution ran in: when the
	// request named none, a new instance that keeps running until deleted.
	InstanceID string `json:"instance_id,omitempty"`
	// Warm is true when a cached execution reused a warm sandbox.
	Warm bool `json:"warm"`
	// Usage is what the execution consumed.
	Usage Usage `json:"usage"`
}

// Duration returns DurationMS as a time.Duration.
func (r *ExecuteResult) Duration() time.Duration {
	return time.Duration(r.DurationMS) * time.Millisecond
}

// Usage is the resources an execution consumed and what they cost.
type Usage struct {
	// CPUMS is CPU time in milliseconds.
	CPUMS int64 `json:"cpu_ms"`
	// MemoryPeakMB is the highest memory use in mebibytes.
	MemoryPeakMB int64 `json:"memory_peak_mb"`
	// CostUSD is the execution's price in US dollars.
	CostUSD float64 `json:"cost_usd"`
	// CostMicroUSD is the same price in whole micro-dollars (exact; money is
	// never a float on the server).
	CostMicroUSD int64 `json:"cost_micro_usd"`
}

// Execution is the stored record of an execution (GET /api/v1/executions/{id});
// it does not hold the program's output.
type Execution struct {
	// ExecutionID identifies the execution.
	ExecutionID string `json:"execution_id"`
	// Status is one of the Status* constants (or a non-final state such as
	// "running" while the execution is in progress).
	Status string `json:"status"`
	// ExitCode is the program's exit status (0 while it runs: the server sends
	// null until it ends).
	ExitCode int `json:"exit_code"`
	// Mode, Language and Image describe how it was run.
	Mode     string `json:"mode,omitempty"`
	Language string `json:"language,omitempty"`
	Image    string `json:"image,omitempty"`
	// Error explains a StatusError; often empty.
	Error string `json:"error,omitempty"`
	// DurationMS is the wall-clock time in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// CreatedAt is when the request arrived.
	CreatedAt time.Time `json:"created_at"`
	// FinishedAt is when it finished; zero while it runs.
	FinishedAt time.Time `json:"finished_at"`
	// Usage is what the execution consumed.
	Usage Usage `json:"usage"`
}

// UnmarshalJSON decodes an execution record, reading an empty or null
// timestamp as the zero time.
func (e *Execution) UnmarshalJSON(b []byte) error {
	type plain Execution // no methods: no recursion
	var aux struct {
		*plain
		CreatedAt  *string `json:"created_at"`
		FinishedAt *string `json:"finished_at"`
	}
	aux.plain = (*plain)(e)
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	var err error
	if e.CreatedAt, err = parseTime(aux.CreatedAt); err != nil {
		return fmt.Errorf("created_at: %w", err)
	}
	if e.FinishedAt, err = parseTime(aux.FinishedAt); err != nil {
		return fmt.Errorf("finished_at: %w", err)
	}
	return nil
}

func parseTime(s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, *s)
}

// Health is the answer of GET /health.
type Health struct {
	// Status is "ok" or "degraded".
	Status string `json:"status"`
	// Version is the server's version.
	Version string `json:"version,omitempty"`
	// Runtime describes the sandbox runtime.
	Runtime RuntimeInfo `json:"runtime"`
	// Database describes the server's store.
	Database DatabaseInfo `json:"database"`
	// Sandboxes counts the server's sandboxes by what they are kept for.
	Sandboxes SandboxCounts `json:"sandboxes"`
}

// OK reports whether the server says it is fully healthy.
func (h *Health) OK() bool { return h.Status == "ok" }

// RuntimeInfo describes the server's sandbox runtime.
type RuntimeInfo struct {
	// Name is the runtime, such as "gvisor".
	Name string `json:"name"`
	// Version is the runtime's version.
	Version string `json:"version,omitempty"`
	// Ready reports whether sandboxes can be started.
	Ready bool `json:"ready"`
	// Error says why the runtime is not ready; empty when it is.
	Error string `json:"error,omitempty"`
}

// DatabaseInfo describes the server's database.
type DatabaseInfo struct {
	// Driver is "sqlite" or "postgres".
	Driver string `json:"driver"`
	// OK reports whether the database answered.
	OK bool `json:"ok"`
	// Error says why it did not; empty when it did.
	Error string `json:"error,omitempty"`
}

// SandboxCounts are the sandboxes a server holds.
type SandboxCounts struct {
	// Live is every sandbox alive now.
	Live int `json:"live"`
	// Stocked are booted ahead of demand for ephemeral executions.
	Stocked int `json:"stocked"`
	// Sessions are held by live sessions and branches.
	Sessions int `json:"sessions"`
	// BranchStocked were restored from snapshots ahead of demand.
	BranchStocked int `json:"branch_stocked"`
	// Instances counts running instances (each holds a sandbox).
	Instances int `json:"instances"`
}
