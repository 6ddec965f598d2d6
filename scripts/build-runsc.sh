#!/usr/bin/env bash
# Builds runsc from the gVisor module pinned in tools/runsc/go.mod, statically
# (CGO_ENABLED=0: a cgo build cannot re-exec itself inside the sandbox), into
# bin/runsc. Skips the build when bin/runsc already comes from the pinned version.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(cd tools/runsc && go list -m -f '{{.Version}}' gvisor.dev/gvisor)
stamp=bin/.runsc-version
if [[ -x bin/runsc && -f $stamp && "$(cat "$stamp")" == "$version" ]]; then
  echo "runsc $version is built (bin/runsc)"
  exit 0
fi
mkdir -p bin
echo "building runsc from gvisor.dev/gvisor@$version (CGO_ENABLED=0; takes a few minutes)..."
(cd tools/runsc && CGO_ENABLED=0 go build -trimpath -ldflags "-X gvisor.dev/gvisor/runsc/version.version=$version" -o ../../bin/runsc.tmp gvisor.dev/gvisor/runsc)
mv bin/runsc.tmp bin/runsc
echo "$version" > "$stamp"
# The first line only, without a pipe into head: under pipefail, head closing early
# kills runsc with SIGPIPE and fails the script.
version_out=$(bin/runsc --version)
echo "${version_out%%$'\n'*}"
