#!/usr/bin/env bash
# Builds the release Worker, serves it locally (Miniflare) and loads it with wrk; prints one
# markdown table per section (scripts/bench.mjs says how each is measured):
#   1. edgeward's edge checks (GET /edge/whoami) against its no-op /healthz, and the token endpoint
#   2. the same checks in a hand-written jose Worker (benches/jose-worker), and edgeward ÷ jose
#   3. GET /api/... through edgeward to a local origin against straight to that origin, and
#      through the jose Worker doing the same (edgeward ÷ jose)
#   4. gzipped bundle sizes (`wrangler deploy --dry-run`) of edgeward and both peers, and CPU time
#      per request
# then the per-flow timings, and:
#   5. the returning user's code flow (authorize → code → token) at edgeward and at Cloudflare's
#      workers-oauth-provider (benches/oauth-provider-worker), and edgeward ÷ provider
#   6. cold start: a new workerd process per sample, its first GET /healthz against a warm one,
#      for edgeward, the jose Worker, the provider Worker and JS-only baselines
#   7. issue 15's aims against this run's figures, each with whether it is met
# About 6 minutes at the defaults on 2 cores (plus the build).
#   scripts/bench.sh [seconds per round, default 8] [connections, default 16] [rounds, default 3]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"

bash scripts/setup.sh --bench
bash scripts/build.sh

node scripts/bench.mjs "${1:-8}" "${2:-16}" "${3:-3}"
