package api

import (
	"net/http"
	"time"

	"github.com/faas-platform/faas/engine"
)

// SnapshotResponse is a snapshot as clients see it: its manifest and its place in
// the snapshot tree.
type SnapshotResponse struct {
	ID          string    `json:"id"`
	SnapshotID  string    `json:"snapshot_id"`
	Name        string    `json:"name,omitempty"`
	ParentID    string    `json:"parent_id,omitempty"`
	Children    []string  `json:"children"`
	SessionID   string    `json:"session_id,omitempty"`
	ExecutionID string    `json:"execution_id,omitempty"`
	Image       string    `json:"image"`
	Language    string    `json:"language"`
	MemoryMB    int64     `json:"memory_mb"`
	CPUCores    float64   `json:"cpu_cores"`
	SizeBytes   int64     `json:"size_bytes"`
	SHA256      string    `json:"sha256"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

func toSnapshotResponse(sn engine.SnapshotInfo) SnapshotResponse {
	children := nonNil(sn.Children)
	return SnapshotResponse{
		ID: sn.ID, SnapshotID: sn.ID, Name: sn.Name, ParentID: sn.ParentID, Children: children, SessionID: sn.SessionID,
		ExecutionID: sn.ExecutionID, Image: sn.Image, Language: sn.Language, MemoryMB: sn.MemoryMB,
		CPUCores: float64(sn.CPUMilli) / 1000, SizeBytes: sn.SizeBytes, SHA256: sn.SHA256, Status: sn.Status,
		Error: sn.Error, CreatedAt: sn.CreatedAt,
	}
}

// SessionResponse is a live session (or branch) as clients see it.
type SessionResponse struct {
	ID             string    `json:"id"`
	SessionID      string    `json:"session_id"`
	BranchID       string    `json:"branch_id,omitempty"`
	Language       string    `json:"language"`
	ParentSnapshot string    `json:"parent_snapshot,omitempty"`
	Executions     int       `json:"executions"`
	MemoryMB       int       `json:"memory_mb"`
	CPUCores       float64   `json:"cpu_cores"`
	CreatedAt      time.Time `json:"created_at"`
	LastUsedAt     time.Time `json:"last_used_at"`
	// MemoryUsedMB is what the session's sandbox holds now.
	MemoryUsedMB float64 `json:"memory_used_mb"`
}

func toSessionResponse(s engine.SessionInfo) SessionResponse {
	r := SessionResponse{ID: s.ID, SessionID: s.ID, Language: s.Language, ParentSnapshot: s.ParentSnapshot,
		Executions: s.Executions, MemoryMB: s.MemoryMB, CPUCores: s.CPUCores, CreatedAt: s.CreatedAt, LastUsedAt: s.LastUsedAt,
		MemoryUsedMB: float64(s.MemoryUsedBytes) / (1 << 20)}
	if s.Branch {
		r.BranchID = s.ID
	}
	return r
}

// createSnapshotRequest is the body of POST /api/v1/snapshots. BranchID is another
// name for SessionID; ContainerID another for ExecutionID (the original SDKs').
type createSnapshotRequest struct {
	ExecutionID string `json:"execution_id"`
	ContainerID string `json:"container_id"`
	SessionID   string `json:"session_id"`
	BranchID    string `json:"branch_id"`
	InstanceID  string `json:"instance_id"`
	Name        string `json:"name"`
}

func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var body createSnapshotRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := principalFrom(r.Context())
	req := engine.SnapshotRequest{Account: p.Account, KeyID: p.KeyID, ExecutionID: body.ExecutionID, SessionID: body.SessionID, InstanceID: body.InstanceID, Name: body.Name}
	if req.ExecutionID == "" {
		req.ExecutionID = body.ContainerID
	}
	if req.SessionID == "" {
		req.SessionID = body.BranchID
	}
	sn, err := s.engine.CreateSnapshot(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toSnapshotResponse(engine.SnapshotInfo{Snapshot: sn}))
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	list, err := s.engine.Snapshots(r.Context(), principalFrom(r.Context()).Account)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]SnapshotResponse, 0, len(list))
	for _, sn := range list {
		out = append(out, toSnapshotResponse(sn))
	}
	writeJSON(w, http.StatusOK, map[string]any{"snapshots": out})
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	sn, err := s.engine.Snapshot(r.Context(), principalFrom(r.Context()).Account, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSnapshotResponse(sn))
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.engine.DeleteSnapshot(r.Context(), principalFrom(r.Context()).Account, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// restoreRequest is the optional body of POST /api/v1/snapshots/{id}/restore.
type restoreRequest struct {
	SessionID string `json:"session_id"`
}

func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	var body restoreRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	info, err := s.engine.RestoreSnapshot(r.Context(), principalFrom(r.Context()).Account, r.PathValue("id"), body.SessionID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toSessionResponse(info))
}

// branchRequest is the body of POST /api/v1/branches: an execute request (code,
// language, limits, ...) naming the snapshot to branch from, and how many branches.
type branchRequest struct {
	ExecuteRequest
	Count *number `json:"count"`
}

func (s *Server) createBranches(w http.ResponseWriter, r *http.Request) {
	var body branchRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.ParentSnapshot == "" && body.BranchFrom == "" {
		body.ParentSnapshot = body.SnapshotID
		body.SnapshotID = ""
	}
	req, err := body.toEngine(principalFrom(r.Context()))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	count := int64(1)
	if body.Count != nil {
		if count, err = intField("count", body.Count); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	results, err := s.engine.Branch(r.Context(), req, int(count))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]ExecuteResponse, len(results))
	for i, res := range results {
		out[i] = toExecuteResponse(res)
	}
	// One branch: the branch itself (the seed SDK's createBranch), plus the list.
	resp := map[string]any{"branches": out, "parent_snapshot": req.ParentSnapshot}
	if len(out) == 1 {
		resp = map[string]any{"branches": out, "parent_snapshot": req.ParentSnapshot, "branch_id": out[0].BranchID,
			"execution_id": out[0].ExecutionID, "exit_code": out[0].ExitCode, "stdout": out[0].Stdout,
			"stderr": out[0].Stderr, "output": out[0].Output, "status": out[0].Status}
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	list := s.engine.Sessions(principalFrom(r.Context()).Account)
	out := make([]SessionResponse, 0, len(list))
	for _, si := range list {
		out = append(out, toSessionResponse(si))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	si, err := s.engine.Session(principalFrom(r.Context()).Account, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSessionResponse(si))
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.engine.DeleteSession(r.Context(), principalFrom(r.Context()).Account, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// mergeRequest is the body of POST /api/v1/branches/merge.
type mergeRequest struct {
	BranchIDs []string `json:"branch_ids"`
	Strategy  string   `json:"strategy"`
	Name      string   `json:"name"`
}

type mergeChange struct {
	Path     string `json:"path"`
	Action   string `json:"action"`
	BranchID string `json:"branch_id"`
}

func (s *Server) mergeBranches(w http.ResponseWriter, r *http.Request) {
	var body mergeRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := principalFrom(r.Context())
	res, err := s.engine.Merge(r.Context(), engine.MergeRequest{Account: p.Account, KeyID: p.KeyID, BranchIDs: body.BranchIDs, Strategy: body.Strategy, Name: body.Name})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	changes := make([]mergeChange, 0, len(res.Changes))
	for _, c := range res.Changes {
		changes = append(changes, mergeChange{Path: c.Path, Action: c.Action, BranchID: c.BranchID})
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"snapshot":      toSnapshotResponse(engine.SnapshotInfo{Snapshot: res.Snapshot}),
		"strategy":      res.Strategy,
		"base_snapshot": res.Base,
		"changes":       changes,
	})
}
