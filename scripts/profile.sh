#!/usr/bin/env bash
# CPU profiles of the Worker under load (scripts/profile.mjs says what is measured): builds the
# release Worker keeping its function names into build-prof/ (the release build strips them),
# then profiles the no-op route, GET /edge/whoami and the token endpoint with V8's profiler.
#   scripts/profile.sh [seconds per route, default 5] [outdir for the .cpuprofile files]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"

bash scripts/setup.sh --bench
log "building the Worker with function names (build-prof/)"
# wasm-pack's profiling profile: the release build, with wasm-opt keeping the names section
# (package.metadata.wasm-pack.profile.profiling in Cargo.toml); cargo must not strip them.
CARGO_PROFILE_RELEASE_STRIP=false "$WORKER_BUILD" --profiling --out-dir build-prof
node scripts/profile.mjs build-prof "${1:-5}" ${2:+"$2"}
