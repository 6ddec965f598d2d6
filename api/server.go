// Package api is the HTTP edge of the platform: it authenticates requests, decodes
// and validates their bodies, calls the engine, and turns results and errors into
// JSON responses (errors become statuses in exactly one place, toAPIError).
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/image"
	"github.com/faas-platform/faas/store"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 10 << 20

// Server serves the v1 API.
type Server struct {
	engine    *engine.Engine
	store     *store.Store
	log       *slog.Logger
	version   string
	mux       *http.ServeMux
	limiter   *rateLimiter
	heartbeat time.Duration

	ssh          *SSHInfo
	publicURL    string
	exposeDomain string
	images       *image.Store
}

// SSHInfo says where the SSH gateway listens, for the ssh endpoint's answers.
type SSHInfo struct {
	Host    string // "" means the host the API request came to
	Port    int
	HostKey ssh.PublicKey
}

// Config configures the API server.
type Config struct {
	Version string
	// RateLimit is every key's request rate unless the key has its own.
	RateLimit RateLimit
	// Heartbeat is how often an idle stream gets a heartbeat frame (default 15 s).
	Heartbeat time.Duration
	// SSH is the SSH gateway; nil when the server runs none.
	SSH *SSHInfo
	// PublicURL is the server's URL as clients reach it (for the URLs of exposed
	// ports); "" means the scheme and host of each request.
	PublicURL string
	// ExposeDomain, when set, routes requests for {name}-{instance}.{domain} to
	// the instance's exposed port.
	ExposeDomain string
	// Images is the local image store; nil: the host image only.
	Images *image.Store
	Logger *slog.Logger
}

// New returns the API server for an engine and a store.
func New(e *engine.Engine, st *store.Store, cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{engine: e, store: st, log: log, version: cfg.Version, mux: http.NewServeMux(), limiter: newRateLimiter(cfg.RateLimit), heartbeat: cfg.Heartbeat,
		ssh: cfg.SSH, publicURL: cfg.PublicURL, images: cfg.Images, exposeDomain: strings.ToLower(strings.Trim(cfg.ExposeDomain, "."))}
	if s.heartbeat <= 0 {
		s.heartbeat = 15 * time.Second
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.handle("GET /health", s.health)
	s.handle("POST /api/v1/execute", s.authenticate(ScopeExecute, s.execute))
	s.handle("GET /api/v1/executions/{id}", s.authenticate(ScopeExecute, s.getExecution))
	s.handle("GET /api/v1/execute/stream", s.authenticate(ScopeExecute, s.executeStream))
	s.handle("GET /api/v1/executions/{id}/stream", s.authenticate(ScopeExecute, s.attachStream))
	s.handle("GET /api/v1/executions/{id}/events", s.authenticate(ScopeExecute, s.eventsSSE))
	s.handle("POST /api/v1/snapshots", s.authenticate(ScopeSnapshots, s.createSnapshot))
	s.mux.HandleFunc("GET /api/v1/snapshots", s.authenticate(ScopeSnapshots, s.listSnapshots))
	s.handle("GET /api/v1/snapshots/{id}", s.authenticate(ScopeSnapshots, s.getSnapshot))
	s.mux.HandleFunc("DELETE /api/v1/snapshots/{id}", s.authenticate(ScopeSnapshots, s.deleteSnapshot))
	s.handle("POST /api/v1/snapshots/{id}/restore", s.authenticate(ScopeSnapshots, s.restoreSnapshot))
	s.handle("POST /api/v1/branches", s.authenticate(ScopeSnapshots, s.createBranches))
	s.handle("POST /api/v1/branches/merge", s.authenticate(ScopeSnapshots, s.mergeBranches))
	s.handle("GET /api/v1/sessions", s.authenticate(ScopeExecute, s.listSessions))
	s.handle("GET /api/v1/sessions/{id}", s.authenticate(ScopeExecute, s.getSession))
	s.mux.HandleFunc("DELETE /api/v1/sessions/{id}", s.authenticate(ScopeExecute, s.deleteSession))
	s.handle("POST /api/v1/instances", s.authenticate(ScopeInstances, s.createInstance))
	s.mux.HandleFunc("GET /api/v1/instances", s.authenticate(ScopeInstances, s.listInstances))
	s.handle("GET /api/v1/instances/{id}", s.authenticate(ScopeInstances, s.getInstance))
	s.mux.HandleFunc("DELETE /api/v1/instances/{id}", s.authenticate(ScopeInstances, s.deleteInstance))
	s.handle("POST /api/v1/instances/{id}/exec", s.authenticate(ScopeInstances, s.execInstance))
	s.handle("POST /api/v1/instances/{id}/stop", s.authenticate(ScopeInstances, s.instanceAction((*engine.Engine).StopInstance)))
	s.handle("POST /api/v1/instances/{id}/start", s.authenticate(ScopeInstances, s.instanceAction((*engine.Engine).StartInstance)))
	s.handle("POST /api/v1/instances/{id}/pause", s.authenticate(ScopeInstances, s.instanceAction((*engine.Engine).PauseInstance)))
	s.handle("POST /api/v1/instances/{id}/resume", s.authenticate(ScopeInstances, s.instanceAction((*engine.Engine).ResumeInstance)))
	s.handle("GET /api/v1/instances/{id}/ssh", s.authenticate(ScopeInstances, s.sshInfo))
	s.handle("POST /api/v1/instances/{id}/expose", s.authenticate(ScopeInstances, s.expose))
	s.handle("DELETE /api/v1/instances/{id}/expose/{name}", s.authenticate(ScopeInstances, s.unexpose))
	s.handle("PUT /api/v1/instances/{id}/files", s.authenticate(ScopeInstances, s.uploadFile))
	s.mux.HandleFunc("GET /api/v1/instances/{id}/files", s.authenticate(ScopeInstances, s.download))
	s.handle("POST /api/v1/instances/{id}/files/archive", s.authenticate(ScopeInstances, s.uploadArchive(false)))
	s.handle("POST /api/v1/instances/{id}/sync", s.authenticate(ScopeInstances, s.uploadArchive(true)))
	s.handle("GET /api/v1/instances/{id}/terminal", s.authenticate(ScopeInstances, s.terminal))
	for _, name := range engine.DevServiceNames() {
		s.handle("POST /api/v1/instances/{id}/"+name, s.authenticate(ScopeInstances, s.devServer(name)))
	}
	s.mux.HandleFunc("/p/{id}/{name}/{rest...}", s.proxyPath)
	// Image references hold slashes: {ref...}; these routes go without the 405
	// catch-alls, which would overlap.
	s.mux.HandleFunc("POST /api/v1/images/import", s.authenticate(ScopeAdmin, s.importImage))
	s.mux.HandleFunc("POST /api/v1/images/pull", s.authenticate(ScopeAdmin, s.pullImage))
	s.handle("GET /api/v1/images", s.authenticate(ScopeExecute, s.listImages))
	s.mux.HandleFunc("GET /api/v1/images/{ref...}", s.authenticate(ScopeExecute, s.getImage))
	s.mux.HandleFunc("DELETE /api/v1/images/{ref...}", s.authenticate(ScopeAdmin, s.removeImage))
	s.handle("POST /api/v1/prewarm", s.authenticate(ScopeExecute, s.prewarm))
	s.handle("GET /api/v1/pools", s.authenticate(ScopeExecute, s.pools))
	s.handle("GET /api/v1/usage", s.authenticate(ScopeAny, s.usage))
	s.handle("GET /api/v1/usage/current", s.authenticate(ScopeAny, s.currentUsage))
	s.handle("POST /api/v1/keys", s.authenticate(ScopeAdmin, s.createKey))
	s.mux.HandleFunc("GET /api/v1/keys", s.authenticate(ScopeAdmin, s.listKeys))
	s.handle("DELETE /api/v1/keys/{id}", s.authenticate(ScopeAdmin, s.revokeKey))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, newError(http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
}

// handle registers h for "METHOD /path", and a JSON 405 for other methods on the
// same path (the standard mux would answer in plain text).
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, h)
	method, path, _ := cutSpace(pattern)
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", method)
		s.writeError(w, r, newError(http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path+"; use "+method))
	})
}

