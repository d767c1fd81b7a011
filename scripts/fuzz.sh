#!/usr/bin/env bash
# Runs the cargo-fuzz targets of crates/core/fuzz (the ingest body parser and the
# expression compiler) for a bounded time each; fails on any crash, panic or timeout.
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh expression      one target
# libFuzzer's instrumentation needs a nightly toolchain: without one this fails (it never
# skips). cargo-fuzz is installed once with `cargo install cargo-fuzz --locked` (about
# 35 s). The fuzz crate builds in release mode into its own target directory,
# crates/core/fuzz/target (about 50 s the first time); inputs found interesting are kept
# in crates/core/fuzz/corpus/<target> and crashes in crates/core/fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "ERROR: no nightly toolchain: cargo fuzz needs one (rustup toolchain install nightly --profile minimal)"
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  t=$SECONDS
  cargo install cargo-fuzz --locked
  log "cargo-fuzz installed in $((SECONDS - t)) s"
fi

cd crates/core/fuzz
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
  log "$target: ${SECONDS_EACH} s"
  t=$SECONDS
  mkdir -p "corpus/$target"
  # -timeout: one input taking over 10 s is a failure too; -rss_limit_mb: as is memory
  # beyond 2 GiB.
  if ! cargo +nightly fuzz run "$target" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    log "FAILED: $target (the crashing input is in crates/core/fuzz/artifacts/$target)"
    exit 1
  fi
  log "$target: no crash ($((SECONDS - t)) s with the build)"
done
