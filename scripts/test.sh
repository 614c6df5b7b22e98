#!/usr/bin/env bash
# Runs every test: unit tests, end-to-end and adversarial tests with real
# mounts, every fuzz target for a minute (scripts/fuzz.sh), then the
# real-kernel suite (NFS, LVM) in the test VM (scripts/test-vm.sh). Builds what it needs first (guest drivers, host binaries). Must run
# as root: privileged tests fail, never skip, without it. Each privileged test
# enters a private mount namespace of its own, and the whole run is wrapped
# in one too, so nothing it mounts can outlive it on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the test suite mounts for real and must run as root" >&2
  exit 1
fi
# Filesystem tools the host runs for block volumes (loopfs tests).
need=()
for tool in mkfs.ext4:e2fsprogs mkfs.xfs:xfsprogs blkid:util-linux unshare:util-linux; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Kubernetes' own schemas (1.34, offline) for the generated manifests:
# kubernetes-validate from PyPI, in a venv of the build tree.
validator=$PWD/target/py/bin/kubernetes-validate
if [ ! -x "$validator" ]; then
  if ! python3 -m venv target/py 2>/dev/null; then
    rm -rf target/py
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv target/py
  fi
  target/py/bin/pip install -q kubernetes-validate
fi
export WASMVOL_KUBERNETES_VALIDATE=$validator
# A Python gRPC client (gRPC C-core) for tests/tests/grpc_clients.rs.
if ! target/py/bin/python -c "import grpc, grpc_tools" 2>/dev/null; then
  target/py/bin/pip install -q grpcio grpcio-tools
fi
export WASMVOL_PYTHON=$PWD/target/py/bin/python
scripts/build-plugins.sh
scripts/build-shim.sh
cargo build --bins
# The OCI image (release build), which tests/tests/image.rs unpacks and runs.
scripts/build-image.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# Doctests are off (the SDK's one example is illustrative); the SDK's unit tests run natively.
unshare --mount --propagation private -- cargo test --no-fail-fast --workspace --exclude hostpath-next --exclude adversary --exclude sloppy --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -Eq '^test result: .* [1-9][0-9]* ignored' "$log"; then
  echo "scripts/test.sh: some tests were ignored; every test must run" >&2
  exit 1
fi
# Nothing may outlive the suite: no loop device backed by a test's files.
leftover=$(losetup -a 2>/dev/null | grep -c 'wasmvol-test-' || true)
if [ "$leftover" != 0 ]; then
  echo "scripts/test.sh: $leftover loop device(s) left behind by the tests:" >&2
  losetup -a | grep 'wasmvol-test-' >&2
  status=1
fi
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}' || true)
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}' || true)
# A target that failed to build or run (a doctest, say) has no "N failed" line of its own.
broken=$(grep -Eo '^error: [0-9]+ targets? failed' "$log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}' || true)
broken=${broken:-0}
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
  failed=$(( broken > 0 ? broken : 1 ))
fi
# Every fuzz target for a minute, as CI's stable toolchain can (no sanitizer).
set +e
scripts/fuzz.sh 60 none
fuzz_status=$?
set -e
if [ "$fuzz_status" = 0 ]; then
  passed=$(( passed + 1 ))
else
  failed=$(( failed + 1 ))
  status=1
fi
# The real-kernel suite (NFS; this kernel has none) in the test VM.
vmlog=$(mktemp)
trap 'rm -f "$log" "$vmlog"' EXIT
set +e
scripts/test-vm.sh 2>&1 | tee "$vmlog"
vm_status=${PIPESTATUS[0]}
set -e
vm_passed=$(grep -Eo '^vm suite: [0-9]+ passed' "$vmlog" | grep -Eo '[0-9]+' || echo 0)
vm_failed=$(grep -Eo '^vm suite: [0-9]+ passed, [0-9]+ failed' "$vmlog" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+' || echo 1)
passed=$(( passed + vm_passed ))
failed=$(( failed + vm_failed ))
[ "$vm_status" = 0 ] || status=1
echo "all suites: $passed passed, $failed failed"
exit "$status"
