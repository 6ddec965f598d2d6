#!/usr/bin/env bash
# test-sdk.sh: the TypeScript and Python SDK tests, against real `faas serve`
# processes that the tests start themselves (as root, on Debian 12).
#
# Run from anywhere after bin/faas, bin/faas-agent and bin/runsc are built
# (scripts/setup.sh, or the build commands in the README). It installs what the
# tests need when missing (Node.js and npm, the SDK's pinned dev dependencies
# with `npm ci`, python3-pytest and python3-websockets from apt), checks that
# the Python SDK installs with `pip install -e` offline, then runs
#   (cd sdk/typescript && npm test)
#   /usr/bin/python3 -m pytest -q sdk/python/tests
# and exits non-zero if either fails (pytest finding no tests is a failure).
set -uo pipefail
cd "$(dirname "$0")/.."

die() { echo "test-sdk: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root: the tests start faas servers that run gVisor sandboxes"
for f in bin/faas bin/faas-agent; do
	[[ -x $f ]] || die "$f is missing: build it with CGO_ENABLED=0 go build -o bin/ ./cmd/faas ./cmd/faas-agent (or scripts/setup.sh)"
done
[[ -x ${FAAS_RUNSC:-bin/runsc} ]] || die "${FAAS_RUNSC:-bin/runsc} is missing: build it with scripts/build-runsc.sh"

PY=/usr/bin/python3
apt_updated=
apt_install() {
	if [[ -z $apt_updated ]]; then
		apt-get update -qq >/dev/null || die "apt-get update failed"
		apt_updated=1
	fi
	echo "test-sdk: apt-get install $*" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 20)) || die "Node.js >= 20 is needed (global fetch); found $(node --version)"
$PY -c 'import pytest' 2>/dev/null || apt_install python3-pytest
$PY -c 'import websockets' 2>/dev/null || apt_install python3-websockets
$PY -c 'import venv, setuptools' 2>/dev/null || apt_install python3-venv python3-setuptools

failed=()

echo "test-sdk: TypeScript: npm ci && npm test" >&2
if ! (cd sdk/typescript && { [[ -d node_modules ]] && npm ls --depth=0 >/dev/null 2>&1 || npm ci --no-audit --no-fund; } && npm test); then
	failed+=(typescript)
fi

echo "test-sdk: Python: pip install -e sdk/python (offline, in a throwaway venv)" >&2
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
if ! { $PY -m venv --system-site-packages "$venv/v" &&
	"$venv/v/bin/pip" install -q --no-index --no-build-isolation --no-deps -e sdk/python &&
	(cd "$venv" && "$venv/v/bin/python" -c 'import faas_sdk; print("test-sdk: installed faas_sdk", faas_sdk.__version__, "from", faas_sdk.__file__)'); }; then
	failed+=(python-install)
fi

echo "test-sdk: Python: pytest" >&2
$PY -m pytest -q sdk/python/tests
rc=$?
# 5 is "no tests collected": that is a failure too.
((rc == 0)) || failed+=("python(pytest exit $rc)")

if ((${#failed[@]})); then
	die "FAILED: ${failed[*]}"
fi
echo "test-sdk: all SDK tests passed" >&2
