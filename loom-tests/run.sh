#!/usr/bin/env bash
# Runs the loom models. Bounded for CI; raise the bounds by hand for a deeper search, e.g.
#   LOOM_MAX_PREEMPTIONS=3 bash loom-tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg weir_loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-10000}"
# A separate target dir: the cfg changes every crate's build, so sharing would rebuild both ways.
exec cargo test --release -p weir-loom-tests --target-dir target/loom -- --test-threads=1 "$@"
