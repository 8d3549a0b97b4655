#!/usr/bin/env bash
# Benchmarks taskvec (native, burn flex CPU backend) against llama.cpp (node-llama-cpp prebuilt CPU
# binary) and, when a Python with torch + transformers + gguf is available, transformers (f32 eager),
# on the same model and machine, in one go; then writes bench/RESULTS.md.
#
# Usage: bench/run.sh [N=128] [D=32] [RUNS=5]
#
# Environment (all optional):
#   TASKVEC_BENCH_MODEL         GGUF model      (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   TASKVEC_BIN                 taskvec binary  (default: target/release/taskvec; waited for, up to
#                               TASKVEC_BIN_WAIT seconds, default 600, if missing: it may be rebuilding)
#   TASKVEC_BENCH_THREADS       threads for every tool (default: 2); taskvec gets RAYON_NUM_THREADS
#   TASKVEC_BENCH_CTX           llama.cpp context size (default: 512)
#   TASKVEC_BENCH_LLAMACPP_DIR  where node-llama-cpp is installed, OUTSIDE the repository
#                               (default: ${XDG_CACHE_HOME:-$HOME/.cache}/taskvec-bench; installed
#                               there with npm if missing, unless TASKVEC_BENCH_NO_INSTALL=1)
#   TASKVEC_BENCH_PYTHON        Python for the transformers run (default: /work/venv/bin/python if
#                               present, else python3); skipped when it lacks torch/transformers/gguf.
#                               Set TASKVEC_BENCH_PYTHON=none to skip it.
#   TASKVEC_BENCH_WAIT_LOAD     if set (e.g. 0.6), first wait until the 1-minute load average is below
#                               it, polling every 30 s for at most TASKVEC_BENCH_WAIT_MAX s (default 3600)
#   TASKVEC_BENCH_OUT           output file     (default: bench/RESULTS.md)
set -euo pipefail

N="${1:-128}"
D="${2:-32}"
RUNS="${3:-5}"

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
cd "$REPO"

MODEL="${TASKVEC_BENCH_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
BIN="${TASKVEC_BIN:-target/release/taskvec}"
THREADS="${TASKVEC_BENCH_THREADS:-2}"
LLAMACPP_DIR="${TASKVEC_BENCH_LLAMACPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskvec-bench}"
OUT="${TASKVEC_BENCH_OUT:-$BENCH_DIR/RESULTS.md}"
NLC_VERSION="3.22.1"
NPM_INSTALL="npm install --ignore-scripts --omit=optional node-llama-cpp@$NLC_VERSION @node-llama-cpp/linux-x64@$NLC_VERSION"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$N" =~ ^[0-9]+$ && "$D" =~ ^[0-9]+$ && "$RUNS" =~ ^[0-9]+$ ]] || die "N, D and RUNS must be integers (got '$N' '$D' '$RUNS')"
(( N >= 16 && D >= 1 && RUNS >= 1 )) || die "need N >= 16, D >= 1, RUNS >= 1"
[[ -f "$MODEL" ]] || die "model not found: $MODEL (see models/fetch-smollm2.sh)"
command -v node >/dev/null || die "node (>= 18) is needed for the llama.cpp run and for writing the report"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/taskvec-bench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# --- the taskvec binary (another job may be rebuilding it) --------------------------------------
wait_bin="${TASKVEC_BIN_WAIT:-600}"
waited=0
until [[ -x "$BIN" ]]; do
  (( waited < wait_bin )) || die "taskvec binary $BIN missing after ${wait_bin}s (build it with: cargo build --release)"
  log "waiting for $BIN (being rebuilt?) ..."
  sleep 15; waited=$(( waited + 15 ))
done

