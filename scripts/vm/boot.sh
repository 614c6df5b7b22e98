#!/usr/bin/env bash
# Boots the real-kernel test VM once to run one job script (a path relative
# to the repository, which the guest sees at the same path over 9p) and
# exits with the job's status. The guest's console (the job's output) goes
# to stdout. The root image is opened snapshot=on: every boot starts clean.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
job=$1
image=$("$repo/scripts/vm/build-image.sh")
run=$repo/target/vm-run
mkdir -p "$run"
status=target/vm-run/status.$$
rm -f "$repo/$status"
timeout "${WASMVOL_VM_TIMEOUT:-1500}" qemu-system-x86_64 \
  -accel tcg -cpu max -smp "${WASMVOL_VM_CPUS:-2}" -m "${WASMVOL_VM_MEMORY:-2048}" \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.cpio.gz" \
  -append "console=ttyS0 root=/dev/vda panic=-1 quiet loglevel=3 wasmvol_share=$repo wasmvol_job=$job wasmvol_out=$status" \
  -drive "file=$image/root.img,format=raw,if=virtio,snapshot=on" \
  -virtfs "local,path=$repo,mount_tag=host,security_model=passthrough,id=host" \
  -nographic -no-reboot -nodefaults -serial stdio < /dev/null \
  || echo "wasmvol-vm: qemu ended with status $?" >&2
if [ ! -f "$repo/$status" ]; then
  echo "wasmvol-vm: the guest left no exit status (it crashed or timed out)" >&2
  exit 1
fi
rc=$(cat "$repo/$status")
rm -f "$repo/$status"
exit "$rc"
