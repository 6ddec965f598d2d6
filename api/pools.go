package api

import (
	"net/http"

	"github.com/faas-platform/faas/engine"
)

// PrewarmRequest is the body of POST /api/v1/prewarm.
type PrewarmRequest struct {
	Image    string `json:"image"`
	Language string `json:"language"`
	// MemoryMB is the memory limit of the sandboxes (0: the default); cached
	// executions asking for the same take them.
	MemoryMB int  `json:"memory_mb"`
	Count    *int `json:"count"` // 1 when omitted
}

// PrewarmResponse says how many warm sandboxes were added.
type PrewarmResponse struct {
	Image    string `json:"image"`
	Language string `json:"language"`
	Added    int    `json:"added"`
	Pool     pool   `json:"pool"`
}

type pool struct {
	Account  string `json:"account,omitempty"` // with all=true
	Image    string `json:"image"`
	MemoryMB int    `json:"memory_mb"` // one pool per memory limit
	Idle     int    `json:"idle"`
	InUse    int    `json:"in_use"`
	Hits     int64  `json:"hits"`
	Misses   int64  `json:"misses"`
	Boots    int64  `json:"boots"`
	Retired  int64  `json:"retired"`
	Reaped   int64  `json:"reaped"`
	Evicted  int64  `json:"evicted"`
	// IdleMemoryMB is what the idle sandboxes hold together.
	IdleMemoryMB float64 `json:"idle_memory_mb"`
}

func toPool(st engine.PoolStats) pool {
	return pool{Image: st.Image, Account: st.Account, MemoryMB: st.MemoryMB, Idle: st.Idle, InUse: st.InUse, Hits: st.Hits, Misses: st.Misses,
		Boots: st.Boots, Retired: st.Retired, Reaped: st.Reaped, Evicted: st.Evicted,
		IdleMemoryMB: float64(st.IdleMemoryBytes) / (1 << 20)}
}

// PoolsResponse is the body of GET /api/v1/pools: the caller's warm pools and the
// server's stock of never-used sandboxes.
type PoolsResponse struct {
	Pools []pool `json:"pools"`
	Stock stock  `json:"stock"`
}

// stock is the whole stock (target, ready and booted over every image; languages
// those of the host image's), then per image and languages (targets).
type stock struct {
	Target    int           `json:"target"`
	Ready     int           `json:"ready"`
	Booted    int64         `json:"booted"`
	Languages []string      `json:"languages"`
	Targets   []stockTarget `json:"targets"`
}

type stockTarget struct {
	Image     string   `json:"image"`
	Languages []string `json:"languages"`
	Target    int      `json:"target"`
	Ready     int      `json:"ready"`
	Booted    int64    `json:"booted"`
	// Demanded are languages beyond Languages whose interpreters new stocked
	// sandboxes start because requests asked for them lately; Warm counts the
	// ready sandboxes running each interpreter ("python", "node", "bash").
	Demanded []string       `json:"demanded"`
	Warm     map[string]int `json:"warm"`
	// Error is why the image cannot be stocked now (not pulled, say).
	Error string `json:"error,omitempty"`
}

func (s *Server) prewarm(w http.ResponseWriter, r *http.Request) {
	var body PrewarmRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	count := 1
	if body.Count != nil {
		count = *body.Count
	}
	if body.Language == "" {
		body.Language = "python"
	}
	acct := principalFrom(r.Context()).Account
	image, memoryMB, added, err := s.engine.Prewarm(r.Context(), acct, body.Image, body.Language, body.MemoryMB, count)
	if err != nil && added == 0 {
		s.writeError(w, r, err)
		return
	}
	resp := PrewarmResponse{Image: image, Language: body.Language, Added: added}
	for _, st := range s.engine.Pools(acct) {
		if st.Image == resp.Image && st.MemoryMB == memoryMB {
			resp.Pool = toPool(st)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// pools is GET /api/v1/pools: the caller's pools; with ?all=true and an admin
// key, every account's.
func (s *Server) pools(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	account := p.Account
	if r.URL.Query().Get("all") == "true" {
		if !p.Can(ScopeAdmin) {
			s.writeError(w, r, newError(http.StatusForbidden, "forbidden", "all=true needs an admin key"))
			return
		}
		account = ""
	}
	resp := PoolsResponse{Pools: []pool{}}
	for _, st := range s.engine.Pools(account) {
		pl := toPool(st)
		if account != "" {
			pl.Account = ""
		}
		resp.Pools = append(resp.Pools, pl)
	}
	ss := s.engine.Stock()
	resp.Stock = stock{Target: ss.Target, Ready: ss.Ready, Booted: ss.Booted, Languages: nonNil(ss.Languages), Targets: []stockTarget{}}
	for _, sh := range ss.Shelves {
		resp.Stock.Targets = append(resp.Stock.Targets, stockTarget{Image: sh.Image, Languages: nonNil(sh.Languages),
			Target: sh.Size, Ready: sh.Ready, Booted: sh.Booted, Demanded: nonNil(sh.Demanded), Warm: sh.Warm, Error: sh.Error})
	}
	writeJSON(w, http.StatusOK, resp)
}
