#!/usr/bin/env bash
# One command: set up, then run the whole test suite (unit, integration, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
npx vitest run "$@"
