#!/usr/bin/env bash
# Builds the release Worker, serves it locally, loads it with wrk and prints requests/s, p50 and
# p99 for the gated /api route and the no-op route of the same Worker, their ratio, and the
# gzipped bundle size that `wrangler deploy --dry-run` reports.
#   scripts/bench.sh [seconds per round, default 10] [connections, default 16] [rounds, default 3]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"

bash scripts/setup.sh --bench
bash scripts/build.sh

node scripts/bench.mjs "${1:-10}" "${2:-16}" "${3:-3}"

log "bundle size"
out="$(mktemp -d)"
EDGEWARD_SKIP_BUILD=1 wrangler deploy --dry-run --outdir "$out" 2>&1 | grep -E 'Total Upload' \
  || die "wrangler deploy --dry-run failed"
rm -rf "$out"
