#!/usr/bin/env node
// llama.cpp side of the taskvec benchmark, through node-llama-cpp (prebuilt CPU binary).
//
// Usage: node bench/llamacpp.mjs MODEL.gguf [N=128] [D=32] [RUNS=5]
// Env:   TASKVEC_BENCH_LLAMACPP_DIR  directory whose node_modules holds node-llama-cpp
//                                    (default: ${XDG_CACHE_HOME:-$HOME/.cache}/taskvec-bench)
//        TASKVEC_BENCH_THREADS       llama.cpp threads (default: 2)
//        TASKVEC_BENCH_CTX           context size (default: 512)
//
// Prints exactly one JSON object on stdout:
//   {prefill_tok_s, decode_ms_per_token, threads, api, ...extra fields}
//
// What is timed (mirrors `taskvec bench`, src/cli/bench.rs):
//   prefill: the same kind of prompt (few-shot Country-Capital "Q:x\nA:y\n\n" demonstrations from
//            data/tasks/country_capital.tsv, tokenized by the model's own tokenizer, repeated and cut
//            to N tokens) evaluated in one call from an empty KV cache, with logits requested for the
//            last position and a greedy token sampled from them
//            (LlamaContextSequence.controlledEvaluate -> one llama_decode of N tokens).
//            The KV cache is cleared (clearHistory) before every run, outside the timed region.
//   decode:  after an untimed 16-token prefill, D greedy steps through the
//            LlamaContextSequence.evaluate() async generator (temperature 0, one llama_decode of one
//            token plus greedy sampling per step); ms per token = elapsed / D.
//   Both: one warm-up run, then the median of RUNS runs.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

function die(msg) {
  process.stderr.write(`llamacpp.mjs: ${msg}\n`);
  process.exit(1);
}

const [modelPath, nArg = "128", dArg = "32", runsArg = "5"] = process.argv.slice(2);
if (!modelPath) die("usage: node bench/llamacpp.mjs MODEL.gguf [N] [D] [RUNS]");
if (!fs.existsSync(modelPath)) die(`model not found: ${modelPath}`);
const N = Number.parseInt(nArg, 10);
const D = Number.parseInt(dArg, 10);
const RUNS = Number.parseInt(runsArg, 10);
if (!(N >= 2) || !(D >= 1) || !(RUNS >= 1)) die("need N >= 2, D >= 1, RUNS >= 1");
const THREADS = Number.parseInt(process.env.TASKVEC_BENCH_THREADS ?? "2", 10);
const CTX = Number.parseInt(process.env.TASKVEC_BENCH_CTX ?? "512", 10);
if (N + 1 > CTX || 16 + D + 1 > CTX) die(`N (${N}) and 16 + D (${16 + D}) must fit in the context (${CTX})`);

const cacheBase = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
const libDir = process.env.TASKVEC_BENCH_LLAMACPP_DIR || path.join(cacheBase, "taskvec-bench");

// node-llama-cpp lives outside the repository, so resolve it from libDir rather than from this file.
let llamaCpp;
try {
  const req = createRequire(path.join(path.resolve(libDir), "package.json"));
  llamaCpp = await import(pathToFileURL(req.resolve("node-llama-cpp")).href);
} catch (e) {
  die(
    `cannot load node-llama-cpp from ${libDir}/node_modules (${e.message}).\n` +
      `Install it OUTSIDE the repository (never commit node_modules):\n` +
      `  mkdir -p ${libDir} && cd ${libDir} && npm init -y >/dev/null && \\\n` +
      `  npm install --ignore-scripts --omit=optional node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1\n` +
      `or point TASKVEC_BENCH_LLAMACPP_DIR at a directory that has it.`
  );
}
const { getLlama } = llamaCpp;

