package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/faas-platform/faas/store"
)

var allScopes = []string{ScopeAdmin, ScopeExecute, ScopeInstances, ScopeSnapshots}

// CreateKeyRequest is the body of POST /api/v1/keys (admin scope).
type CreateKeyRequest struct {
	Name string `json:"name"`
	// Account owns what the key creates; empty means a new account of its own.
	Account string   `json:"account"`
	Scopes  []string `json:"scopes"`
	// RatePerMinute and Burst give the key its own request rate limit (0: the
	// server's default).
	RatePerMinute int64 `json:"rate_per_minute"`
	Burst         int64 `json:"burst"`
}

// KeyResponse describes a key; Key (the secret) is only in the answer that creates it.
type KeyResponse struct {
	ID            string     `json:"id"`
	Key           string     `json:"key,omitempty"`
	Name          string     `json:"name"`
	Account       string     `json:"account"`
	Prefix        string     `json:"prefix"`
	Scopes        []string   `json:"scopes"`
	RatePerMinute int64      `json:"rate_per_minute,omitempty"`
	Burst         int64      `json:"burst,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
}

func toKeyResponse(k store.Key) KeyResponse {
	return KeyResponse{ID: k.ID, Name: k.Name, Account: k.Account, Prefix: k.Prefix, Scopes: k.Scopes,
		RatePerMinute: k.RatePerMin, Burst: k.Burst, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var body CreateKeyRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(body.Scopes) == 0 {
		body.Scopes = []string{ScopeExecute, ScopeInstances, ScopeSnapshots}
	}
	for _, sc := range body.Scopes {
		if !slices.Contains(allScopes, sc) {
			s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", fmt.Sprintf("unknown scope %q; scopes are %s", sc, strings.Join(allScopes, ", "))))
			return
		}
	}
	if len(body.Name) > 200 || len(body.Account) > 100 || strings.ContainsAny(body.Account, " \t\n/\x00") {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "name must be at most 200 bytes; account at most 100, without spaces or slashes"))
		return
	}
	if body.RatePerMinute < 0 || body.Burst < 0 || body.RatePerMinute > 1e7 || body.Burst > 1e6 {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "rate_per_minute and burst must be between 0 and 10000000 / 1000000"))
		return
	}
	if body.Account == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		body.Account = "acct_" + hex.EncodeToString(b[:])
	}
	plain, k := NewKey(body.Account, body.Name, body.Scopes)
	k.CreatedAt = time.Now()
	k.RatePerMin, k.Burst = body.RatePerMinute, body.Burst
	if err := s.store.CreateKey(r.Context(), k); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := toKeyResponse(k)
	resp.Key = plain
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.store.ListKeys(r.Context(), r.URL.Query().Get("account"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]KeyResponse, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyResponse(k))
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.store.RevokeKey(r.Context(), id, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, newError(http.StatusNotFound, "not_found", fmt.Sprintf("key %q not found", id)))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
