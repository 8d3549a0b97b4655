#!/usr/bin/env python3
"""Hugging Face transformers side of the taskvec benchmark (optional; f32 eager on CPU).

Usage: python bench/transformers_bench.py MODEL.gguf [N=128] [D=32] [RUNS=5]
Env:   TASKVEC_BENCH_THREADS  torch intra-op threads (default: 2)

Prints exactly one JSON object: {prefill_tok_s, decode_ms_per_token, threads, api, ...}.

The GGUF is dequantized by transformers to f32 (`gguf_file=`, `dtype=torch.float32`), attention is
"eager". Timed, mirroring `taskvec bench` (src/cli/bench.rs):
  prefill: the same few-shot Country-Capital prompt cut to N tokens, one forward from an empty cache
           with output_hidden_states=True (taskvec captures the residual at every layer), use_cache=False;
  decode:  after an untimed 16-token prefill (use_cache=True), D greedy steps, each one forward of
           one token with the DynamicCache plus an argmax; ms/token = elapsed / D.
One warm-up, then the median of RUNS runs, under torch.inference_mode().
"""

import json
import os
import statistics
import sys
import time


def die(msg):
    sys.stderr.write(f"transformers_bench.py: {msg}\n")
    sys.exit(1)


def main():
    args = sys.argv[1:]
    if not args:
        die("usage: python bench/transformers_bench.py MODEL.gguf [N] [D] [RUNS]")
    model_path = os.path.abspath(args[0])
    n = int(args[1]) if len(args) > 1 else 128
    d = int(args[2]) if len(args) > 2 else 32
    runs = int(args[3]) if len(args) > 3 else 5
    if n < 2 or d < 1 or runs < 1:
        die("need N >= 2, D >= 1, RUNS >= 1")
    if not os.path.exists(model_path):
        die(f"model not found: {model_path}")
    threads = int(os.environ.get("TASKVEC_BENCH_THREADS", "2"))

    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        die(f"needs torch, transformers and gguf: {e}")

    torch.set_num_threads(threads)
    directory, name = os.path.split(model_path)
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()

    here = os.path.dirname(os.path.abspath(__file__))
    tsv = os.path.join(here, "..", "data", "tasks", "country_capital.tsv")
    pairs = []
    if os.path.exists(tsv):
        for line in open(tsv, encoding="utf-8"):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#") or "\t" not in line:
                continue
            x, y = line.split("\t", 1)
            if x.strip() and y.strip():
                pairs.append((x.strip(), y.strip()))
    if not pairs:
        pairs = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid")]
    text = "".join(f"Q:{x}\nA:{y}\n\n" for x, y in pairs) + f"Q:{pairs[0][0]}\nA:"
    once = tok(text, add_special_tokens=True)["input_ids"]
    ids = list(once)
    while len(ids) < n:
        ids.extend(once)
    ids = ids[:n]
    prompt = torch.tensor([ids], dtype=torch.long)
    short = prompt[:, : min(16, n)]

    def prefill_once():
        t0 = time.perf_counter()
        out = model(prompt, use_cache=False, output_hidden_states=True)
        _ = out.logits[0, -1].argmax().item()
        return (time.perf_counter() - t0) * 1e3

    # transformers >= 5.2x renamed `past_key_values` to `cache` (the old name warns); support both.
    import inspect

    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def decode_once():
        out = model(short, use_cache=True)
        past = getattr(out, cache_kw)
        logits = out.logits
        t0 = time.perf_counter()
        for _ in range(d):
            nxt = logits[:, -1:].argmax(-1)
            out = model(nxt, use_cache=True, **{cache_kw: past})
            past, logits = getattr(out, cache_kw), out.logits
        _ = logits[0, -1, 0].item()
        return (time.perf_counter() - t0) * 1e3 / d

    with torch.inference_mode():
        prefill_once()
        prefill_ms = [prefill_once() for _ in range(runs)]
        decode_once()
        decode_ms = [decode_once() for _ in range(runs)]

    print(
        json.dumps(
            {
                "prefill_tok_s": n / (statistics.median_high(prefill_ms) / 1e3),
                "decode_ms_per_token": statistics.median_high(decode_ms),
                "threads": torch.get_num_threads(),
                "api": "transformers AutoModelForCausalLM f32 eager: model(ids, output_hidden_states=True) "
                "(prefill), manual greedy loop with the KV cache "
                f"(`{cache_kw}=`, decode)",
                "torch_version": torch.__version__,
                "transformers_version": transformers.__version__,
                "prefill_tokens": n,
                "decode_tokens": d,
                "runs": runs,
                "prefill_ms_runs": prefill_ms,
                "decode_ms_per_token_runs": decode_ms,
            }
        )
    )


if __name__ == "__main__":
    main()