func largeBody(p string) bool {
	if strings.HasPrefix(p, "/p/") || p == "/api/v1/images/import" {
		return true
	}
	return strings.HasPrefix(p, "/api/v1/instances/") && (strings.HasSuffix(p, "/files") || strings.HasSuffix(p, "/files/archive") || strings.HasSuffix(p, "/sync"))
}

func cutSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			s.writeError(w, r, newError(http.StatusInternalServerError, "internal", "internal server error"))
		}
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "duration", time.Since(start))
	}()
	if s.proxyByHost(w, r) {
		return
	}
	// File transfers and proxied requests bound their own bodies.
	if !largeBody(r.URL.Path) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	}
	s.mux.ServeHTTP(w, r)
}

type healthResponse struct {
	Status    string          `json:"status"`
	Version   string          `json:"version"`
	Runtime   healthRuntime   `json:"runtime"`
	Database  healthDatabase  `json:"database"`
	Sandboxes healthSandboxes `json:"sandboxes"`
}

type healthRuntime struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Ready   bool   `json:"ready"`
	Error   string `json:"error,omitempty"`
}

type healthDatabase struct {
	Driver string `json:"driver"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

type healthSandboxes struct {
	Live    int `json:"live"`
	Stocked int `json:"stocked"`
	// Sessions are held by live sessions and branches; BranchStocked were restored
	// from snapshots ahead of demand.
	Sessions      int `json:"sessions"`
	BranchStocked int `json:"branch_stocked"`
	Instances     int `json:"instances"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	h := s.engine.Health(ctx)
	resp := healthResponse{
		Status:    "ok",
		Version:   s.version,
		Runtime:   healthRuntime{Name: h.Runtime, Version: h.Version, Ready: h.Ready, Error: h.Error},
		Database:  healthDatabase{Driver: s.store.Driver(), OK: true},
		Sandboxes: healthSandboxes{Live: h.Live, Stocked: h.Stocked, Sessions: h.Sessions, BranchStocked: h.BranchStocked, Instances: h.Instances},
	}
	if err := s.store.Ping(ctx); err != nil {
		resp.Database.OK, resp.Database.Error = false, err.Error()
	}
	status := http.StatusOK
	if !h.Ready || !resp.Database.OK {
		resp.Status, status = "degraded", http.StatusServiceUnavailable
	}
	writeJSON(w, status, resp)
}
