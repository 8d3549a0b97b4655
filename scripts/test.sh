#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test (unit, reference fixtures, the real
# SmolLM2 model), then the browser tests (the page in headless Chromium, WebGPU and CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
stage() { echo "test.sh: $1 ($(( $(date +%s) - t0 )) s in)"; }
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash models/fetch-smollm2.sh
stage "formatting, lints"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
stage "Rust tests"
cargo test --release
stage "browser build"
bash scripts/build-web.sh
stage "browser tests"
node --test --test-concurrency=1 tests/browser/
stage "done"
