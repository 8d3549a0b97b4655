#!/usr/bin/env bash
# Builds the browser app: two wasm packages of the same crate (wasm-bindgen, --target web),
#   pkg/          WebGPU + single-threaded CPU (features wgpu, fusion)
#   pkg/threads/  CPU only, threaded: shared memory (+atomics, std rebuilt with -Z build-std) and
#                 a rayon pool in Web Workers (wasm-bindgen-rayon), and relaxed SIMD (its fused
#                 multiply-add in taskvec's dense product, src/model/dense.rs); the page loads it
#                 when it is cross-origin isolated, the browser validates relaxed SIMD and it runs
#                 on the CPU,
# their precompressed copies (.wasm.gz, .wasm.br) that `taskvec serve` sends, the plot libraries
# vendored from npm into www/vendor/, and the tiny test model into models/tiny/.
# TASKVEC_WEB_THREADS=0 skips the threaded build.
set -euo pipefail
cd "$(dirname "$0")/.."
tdir=${CARGO_TARGET_DIR:-target}
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
ver=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $ver\$"; then
  # At opt-level 1 without LTO: 143 s instead of ~180 s to build on 2 cores, the same output
  # byte for byte, in under a second per package.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install wasm-bindgen-cli --version "$ver"
fi
# The name section (function names for stack traces) is 4.4 MB of the raw module: dropped.
bindgen() { wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$2" "$1"; }

cargo build --lib --target wasm32-unknown-unknown --profile wasm-release --features wgpu,fusion
rm -rf pkg && mkdir -p pkg
bindgen "$tdir/wasm32-unknown-unknown/wasm-release/taskvec.wasm" pkg

if [ "${TASKVEC_WEB_THREADS:-1}" != 0 ]; then
  rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
  # Its own target directory: different RUSTFLAGS and a rebuilt std would evict the other build.
  # The linker is told to make the memory shared and imported (the workers share it) and to
  # export the TLS symbols wasm-bindgen's thread start-up needs; rustc does not pass these for
  # wasm32-unknown-unknown. --max-memory: shared memory declares its maximum, 4 GiB (wasm32's
  # limit) so a real-size VLM in f32 fits.
  link=""
  for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls \
    --export=__tls_size --export=__tls_align --export=__tls_base; do link="$link -C link-arg=$a"; done
  RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128,+relaxed-simd$link" \
    cargo build -Z build-std=panic_abort,std --lib --target wasm32-unknown-unknown --profile wasm-release \
      --no-default-features --features flex,threads --target-dir "$tdir/wasm-threads"
  bindgen "$tdir/wasm-threads/wasm32-unknown-unknown/wasm-release/taskvec.wasm" pkg/threads
fi

[ -d node_modules/@observablehq/plot ] && [ -d node_modules/wasm-feature-detect ] || npm ci --ignore-scripts --no-audit --no-fund
mkdir -p www/vendor models/tiny
cp node_modules/d3/dist/d3.min.js node_modules/@observablehq/plot/dist/plot.umd.min.js www/vendor/
cp node_modules/wasm-feature-detect/dist/esm/index.js www/vendor/wasm-feature-detect.js
cp tests/fixtures/tiny_vlm/tiny_lm.gguf tests/fixtures/tiny_vlm/tiny_mmproj.gguf models/tiny/
# Precompressed copies that `taskvec serve` sends with Content-Encoding (gzip -9, Brotli 11).
for p in pkg/taskvec_bg.wasm pkg/threads/taskvec_bg.wasm; do
  [ -f "$p" ] || continue
  gzip -9 -n -c "$p" > "$p.gz"
  node -e 'const z=require("zlib"),f=require("fs");const p=process.argv[1];f.writeFileSync(p+".br",z.brotliCompressSync(f.readFileSync(p),{params:{[z.constants.BROTLI_PARAM_QUALITY]:11,[z.constants.BROTLI_PARAM_SIZE_HINT]:f.statSync(p).size}}))' "$p"
  raw=$(stat -c %s "$p"); gz=$(stat -c %s "$p.gz"); br=$(stat -c %s "$p.br")
  echo "$p: $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzipped, $((br / 1024)) KiB brotli"
done
