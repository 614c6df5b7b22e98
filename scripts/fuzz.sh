#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted bytes (tests/fuzz: the Flex argv and
# options, CSI requests and their conversion, the policy, the audit log
# reader) with cargo fuzz (libFuzzer; needs the nightly toolchain this
# machine has, and installs cargo-fuzz from crates.io when missing), each for
# SECONDS (default 60). The seed corpus in tests/fuzz/corpus is copied to
# target/fuzz-corpus and grows there; a crash leaves its input in
# target/fuzz-artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "scripts/fuzz.sh: cargo fuzz needs a nightly toolchain, and none is installed" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
root=$PWD
for target in flex_callout csi_requests policy audit_log; do
  corpus=$root/target/fuzz-corpus/$target
  artifacts=$root/target/fuzz-artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  cp -n tests/fuzz/corpus/$target/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $target for ${seconds}s"
  (cd tests/fuzz && cargo +nightly fuzz run --fuzz-dir . -O "$target" "$corpus" -- \
    -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1) \
    | grep -E '^(#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|stat::average_exec_per_sec|==|SUMMARY|fuzz:)' || true
  if ls "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: $target found a failing input: $(ls "$artifacts")" >&2
    exit 1
  fi
done
