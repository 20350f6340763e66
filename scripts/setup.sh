#!/usr/bin/env bash
# Set up framewise on a Debian machine: system packages (ffmpeg, redis-server, postgresql;
# chromium with --test) when missing, npm dependencies, and the TypeScript build. Safe to run again.
# PostgreSQL is installed, not started: queue mode points DATABASE_URL at a server of your own, and
# the tests start a private cluster (initdb + pg_ctl from /usr/lib/postgresql/<version>/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# initdb and pg_ctl are not on PATH in Debian's layout
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then need+=(postgresql); fi
# --test: also what the test suite needs (Debian's chromium for the web page test)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "framewise setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# onnxruntime-node's install script only fetches CUDA binaries (the CPU library ships in the
# package) and fails without internet: skip it. tfjs-node(-gpu) are optional and may fail.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm 11 here records only this platform's optional packages in the lock file, which `npm ci`
  # then calls out of sync; `npm install` installs the same locked versions.
  npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error
fi
npm run --silent build
