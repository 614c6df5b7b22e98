#!/usr/bin/env bash
# Builds every guest driver (plugins/* and tests/drivers/*) into a wasm
# component under target/components/<name>.wasm.
#
# With rustup's wasm32-wasip2 target installed it uses that; otherwise it
# builds the wasm standard library from Debian's Rust source (rustc-web,
# rust-web-src, wasi-libc), installing those packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=wasm32-wasip2
out=$root/target/components
# Every driver crate of the workspace: plugins/* and tests/drivers/*.
drivers=()
for manifest in plugins/*/Cargo.toml tests/drivers/*/Cargo.toml; do
  drivers+=("$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n1)")
done
[ ${#drivers[@]} -gt 0 ] || { echo "build-plugins: no driver crates found" >&2; exit 1; }
mkdir -p "$out"

pkg_args=()
for d in "${drivers[@]}"; do pkg_args+=(-p "$d"); done

if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "build-plugins: rustup $target"
  cargo build --profile wasm --target "$target" --target-dir "$root/target/wasm" "${pkg_args[@]}"
else
  echo "build-plugins: Debian rustc-web with build-std ($target)"
  need=()
  for p in rustc-web rust-web-src cargo-web wasi-libc; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # Debian's rustc looks for rust-lld / wasm-ld on PATH; rustup ships rust-lld.
  lld=$(ls ~/.rustup/toolchains/*/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld 2>/dev/null | head -n1 || true)
  [ -n "$lld" ] || lld=$(command -v rust-lld || command -v wasm-ld || true)
  [ -n "$lld" ] || { echo "build-plugins: no rust-lld or wasm-ld found" >&2; exit 1; }
  links=$root/target/wasm-linkers
  mkdir -p "$links"
  ln -sf "$lld" "$links/rust-lld"
  ln -sf "$lld" "$links/wasm-ld"
  PATH="$links:$PATH" \
  RUSTFLAGS="-L /usr/lib/wasm32-wasi -C link-self-contained=no -C link-arg=-L/usr/lib/wasm32-wasi" \
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    /usr/bin/cargo build --profile wasm -Zbuild-std=std,panic_abort --target "$target" \
      --target-dir "$root/target/wasm" "${pkg_args[@]}"
fi

for d in "${drivers[@]}"; do
  # The artifact is named after the library: `-` becomes `_`.
  cp -f "$root/target/wasm/$target/wasm/${d//-/_}.wasm" "$out/$d.wasm.tmp"
  mv -f "$out/$d.wasm.tmp" "$out/$d.wasm"
  echo "build-plugins: $out/$d.wasm ($(stat -c %s "$out/$d.wasm") bytes)"
done
