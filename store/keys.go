package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Key is an API key. Only a hash of the secret is stored; the plaintext is
// shown to its owner once, at creation, and never persisted.
type Key struct {
	ID        string   // unique, e.g. "key_" + random
	Account   string   // account that owns objects created with this key
	Name      string   // label chosen by the owner
	Prefix    string   // first characters of the plaintext, shown in listings
	Hash      string   // hex SHA-256 of the plaintext; unique
	Scopes    []string // e.g. ["admin"] or ["execute", "snapshots"]; no commas
	CreatedAt time.Time
	RevokedAt *time.Time // nil while the key is active
	// RatePerMin and Burst override the server's request rate limit for this key
	// (token bucket: RatePerMin tokens a minute, at most Burst saved); 0 means
	// the server's default.
	RatePerMin int64
	Burst      int64
}

const keyColumns = "id, account, name, prefix, hash, scopes, created_at, revoked_at, rate_per_min, burst"

// CreateKey stores a new key. A zero CreatedAt is replaced by the current
// time. It returns an error wrapping ErrConflict if a key with the same ID or
// Hash exists.
func (s *Store) CreateKey(ctx context.Context, k Key) error {
	for _, sc := range k.Scopes {
		if sc == "" || strings.Contains(sc, ",") {
			return fmt.Errorf("creating key %s: invalid scope %q", k.ID, sc)
		}
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now()
	}
	if k.RatePerMin < 0 || k.Burst < 0 {
		return fmt.Errorf("creating key %s: negative rate limit", k.ID)
	}
	_, err := s.write.ExecContext(ctx, s.q(`INSERT INTO keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.Account, k.Name, k.Prefix, k.Hash, strings.Join(k.Scopes, ","),
		toMicros(k.CreatedAt), nullMicros(k.RevokedAt), k.RatePerMin, k.Burst)
	if err != nil {
		return fmt.Errorf("creating key %s: %w", k.ID, mapErr(err))
	}
	return nil
}

// KeyByHash returns the key whose Hash is hash, revoked or not: the caller
// decides what a revoked key means. It returns ErrNotFound if there is none.
func (s *Store) KeyByHash(ctx context.Context, hash string) (Key, error) {
	return queryOne(ctx, s, "looking up key by hash", `SELECT `+keyColumns+` FROM keys WHERE hash = ?`, []any{hash}, scanKey)
}

// ListKeys returns the keys of account, or of every account if account is
// "", oldest first. Revoked keys are included.
func (s *Store) ListKeys(ctx context.Context, account string) ([]Key, error) {
	query, args := forAccount(`SELECT `+keyColumns+` FROM keys`, nil, account)
	return queryAll(ctx, s, "listing keys", query+` ORDER BY created_at, id`, args, scanKey)
}

// RevokeKey marks the key revoked at time at. Revoking a revoked key succeeds
// and keeps the first revocation time. It returns ErrNotFound if there is no
// key with that id.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`),
		toMicros(at), id)
	if err == nil {
		err = rowsAffectedOrNotFound(res)
	}
	if err != nil {
		return fmt.Errorf("revoking key %s: %w", id, err)
	}
	return nil
}

// CountKeys returns the number of keys of all accounts, revoked included.
// The server uses it to tell a fresh installation (no keys yet) apart.
func (s *Store) CountKeys(ctx context.Context) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting keys: %w", err)
	}
	return n, nil
}

// scanner is the part of *sql.Row and *sql.Rows that scanKey and
// scanExecution need.
type scanner interface {
	Scan(dest ...any) error
}

func scanKey(row scanner) (Key, error) {
	var (
		k         Key
		scopes    string
		createdAt int64
		revokedAt sql.NullInt64
	)
	if err := row.Scan(&k.ID, &k.Account, &k.Name, &k.Prefix, &k.Hash, &scopes, &createdAt, &revokedAt, &k.RatePerMin, &k.Burst); err != nil {
		return Key{}, err
	}
	if scopes != "" {
		k.Scopes = strings.Split(scopes, ",")
	}
	k.CreatedAt = fromMicros(createdAt)
	k.RevokedAt = timePtr(revokedAt)
	return k, nil
}
