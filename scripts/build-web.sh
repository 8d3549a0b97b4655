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
# Precompressed copies that `taskvec serve` sends with Content-Encoding (gzip -9, Brotli 11).
gzip -9 -n -c pkg/taskvec_bg.wasm > pkg/taskvec_bg.wasm.gz
node -e 'const z=require("zlib"),f=require("fs");const p="pkg/taskvec_bg.wasm";f.writeFileSync(p+".br",z.brotliCompressSync(f.readFileSync(p),{params:{[z.constants.BROTLI_PARAM_QUALITY]:11,[z.constants.BROTLI_PARAM_SIZE_HINT]:f.statSync(p).size}}))'
raw=$(stat -c %s pkg/taskvec_bg.wasm); gz=$(stat -c %s pkg/taskvec_bg.wasm.gz); br=$(stat -c %s pkg/taskvec_bg.wasm.br)
echo "pkg/taskvec_bg.wasm: $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzipped, $((br / 1024)) KiB brotli"
