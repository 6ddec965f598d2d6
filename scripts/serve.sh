#!/usr/bin/env bash
# serve.sh: set up this machine (scripts/setup.sh) and run the server on its
# embedded defaults: SQLite and all state in the data dir (/var/lib/faas as root,
# or FAAS_DATA_DIR), listening on 127.0.0.1:${FAAS_API_PORT:-8080}. Extra arguments
# go to `faas serve` (see `bin/faas serve -h`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec bin/faas serve "$@"
