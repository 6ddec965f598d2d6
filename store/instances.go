package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Instance states.
const (
	InstanceRunning = "running"
	InstancePaused  = "paused"  // checkpointed to disk, memory freed
	InstanceStopped = "stopped" // no sandbox; its files kept (if it stopped cleanly)
)

// Instance is the record of a persistent instance: a long-lived sandbox its owner
// runs commands in, reaches over SSH and exposes ports of.
type Instance struct {
	ID        string
	Account   string
	KeyID     string
	Name      string
	Image     string
	Language  string
	MemoryMB  int64
	CPUMilli  int64
	DiskMB    int64
	EnableSSH bool
	State     string
	Error     string // why the instance is not running, when that was not asked for
	IdleTTL   time.Duration
	// AutoResume marks an instance the server paused at shutdown: it resumes it
	// at the next start.
	AutoResume bool
	SSHKeys    string // authorized public keys, one per line (authorized_keys format)
	Exposures  string // JSON list of exposed ports
	CreatedAt  time.Time
	UpdatedAt  time.Time
	DeletedAt  *time.Time
}

const instanceColumns = `id, account, key_id, name, image, language, memory_mb, cpu_milli, disk_mb, enable_ssh,
	state, error, idle_ttl_s, auto_resume, ssh_keys, exposures, created_at, updated_at, deleted_at`

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// CreateInstance stores a new instance. Zero times become the current time.
func (s *Store) CreateInstance(ctx context.Context, in Instance) error {
	now := time.Now()
	if in.CreatedAt.IsZero() {
		in.CreatedAt = now
	}
	if in.UpdatedAt.IsZero() {
		in.UpdatedAt = now
	}
	_, err := s.write.ExecContext(ctx, s.q(`INSERT INTO instances (`+instanceColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		in.ID, in.Account, in.KeyID, in.Name, in.Image, in.Language, in.MemoryMB, in.CPUMilli, in.DiskMB, boolInt(in.EnableSSH),
		in.State, in.Error, int64(in.IdleTTL/time.Second), boolInt(in.AutoResume), in.SSHKeys, in.Exposures,
		toMicros(in.CreatedAt), toMicros(in.UpdatedAt), nullMicros(in.DeletedAt))
	if err != nil {
		return fmt.Errorf("creating instance %s: %w", in.ID, mapErr(err))
	}
	return nil
}

// UpdateInstance writes the mutable fields of in (state, error, auto-resume,
// SSH keys, exposures, updated_at) to the live instance in.ID.
func (s *Store) UpdateInstance(ctx context.Context, in Instance) error {
	if in.UpdatedAt.IsZero() {
		in.UpdatedAt = time.Now()
	}
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE instances SET state = ?, error = ?, auto_resume = ?, ssh_keys = ?,
		exposures = ?, idle_ttl_s = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL`),
		in.State, in.Error, boolInt(in.AutoResume), in.SSHKeys, in.Exposures, int64(in.IdleTTL/time.Second), toMicros(in.UpdatedAt), in.ID)
	if err == nil {
		err = rowsAffectedOrNotFound(res)
	}
	if err != nil {
		return fmt.Errorf("updating instance %s: %w", in.ID, err)
	}
	return nil
}

// GetInstance returns the live instance id of account (any account if "").
func (s *Store) GetInstance(ctx context.Context, account, id string) (Instance, error) {
	query, args := forAccount(`SELECT `+instanceColumns+` FROM instances WHERE id = ? AND deleted_at IS NULL`, []any{id}, account)
	return queryOne(ctx, s, "getting instance "+id, query, args, scanInstance)
}

// ListInstances returns the live instances of account (every account if ""),
// oldest first.
func (s *Store) ListInstances(ctx context.Context, account string) ([]Instance, error) {
	query, args := forAccount(`SELECT `+instanceColumns+` FROM instances WHERE deleted_at IS NULL`, nil, account)
	return queryAll(ctx, s, "listing instances", query+` ORDER BY created_at, id`, args, scanInstance)
}

// DeleteInstance marks the live instance id of account deleted.
func (s *Store) DeleteInstance(ctx context.Context, account, id string, at time.Time) error {
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE instances SET deleted_at = ?, updated_at = ? WHERE id = ? AND account = ? AND deleted_at IS NULL`),
		toMicros(at), toMicros(at), id, account)
	if err == nil {
		err = rowsAffectedOrNotFound(res)
	}
	if err != nil {
		return fmt.Errorf("deleting instance %s: %w", id, err)
	}
	return nil
}

func scanInstance(row scanner) (Instance, error) {
	var (
		in                   Instance
		ssh, auto, ttl       int64
		createdAt, updatedAt int64
		deletedAt            sql.NullInt64
	)
	if err := row.Scan(&in.ID, &in.Account, &in.KeyID, &in.Name, &in.Image, &in.Language, &in.MemoryMB, &in.CPUMilli, &in.DiskMB,
		&ssh, &in.State, &in.Error, &ttl, &auto, &in.SSHKeys, &in.Exposures, &createdAt, &updatedAt, &deletedAt); err != nil {
		return Instance{}, err
	}
	in.EnableSSH, in.AutoResume, in.IdleTTL = ssh != 0, auto != 0, time.Duration(ttl)*time.Second
	in.CreatedAt, in.UpdatedAt, in.DeletedAt = fromMicros(createdAt), fromMicros(updatedAt), timePtr(deletedAt)
	return in, nil
}
