package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migration is one versioned schema change. Versions are applied in order,
// each in its own transaction together with its schema_migrations row, so a
// failed migration leaves no trace and is retried by the next Open.
//
// Statements must be valid in both SQLite and PostgreSQL: BIGINT columns
// (SQLite gives them INTEGER affinity), TEXT, no driver-specific defaults.
// Never edit a released migration; append a new one.
type migration struct {
	version int
	name    string
	stmts   []string
}

var migrations = []migration{
	{
		version: 1,
		name:    "keys and executions",
		stmts: []string{
			`CREATE TABLE keys (
				id         TEXT PRIMARY KEY,
				account    TEXT NOT NULL,
				name       TEXT NOT NULL,
				prefix     TEXT NOT NULL,
				hash       TEXT NOT NULL UNIQUE,
				scopes     TEXT NOT NULL,
				created_at BIGINT NOT NULL,
				revoked_at BIGINT
			)`,
			`CREATE INDEX keys_account_created ON keys (account, created_at)`,
			`CREATE TABLE executions (
				id             TEXT PRIMARY KEY,
				account        TEXT NOT NULL,
				key_id         TEXT NOT NULL,
				mode           TEXT NOT NULL,
				language       TEXT NOT NULL,
				image          TEXT NOT NULL,
				status         TEXT NOT NULL,
				exit_code      BIGINT NOT NULL,
				error          TEXT NOT NULL,
				duration_ms    BIGINT NOT NULL,
				cpu_ms         BIGINT NOT NULL,
				memory_peak_mb BIGINT NOT NULL,
				cost_micro_usd BIGINT NOT NULL,
				stdout_bytes   BIGINT NOT NULL,
				stderr_bytes   BIGINT NOT NULL,
				created_at     BIGINT NOT NULL,
				finished_at    BIGINT
			)`,
			`CREATE INDEX executions_account_created ON executions (account, created_at)`,
			`CREATE INDEX executions_status ON executions (status)`,
		},
	},
	{
		version: 2,
		name:    "per-key rate limits",
		stmts: []string{
			`ALTER TABLE keys ADD COLUMN rate_per_min BIGINT NOT NULL DEFAULT 0`,
			`ALTER TABLE keys ADD COLUMN burst BIGINT NOT NULL DEFAULT 0`,
		},
	},
	{
		version: 3,
		name:    "snapshots",
		stmts: []string{
			`CREATE TABLE snapshots (
				id           TEXT PRIMARY KEY,
				account      TEXT NOT NULL,
				key_id       TEXT NOT NULL,
				name         TEXT NOT NULL,
				parent_id    TEXT NOT NULL,
				session_id   TEXT NOT NULL,
				execution_id TEXT NOT NULL,
				image        TEXT NOT NULL,
				language     TEXT NOT NULL,
				memory_mb    BIGINT NOT NULL,
				cpu_milli    BIGINT NOT NULL,
				size_bytes   BIGINT NOT NULL,
				sha256       TEXT NOT NULL,
				status       TEXT NOT NULL,
				error        TEXT NOT NULL,
				created_at   BIGINT NOT NULL,
				deleted_at   BIGINT
			)`,
			`CREATE INDEX snapshots_account_created ON snapshots (account, created_at)`,
			`CREATE INDEX snapshots_parent ON snapshots (parent_id)`,
		},
	},
	{
		version: 4,
		name:    "instances",
		stmts: []string{
			`CREATE TABLE instances (
				id           TEXT PRIMARY KEY,
				account      TEXT NOT NULL,
				key_id       TEXT NOT NULL,
				name         TEXT NOT NULL,
				image        TEXT NOT NULL,
				language     TEXT NOT NULL,
				memory_mb    BIGINT NOT NULL,
				cpu_milli    BIGINT NOT NULL,
				disk_mb      BIGINT NOT NULL,
				enable_ssh   BIGINT NOT NULL,
				state        TEXT NOT NULL,
				error        TEXT NOT NULL,
				idle_ttl_s   BIGINT NOT NULL,
				auto_resume  BIGINT NOT NULL,
				ssh_keys     TEXT NOT NULL,
				exposures    TEXT NOT NULL,
				created_at   BIGINT NOT NULL,
				updated_at   BIGINT NOT NULL,
				deleted_at   BIGINT
			)`,
			`CREATE INDEX instances_account_created ON instances (account, created_at)`,
		},
	},
}

// migrationLockID is the PostgreSQL advisory lock key that serialises
// migrations between processes opening the same database ("faasmigr").
const migrationLockID int64 = 0x666161736d696772

// migrate brings the schema up to date. It is idempotent and safe to run from
// several processes at once.
func (s *Store) migrate(ctx context.Context) error {
	// One connection throughout: PostgreSQL advisory locks belong to a
	// session, and the migration transactions must run in that session.
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s store: %w", s.driver, err)
	}
	defer conn.Close()

	if s.driver == DriverPostgres {
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLockID); err != nil {
			return fmt.Errorf("migrating postgres store: taking advisory lock: %w", err)
		}
		defer func() {
			// Unlock even if ctx was cancelled; closing the session would
			// also release it, but the connection goes back to the pool.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			conn.ExecContext(uctx, "SELECT pg_advisory_unlock($1)", migrationLockID)
		}()
	}

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrating %s store: creating schema_migrations: %w", s.driver, err)
	}

	var current sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("migrating %s store: reading schema version: %w", s.driver, err)
	}
	if latest := migrations[len(migrations)-1].version; current.Int64 > int64(latest) {
		return fmt.Errorf("migrating %s store: database schema version %d is newer than this binary's %d", s.driver, current.Int64, latest)
	}

	for _, m := range migrations {
		if int64(m.version) <= current.Int64 {
			continue
		}
		if err := s.apply(ctx, conn, m); err != nil {
			return fmt.Errorf("migrating %s store: migration %d (%s): %w", s.driver, m.version, m.name, err)
		}
	}
	return nil
}

// apply runs one migration in a transaction. It re-checks the version inside
// the transaction: for SQLite the transaction holds the write lock (it begins
// IMMEDIATE), so a second process that got here concurrently sees the first
// one's row and does nothing.
func (s *Store) apply(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	var n int
	if err := tx.QueryRowContext(ctx, s.q("SELECT COUNT(*) FROM schema_migrations WHERE version = ?"), m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	for _, stmt := range m.stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, s.q("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
		m.version, m.name, toMicros(time.Now())); err != nil {
		return err
	}
	return tx.Commit()
}
