// Package store persists the platform's records: API keys and executions.
//
// One Store type serves two databases through database/sql:
//
//   - SQLite (the default): a single file, faas.db, in the data directory,
//     opened through the pure-Go driver modernc.org/sqlite so the faas binary
//     stays static (CGO_ENABLED=0). The file runs in WAL mode with a busy
//     timeout and foreign keys on. Writes go through one dedicated connection
//     (SQLite allows one writer at a time; queueing in database/sql is cheaper
//     and more predictable than retrying SQLITE_BUSY), reads use a separate
//     read-only pool that WAL lets run alongside the writer.
//   - PostgreSQL, when Open is given a postgres:// or postgresql:// URL,
//     through pgx's database/sql driver.
//
// Every query is written once with ? parameter markers and rebound to $n for
// PostgreSQL. Timestamps are stored as BIGINT microseconds since the Unix
// epoch in both databases, so they round-trip exactly to the microsecond and
// come back in UTC. Money is always integer micro-dollars.
//
// Migrations are applied by Open. They are versioned in the
// schema_migrations table, each one runs in its own transaction, and
// re-opening an up-to-date database is a no-op. Two processes may Open the
// same database at once: PostgreSQL serialises them with an advisory lock,
// SQLite with its write lock (migration transactions begin IMMEDIATE).
//
// Errors are wrapped with what was being done; callers test for the
// categories with errors.Is(err, ErrNotFound) and errors.Is(err, ErrConflict).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNotFound is returned when a row does not exist, or exists but belongs to
// another account (callers must not be able to tell the two apart).
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a write would violate a uniqueness constraint,
// for example a second key with the same id or hash.
var ErrConflict = errors.New("conflict")

// Driver names reported by Store.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// SQLiteFile is the name of the SQLite database file inside the data directory.
const SQLiteFile = "faas.db"

// postgresMaxConns bounds the PostgreSQL pool so a burst of requests queues in
// the process instead of exhausting the server's max_connections (100 by
// default, shared with every other node).
const postgresMaxConns = 16

// Store is a handle on the database. It is safe for concurrent use by many
// goroutines. Close it when done.
type Store struct {
	driver string
	// write runs every statement that modifies data. For SQLite it holds a
	// single connection, so writers queue in database/sql rather than
	// contending for SQLite's write lock.
	write *sql.DB
	// read runs queries. For SQLite it is a separate pool of query-only
	// connections; for PostgreSQL it is the same pool as write.
	read *sql.DB
}

