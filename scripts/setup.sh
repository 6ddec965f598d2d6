#!/usr/bin/env bash
# setup.sh: make this Debian 12 machine ready to build and run faas, then build it.
#
#   sudo scripts/setup.sh          # packages, runsc (pinned gVisor), bin/faas, bin/faas-agent
#
# Idempotent. It installs the Debian packages the sandboxes' "host" image serves
# (python3, nodejs, bash, sftp-server) and the build needs, builds runsc from the gVisor module
# pinned in tools/runsc/go.mod (statically, CGO_ENABLED=0), then faas and its agent.
# Set FAAS_SETUP_TEST=1 to also install what the test suite needs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "run as root: gVisor sandboxes need root (sudo scripts/setup.sh)"; exit 1; }

# openssh-sftp-server runs inside instances for scp and sftp over the SSH gateway.
packages=(ca-certificates git make python3 nodejs bash coreutils procps iproute2 openssh-sftp-server)
if [[ ${FAAS_SETUP_TEST:-} == 1 ]]; then
	# The tests drive the SSH gateway with the OpenSSH client, start Jupyter in
	# an instance, and build image archives around a static busybox.
	packages+=(postgresql postgresql-client openssh-client jupyter-notebook busybox-static)
fi
missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go: the version go.mod asks for. Debian 12's own Go is too old; a Go >= 1.21
# fetches the right toolchain from the module proxy by itself (GOTOOLCHAIN=auto).
export PATH=$PATH:/usr/local/go/bin
if ! command -v go >/dev/null; then
	log "Go is missing: install Go 1.21 or newer (https://go.dev/doc/install) into /usr/local/go, then run this again"
	exit 1
fi

scripts/build-runsc.sh
log "building bin/faas and bin/faas-agent"
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/faas ./cmd/faas
CGO_ENABLED=0 go build -trimpath -o bin/faas-agent ./cmd/faas-agent
log "ready: bin/faas, bin/faas-agent, bin/runsc"
