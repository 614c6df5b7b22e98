#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [SANITIZER]
# Fuzzes the parsers that read untrusted bytes (tests/fuzz: the Flex argv and
# options, CSI requests and their conversion, the policy, the audit log
# reader) with cargo fuzz (libFuzzer; cargo-fuzz installed from crates.io when
# missing), each for SECONDS (default 60). With a nightly toolchain installed
# the targets run under AddressSanitizer (cargo fuzz's default); on the one
# stable toolchain a fresh machine has (CI) they run without a sanitizer:
# libFuzzer's coverage instrumentation needs only stable -C flags, and
# RUSTC_BOOTSTRAP=1 lets cargo fuzz's few -Z flags through. A panic, an
# abort, a timeout or running out of memory is caught either way; only
# memory errors in unsafe code need the sanitizer. The seed corpus in
# tests/fuzz/corpus is copied to target/fuzz-corpus and grows there; a crash
# leaves its input in target/fuzz-artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
# SANITIZER: `address` (nightly only) or `none`; by default `address` when a
# nightly toolchain is installed. scripts/test.sh asks for `none`, so a
# local run fuzzes exactly as CI does.
sanitizer=${2:-$(rustup toolchain list | grep -q '^nightly' && echo address || echo none)}
case "$sanitizer" in
  address) fuzz=(cargo +nightly fuzz run) ;;
  none) export RUSTC_BOOTSTRAP=1; fuzz=(cargo fuzz run -s none) ;;
  *) echo "scripts/fuzz.sh: sanitizer \`$sanitizer\`: address or none" >&2; exit 2 ;;
esac
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
root=$PWD
for target in flex_callout csi_requests policy audit_log; do
  corpus=$root/target/fuzz-corpus/$target
  artifacts=$root/target/fuzz-artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  cp -n tests/fuzz/corpus/$target/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $target for ${seconds}s"
  (cd tests/fuzz && "${fuzz[@]}" --fuzz-dir . -O "$target" "$corpus" -- \
    -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1) \
    | grep -E '^(#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|stat::average_exec_per_sec|==|SUMMARY|fuzz:)' || true
  if ls "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: $target found a failing input: $(ls "$artifacts")" >&2
    exit 1
  fi
done
