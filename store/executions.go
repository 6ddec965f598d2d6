package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"
)

// Execution statuses.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded" // exit code 0
	StatusFailed    = "failed"    // nonzero exit code
	StatusTimeout   = "timeout"
	StatusError     = "error" // the platform failed, not the user's code
)

// Execution is the record of one run of user code: who ran it, how, and
// what it cost. It is created when the run starts (Status "running") and
// completed once by FinishExecution.
type Execution struct {
	ID           string
	Account      string
	KeyID        string
	Mode         string // ephemeral, cached, checkpointed, branched, persistent
	Language     string // may be "" (a command rather than code)
	Image        string
	Status       string // one of the Status constants
	ExitCode     int
	Error        string
	DurationMS   int64
	CPUMS        int64
	MemoryPeakMB int64
	CostMicroUSD int64 // money is always integer micro-dollars
	StdoutBytes  int64
	StderrBytes  int64
	CreatedAt    time.Time
	FinishedAt   *time.Time // nil while running
}

const executionColumns = `id, account, key_id, mode, language, image, status, exit_code, error,
	duration_ms, cpu_ms, memory_peak_mb, cost_micro_usd, stdout_bytes, stderr_bytes, created_at, finished_at`

// CreateExecution stores a new execution with every field of e. A zero
// CreatedAt is replaced by the current time. It returns an error wrapping
// ErrConflict if an execution with the same ID exists.
func (s *Store) CreateExecution(ctx context.Context, e Execution) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now()
	}
	_, err := s.write.ExecContext(ctx, s.q(`INSERT INTO executions (`+executionColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		e.ID, e.Account, e.KeyID, e.Mode, e.Language, e.Image, e.Status, e.ExitCode, e.Error,
		e.DurationMS, e.CPUMS, e.MemoryPeakMB, e.CostMicroUSD, e.StdoutBytes, e.StderrBytes,
		toMicros(e.CreatedAt), nullMicros(e.FinishedAt))
	if err != nil {
		return fmt.Errorf("creating execution %s: %w", e.ID, mapErr(err))
	}
	return nil
}

// FinishExecution records the outcome of the execution e.ID: it sets Status,
// ExitCode, Error, DurationMS, CPUMS, MemoryPeakMB, CostMicroUSD,
// StdoutBytes, StderrBytes and FinishedAt (the current time if nil) from e,
// and leaves the other columns as they were created. It returns ErrNotFound
// if there is no such execution.
func (s *Store) FinishExecution(ctx context.Context, e Execution) error {
	finished := time.Now()
	if e.FinishedAt != nil {
		finished = *e.FinishedAt
	}
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE executions SET
		status = ?, exit_code = ?, error = ?, duration_ms = ?, cpu_ms = ?, memory_peak_mb = ?,
		cost_micro_usd = ?, stdout_bytes = ?, stderr_bytes = ?, finished_at = ?
		WHERE id = ?`),
		e.Status, e.ExitCode, e.Error, e.DurationMS, e.CPUMS, e.MemoryPeakMB,
		e.CostMicroUSD, e.StdoutBytes, e.StderrBytes, toMicros(finished), e.ID)
	if err == nil {
		err = rowsAffectedOrNotFound(res)
	}
	if err != nil {
		return fmt.Errorf("finishing execution %s: %w", e.ID, err)
	}
	return nil
}

// RaiseExecutionMemory sets the memory peak and cost of the finished execution
// id if memoryPeakMB is higher than the peak recorded (a peak learnt after the
// execution was recorded); it changes nothing else.
func (s *Store) RaiseExecutionMemory(ctx context.Context, id string, memoryPeakMB, costMicroUSD int64) error {
	if _, err := s.write.ExecContext(ctx, s.q(`UPDATE executions SET memory_peak_mb = ?, cost_micro_usd = ?
		WHERE id = ? AND memory_peak_mb < ?`), memoryPeakMB, costMicroUSD, id, memoryPeakMB); err != nil {
		return fmt.Errorf("raising the memory peak of execution %s: %w", id, err)
	}
	return nil
}

// GetExecution returns the execution id of account. It returns ErrNotFound
// if there is no such execution or it belongs to another account.
func (s *Store) GetExecution(ctx context.Context, account, id string) (Execution, error) {
	return queryOne(ctx, s, "getting execution "+id, `SELECT `+executionColumns+` FROM executions WHERE id = ? AND account = ?`,
		[]any{id, account}, scanExecution)
}

// ListExecutions returns the executions of account, or of every account if
// account is "", newest first, at most limit of them (all if limit <= 0).
func (s *Store) ListExecutions(ctx context.Context, account string, limit int) ([]Execution, error) {
	query, args := forAccount(`SELECT `+executionColumns+` FROM executions`, nil, account)
	query += ` ORDER BY created_at DESC, id DESC`
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	return queryAll(ctx, s, "listing executions", query, args, scanExecution)
}

// FailRunningExecutions marks every execution still "running" as "error"
// with Error set to reason and FinishedAt set to at, and returns how many it
// changed. The server calls it at start-up: no sandbox survives a restart, so
// anything still running belonged to the previous process.
func (s *Store) FailRunningExecutions(ctx context.Context, reason string, at time.Time) (int, error) {
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE executions SET status = ?, error = ?, finished_at = ? WHERE status = ?`),
		StatusError, reason, toMicros(at), StatusRunning)
	if err != nil {
		return 0, fmt.Errorf("failing running executions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("failing running executions: %w", err)
	}
	return int(n), nil
}