// The same prompt text as taskvec: every Country-Capital pair as a demonstration, then the first
// input as the query.
const here = path.dirname(fileURLToPath(import.meta.url));
const tsv = path.join(here, "..", "data", "tasks", "country_capital.tsv");
let pairs = [];
if (fs.existsSync(tsv)) {
  for (const line of fs.readFileSync(tsv, "utf8").split("\n")) {
    const l = line.replace(/\r$/, "");
    if (!l.trim() || l.startsWith("#")) continue;
    const [x, y] = l.split("\t");
    if (x?.trim() && y?.trim()) pairs.push([x.trim(), y.trim()]);
  }
}
if (pairs.length === 0) pairs = [["France", "Paris"], ["Germany", "Berlin"], ["Italy", "Rome"], ["Spain", "Madrid"]];
const text = pairs.map(([x, y]) => `Q:${x}\nA:${y}\n\n`).join("") + `Q:${pairs[0][0]}\nA:`;

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const now = () => performance.now();

const llama = await getLlama({ build: "never", gpu: false, maxThreads: THREADS, logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: CTX, sequences: 1, threads: THREADS });
const seq = context.getSequence();

let ids = [...model.tokenize(text)];
if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) ids.unshift(model.tokens.bos);
const once = ids.slice();
while (ids.length < N) ids.push(...once);
ids = ids.slice(0, N);

// --- prefill -----------------------------------------------------------------------------------
const prefillInput = ids.map((t, i) => (i === ids.length - 1 ? [t, { generateNext: { token: true } }] : t));
async function prefillOnce() {
  await seq.clearHistory();
  const t0 = now();
  const out = await seq.controlledEvaluate(prefillInput);
  const dt = now() - t0;
  if (out[ids.length - 1]?.next?.token == null) die("prefill produced no token");
  return dt;
}
await prefillOnce(); // warm-up
const prefillMs = [];
for (let r = 0; r < RUNS; r++) prefillMs.push(await prefillOnce());

// --- decode ------------------------------------------------------------------------------------
const short = ids.slice(0, Math.min(16, ids.length));
async function decodeOnce() {
  await seq.clearHistory();
  const it = seq.evaluate(short, { temperature: 0, yieldEogToken: true });
  const first = await it.next(); // untimed 16-token prefill + first greedy token
  if (first.done) die("decode: generator ended after prefill");
  const t0 = now();
  for (let i = 0; i < D; i++) {
    const r = await it.next(); // evaluates the previous token, samples the next one
    if (r.done) die(`decode: generator ended after ${i} steps`);
  }
  const dt = now() - t0;
  await it.return();
  return dt / D;
}
await decodeOnce(); // warm-up
const decodeMs = [];
for (let r = 0; r < RUNS; r++) decodeMs.push(await decodeOnce());

const result = {
  prefill_tok_s: N / (median(prefillMs) / 1e3),
  decode_ms_per_token: median(decodeMs),
  threads: context.currentThreads,
  api:
    "node-llama-cpp LlamaContextSequence.controlledEvaluate (prefill, logits for the last token) / " +
    "LlamaContextSequence.evaluate generator, temperature 0 (decode)",
  node_llama_cpp_version: (() => {
    try {
      const req = createRequire(path.join(path.resolve(libDir), "package.json"));
      const pkg = path.join(path.dirname(req.resolve("node-llama-cpp")), "..", "package.json");
      return JSON.parse(fs.readFileSync(pkg, "utf8")).version;
    } catch {
      return null;
    }
  })(),
  llama_cpp_release: llama.llamaCppRelease?.release ?? null,
  context_size: context.contextSize,
  batch_size: context.batchSize,
  flash_attention: context.flashAttention,
  ideal_threads: context.idealThreads,
  cpu_math_cores: llama.cpuMathCores,
  prefill_tokens: N,
  decode_tokens: D,
  runs: RUNS,
  prefill_ms_runs: prefillMs,
  decode_ms_per_token_runs: decodeMs,
};
process.stdout.write(JSON.stringify(result) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
