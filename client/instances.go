package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Instance is a persistent sandbox (see the API reference).
type Instance struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	Image     string `json:"image"`
	Language  string `json:"language"`
	State     string `json:"state"` // "running", "paused" or "stopped"
	Error     string `json:"error,omitempty"`
	Resources struct {
		CPUCores float64 `json:"cpu_cores"`
		MemoryMB int     `json:"memory_mb"`
		DiskMB   int     `json:"disk_mb"`
	} `json:"resources"`
	EnableSSH      bool       `json:"enable_ssh"`
	IdleTTLSeconds int64      `json:"idle_ttl_seconds,omitempty"`
	Exposures      []Exposure `json:"exposures"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// InstanceRequest creates an instance; zero fields take the server's defaults.
type InstanceRequest struct {
	Name       string     `json:"name,omitempty"`
	Image      string     `json:"image,omitempty"`
	Language   string     `json:"language,omitempty"`
	SnapshotID string     `json:"snapshot_id,omitempty"`
	Resources  *Resources `json:"resources,omitempty"`
	DiskMB     int        `json:"disk_mb,omitempty"`
	EnableSSH  bool       `json:"enable_ssh,omitempty"`
	// Network gives the instance a network (by default it has none).
	Network        bool  `json:"network,omitempty"`
	IdleTTLSeconds int64 `json:"idle_ttl_seconds,omitempty"`
}

// Exposure is a port of an instance reachable through the server.
type Exposure struct {
	Name    string `json:"name"`
	Port    int    `json:"port"`
	Public  bool   `json:"public"`
	URL     string `json:"url"`
	HostURL string `json:"host_url,omitempty"`
}

// SSHInfo is where and how to reach an instance over SSH. PrivateKey is a new
// key authorized for the instance, shown this once.
type SSHInfo struct {
	Host       string `json:"host"`
	Port       int    `json:"port"`
	User       string `json:"user"`
	PrivateKey string `json:"private_key"`
	PublicKey  string `json:"public_key"`
	KnownHosts string `json:"known_hosts"`
	Command    string `json:"command"`
}

// CreateInstance starts an instance.
func (c *Client) CreateInstance(ctx context.Context, req InstanceRequest) (*Instance, error) {
	var out Instance
	if err := c.do(ctx, http.MethodPost, "/api/v1/instances", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListInstances returns the account's instances.
func (c *Client) ListInstances(ctx context.Context) ([]Instance, error) {
	var out struct {
		Instances []Instance `json:"instances"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/instances", nil, &out); err != nil {
		return nil, err
	}
	return out.Instances, nil
}

// GetInstance returns one instance.
func (c *Client) GetInstance(ctx context.Context, id string) (*Instance, error) {
	var out Instance
	if err := c.do(ctx, http.MethodGet, "/api/v1/instances/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteInstance destroys an instance and what it kept.
func (c *Client) DeleteInstance(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/instances/"+url.PathEscape(id), nil, nil)
}

// InstanceAction is "stop", "start", "pause" or "resume".
func (c *Client) InstanceAction(ctx context.Context, id, action string) (*Instance, error) {
	var out Instance
	if err := c.do(ctx, http.MethodPost, "/api/v1/instances/"+url.PathEscape(id)+"/"+url.PathEscape(action), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ExecInstance runs a command (req.Command) or code (req.Code) in an instance.
func (c *Client) ExecInstance(ctx context.Context, id string, req ExecuteRequest) (*ExecuteResult, error) {
	var out ExecuteResult
	if err := c.do(ctx, http.MethodPost, "/api/v1/instances/"+url.PathEscape(id)+"/exec", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// InstanceSSH returns SSH access to an instance created with EnableSSH.
func (c *Client) InstanceSSH(ctx context.Context, id string) (*SSHInfo, error) {
	var out SSHInfo
	if err := c.do(ctx, http.MethodGet, "/api/v1/instances/"+url.PathEscape(id)+"/ssh", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Expose makes port of an instance reachable at the returned URL.
func (c *Client) Expose(ctx context.Context, id string, port int, name string, public bool) (*Exposure, error) {
	var out Exposure
	body := map[string]any{"port": port, "name": name, "public": public}
	if err := c.do(ctx, http.MethodPost, "/api/v1/instances/"+url.PathEscape(id)+"/expose", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
