#!/usr/bin/env bash
# Builds the browser app: the wasm package into pkg/ (wasm-bindgen, --target web), the plot
# libraries vendored from npm into www/vendor/, and the tiny test model into models/tiny/.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build --lib --target wasm32-unknown-unknown --profile wasm-release
ver=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $ver\$"; then
  cargo install wasm-bindgen-cli --version "$ver"
fi
wasm-bindgen --target web --no-typescript --out-dir pkg target/wasm32-unknown-unknown/wasm-release/taskvec.wasm
[ -d node_modules/@observablehq/plot ] || npm ci --ignore-scripts --no-audit --no-fund
mkdir -p www/vendor models/tiny
cp node_modules/d3/dist/d3.min.js node_modules/@observablehq/plot/dist/plot.umd.min.js www/vendor/
cp tests/fixtures/tiny_vlm/tiny_lm.gguf tests/fixtures/tiny_vlm/tiny_mmproj.gguf models/tiny/
raw=$(stat -c %s pkg/taskvec_bg.wasm); gz=$(gzip -9 -c pkg/taskvec_bg.wasm | wc -c)
echo "pkg/taskvec_bg.wasm: $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzipped"
