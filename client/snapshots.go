package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Snapshot is a saved session: memory, processes and files, restorable any
// number of times. ParentID links it to the snapshot its session was restored
// from, Children to the snapshots taken of its branches.
type Snapshot struct {
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	ParentID    string    `json:"parent_id,omitempty"`
	Children    []string  `json:"children"`
	SessionID   string    `json:"session_id,omitempty"`
	ExecutionID string    `json:"execution_id,omitempty"`
	Image       string    `json:"image"`
	Language    string    `json:"language"`
	MemoryMB    int       `json:"memory_mb"`
	CPUCores    float64   `json:"cpu_cores"`
	SizeBytes   int64     `json:"size_bytes"`
	SHA256      string    `json:"sha256"`
	Status      string    `json:"status"` // "ready" or "broken"
	Error       string    `json:"error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Session is a live interpreter kept between executions (a branch is one too).
type Session struct {
	ID             string    `json:"id"`
	BranchID       string    `json:"branch_id,omitempty"`
	Language       string    `json:"language"`
	ParentSnapshot string    `json:"parent_snapshot,omitempty"`
	Executions     int       `json:"executions"`
	MemoryMB       int       `json:"memory_mb"`
	CPUCores       float64   `json:"cpu_cores"`
	MemoryUsedMB   float64   `json:"memory_used_mb"`
	CreatedAt      time.Time `json:"created_at"`
	LastUsedAt     time.Time `json:"last_used_at"`
}

// SnapshotRequest names what to snapshot: a session by SessionID (a branch id
// too), the session an execution ran in by ExecutionID, or a running instance
// by InstanceID. Give one of them.
type SnapshotRequest struct {
	ExecutionID string `json:"execution_id,omitempty"`
	SessionID   string `json:"session_id,omitempty"`
	InstanceID  string `json:"instance_id,omitempty"`
	Name        string `json:"name,omitempty"`
}

// CreateSnapshot checkpoints a live session into a new snapshot; the session
// runs on.
func (c *Client) CreateSnapshot(ctx context.Context, req SnapshotRequest) (*Snapshot, error) {
	var out Snapshot
	if err := c.do(ctx, http.MethodPost, "/api/v1/snapshots", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListSnapshots returns the account's snapshots, oldest first.
func (c *Client) ListSnapshots(ctx context.Context) ([]Snapshot, error) {
	var out struct {
		Snapshots []Snapshot `json:"snapshots"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/snapshots", nil, &out); err != nil {
		return nil, err
	}
	return out.Snapshots, nil
}

// GetSnapshot returns one snapshot.
func (c *Client) GetSnapshot(ctx context.Context, id string) (*Snapshot, error) {
	var out Snapshot
	if err := c.do(ctx, http.MethodGet, "/api/v1/snapshots/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteSnapshot deletes a snapshot (its children stay restorable).
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/snapshots/"+url.PathEscape(id), nil, nil)
}

// RestoreSnapshot starts a new session from a snapshot; sessionID "" lets the
// server name it. Run code in it with Execute and ExecuteRequest.SessionID.
func (c *Client) RestoreSnapshot(ctx context.Context, id, sessionID string) (*Session, error) {
	var out Session
	body := map[string]string{}
	if sessionID != "" {
		body["session_id"] = sessionID
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/snapshots/"+url.PathEscape(id)+"/restore", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateBranches restores req.ParentSnapshot into count new branches at once and
// runs req's code in each; the results carry each branch's BranchID.
func (c *Client) CreateBranches(ctx context.Context, req ExecuteRequest, count int) ([]ExecuteResult, error) {
	body := struct {
		ExecuteRequest
		Count int `json:"count"`
	}{req, count}
	var out struct {
		Branches []ExecuteResult `json:"branches"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/branches", body, &out); err != nil {
		return nil, err
	}
	return out.Branches, nil
}

// Merge strategies.
const (
	MergeUnion        = "union"
	MergeIntersection = "intersection"
	MergeLatest       = "latest"
)

// MergeChange is one file change a merge applied.
type MergeChange struct {
	Path     string `json:"path"`
	Action   string `json:"action"` // "write" or "delete"
	BranchID string `json:"branch_id"`
}

// MergeResult is the snapshot a merge made and what went into it.
type MergeResult struct {
	Snapshot     Snapshot      `json:"snapshot"`
	Strategy     string        `json:"strategy"`
	BaseSnapshot string        `json:"base_snapshot"`
	Changes      []MergeChange `json:"changes"`
}

// MergeBranches merges the file changes of branches of one snapshot into a new
// snapshot (see the API reference for the strategies). A conflict under
// MergeUnion is an *APIError with status 409 whose Paths lists the paths.
func (c *Client) MergeBranches(ctx context.Context, branchIDs []string, strategy, name string) (*MergeResult, error) {
	var out MergeResult
	body := map[string]any{"branch_ids": branchIDs, "strategy": strategy, "name": name}
	if err := c.do(ctx, http.MethodPost, "/api/v1/branches/merge", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListSessions returns the account's live sessions and branches.
func (c *Client) ListSessions(ctx context.Context) ([]Session, error) {
	var out struct {
		Sessions []Session `json:"sessions"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/sessions", nil, &out); err != nil {
		return nil, err
	}
	return out.Sessions, nil
}

// DeleteSession ends a session or branch.
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/sessions/"+url.PathEscape(id), nil, nil)
}