# --- node-llama-cpp, outside the repository -----------------------------------------------------
llamacpp_ok() {
  [[ -f "$LLAMACPP_DIR/node_modules/node-llama-cpp/package.json" && -d "$LLAMACPP_DIR/node_modules/@node-llama-cpp/linux-x64" ]]
}
if ! llamacpp_ok; then
  case "$(realpath -m "$LLAMACPP_DIR")/" in
    "$(realpath -m "$REPO")/"*) die "TASKVEC_BENCH_LLAMACPP_DIR ($LLAMACPP_DIR) is inside the repository; use a directory outside it (never commit node_modules)";;
  esac
  if [[ "${TASKVEC_BENCH_NO_INSTALL:-0}" == 1 ]] || ! command -v npm >/dev/null; then
    die "node-llama-cpp is not installed in $LLAMACPP_DIR/node_modules. Install it OUTSIDE the repository:
    mkdir -p '$LLAMACPP_DIR' && cd '$LLAMACPP_DIR' && npm init -y >/dev/null && $NPM_INSTALL
or set TASKVEC_BENCH_LLAMACPP_DIR to a directory whose node_modules has it."
  fi
  log "installing node-llama-cpp@$NLC_VERSION (prebuilt linux-x64 CPU binary) into $LLAMACPP_DIR"
  mkdir -p "$LLAMACPP_DIR"
  ( cd "$LLAMACPP_DIR" && { [[ -f package.json ]] || npm init -y >/dev/null; } && $NPM_INSTALL >&2 ) \
    || die "npm install failed; install by hand OUTSIDE the repository:
    mkdir -p '$LLAMACPP_DIR' && cd '$LLAMACPP_DIR' && npm init -y >/dev/null && $NPM_INSTALL"
  llamacpp_ok || die "node-llama-cpp still missing in $LLAMACPP_DIR/node_modules after npm install"
fi

# --- Python with torch + transformers (optional) ------------------------------------------------
PY="${TASKVEC_BENCH_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x /work/venv/bin/python ]]; then PY=/work/venv/bin/python; else PY="$(command -v python3 || true)"; fi
fi
HAVE_TF=0
TF_SKIP_REASON="TASKVEC_BENCH_PYTHON=none"
if [[ -n "$PY" && "$PY" != none ]]; then
  if "$PY" -c 'import torch, transformers, gguf' >/dev/null 2>&1; then
    HAVE_TF=1
  else
    TF_SKIP_REASON="$PY lacks torch, transformers or gguf"
  fi
elif [[ -z "$PY" ]]; then
  TF_SKIP_REASON="no Python found"
fi

# --- optionally wait for a quiet machine -----------------------------------------------------------
load1() { cut -d' ' -f1 /proc/loadavg; }
if [[ -n "${TASKVEC_BENCH_WAIT_LOAD:-}" ]]; then
  max="${TASKVEC_BENCH_WAIT_MAX:-3600}"; waited=0
  while ! awk -v l="$(load1)" -v t="$TASKVEC_BENCH_WAIT_LOAD" 'BEGIN{exit !(l < t)}'; do
    (( waited < max )) || die "1-minute load average still $(load1) >= $TASKVEC_BENCH_WAIT_LOAD after ${max}s"
    log "load average $(load1) >= $TASKVEC_BENCH_WAIT_LOAD, waiting 30 s ..."
    sleep 30; waited=$(( waited + 30 ))
  done
fi

# --- runs ---------------------------------------------------------------------------------------
LOAD_START="$(cat /proc/loadavg)"
DATE_START="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
log "start $DATE_START, loadavg $LOAD_START, N=$N D=$D runs=$RUNS threads=$THREADS"

last_json() { grep -E '^\{' "$1" | tail -n 1; }

