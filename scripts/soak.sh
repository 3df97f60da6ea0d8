#!/usr/bin/env bash
# The soak: a mixed load (code flows, refreshes with replays, gateway calls, automatic logins)
# against the built Worker in local workerd, then the books (no 5xx, no code used twice, no grant
# lost, every refresh family consistent). Prints the figures; exits 1 if a book does not balance.
#   scripts/soak.sh [seconds, default 60] [concurrency, default 64]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"
bash scripts/setup.sh
bash scripts/build.sh
node scripts/soak.mjs "${1:-60}" "${2:-64}"
