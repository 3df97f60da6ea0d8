# Sourced by the other scripts: where edgeward's build tools live and the environment that keeps
# worker-build from downloading anything (it reads WASM_BINDGEN_BIN, WASM_OPT_BIN, ESBUILD_BIN).
# Tools built from crates live outside the checkout, so a fresh clone reuses them.

EDGEWARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EDGEWARD_TOOLS="${EDGEWARD_TOOLS:-$HOME/.cache/edgeward/tools}"
WORKER_BUILD_VERSION="0.8.7"
# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$EDGEWARD_ROOT/Cargo.lock")"

WORKER_BUILD="$EDGEWARD_TOOLS/worker-build-$WORKER_BUILD_VERSION/bin/worker-build"
CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ="$EDGEWARD_TOOLS/cargo-fuzz-$CARGO_FUZZ_VERSION/bin/cargo-fuzz"
export WASM_BINDGEN_BIN="$EDGEWARD_TOOLS/wasm-bindgen-cli-$WASM_BINDGEN_VERSION/bin/wasm-bindgen"
export WASM_OPT_BIN="$EDGEWARD_ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$EDGEWARD_ROOT/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false
export PATH="$EDGEWARD_ROOT/node_modules/.bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
