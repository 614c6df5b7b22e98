#!/usr/bin/env bash
# Regenerates deploy/wasmvol.yaml from deploy/policy.toml and the components
# built here (tests/tests/manifests.rs checks it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh >/dev/null
cargo build -q --bins
target/debug/wasmvol manifests --config deploy/policy.toml --components target/components \
  > deploy/wasmvol.yaml.tmp
mv deploy/wasmvol.yaml.tmp deploy/wasmvol.yaml
echo "gen-deploy: deploy/wasmvol.yaml ($(grep -c '^---' deploy/wasmvol.yaml) objects)"
