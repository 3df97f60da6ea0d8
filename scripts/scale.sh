#!/usr/bin/env bash
# The scale model (docs/scale.md): builds the Worker with its storage-call counters
# (scripts/build.sh --io-counts, into build-counts/), drives every flow through it in local
# workerd, scales the counts to 10x the peak of SCALE.md and prints one row per object kind, the
# round trips per flow and any KV key written more than once a second. Exits 1 if anything is over.
#   scripts/scale.sh [--ops N] [--mixed SECONDS] [--users N] [--partners N] [--allow-over A,B]
# EDGEWARD_SKIP_BUILD=1 reuses build-counts/ when it exists.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"
bash scripts/setup.sh
if [ "${EDGEWARD_SKIP_BUILD:-0}" != 1 ] || [ ! -f build-counts/index.js ]; then
  bash scripts/build.sh --io-counts
fi
exec node scripts/scale.mjs "$@"
