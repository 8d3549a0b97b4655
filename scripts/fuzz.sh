#!/usr/bin/env bash
# Fuzzes taskvec's untrusted-input paths with cargo-fuzz (libFuzzer):
#   gguf         GGUF header, config, tokenizer, every tensor dequantized, requantization
#   safetensors  safetensors header and every tensor converted to f32
#   vector_json  a task-vector JSON file: parse, validate, check against a model
#   image        any image bytes: limits, decode, resize, normalize
#
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET=600] [TARGET ...]
# Runs two targets at a time; each starts from the committed seeds (fuzz/seeds/<target>) plus
# what earlier runs found (fuzz/corpus/<target>, git-ignored). Crashes land in
# fuzz/artifacts/<target>/ and make the script fail. Logs: fuzz/logs/<target>.log.
# Needs a nightly toolchain (`rustup toolchain install nightly`), or set FUZZ_TOOLCHAIN=stable
# to use the stable one with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gguf safetensors vector_json image)
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
if [ "$TOOLCHAIN" = stable ]; then export RUSTC_BOOTSTRAP=1; fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# -s none: libFuzzer coverage without AddressSanitizer. The code under test is safe Rust (the
# sanitizer finds nothing safe code can do), and ASan makes the build of burn too slow here;
# set FUZZ_SANITIZER=address to add it.
SAN="${FUZZ_SANITIZER:-none}"
cargo "+$TOOLCHAIN" fuzz build -O -s "$SAN"
mkdir -p fuzz/logs
run() {
  local t="$1"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
  if cargo "+$TOOLCHAIN" fuzz run -O -s "$SAN" "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2560 -max_len=65536 \
      -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1; then
    echo "$t: no crash in ${SECS}s ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$') runs, corpus $(ls "fuzz/corpus/$t" | wc -l) inputs)"
  else
    echo "$t: FAILED — see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    return 1
  fi
}
status=0
for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
  pids=()
  for t in "${TARGETS[@]:i:2}"; do run "$t" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
done
exit $status
