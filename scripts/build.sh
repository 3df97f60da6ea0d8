#!/usr/bin/env bash
# Builds the release Worker into build/ (index.js + index_bg.wasm) with worker-build.
# wrangler runs this as its [build] command; EDGEWARD_SKIP_BUILD=1 skips it when a build is fresh.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"
if [ "${EDGEWARD_SKIP_BUILD:-0}" = 1 ] && [ -f build/index.js ]; then
  exit 0
fi
[ -x "$WORKER_BUILD" ] || die "worker-build is missing: run scripts/setup.sh"
log "building the release Worker"
"$WORKER_BUILD" --release
