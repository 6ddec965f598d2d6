#!/usr/bin/env bash
# postgres.sh: make a local PostgreSQL ready for the store tests.
#
# Usage (as root, Debian 12):
#
#   scripts/postgres.sh                                  # install/start, print the URL
#   export "$(scripts/postgres.sh | tail -n 1)"          # ... and put it in the environment
#   go test ./store/
#
# Idempotent: run it as often as you like. It
#   1. installs Debian's postgresql package if no server binaries are present,
#   2. creates the cluster <version>/main if it does not exist,
#   3. starts it with pg_ctlcluster (works without systemd) unless it is running,
#   4. waits until it accepts connections on 127.0.0.1:$PGPORT,
#   5. creates (or resets the password of) the role faas_test and creates the
#      database faas_test owned by it,
#   6. prints FAAS_TEST_DATABASE_URL=postgres://... as the last line of stdout.
# Progress goes to stderr, so stdout carries only the URL line.
#
# Environment:
#   FAAS_TEST_DB_PASSWORD  password for the faas_test role (default faas_test)
#   PGPORT                 port of the cluster (default 5432)
set -euo pipefail

PASSWORD="${FAAS_TEST_DB_PASSWORD:-faas_test}"
PORT="${PGPORT:-5432}"
ROLE=faas_test
DB=faas_test
CLUSTER=main

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, manages the cluster)"
[[ $PASSWORD =~ ^[A-Za-z0-9_.~-]+$ ]] || die "FAAS_TEST_DB_PASSWORD may contain only [A-Za-z0-9_.~-] (it goes into a URL and SQL unquoted)"

# Newest PostgreSQL major version with server binaries installed, or "".
server_version() {
	local d v=""
	for d in /usr/lib/postgresql/*/bin/postgres; do
		[[ -x $d ]] || continue
		d=${d#/usr/lib/postgresql/}
		d=${d%%/*}
		if [[ -z $v || $d -gt $v ]]; then v=$d; fi
	done
	echo "$v"
}

# 1. Install.
VERSION=$(server_version)
if [[ -z $VERSION ]] || ! command -v pg_ctlcluster >/dev/null; then
	log "installing postgresql"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2
	apt-get install -y postgresql >&2
	VERSION=$(server_version)
	[[ -n $VERSION ]] || die "postgresql installed but no server found under /usr/lib/postgresql"
fi
log "using PostgreSQL $VERSION"

# 2. Cluster. The package normally creates <version>/main; a container image
# may have had it removed.
if [[ ! -f /etc/postgresql/$VERSION/$CLUSTER/postgresql.conf ]]; then
	log "creating cluster $VERSION/$CLUSTER on port $PORT"
	pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" >&2
fi
conf_port=$(pg_conftool -s "$VERSION" "$CLUSTER" show port 2>/dev/null || true)
if [[ $conf_port != "$PORT" ]]; then
	log "setting port of $VERSION/$CLUSTER to $PORT (was ${conf_port:-unset})"
	pg_conftool "$VERSION" "$CLUSTER" set port "$PORT"
	if pg_ctlcluster "$VERSION" "$CLUSTER" status >/dev/null 2>&1; then
		pg_ctlcluster "$VERSION" "$CLUSTER" restart >&2
	fi
fi

# 3. Start. The socket directory lives on /run, which may be a fresh tmpfs.
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
if pg_ctlcluster "$VERSION" "$CLUSTER" status >/dev/null 2>&1; then
	log "cluster $VERSION/$CLUSTER already running"
else
	log "starting cluster $VERSION/$CLUSTER"
	pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

# 4. Wait.
for i in $(seq 1 60); do
	if pg_isready -q -h 127.0.0.1 -p "$PORT"; then break; fi
	[[ $i -lt 60 ]] || die "PostgreSQL not accepting connections on 127.0.0.1:$PORT after 60s (see /var/log/postgresql/postgresql-$VERSION-$CLUSTER.log)"
	sleep 1
done

# 5. Role and database, as the postgres superuser over the local socket.
psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" "$@"; }
psql_admin -d postgres >&2 <<SQL
DO \$\$
BEGIN
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
		ALTER ROLE $ROLE WITH LOGIN PASSWORD '$PASSWORD';
	ELSE
		CREATE ROLE $ROLE WITH LOGIN PASSWORD '$PASSWORD';
	END IF;
END
\$\$;
SQL
if [[ -z $(psql_admin -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
	log "creating database $DB"
	psql_admin -d postgres -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

URL="postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB?sslmode=disable"

# Check the URL works the way the tests will use it: TCP and password.
psql -X -q -v ON_ERROR_STOP=1 "$URL" -c "SELECT 1" >/dev/null || die "cannot connect with $URL"
log "ready"

# 6. The URL, last line of stdout.
echo "FAAS_TEST_DATABASE_URL=$URL"
