#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, reference fixtures, the real
# SmolLM2 model, and the browser tests when the web build is present). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash models/fetch-smollm2.sh
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
