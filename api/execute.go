package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/store"
)

// ExecuteRequest is the body of POST /api/v1/execute. It accepts both the product
// README's style (code + language) and the original SDKs' (command, image, env_vars
// as [[k, v], ...] pairs). Unknown fields are ignored; null means absent.
type ExecuteRequest struct {
	Code       string    `json:"code"`
	Language   string    `json:"language"`
	Command    command   `json:"command"`
	Image      string    `json:"image"`
	Mode       string    `json:"mode"`
	Stdin      *string   `json:"stdin"`
	EnvVars    envVars   `json:"env_vars"`
	Env        envVars   `json:"env"`
	TimeoutMS  *number   `json:"timeout_ms"`
	Resources  resources `json:"resources"`
	CPUCores   *number   `json:"cpu_cores"`
	MemoryMB   *number   `json:"memory_mb"`
	WorkingDir string    `json:"working_dir"`

	CheckpointAfter bool   `json:"checkpoint_after"`
	SnapshotID      string `json:"snapshot_id"`
	ParentSnapshot  string `json:"parent_snapshot"`
	BranchFrom      string `json:"branch_from"`
	SessionID       string `json:"session_id"`
	InstanceID      string `json:"instance_id"`
}

type resources struct {
	CPUCores *number `json:"cpu_cores"`
	MemoryMB *number `json:"memory_mb"`
	DiskMB   *number `json:"disk_mb"` // instances only
}

// number is a JSON number kept as float64 (so 1e3 and 1000.0 are accepted).
type number float64

// command is a shell command string, or an argv array (each element shell-quoted).
type command string

func (c *command) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = command(s)
		return nil
	}
	var argv []string
	if err := json.Unmarshal(b, &argv); err != nil {
		return errors.New("command must be a string or an array of strings")
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	*c = command(strings.Join(quoted, " "))
	return nil
}

// envVars is an object of strings, or an array of [name, value] pairs.
type envVars map[string]string

func (e *envVars) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err == nil {
		*e = m
		return nil
	}
	var pairs [][]string
	if err := json.Unmarshal(b, &pairs); err != nil {
		return errors.New("env_vars must be an object of strings or an array of [name, value] pairs")
	}
	m = make(map[string]string, len(pairs))
	for _, p := range pairs {
		if len(p) != 2 {
			return errors.New("env_vars pairs must have exactly two strings: [name, value]")
		}
		m[p[0]] = p[1]
	}
	*e = m
	return nil
}

// decodeJSON decodes a request body into v, answering the client's mistakes with
// messages that say what is wrong.
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
		}
		return newError(http.StatusBadRequest, "invalid_body", "reading request body: "+err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return newError(http.StatusBadRequest, "invalid_json", "request body is empty; send a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return newError(http.StatusBadRequest, "invalid_json", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
		case errors.As(err, &te) && te.Field == "":
			return newError(http.StatusBadRequest, "invalid_json", "request body must be a JSON object")
		case errors.As(err, &te) && strings.HasPrefix(te.Value, "number") && jsonType(te.Type.Kind().String()) == "number":
			// A fraction (or a number out of range) where a whole number goes.
			return newError(http.StatusBadRequest, "invalid_json", fmt.Sprintf("field %q must be a whole number", te.Field))
		case errors.As(err, &te):
			return newError(http.StatusBadRequest, "invalid_json", fmt.Sprintf("field %q must be of type %s, not %s", te.Field, jsonType(te.Type.Kind().String()), te.Value))
		}
		return newError(http.StatusBadRequest, "invalid_json", "invalid JSON body: "+err.Error())
	}
	return nil
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "float64", "int", "int64":
		return "number"
	case "bool":
		return "boolean"
	case "map", "struct":
		return "object"
	case "slice":
		return "array"
	}
	return kind
}

// intField converts an optional JSON number to an int, refusing fractions and
// absurd magnitudes with a message naming the field.
func intField(name string, n *number) (int64, error) {
	if n == nil {
		return 0, nil
	}
	f := float64(*n)
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, newError(http.StatusBadRequest, "invalid_request", name+" must be a whole number")
	}
	if f < 0 {
		return 0, newError(http.StatusBadRequest, "invalid_request", name+" must not be negative")
	}
	if f > 1<<40 {
		return 0, newError(http.StatusBadRequest, "invalid_request", name+" is too large")
	}
	return int64(f), nil
}

