#!/usr/bin/env bash
# Installs what is missing, then runs every check and test: formatting, clippy (native and
# wasm32, warnings denied), native unit tests, the release build, and the end-to-end tests
# against that build in local workerd.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"

bash scripts/setup.sh --browser

# Runs a step that must end: in a session of its own, killed after `budget` seconds, and nothing
# it started outlives it. A test process that a timeout could not stop (one blocked on a stuck
# workerd, say) would otherwise keep the run open until CI's own limit.
bounded() {
  local budget="$1" rc=0 pid
  shift
  setsid timeout --kill-after=30 "$budget" "$@" &
  pid=$!
  wait "$pid" || rc=$?
  pkill -KILL -s "$pid" 2>/dev/null || true
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    log "stopped after ${budget} s: $*"
  fi
  return "$rc"
}

log "cargo fmt --check"
cargo fmt --all -- --check

log "clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "clippy (wasm32)"
cargo clippy --lib --locked --target wasm32-unknown-unknown -- -D warnings
cargo clippy --lib --locked --target wasm32-unknown-unknown --features io-counts -- -D warnings

log "unit tests"
cargo test --workspace --locked

log "documents name only what exists"
node --test tests/docs/

bash scripts/build.sh
# The same Worker with storage-call counters (build-counts/), for the scale model below and the
# end-to-end test that the counters answer nowhere else.
bash scripts/build.sh --io-counts

log "wrangler deploy --dry-run (bindings, migrations, bundle size)"
dry="$(mktemp -d)"
EDGEWARD_SKIP_BUILD=1 wrangler deploy --dry-run --outdir "$dry" > "$dry/out.txt" 2>&1 \
  || { cat "$dry/out.txt"; die "wrangler deploy --dry-run failed"; }
grep -E 'Total Upload' "$dry/out.txt"
rm -rf "$dry"

log "building the OIDC client library example the end-to-end tests drive"
cargo build --locked --example oidc_client

log "end-to-end tests"
# A test file, and each test in it, gets 5 minutes (node applies --test-timeout to both; the
# longest file takes about one locally); the whole run gets 40.
bounded 2400 node --test --test-concurrency=1 --test-timeout=300000 tests/e2e/

log "scale model, short run (scripts/scale.sh; docs/scale.md)"
# Anything over fails the run.
EDGEWARD_SKIP_BUILD=1 bounded 900 bash scripts/scale.sh --ops 6 --mixed 4
