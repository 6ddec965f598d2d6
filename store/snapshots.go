package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Snapshot statuses.
const (
	SnapshotReady  = "ready"
	SnapshotBroken = "broken" // its image failed to restore or verify
)

// Snapshot is the record of a saved sandbox state (memory and filesystem). The
// image itself lives in the engine's snapshot directory; the record says whose it
// is, where it came from and what it holds. Deleted snapshots keep their row
// (DeletedAt set) so storage can be billed for the time they existed.
type Snapshot struct {
	ID          string
	Account     string
	KeyID       string
	Name        string
	ParentID    string // the snapshot the checkpointed sandbox was restored from; "" for a root
	SessionID   string // the session checkpointed
	ExecutionID string // the execution after which it was taken, if any
	Image       string
	Language    string
	MemoryMB    int64 // the sandbox's limits, which a restore keeps
	CPUMilli    int64
	SizeBytes   int64
	SHA256      string // of the image files, in name order
	Status      string
	Error       string
	CreatedAt   time.Time
	DeletedAt   *time.Time
}

const snapshotColumns = `id, account, key_id, name, parent_id, session_id, execution_id, image, language,
	memory_mb, cpu_milli, size_bytes, sha256, status, error, created_at, deleted_at`

// CreateSnapshot stores a new snapshot record. A zero CreatedAt is replaced by the
// current time. It returns an error wrapping ErrConflict if the ID exists.
func (s *Store) CreateSnapshot(ctx context.Context, sn Snapshot) error {
	if sn.CreatedAt.IsZero() {
		sn.CreatedAt = time.Now()
	}
	_, err := s.write.ExecContext(ctx, s.q(`INSERT INTO snapshots (`+snapshotColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		sn.ID, sn.Account, sn.KeyID, sn.Name, sn.ParentID, sn.SessionID, sn.ExecutionID, sn.Image, sn.Language,
		sn.MemoryMB, sn.CPUMilli, sn.SizeBytes, sn.SHA256, sn.Status, sn.Error, toMicros(sn.CreatedAt), nullMicros(sn.DeletedAt))
	if err != nil {
		return fmt.Errorf("creating snapshot %s: %w", sn.ID, mapErr(err))
	}
	return nil
}

// GetSnapshot returns the live (not deleted) snapshot id of account, or of any
// account if account is "". It returns ErrNotFound otherwise.
func (s *Store) GetSnapshot(ctx context.Context, account, id string) (Snapshot, error) {
	query, args := forAccount(`SELECT `+snapshotColumns+` FROM snapshots WHERE id = ? AND deleted_at IS NULL`, []any{id}, account)
	return queryOne(ctx, s, "getting snapshot "+id, query, args, scanSnapshot)
}

// ListSnapshots returns the live snapshots of account (every account if ""),
// oldest first.
func (s *Store) ListSnapshots(ctx context.Context, account string) ([]Snapshot, error) {
	query, args := forAccount(`SELECT `+snapshotColumns+` FROM snapshots WHERE deleted_at IS NULL`, nil, account)
	return queryAll(ctx, s, "listing snapshots", query+` ORDER BY created_at, id`, args, scanSnapshot)
}

// DeleteSnapshot marks the live snapshot id of account deleted at the given
// time. It returns ErrNotFound if there is no such live snapshot.
func (s *Store) DeleteSnapshot(ctx context.Context, account, id string, at time.Time) error {
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE snapshots SET deleted_at = ? WHERE id = ? AND account = ? AND deleted_at IS NULL`),
		toMicros(at), id, account)
	if err == nil {
		err = rowsAffectedOrNotFound(res)
	}
	if err != nil {
		return fmt.Errorf("deleting snapshot %s: %w", id, err)
	}
	return nil
}

// MarkSnapshotBroken records that snapshot id cannot be restored, and why.
func (s *Store) MarkSnapshotBroken(ctx context.Context, id, reason string) error {
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE snapshots SET status = ?, error = ? WHERE id = ?`), SnapshotBroken, reason, id)
	if err == nil {
		err = rowsAffectedOrNotFound(res)
	}
	if err != nil {
		return fmt.Errorf("marking snapshot %s broken: %w", id, err)
	}
	return nil
}

// SnapshotBytes sums the size of the account's live snapshots.
func (s *Store) SnapshotBytes(ctx context.Context, account string) (int64, error) {
	var n sql.NullInt64
	err := s.read.QueryRowContext(ctx, s.q(`SELECT SUM(size_bytes) FROM snapshots WHERE account = ? AND deleted_at IS NULL`), account).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("summing snapshot sizes: %w", err)
	}
	return n.Int64, nil
}

// SnapshotByteSeconds sums, over the account's snapshots (deleted ones too), the
// size times the seconds of [from, to) during which the snapshot existed: the
// measure snapshot storage is billed by (GB-months).
func (s *Store) SnapshotByteSeconds(ctx context.Context, account string, from, to time.Time) (float64, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT size_bytes, created_at, deleted_at FROM snapshots
		WHERE account = ? AND created_at < ? AND (deleted_at IS NULL OR deleted_at > ?)`),
		account, toMicros(to), toMicros(from))
	if err != nil {
		return 0, fmt.Errorf("snapshot storage: %w", err)
	}
	defer rows.Close()
	var total float64
	for rows.Next() {
		var size, created int64
		var deleted sql.NullInt64
		if err := rows.Scan(&size, &created, &deleted); err != nil {
			return 0, fmt.Errorf("snapshot storage: %w", err)
		}
		start, end := max(created, toMicros(from)), toMicros(to)
		if deleted.Valid {
			end = min(end, deleted.Int64)
		}
		if end > start {
			total += float64(size) * float64(end-start) / 1e6
		}
	}
	return total, rows.Err()
}

func scanSnapshot(row scanner) (Snapshot, error) {
	var (
		sn        Snapshot
		createdAt int64
		deletedAt sql.NullInt64
	)
	if err := row.Scan(&sn.ID, &sn.Account, &sn.KeyID, &sn.Name, &sn.ParentID, &sn.SessionID, &sn.ExecutionID,
		&sn.Image, &sn.Language, &sn.MemoryMB, &sn.CPUMilli, &sn.SizeBytes, &sn.SHA256, &sn.Status, &sn.Error,
		&createdAt, &deletedAt); err != nil {
		return Snapshot{}, err
	}
	sn.CreatedAt = fromMicros(createdAt)
	sn.DeletedAt = timePtr(deletedAt)
	return sn, nil
}

// SetSnapshotSize records the size a snapshot takes on disk now.
func (s *Store) SetSnapshotSize(ctx context.Context, id string, size int64) error {
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE snapshots SET size_bytes = ? WHERE id = ?`), size, id)
	if err == nil {
		err = rowsAffectedOrNotFound(res)
	}
	if err != nil {
		return fmt.Errorf("setting snapshot %s size: %w", id, err)
	}
	return nil
}