func scanExecution(row scanner) (Execution, error) {
	var (
		e          Execution
		createdAt  int64
		finishedAt sql.NullInt64
	)
	if err := row.Scan(&e.ID, &e.Account, &e.KeyID, &e.Mode, &e.Language, &e.Image, &e.Status, &e.ExitCode, &e.Error,
		&e.DurationMS, &e.CPUMS, &e.MemoryPeakMB, &e.CostMicroUSD, &e.StdoutBytes, &e.StderrBytes,
		&createdAt, &finishedAt); err != nil {
		return Execution{}, err
	}
	e.CreatedAt = fromMicros(createdAt)
	e.FinishedAt = timePtr(finishedAt)
	return e, nil
}

// UsageRow is usage summed over a group of finished executions.
type UsageRow struct {
	// Group is the day (YYYY-MM-DD, UTC) or mode the row sums, per the grouping
	// asked for; "" when not grouped.
	Group        string
	Executions   int64
	CPUMS        int64
	DurationMS   int64
	MemoryMBMS   int64 // memory peak (MB) times duration (ms), summed: GB-seconds = /1024/1000
	CostMicroUSD int64
}

// Usage groupings.
const (
	GroupNone = ""
	GroupDay  = "day"
	GroupMode = "mode"
)

// Usage sums the account's executions created in [from, to), grouped by day or
// mode (GroupNone for one row), ordered by group.
func (s *Store) Usage(ctx context.Context, account string, from, to time.Time, groupBy string) ([]UsageRow, error) {
	var group string
	switch groupBy {
	case GroupNone:
		group = `''`
	case GroupMode:
		group = `mode`
	case GroupDay:
		group = `CAST(created_at / 86400000000 AS TEXT)` // day number since 1970, converted below
	default:
		return nil, fmt.Errorf("usage: unknown grouping %q", groupBy)
	}
	query := `SELECT ` + group + ` AS g, COUNT(*), COALESCE(SUM(cpu_ms), 0), COALESCE(SUM(duration_ms), 0),
		COALESCE(SUM(memory_peak_mb * duration_ms), 0), COALESCE(SUM(cost_micro_usd), 0)
		FROM executions WHERE account = ? AND created_at >= ? AND created_at < ? AND status <> ?
		GROUP BY g ORDER BY g`
	rows, err := s.read.QueryContext(ctx, s.q(query), account, toMicros(from), toMicros(to), StatusRunning)
	if err != nil {
		return nil, fmt.Errorf("summing usage: %w", err)
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		var r UsageRow
		if err := rows.Scan(&r.Group, &r.Executions, &r.CPUMS, &r.DurationMS, &r.MemoryMBMS, &r.CostMicroUSD); err != nil {
			return nil, fmt.Errorf("summing usage: %w", err)
		}
		if groupBy == GroupDay {
			var day int64
			if _, err := fmt.Sscan(r.Group, &day); err == nil {
				r.Group = time.Unix(day*86400, 0).UTC().Format("2006-01-02")
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summing usage: %w", err)
	}
	if groupBy == GroupDay {
		sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	}
	return out, nil
}
