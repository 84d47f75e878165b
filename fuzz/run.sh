#!/usr/bin/env bash
# CI's bounded fuzz run: builds the `pool_model` target and fuzzes it for FUZZ_SECONDS (30) from
# the seed corpus (fuzz/seeds/pool_model, which it does not modify), with a fixed libFuzzer seed.
# Exits non-zero if an input fails; it is saved under fuzz/artifacts/pool_model/, and
# `cargo +nightly fuzz fmt pool_model <file>` prints it as an op list for tests/fuzz_regressions.rs.
#
# Environment: FUZZ_SECONDS; FUZZ_SANITIZER (`none` by default: the crate forbids unsafe code,
# and without ASan the target runs about ten times faster; `address` to use it);
# POOL_MODEL_THREADED=1, see fuzz/src/pool_model.rs.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build -s "$sanitizer" pool_model

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cargo +nightly fuzz run -s "$sanitizer" pool_model "$corpus" seeds/pool_model -- \
  -max_total_time="$seconds" -timeout=30 -seed=1 -print_final_stats=1
