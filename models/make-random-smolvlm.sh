#!/usr/bin/env bash
# Builds the random-weight, real-size SmolVLM-256M GGUF pair into models/random-smolvlm/ (git-ignored,
# ≈ 580 MB) for speed tests: a Python venv with gguf + numpy, then models/make_random_smolvlm.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/random-smolvlm
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash models/fetch-smollm2.sh
venv=${TASKVEC_VENV:-target/py-gguf}
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q gguf==0.19.0 numpy; }
"$venv/bin/python" models/make_random_smolvlm.py "$out"
