#!/usr/bin/env bash
# Builds the page (wasm + front end), fetches the real SmolLM2-135M GGUF into models/ if
# missing, and serves everything on http://127.0.0.1:8080/ (the page opens with SmolLM2).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash models/fetch-smollm2.sh
bash scripts/build-web.sh
cargo build --release
exec target/release/taskvec serve --port "${PORT:-8080}" --root .