CMD_TASKVEC="RAYON_NUM_THREADS=$THREADS $BIN bench --device cpu --model $MODEL --prefill $N --decode $D --runs $RUNS --json   # (12-bit levels in 16-bit integer activations, the default) then --activations int8, --activations f32, --weights q8_0 (int16, f32) and --weights f32"
log "taskvec: $CMD_TASKVEC"
for w in auto:int16 auto:int8 auto:f32 q8_0:int16 q8_0:f32 f32:f32; do
  weights="${w%%:*}"; acts="${w##*:}"
  out="$TMP/taskvec-$weights"; [[ "$acts" != f32 ]] && out="$out-$acts"
  RAYON_NUM_THREADS="$THREADS" "$BIN" bench --device cpu --model "$MODEL" --weights "$weights" --activations "$acts" --prefill "$N" --decode "$D" --runs "$RUNS" --json \
    >"$out.out" 2>"$out.err" || { cat "$out.err" >&2; die "taskvec bench failed"; }
  last_json "$out.out" >"$out.json" || die "taskvec printed no JSON: $(cat "$out.out")"
done
cp "$TMP/taskvec-auto-int16.json" "$TMP/taskvec.json"
LOAD_AFTER_TASKVEC="$(cat /proc/loadavg)"

CMD_LLAMA="TASKVEC_BENCH_LLAMACPP_DIR=$LLAMACPP_DIR TASKVEC_BENCH_THREADS=$THREADS TASKVEC_BENCH_CTX=${TASKVEC_BENCH_CTX:-512} node bench/llamacpp.mjs $MODEL $N $D $RUNS"
log "llama.cpp: $CMD_LLAMA"
TASKVEC_BENCH_LLAMACPP_DIR="$LLAMACPP_DIR" TASKVEC_BENCH_THREADS="$THREADS" TASKVEC_BENCH_CTX="${TASKVEC_BENCH_CTX:-512}" \
  node "$BENCH_DIR/llamacpp.mjs" "$MODEL" "$N" "$D" "$RUNS" >"$TMP/llama.out" 2>"$TMP/llama.err" \
  || { cat "$TMP/llama.err" >&2; die "llama.cpp benchmark failed"; }
last_json "$TMP/llama.out" >"$TMP/llama.json" || die "llamacpp.mjs printed no JSON: $(cat "$TMP/llama.out")"
LOAD_AFTER_LLAMA="$(cat /proc/loadavg)"

CMD_TF="(skipped: $TF_SKIP_REASON)"
LOAD_AFTER_TF="-"
if (( HAVE_TF )); then
  CMD_TF="TASKVEC_BENCH_THREADS=$THREADS $PY bench/transformers_bench.py $MODEL $N $D $RUNS"
  log "transformers: $CMD_TF"
  if TASKVEC_BENCH_THREADS="$THREADS" "$PY" "$BENCH_DIR/transformers_bench.py" "$MODEL" "$N" "$D" "$RUNS" \
       >"$TMP/tf.out" 2>"$TMP/tf.err" && last_json "$TMP/tf.out" >"$TMP/tf.json"; then
    LOAD_AFTER_TF="$(cat /proc/loadavg)"
  else
    tail -n 20 "$TMP/tf.err" >&2
    log "transformers run failed; leaving it out of the table"
    HAVE_TF=0; TF_SKIP_REASON="the run failed: $(tail -n 1 "$TMP/tf.err")"
    rm -f "$TMP/tf.json"
  fi
