#!/usr/bin/env bash
# Fuzzes edgeward's pure protocol code with cargo-fuzz (libFuzzer, nightly), each target for a
# bounded time, and prints executions and findings per target. A crash is saved under
# fuzz/artifacts/<target>/ and fails the run; turn it into a regression test in src/.
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]   (targets: jwt origin form admin_json)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"

bash scripts/setup.sh --fuzz
seconds="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(jwt origin form admin_json)

export PATH="$(dirname "$CARGO_FUZZ"):$PATH"
cd fuzz
log "building the fuzz targets (nightly, optimized)"
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O

printf '\n| target | seconds | executions | exec/s | corpus | result |\n|---|---:|---:|---:|---:|---|\n' > /tmp/edgeward-fuzz-table.$$
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log "fuzzing $t for ${seconds}s"
  out="$(mktemp)"
  set +e
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" >"$out" 2>&1
  rc=$?
  set -e
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)"
  corpus="$(find "corpus/$t" -type f | wc -l)"
  if [ "$rc" = 0 ]; then result=ok; else result="FAILED (rc $rc, see fuzz/artifacts/$t/)"; failed=1; tail -40 "$out" >&2; fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$corpus" "$result" >> /tmp/edgeward-fuzz-table.$$
  rm -f "$out"
done
cat /tmp/edgeward-fuzz-table.$$
rm -f /tmp/edgeward-fuzz-table.$$
exit "$failed"
