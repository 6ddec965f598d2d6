#!/usr/bin/env bash
# test.sh: the full test suite, as CI runs it (as root, on Debian 12):
# installs what the tests need, builds runsc and faas, starts PostgreSQL, and runs
# every Go test against real gVisor sandboxes, SQLite and PostgreSQL, then the
# TypeScript and Python SDK suites against real servers.
# Arguments go to `go test` (default: ./..., and then the SDK suites).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

FAAS_SETUP_TEST=1 scripts/setup.sh
url_line=$(scripts/postgres.sh | tail -n 1)
export "${url_line?}"

# Sandboxes need root and runsc; the tests fail (never skip) when CI is set.
export FAAS_RUNSC=$PWD/bin/runsc
args=("$@")
((${#args[@]})) || args=(./...)
echo "test: go test ${args[*]}" >&2
go vet ./...
export FAAS_LOAD_REPORT=${TMPDIR:-/tmp}/faas-load-report.txt
rm -f "$FAAS_LOAD_REPORT"
go test -count=1 -timeout 40m "${args[@]}"
# The load test's figures (go test prints a passing test's output only with -v).
if [[ -f $FAAS_LOAD_REPORT ]]; then
	echo "test: $(cat "$FAAS_LOAD_REPORT")" >&2
fi

# The SDKs' own suites, each against real servers they start (only for a full run).
if (($# == 0)); then
	scripts/test-sdk.sh
fi