fi
# --- the image path: the real-size random SmolVLM (models/make-random-smolvlm.sh), if built ----------
VLM_DIR="${TASKVEC_BENCH_VLM_DIR:-models/random-smolvlm}"
VLM_IMAGE="${TASKVEC_BENCH_VLM_IMAGE:-data/images/foods/banana.png}"
CMD_VLM="(skipped: no $VLM_DIR; bash models/make-random-smolvlm.sh builds it)"
if [[ -f "$VLM_DIR/SmolVLM-256M-random-Q8_0.gguf" && -f "$VLM_DIR/mmproj-SmolVLM-256M-random-f32.gguf" ]]; then
  CMD_VLM="RAYON_NUM_THREADS=$THREADS $BIN bench --model $VLM_DIR/SmolVLM-256M-random-Q8_0.gguf --mmproj $VLM_DIR/mmproj-SmolVLM-256M-random-f32.gguf --image $VLM_IMAGE --runs 3 --json"
  log "image path: $CMD_VLM"
  RAYON_NUM_THREADS="$THREADS" "$BIN" bench --model "$VLM_DIR/SmolVLM-256M-random-Q8_0.gguf" --mmproj "$VLM_DIR/mmproj-SmolVLM-256M-random-f32.gguf" \
    --image "$VLM_IMAGE" --runs 3 --json >"$TMP/vlm.out" 2>"$TMP/vlm.err" && last_json "$TMP/vlm.out" >"$TMP/vlm.json" || log "image bench failed: $(tail -1 "$TMP/vlm.err")"
  if (( HAVE_TF )); then
    CMD_VLM="$CMD_VLM; TASKVEC_BENCH_THREADS=$THREADS $PY bench/transformers_vlm.py 3"
    TASKVEC_BENCH_THREADS="$THREADS" "$PY" "$BENCH_DIR/transformers_vlm.py" 3 >"$TMP/tfvlm.out" 2>"$TMP/tfvlm.err" \
      && last_json "$TMP/tfvlm.out" >"$TMP/tfvlm.json" || log "transformers image bench failed: $(tail -1 "$TMP/tfvlm.err")"
  fi
fi
export CMD_VLM

DATE_END="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
LOAD_END="$(cat /proc/loadavg)"

# --- machine --------------------------------------------------------------------------------------
CPU_MODEL="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
[[ -n "$CPU_MODEL" ]] || CPU_MODEL="$(uname -m)"
CPU_FLAGS="$(grep -m1 '^flags' /proc/cpuinfo | grep -oE "\\b(avx2|avx512f|avx512bw|avx512vl|avx512_vnni|avx_vnni|amx_int8|amx_bf16|fma|f16c)\\b" | sort -u | tr '\n' ' ' || true)"
MEM_TOTAL="$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
MEM_AVAIL="$(awk '/^MemAvailable/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"

export N D RUNS THREADS MODEL BIN LLAMACPP_DIR PY HAVE_TF TF_SKIP_REASON \
  LOAD_START LOAD_AFTER_TASKVEC LOAD_AFTER_LLAMA LOAD_AFTER_TF LOAD_END DATE_START DATE_END \
  CPU_MODEL CPU_FLAGS MEM_TOTAL MEM_AVAIL CMD_TASKVEC CMD_LLAMA CMD_TF TMP
# --- taskvec in headless Chromium (the page's worker runs the same benchmark) ---------------------
# Skipped without chromium or playwright-core; TASKVEC_BENCH_BROWSER=0 skips it; the WebGPU run
# (SwiftShader here: more than 25 min) only with TASKVEC_BENCH_WEBGPU=1. WebGPU always runs the
# tiny VLM (f32 and Q8_0 blocks) and the device probe (readback, op, matmul, dequantization costs).
if [[ "${TASKVEC_BENCH_BROWSER:-1}" != 0 ]] && command -v chromium >/dev/null && [[ -d node_modules/playwright-core && -f pkg/taskvec_bg.wasm ]]; then
  PORT_B="${TASKVEC_BENCH_PORT:-8097}"
  "$BIN" serve --port "$PORT_B" >"$TMP/serve.log" 2>&1 &
  SERVE_PID=$!
  sleep 1
  CONFIGS=(cpu:auto cpu:q8_0 cpu:f32)
  [[ "${TASKVEC_BENCH_WEBGPU:-0}" == 1 ]] && CONFIGS+=(webgpu:auto)
  CMD_BROWSER="PORT=$PORT_B node bench/browser_bench.mjs --prefill $N --decode $D --runs 2 ${CONFIGS[*]}"
  log "browser: $CMD_BROWSER"
  PORT="$PORT_B" node bench/browser_bench.mjs --prefill "$N" --decode "$D" --runs 2 "${CONFIGS[@]}" >"$TMP/browser.jsonl" 2>"$TMP/browser.err" || log "browser bench failed: $(tail -3 "$TMP/browser.err")"
  CMD_BROWSER_TINY="PORT=$PORT_B node bench/browser_bench.mjs --model tiny --prefill 64 --decode 8 --runs 2 webgpu:f32 webgpu:q8_0 webgpu:q4_1"
  log "browser, tiny VLM on WebGPU: $CMD_BROWSER_TINY"
  PORT="$PORT_B" node bench/browser_bench.mjs --model tiny --prefill 64 --decode 8 --runs 2 webgpu:f32 webgpu:q8_0 webgpu:q4_1 >"$TMP/browser-tiny.jsonl" 2>>"$TMP/browser.err" || log "tiny WebGPU bench failed"
  CMD_PROBE="PORT=$PORT_B node bench/browser_bench.mjs --probe --runs 3 webgpu:auto cpu:auto; $BIN bench --model $MODEL --probe --runs 3"
  log "probe: $CMD_PROBE"
  PORT="$PORT_B" node bench/browser_bench.mjs --probe --runs 3 webgpu:auto cpu:auto >"$TMP/probe.jsonl" 2>>"$TMP/browser.err" || log "probe failed"
  RAYON_NUM_THREADS="$THREADS" "$BIN" bench --model "$MODEL" --probe --runs 3 | sed 's/^/{"config":"native:auto","ok":true,"report":/; s/$/}/' >>"$TMP/probe.jsonl" || log "native probe failed"
  kill "$SERVE_PID" 2>/dev/null || true
