#!/usr/bin/env bash
# Builds the release Worker into build/ (index.js + index_bg.wasm) with worker-build.
# wrangler runs this as its [build] command; EDGEWARD_SKIP_BUILD=1 skips it when a build is fresh.
#   scripts/build.sh --io-counts   the same Worker with the storage-call counters that
#                                  scripts/scale.sh reads (src/edge/rt/counts.rs), into build-counts/
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"
[ -x "$WORKER_BUILD" ] || die "worker-build is missing: run scripts/setup.sh"
if [ "${1:-}" = --io-counts ]; then
  log "building the release Worker with storage-call counters (build-counts/)"
  "$WORKER_BUILD" --release --out-dir build-counts . --features io-counts
  exit 0
fi
if [ "${EDGEWARD_SKIP_BUILD:-0}" = 1 ] && [ -f build/index.js ]; then
  exit 0
fi
log "building the release Worker"
"$WORKER_BUILD" --release
