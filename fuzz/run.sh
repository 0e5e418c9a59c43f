#!/usr/bin/env bash
# Runs each coverage-guided fuzz target (libFuzzer via cargo-fuzz) for a bounded time and
# prints its execution count. Crashes land in fuzz/artifacts/<target>/; copy each into
# fuzz/regressions/<target>/ once fixed, so `cargo test` replays it forever.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     (default 60)
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 allows them on the stable
# toolchain this machine has. No sanitizer runtime is assumed (--sanitizer none): Rust's own
# checks (bounds, overflow in debug assertions) catch the bugs that matter here.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in http_decode jsonrpc; do
  # New inputs go to the ignored work corpus; the committed seeds stay small.
  mkdir -p "corpus/$target" "regressions/$target" "corpus-work/$target"
  echo "== $target for ${SECONDS_PER_TARGET}s"
  log=$(mktemp)
  cargo fuzz run --sanitizer none --debug-assertions "$target" "corpus-work/$target" "corpus/$target" "regressions/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 -rss_limit_mb=2048 2>&1 | tee "$log" | grep -E '^#[0-9]+.*(pulse|DONE)|Done [0-9]+ runs|ERROR|panicked' || true
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' || echo 0)
  echo "$target: $runs executions in ${SECONDS_PER_TARGET}s"
  rm -f "$log"
done