// toEngine converts the wire request into the engine's.
func (b *ExecuteRequest) toEngine(p Principal) (engine.Request, error) {
	req := engine.Request{
		Account:         p.Account,
		KeyID:           p.KeyID,
		Mode:            b.Mode,
		Language:        b.Language,
		Code:            b.Code,
		Command:         string(b.Command),
		Image:           b.Image,
		WorkingDir:      b.WorkingDir,
		CheckpointAfter: b.CheckpointAfter,
		SnapshotID:      b.SnapshotID,
		ParentSnapshot:  b.ParentSnapshot,
		SessionID:       b.SessionID,
		InstanceID:      b.InstanceID,
	}
	if req.ParentSnapshot == "" {
		req.ParentSnapshot = b.BranchFrom
	}
	if b.Stdin != nil {
		req.Stdin, req.HasStdin = *b.Stdin, true
	}
	req.Env = b.EnvVars
	if len(b.Env) > 0 {
		if req.Env == nil {
			req.Env = map[string]string{}
		}
		for k, v := range b.Env {
			req.Env[k] = v
		}
	}
	ms, err := intField("timeout_ms", b.TimeoutMS)
	if err != nil {
		return req, err
	}
	req.Timeout = time.Duration(ms) * time.Millisecond
	mem := b.Resources.MemoryMB
	if mem == nil {
		mem = b.MemoryMB
	}
	mb, err := intField("memory_mb", mem)
	if err != nil {
		return req, err
	}
	req.MemoryMB = int(mb)
	cpu := b.Resources.CPUCores
	if cpu == nil {
		cpu = b.CPUCores
	}
	if cpu != nil {
		f := float64(*cpu)
		if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return req, newError(http.StatusBadRequest, "invalid_request", "cpu_cores must be a positive number")
		}
		req.CPUCores = f
	}
	// What the request makes or uses beyond an execution needs the key's scope
	// for it, as the endpoints made for it do.
	lacks := func(scope, what string) error {
		return newError(http.StatusForbidden, "forbidden", what+" needs the "+scope+" scope, which this API key lacks")
	}
	if isPersistent(req) && !p.Can(ScopeInstances) {
		return req, lacks(ScopeInstances, "an execution in an instance (mode persistent or instance_id)")
	}
	snapshots := req.CheckpointAfter || req.SnapshotID != "" || req.ParentSnapshot != "" ||
		strings.EqualFold(strings.TrimSpace(req.Mode), engine.ModeBranched)
	if snapshots && !p.Can(ScopeSnapshots) {
		return req, lacks(ScopeSnapshots, "an execution that makes or restores a snapshot")
	}
	return req, nil
}

// isPersistent reports whether an execute request runs in an instance.
func isPersistent(req engine.Request) bool {
	return strings.EqualFold(strings.TrimSpace(req.Mode), engine.ModePersistent) || req.InstanceID != ""
}

