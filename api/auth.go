package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/faas-platform/faas/store"
)

// Scopes a key may carry.
const (
	ScopeAdmin     = "admin"
	ScopeExecute   = "execute"
	ScopeInstances = "instances"
	ScopeSnapshots = "snapshots"
	// ScopeAny is for endpoints any valid key may use (its own account's usage).
	ScopeAny = ""
)

// KeyPrefix starts every API key, so leaked keys are easy to recognise.
const KeyPrefix = "faas_"

// NewKey returns a new random API key (shown to its owner once) and the record to
// store for it (hashed; the plaintext is never stored).
func NewKey(account, name string, scopes []string) (plaintext string, k store.Key) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	plaintext = KeyPrefix + hex.EncodeToString(b[:])
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	return plaintext, store.Key{
		ID:      "key_" + hex.EncodeToString(idb[:]),
		Account: account,
		Name:    name,
		Prefix:  plaintext[:len(KeyPrefix)+8],
		Hash:    HashKey(plaintext),
		Scopes:  scopes,
	}
}

// HashKey is how keys are stored and looked up.
func HashKey(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return hex.EncodeToString(sum[:])
}

// Principal is who a request acts for.
type Principal struct {
	KeyID   string
	Account string
	Scopes  []string
}

// Can reports whether the principal holds scope (admin holds every scope).
func (p Principal) Can(scope string) bool {
	return scope == ScopeAny || slices.Contains(p.Scopes, ScopeAdmin) || slices.Contains(p.Scopes, scope)
}

type principalKey struct{}

func principalFrom(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// keyFromRequest takes the key from `Authorization: Bearer`, or `x-api-key`; for a
// WebSocket upgrade or an event stream (which browsers open without headers of
// their own) also from the `api_key` query parameter.
func keyFromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if k := strings.TrimSpace(r.Header.Get("X-Api-Key")); k != "" {
		return k
	}
	// Browsers cannot set headers on a WebSocket or an EventSource: those take
	// the key in the URL (the events endpoint whatever its Accept header).
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || strings.Contains(r.Header.Get("Accept"), "text/event-stream") ||
		strings.HasPrefix(r.URL.Path, "/api/v1/executions/") && strings.HasSuffix(r.URL.Path, "/events") {
		return strings.TrimSpace(r.URL.Query().Get("api_key"))
	}
	return ""
}

// authenticate wraps h so it runs only for a valid, unrevoked key holding scope.
func (s *Server) authenticate(scope string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := keyFromRequest(r)
		if key == "" {
			s.writeError(w, r, newError(http.StatusUnauthorized, "unauthorized", "an API key is required: send Authorization: Bearer <key> or x-api-key: <key>"))
			return
		}
		k, err := s.store.KeyByHash(r.Context(), HashKey(key))
		switch {
		case errors.Is(err, store.ErrNotFound):
			s.writeError(w, r, newError(http.StatusUnauthorized, "unauthorized", "invalid API key"))
			return
		case err != nil:
			s.writeError(w, r, err)
			return
		case k.RevokedAt != nil:
			s.writeError(w, r, newError(http.StatusUnauthorized, "unauthorized", "this API key has been revoked"))
			return
		}
		v := s.limiter.take(k, time.Now())
		v.setHeaders(w.Header())
		if !v.ok {
			s.writeError(w, r, &apiError{status: http.StatusTooManyRequests, code: "rate_limited",
				msg:        "too many requests for this API key; retry after the Retry-After delay",
				retryAfter: v.retryAfter})
			return
		}
		p := Principal{KeyID: k.ID, Account: k.Account, Scopes: k.Scopes}
		if !p.Can(scope) {
			s.writeError(w, r, newError(http.StatusForbidden, "forbidden", "this API key lacks the "+scope+" scope"))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}