else
  CMD_BROWSER="(skipped: no chromium, node_modules/playwright-core or pkg/; run scripts/build-web.sh and npm ci)"
fi
export CMD_BROWSER CMD_BROWSER_TINY="${CMD_BROWSER_TINY:-}" CMD_PROBE="${CMD_PROBE:-}"

export NPROC="$(nproc)" KERNEL="$(uname -sr)" NODE_VERSION="$(node --version)" \
  TASKVEC_VERSION="$("$BIN" --version 2>/dev/null || echo '?')" \
  BIN_MTIME="$(date -u -r "$BIN" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo '?')" \
  MODEL_BYTES="$(stat -c %s "$MODEL")"

# --- RESULTS.md ---------------------------------------------------------------------------------
node - >"$TMP/RESULTS.md" <<'EOF'
const fs = require("fs");
const e = process.env;
const rd = (f) => (fs.existsSync(`${e.TMP}/${f}`) ? JSON.parse(fs.readFileSync(`${e.TMP}/${f}`, "utf8")) : null);
const tv = rd("taskvec.json"), tvf = rd("taskvec-f32.json"), tvq8 = rd("taskvec-q8_0.json"), ll = rd("llama.json"), tf = rd("tf.json");
const tv32 = rd("taskvec-auto.json"), tvi8 = rd("taskvec-auto-int8.json"), tvq8i = rd("taskvec-q8_0-int16.json");
const lines = (f) => fs.existsSync(`${e.TMP}/${f}`)
  ? fs.readFileSync(`${e.TMP}/${f}`, "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
  : [];
const browser = lines("browser.jsonl"), tiny = lines("browser-tiny.jsonl"), probes = lines("probe.jsonl");
const f1 = (x) => (x == null ? "-" : x.toFixed(1));
const f2 = (x) => (x == null ? "-" : x.toFixed(2));
const ratio = (x) => (x == null || !isFinite(x) ? "-" : `${x.toFixed(2)}×`);
const rows = [
  ["taskvec (native)", `burn ${tv.backend}: the file's Q4_1/Q8_0 blocks, 12-bit activation levels in 16-bit integers (the default), RAYON_NUM_THREADS=${e.THREADS}`, tv],
  ["taskvec (native, --activations int8)", `burn ${tvi8.backend}: the file's blocks, 8-bit activations as llama.cpp (not the default: cosine 0.9985 to the reference at the last layer), RAYON_NUM_THREADS=${e.THREADS}`, tvi8],
  ["taskvec (native, --activations f32)", `burn ${tv32.backend}: the file's blocks, f32 activations (the reference path), RAYON_NUM_THREADS=${e.THREADS}`, tv32],
  ["taskvec (native, --weights q8_0)", `burn ${tvq8i.backend}: requantized to Q8_0 on load, 12-bit activation levels in 16-bit integers, RAYON_NUM_THREADS=${e.THREADS}`, tvq8i],
  ["taskvec (native, --weights q8_0 --activations f32)", `burn ${tvq8.backend}: requantized to Q8_0 on load, f32 activations, RAYON_NUM_THREADS=${e.THREADS}`, tvq8],
  ["taskvec (native, --weights f32)", `burn ${tvf.backend}, f32 weights dequantized from Q4_1, RAYON_NUM_THREADS=${e.THREADS}`, tvf],
  ["llama.cpp", `node-llama-cpp ${ll.node_llama_cpp_version} prebuilt CPU binary, Q4_1 kernels, ${ll.threads} threads`, ll],
];
if (tf) rows.push(["transformers", `torch ${tf.torch_version} / transformers ${tf.transformers_version}, f32 eager, ${tf.threads} threads`, tf]);
const L = [];
L.push("# taskvec vs llama.cpp: CPU benchmark", "");
L.push(`Generated by \`bench/run.sh ${e.N} ${e.D} ${e.RUNS}\` on ${e.DATE_START} (finished ${e.DATE_END}).`);
L.push(`Model: \`${e.MODEL}\` (SmolLM2-135M-Instruct, GGUF Q4_1, ${(Number(e.MODEL_BYTES) / 1048576).toFixed(1)} MiB).`);
L.push(`N = ${e.N} prefill tokens, D = ${e.D} decoded tokens, runs = ${e.RUNS} (median after one warm-up), threads = ${e.THREADS}.`, "");
const load1 = Number(e.LOAD_START.split(" ")[0]);
if (load1 >= 0.6)
  L.push(`> **Warning:** the 1-minute load average was ${load1} when the run started, so other processes were competing for the ${e.NPROC} CPUs. llama.cpp's and torch's thread pools spin-wait and degrade badly under contention (often far more than taskvec's rayon pool); treat these figures as unreliable and rerun on an idle machine (\`TASKVEC_BENCH_WAIT_LOAD=0.6 bench/run.sh\`).`, "");
L.push("## Prefill and decode", "");
L.push("| tool | backend | prefill tok/s | decode ms/token | prefill speed vs llama.cpp | decode speed vs llama.cpp |");
L.push("|---|---|---:|---:|---:|---:|");
for (const [name, backend, r] of rows)
  L.push(`| ${name} | ${backend} | ${f1(r.prefill_tok_s)} | ${f2(r.decode_ms_per_token)} | ${ratio(r.prefill_tok_s / ll.prefill_tok_s)} | ${ratio(ll.decode_ms_per_token / r.decode_ms_per_token)} |`);
if (!tf) L.push(`| transformers | — | — | — | — | — |`, "", `transformers: skipped (${e.TF_SKIP_REASON}).`);
L.push("");
L.push("Ratios are speeds relative to llama.cpp: 1.00× = as fast, 0.50× = half as fast (for decode: llama.cpp ms/token ÷ tool ms/token).", "");
L.push("What is measured:", "");
L.push(`- **Prefill**: a few-shot Country-Capital prompt (\`Q:x\\nA:y\\n\\n\` demonstrations from \`data/tasks/country_capital.tsv\`, each tool's own tokenizer, repeated and cut to exactly N tokens), one forward from an empty KV cache, last-position logits read back. taskvec additionally captures the last position's residual stream at every layer; transformers runs with \`output_hidden_states=True\` (all positions, all layers); llama.cpp captures nothing extra.`);
L.push(`- **Decode**: after an untimed 16-token prefill, D greedy steps (forward of one token with the KV cache + argmax); ms per token = elapsed / D.`);
L.push(`- llama.cpp API: ${ll.api}. Context size ${ll.context_size}, batch size ${ll.batch_size}, flash attention "${ll.flash_attention}", threads ${ll.threads} (\`getLlama({build:"never", gpu:false, maxThreads:${e.THREADS}})\`, \`createContext({contextSize:${ll.context_size}, threads:${e.THREADS}})\`). The KV cache is cleared with \`clearHistory()\` outside the timed region.`);
if (tf) L.push(`- transformers API: ${tf.api}.`);
L.push("");
L.push("## taskvec layer sweep", "");
L.push("One query (`Q:x\\nA:`), a task vector from a 5-shot prompt, patched at each of the model's layers in turn:", "");
L.push("| figure | ms |", "|---|---:|");
L.push(`| fast sweep (all layers) | ${f1(tv.sweep_ms)} |`);
L.push(`| naive sweep (one full patched forward per layer) | ${f1(tv.naive_sweep_ms)} |`);
L.push(`| one patched forward | ${f1(tv.patched_forward_ms)} |`, "");
L.push(`Fast sweep = ${(tv.sweep_ms / tv.patched_forward_ms).toFixed(2)}× one patched forward (goal ≤ 1.5×); naive / fast = ${(tv.naive_sweep_ms / tv.sweep_ms).toFixed(1)}×.`, "");
for (const [label, r] of [["8-bit activations", tvi8], ["f32 activations", tv32]])
  if (r) L.push(`With ${label}: fast sweep ${f1(r.sweep_ms)} ms, one patched forward ${f1(r.patched_forward_ms)} ms: ${(r.sweep_ms / r.patched_forward_ms).toFixed(2)}×; naive ${f1(r.naive_sweep_ms)} ms.`, "");
L.push("## The image path: real-size SmolVLM-256M (random weights)", "");
const vlm = rd("vlm.json"), tfvlm = rd("tfvlm.json");
if (!vlm) L.push(`Not measured in this run: ${e.CMD_VLM}`, "");
else {
  L.push("One 512 × 512 image (1024 patches) through the vision encoder (768 × 12 layers) and the connector (64 image tokens), then the image prompt prefilled through the text model (576 × 30 layers) to the first answer token. taskvec: `models/make-random-smolvlm.sh`'s Q8_0 text GGUF + f32 mmproj; transformers: `Idefics3ForConditionalGeneration` with the same configuration and random weights, f32 eager. Median of 3 runs after a warm-up, in seconds.", "");
  L.push("| tool | vision encoder s | vision GFLOP/s | image prompt prefill s | image → first token s |", "|---|---:|---:|---:|---:|");
  const s3 = (x) => (x == null ? "-" : (x / 1000).toFixed(2));
  L.push(`| taskvec (${vlm.backend}) | ${s3(vlm.vision_ms)} | ${f1(vlm.vision_gflops)} | ${s3(vlm.image_prefill_ms)} | ${s3(vlm.first_token_ms)} |`);
  if (tfvlm) L.push(`| transformers (torch ${tfvlm.torch_version}, f32 eager, ${tfvlm.threads} threads) | ${s3(tfvlm.vision_ms)} | - | ${s3(tfvlm.image_prefill_ms)} | ${s3(tfvlm.first_token_ms)} |`);
  else L.push("| transformers | not run | | | |");
  L.push("");
}
L.push("## taskvec in headless Chromium", "");
if (!browser.length) L.push(`Not measured in this run: ${e.CMD_BROWSER}`, "");
else {
  L.push("The page's worker runs the same benchmark (`src/bench.rs`) on the wasm build (single-threaded, WebAssembly SIMD), 2 runs (`bench/browser_bench.mjs`). SmolLM2 with N and D as above; the tiny random VLM (hidden size 48: only its MLP down projection and vision tower split into 32-value blocks) with N = 64, D = 8 on WebGPU, which in headless Chromium here is SwiftShader (a CPU emulation): its figures say nothing about a real GPU.", "");
  L.push("| model | backend | matrices in memory | resident MB | prefill tok/s | decode ms/token | fast sweep ms | one patched forward ms |", "|---|---|---|---:|---:|---:|---:|---:|");
  for (const [model, set] of [["SmolLM2", browser], ["tiny VLM", tiny]])
    for (const b of set) {
      if (!b.ok) { L.push(`| ${model} | ${b.config} | failed: ${b.error} | | | | | |`); continue; }
      const r = b.report;
      L.push(`| ${model} | ${b.backend} | ${b.storage} | ${(b.resident_weight_bytes / 1e6).toFixed(3)} | ${f1(r.prefill_tok_s)} | ${f2(r.decode_ms_per_token)} | ${f1(r.sweep_ms)} | ${f1(r.patched_forward_ms)} |`);
    }
  L.push("");
}
if (probes.length) {
  L.push("## Where the time goes: device probe", "");
  L.push("`bench --probe` / `window.taskvecProbe`: the cost of a device's basic operations (median of 3 after a warm-up; reads excluded except in the first row).", "");
  L.push("| operation | " + probes.map((p) => p.config).join(" | ") + " |", "|---|" + probes.map(() => "---:").join("|") + "|");
  const ok = (p, k, f) => (p.ok ? f(p.report[k]) : "-");
  for (const [label, k, f] of [["readback of one value, ms", "readback_ms", (x) => x.toFixed(3)], ["elementwise op (chain of 200), ms", "elementwise_op_ms", (x) => x.toFixed(4)], ["matmul 128×576×1536, ms", "matmul_ms", f1], ["matmul GFLOP/s", "matmul_gflops", f2], ["matvec 1×576×1536, ms", "matvec_ms", f2], ["dequantize 1536×576 Q4_1 with tensor ops, ms", "dequant_q4_1_ms", f1]])
    L.push(`| ${label} | ` + probes.map((p) => ok(p, k, f)).join(" | ") + " |");
  L.push("");
}
L.push("## Machine", "");
L.push(`- CPU: ${e.CPU_MODEL} — \`nproc\` = ${e.NPROC}; flags: ${e.CPU_FLAGS.trim() || "-"}`);
L.push(`- Memory: ${e.MEM_TOTAL} total, ${e.MEM_AVAIL} available at the end`);
L.push(`- Kernel: ${e.KERNEL}; node ${e.NODE_VERSION}; ${e.TASKVEC_VERSION} (binary built ${e.BIN_MTIME})`);
L.push(`- Load average (/proc/loadavg) at start: \`${e.LOAD_START}\`; after taskvec: \`${e.LOAD_AFTER_TASKVEC}\`; after llama.cpp: \`${e.LOAD_AFTER_LLAMA}\`; after transformers: \`${e.LOAD_AFTER_TF}\`; end: \`${e.LOAD_END}\``, "");
L.push("## Commands", "", "Run from the repository root, in this order:", "", "```sh");
L.push(e.CMD_TASKVEC, e.CMD_LLAMA, e.CMD_TF, e.CMD_VLM, e.CMD_BROWSER, e.CMD_BROWSER_TINY, e.CMD_PROBE, "```", "");
L.push("Reproduce everything: `bench/run.sh [N] [D] [RUNS]` (defaults 128 32 5; see the header of `bench/run.sh` for the environment variables). node-llama-cpp is installed outside the repository, in `TASKVEC_BENCH_LLAMACPP_DIR`.", "");
L.push("## Raw output", "", "```json");
L.push(JSON.stringify({ taskvec: tv, taskvec_int8: tvi8, taskvec_f32_activations: tv32, taskvec_q8_0: tvq8i, taskvec_q8_0_f32_activations: tvq8, taskvec_f32: tvf, llamacpp: ll, transformers: tf, vlm: rd("vlm.json"), transformers_vlm: rd("tfvlm.json"), browser, tiny, probes }, null, 2), "```", "");
process.stdout.write(L.join("\n"));
EOF
mv "$TMP/RESULTS.md" "$OUT"
log "wrote $OUT"
sed -n '/^## Prefill and decode/,/^Ratios/p' "$OUT" >&2
