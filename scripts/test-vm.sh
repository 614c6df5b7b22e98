#!/usr/bin/env bash
# Runs the real-kernel suite: tests that need what this machine's kernel
# lacks (an NFS client and server; device-mapper for LVM) run inside a stock
# Debian kernel under qemu (software emulation), booted once for the suite.
# The guest sees the repository at the same path over 9p and runs the test
# binaries, the host and the components built here. Prints
# "vm suite: N passed, N failed" and exits non-zero on any failure, a
# guest that never reports, or a skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test-vm.sh: the VM suite mounts for real and must run as root" >&2
  exit 1
fi
start=$(date +%s)
scripts/vm/build-image.sh >/dev/null
scripts/build-plugins.sh
cargo build --bins
build=$(mktemp)
trap 'rm -f "$build"' EXIT
cargo test -p wasmvol-tests --features vm --test vm_nfs --test vm_lvm --no-run 2>&1 | tee "$build"
exes=$(grep -Eo 'target/debug/deps/vm_(nfs|lvm)-[0-9a-f]+' "$build" | sort -u)
[ "$(echo "$exes" | wc -l)" = 2 ] || { echo "scripts/test-vm.sh: missing a VM test binary" >&2; exit 1; }
mkdir -p target/vm-run
job=target/vm-run/job.sh
log=target/vm-run/suite.log
cat > "$job" <<JOB
set -e
cd "$PWD"
sh scripts/vm/nfs-server.sh
sh scripts/vm/lvm-setup.sh
# The binaries run from the guest's tmpfs: the share is 9p with no page
# cache, and each start of the 126 MB debug host over it page-faulted its
# code across the share again (seconds a start). The tests find the host
# beside their own directory, as in target/debug; everything else (the
# components, the artifact cache) they read from the share.
bin=/tmp/wasmvol-vm-bin
mkdir -p \$bin/deps
cp target/debug/wasmvol \$bin/
set +e
status=0
for exe in $(echo $exes); do
  cp "\$exe" \$bin/deps/
  # The LVM tests share one volume group and assert its free space: one at a time.
  threads=2
  case "\$exe" in *vm_lvm-*) threads=1 ;; esac
  RUST_BACKTRACE=1 WASMVOL_TEST_SERVE_TIMEOUT_S=900 "\$bin/deps/\$(basename \$exe)" --test-threads=\$threads --color=never --show-output || status=1
done
exit \$status
JOB
set +e
# The guest's run takes about 25 minutes under emulation (the LVM
# kill-point flows most of it): room to spare before boot.sh gives up.
WASMVOL_VM_TIMEOUT=${WASMVOL_VM_TIMEOUT:-3000} scripts/vm/boot.sh "$job" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}' || true)
failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$6} END {print s+0}' || true)
if grep -Eq 'test result: .* [1-9][0-9]* ignored' "$log"; then
  echo "scripts/test-vm.sh: some VM tests were ignored; every test must run" >&2
  status=1
fi
if [ "$passed" = 0 ]; then
  status=1
fi
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
  failed=1
fi
echo "vm suite: $passed passed, $failed failed ($(( $(date +%s) - start )) s)"
exit "$status"