// ExecuteResponse is the body of a finished execution.
type ExecuteResponse struct {
	ExecutionID     string `json:"execution_id"`
	RequestID       string `json:"request_id"`
	Status          string `json:"status"`
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	Output          string `json:"output"`
	Logs            string `json:"logs"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	TimedOut        bool   `json:"timed_out"`
	OOMKilled       bool   `json:"oom_killed"`
	Error           string `json:"error,omitempty"`
	DurationMS      int64  `json:"duration_ms"`
	Mode            string `json:"mode"`
	Language        string `json:"language,omitempty"`
	SnapshotID      string `json:"snapshot_id,omitempty"`
	SnapshotError   string `json:"snapshot_error,omitempty"`
	// SessionID is the session the execution ran in (checkpointed and branched
	// modes); BranchID repeats it for a branch.
	SessionID string `json:"session_id,omitempty"`
	BranchID  string `json:"branch_id,omitempty"`
	// InstanceID is the instance a persistent execution ran in.
	InstanceID string `json:"instance_id,omitempty"`
	// Warm is true when a cached execution reused a warm sandbox.
	Warm  bool  `json:"warm"`
	Usage usage `json:"usage"`
}

type usage struct {
	CPUMS        int64   `json:"cpu_ms"`
	MemoryPeakMB int64   `json:"memory_peak_mb"`
	CostUSD      float64 `json:"cost_usd"`
	CostMicroUSD int64   `json:"cost_micro_usd"`
}

func newUsage(cpuMS, memoryPeakMB, costMicroUSD int64) usage {
	return usage{CPUMS: cpuMS, MemoryPeakMB: memoryPeakMB, CostUSD: microToUSD(costMicroUSD), CostMicroUSD: costMicroUSD}
}

// microToUSD shows an amount kept in whole micro-dollars as dollars (for
// display only; money is never computed in floats).
func microToUSD(micro int64) float64 { return float64(micro) / 1e6 }

func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	var body ExecuteRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := body.toEngine(principalFrom(r.Context()))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if isPersistent(req) {
		s.executePersistent(w, r, body, req)
		return
	}
	res, err := s.engine.Execute(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toExecuteResponse(res))
}

// executePersistent is an execute request in mode persistent (the seed's form):
// with instance_id it runs the code or command in that instance; without, it
// creates an instance with the request's resources and, when code or a command is
// given, runs it there. The answer carries instance_id; without code it is the
// new instance.
func (s *Server) executePersistent(w http.ResponseWriter, r *http.Request, body ExecuteRequest, req engine.Request) {
	p := principalFrom(r.Context())
	id := req.InstanceID
	hasWork := strings.TrimSpace(req.Code) != "" || strings.TrimSpace(req.Command) != ""
	if id == "" {
		in, err := s.engine.CreateInstance(r.Context(), engine.InstanceRequest{Account: p.Account, KeyID: p.KeyID, Image: req.Image,
			Language: req.Language, CPUCores: req.CPUCores, MemoryMB: req.MemoryMB})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !hasWork {
			writeJSON(w, http.StatusCreated, s.toInstanceResponse(r, in))
			return
		}
		id = in.ID
	}
	res, err := s.engine.ExecInstance(r.Context(), p.Account, id, instanceExec(body, req))
	if err != nil {
		if req.InstanceID == "" {
			// The instance made for this run is not left behind, unnamed to the
			// client, when the run is refused.
			if derr := s.engine.DeleteInstance(context.WithoutCancel(r.Context()), p.Account, id); derr != nil {
				s.log.Warn("deleting the instance of a refused run", "instance", id, "err", derr)
			}
		}
		s.writeError(w, r, err)
		return
	}
	out := toExecuteResponse(res)
	out.InstanceID = id
	writeJSON(w, http.StatusOK, out)
}

// toExecuteResponse is a result as clients see it. Output is returned as text;
// bytes that are not UTF-8 become U+FFFD.
func toExecuteResponse(res *engine.Result) ExecuteResponse {
	stdout, stderr := string(res.Stdout), string(res.Stderr)
	return ExecuteResponse{
		ExecutionID:     res.ExecutionID,
		RequestID:       res.ExecutionID,
		Status:          res.Status,
		ExitCode:        res.ExitCode,
		Stdout:          stdout,
		Stderr:          stderr,
		Output:          stdout,
		Logs:            stderr,
		StdoutTruncated: res.StdoutTruncated,
		StderrTruncated: res.StderrTruncated,
		TimedOut:        res.TimedOut,
		OOMKilled:       res.OOMKilled,
		Error:           res.Error,
		DurationMS:      res.Duration.Milliseconds(),
		Mode:            res.Mode,
		Language:        res.Language,
		Warm:            res.Warm,
		SnapshotID:      res.SnapshotID,
		SnapshotError:   res.SnapshotError,
		SessionID:       res.SessionID,
		BranchID:        map[bool]string{true: res.SessionID}[res.Branch],
		Usage:           newUsage(res.CPUTime.Milliseconds(), (res.MemoryPeakBytes+(1<<20-1))>>20, res.CostMicroUSD),
	}
}

// ExecutionResponse is the stored record of an execution (without its output).
type ExecutionResponse struct {
	ExecutionID string `json:"execution_id"`
	Status      string `json:"status"`
	// ExitCode is null while the execution runs.
	ExitCode   *int       `json:"exit_code"`
	Mode       string     `json:"mode"`
	Language   string     `json:"language,omitempty"`
	Image      string     `json:"image"`
	Error      string     `json:"error,omitempty"`
	DurationMS int64      `json:"duration_ms"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Usage      usage      `json:"usage"`
}

func (s *Server) getExecution(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := s.store.GetExecution(r.Context(), principalFrom(r.Context()).Account, id)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, newError(http.StatusNotFound, "not_found", fmt.Sprintf("execution %q not found", id)))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var exitCode *int
	if e.Status != store.StatusRunning {
		exitCode = &e.ExitCode
	}
	writeJSON(w, http.StatusOK, ExecutionResponse{
		ExecutionID: e.ID, Status: e.Status, ExitCode: exitCode, Mode: e.Mode, Language: e.Language,
		Image: e.Image, Error: e.Error, DurationMS: e.DurationMS, CreatedAt: e.CreatedAt, FinishedAt: e.FinishedAt,
		Usage: newUsage(e.CPUMS, e.MemoryPeakMB, e.CostMicroUSD),
	})
}