// Open opens the store and applies any pending migrations.
//
// If databaseURL is empty, it opens (creating if needed) the SQLite database
// filepath.Join(dataDir, SQLiteFile), creating dataDir if it is missing.
// If databaseURL starts with "postgres://" or "postgresql://", it connects to
// PostgreSQL; query parameters are passed to pgx (for example sslmode, or
// search_path to use a schema other than public). Any other URL is an error.
func Open(ctx context.Context, databaseURL, dataDir string) (*Store, error) {
	var (
		s   *Store
		err error
	)
	switch {
	case databaseURL == "":
		s, err = openSQLite(ctx, dataDir)
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		s, err = openPostgres(ctx, databaseURL)
	default:
		return nil, errors.New("opening store: unsupported database URL scheme (want postgres:// or postgresql://, or empty for SQLite)")
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(ctx context.Context, dataDir string) (*Store, error) {
	if dataDir == "" {
		return nil, errors.New("opening sqlite store: empty data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("opening sqlite store: creating data directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(dataDir, SQLiteFile))
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	// A file: URI, so that a path containing '?' or '#' is escaped rather
	// than cut short by the driver's query parsing.
	base := (&url.URL{Scheme: "file", Path: path}).String()

	// synchronous(NORMAL) is the recommended setting for WAL: a commit is
	// durable against a process crash, and a power loss can lose only the
	// last commits, never corrupt the file.
	writeDSN := base + "?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	w, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Open the writer first: it switches the file to WAL, which the
	// query-only readers cannot do themselves. Switching needs the file to
	// itself, and SQLite answers BUSY at once (without waiting out
	// busy_timeout) while another process opens it: retry for a while.
	for attempt := 0; ; attempt++ {
		err := w.PingContext(ctx)
		if err == nil {
			break
		}
		if attempt >= 50 || !strings.Contains(err.Error(), "SQLITE_BUSY") || ctx.Err() != nil {
			w.Close()
			return nil, fmt.Errorf("opening sqlite store %s: %w", path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A damaged file is refused at start with a message saying what to do,
	// rather than failing requests one by one later.
	var check string
	if err := w.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&check); err != nil || check != "ok" {
		w.Close()
		if err != nil {
			check = err.Error()
		}
		return nil, fmt.Errorf("opening sqlite store %s: the database file is corrupt (%s): restore it from a backup, or move it aside to start with an empty one", path, strings.TrimSpace(check))
	}

	readDSN := base + "?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_query_only=1"
	r, err := sql.Open("sqlite", readDSN)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening sqlite store %s: %w", path, err)
	}
	n := max(4, runtime.NumCPU())
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	return &Store{driver: DriverSQLite, write: w, read: r}, nil
}

func openPostgres(ctx context.Context, databaseURL string) (*Store, error) {
	db, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresMaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	return &Store{driver: DriverPostgres, write: db, read: db}, nil
}

// Close closes the database connections. Calls in progress may fail.
func (s *Store) Close() error {
	err := s.write.Close()
	if s.read != s.write {
		err = errors.Join(err, s.read.Close())
	}
	if err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

// Driver reports which database the store uses: DriverSQLite ("sqlite") or
// DriverPostgres ("postgres").
func (s *Store) Driver() string { return s.driver }

// Ping checks that the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging %s store: %w", s.driver, err)
	}
	if s.read != s.write {
		if err := s.read.PingContext(ctx); err != nil {
			return fmt.Errorf("pinging %s store: %w", s.driver, err)
		}
	}
	return nil
}

// q rebinds a query written with ? parameter markers for the store's driver.
func (s *Store) q(query string) string {
	if s.driver == DriverPostgres {
		return rebind(query)
	}
	return query
}

// rebind rewrites ? parameter markers as $1, $2, ... for PostgreSQL. A ? inside a
// single-quoted string literal is left alone.
func rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	inString := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			inString = !inString // '' inside a literal toggles twice: still inside
		case c == '?' && !inString:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// isUniqueViolation reports whether err is a unique or primary-key
// constraint violation from either driver.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" // unique_violation
	}
	return false
}

// mapErr turns driver errors into the package's sentinels where one applies.
func mapErr(err error) error {
	if isUniqueViolation(err) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// toMicros converts t to the stored form: microseconds since the Unix epoch.
func toMicros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros converts a stored timestamp back to a UTC time.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullMicros converts an optional time to a nullable stored timestamp.
func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: toMicros(*t), Valid: true}
}

// timePtr converts a nullable stored timestamp to an optional UTC time.
func timePtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// forAccount narrows a SELECT (with or without a WHERE clause, and nothing after
// it) to the rows of account, or leaves it for every account if account is "".
func forAccount(query string, args []any, account string) (string, []any) {
	switch {
	case account == "":
		return query, args
	case strings.Contains(query, " WHERE "):
		return query + ` AND account = ?`, append(args, account)
	default:
		return query + ` WHERE account = ?`, append(args, account)
	}
}

// queryAll runs a read query and scans every row with scan; what names the
// operation in errors ("listing keys").
func queryAll[T any](ctx context.Context, s *Store, what, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := s.read.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// queryOne runs a read query for one row and scans it with scan; no row is
// ErrNotFound. what names the operation in errors ("getting snapshot X").
func queryOne[T any](ctx context.Context, s *Store, what, query string, args []any, scan func(scanner) (T, error)) (T, error) {
	v, err := scan(s.read.QueryRowContext(ctx, s.q(query), args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}

// rowsAffectedOrNotFound returns ErrNotFound when res changed no rows.
func rowsAffectedOrNotFound(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
