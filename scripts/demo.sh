#!/usr/bin/env bash
# Demo: fetches the real SmolLM2-135M GGUF if missing, builds taskvec, and shows a task vector
# end to end on the command line (extract from text examples, then apply to zero-shot queries).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash models/fetch-smollm2.sh
cargo build --release
tv=target/release/taskvec
m=models/SmolLM2-135M-Instruct.Q4_1.gguf
out=$(mktemp -d)
$tv extract --model $m --task country_capital --spec ensemble --out "$out/capital.json"
for q in Germany Japan Kenya; do echo "== $q"; $tv apply --model $m --vector "$out/capital.json" --layer 22 --text "$q"; done
