#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test (unit, reference fixtures, the real
# SmolLM2 model), then the browser tests (the page in headless Chromium, WebGPU and CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash models/fetch-smollm2.sh
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
bash scripts/build-web.sh
node --test --test-concurrency=1 tests/browser/
