#!/usr/bin/env bash
# Installs whatever edgeward's build, dev server and tests need and is missing. Idempotent and
# quick when everything is there; needs only the package registries (no other downloads).
#   scripts/setup.sh            build + test tools
#   scripts/setup.sh --bench    also the load generator (wrk)
#   scripts/setup.sh --browser  also Chromium for the browser tests
#   scripts/setup.sh --fuzz     also cargo-fuzz (the fuzz targets need the nightly toolchain)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"

want_bench=0
want_browser=0
want_fuzz=0
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    --browser) want_browser=1 ;;
    --fuzz) want_fuzz=1 ;;
    *) die "unknown option $arg" ;;
  esac
done

command -v cargo >/dev/null || die "cargo is required (install Rust with rustup)"
command -v node >/dev/null || die "node >= 20.3 is required"
command -v npm >/dev/null || die "npm is required"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in clippy rustfmt; do
  if ! rustup component list --installed | grep -q "^$component"; then
    log "adding rustup component $component"
    rustup component add "$component"
  fi
done

[ -n "$WASM_BINDGEN_VERSION" ] || die "no wasm-bindgen in Cargo.lock"
if [ ! -x "$WASM_BINDGEN_BIN" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  # Not --locked: one of its locked dependencies is missing from the registry.
  cargo install --quiet --root "$EDGEWARD_TOOLS/wasm-bindgen-cli-$WASM_BINDGEN_VERSION" \
    wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
if [ ! -x "$WORKER_BUILD" ]; then
  log "installing worker-build $WORKER_BUILD_VERSION (once)"
  cargo install --quiet --root "$EDGEWARD_TOOLS/worker-build-$WORKER_BUILD_VERSION" \
    worker-build --version "$WORKER_BUILD_VERSION"
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing node tools (wrangler, esbuild, binaryen) from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error
fi

apt_install() {
  local apt_get=(apt-get)
  [ "$(id -u)" = 0 ] || apt_get=(sudo apt-get)
  "${apt_get[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq "$@" >/dev/null
}
if [ "$want_bench" = 1 ] && ! command -v wrk >/dev/null; then
  log "installing wrk"
  apt_install wrk
fi
if [ "$want_browser" = 1 ] && ! command -v chromium >/dev/null; then
  log "installing Chromium (Debian's package; test tools must not download their own)"
  apt_install chromium
fi
if [ "$want_fuzz" = 1 ]; then
  rustup toolchain list | grep -q '^nightly' || die "fuzzing needs the nightly toolchain (rustup toolchain install nightly)"
  if [ ! -x "$CARGO_FUZZ" ]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION (once)"
    cargo install --quiet --locked --root "$EDGEWARD_TOOLS/cargo-fuzz-$CARGO_FUZZ_VERSION" \
      cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  fi
fi
