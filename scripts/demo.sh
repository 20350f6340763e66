#!/usr/bin/env bash
# One command: set up, then label the bundled sample clips with the bundled model (inline mode, no Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node dist/src/cli/bin.js label samples/ --top-k 3 "$@"
