// `taskvec bench` inside headless Chromium: the page's worker runs the same measurements
// (src/bench.rs) on the real SmolLM2, for each backend × weight storage given.
//
//   node bench/browser_bench.mjs [--prefill N] [--decode D] [--runs R] [--naive] [--timeout S] [--model tiny] [--probe] cpu:auto cpu:f32 webgpu:q8_0 ...
//   node bench/browser_bench.mjs --model random-smolvlm --image IMG [--runs R] cpu:auto:1 cpu:auto:2 webgpu:auto
//
// The page's models: `smollm2` (default), `tiny` (the tiny random VLM, for SwiftShader's WebGPU)
// or `random-smolvlm` (the real-size random VLM that models/make-random-smolvlm.sh builds).
// A configuration is backend:storage[:threads[:single]] (threads: the CPU pool, default all cores;
// `single`: the single-threaded build instead of the threaded one, e.g. cpu:auto:1:single).
// --image: the image path's figures (src/bench.rs `image_bench`: vision encoder, first token,
// the page's apply) on that image file, instead of the text benchmark.
// --fused: on WebGPU, the fused quantized kernel against the tensor-op path (src/bench.rs
// `fused_check`, SmolVLM-size products, no model work): `--model tiny --fused webgpu:auto`.
// Needs `taskvec serve` on PORT (default 8080) from the repository root. Prints one JSON line
// per configuration ({"config", "ok", "report"|"error", "seconds"}). Not part of the tests.
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return Number(v);
};
const prefill = opt("--prefill", 128), decode = opt("--decode", 32), runs = opt("--runs", 3);
const timeout = opt("--timeout", 1800) * 1000;
const naive = args.includes("--naive");
// --probe: time the device's basic operations (src/bench.rs `probe`) instead of the model.
const probe = args.includes("--probe");
const fused = args.includes("--fused");
const mi = args.indexOf("--model");
const model = mi >= 0 ? args.splice(mi, 2)[1] : "smollm2";
const ii = args.indexOf("--image");
const image = ii >= 0 ? [...readFileSync(args.splice(ii, 2)[1])] : null;
const configs = args.filter((a) => a.includes(":"));
const port = process.env.PORT || "8080";

for (const config of configs.length ? configs : ["cpu:auto"]) {
  const [backend, storage, threads, build] = config.split(":");
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "tv-bench-")), {
    executablePath: "/usr/bin/chromium", headless: true,
    args: ["--enable-unsafe-webgpu", "--no-sandbox", "--headless=new", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const t0 = Date.now();
  let line;
  try {
    const page = await ctx.newPage();
    const query = new URLSearchParams({ model, weights: storage });
    if (backend === "cpu") query.set("backend", "cpu");
    if (threads) query.set("threads", threads);
    if (build === "single") query.set("build", "single");
    await page.goto(`http://127.0.0.1:${port}/www/index.html?${query}`);
    await page.waitForFunction(() => document.body.dataset.ready, null, { timeout });
    const err = await page.textContent("#model-error");
    if (err) throw new Error(err);
    if (await page.evaluate(() => window.taskvecState.backend) !== (backend === "cpu" ? "cpu" : "webgpu")) throw new Error("backend not available");
    const info = await page.evaluate(() => window.taskvecState.info);
    const report = fused
      ? await page.evaluate((runs) => window.taskvecDebug.fusedCheck("bench", runs), runs)
      : image
      ? await page.evaluate(({ image, runs }) => window.taskvecImageBench({ image: new Uint8Array(image), runs }), { image, runs })
      : probe
      ? await page.evaluate((runs) => window.taskvecProbe({ runs }), runs)
      : await page.evaluate(({ prefill, decode, runs, naive }) => window.taskvecBench({ prefill, decode, runs, naive }),
        { prefill, decode, runs, naive });
    line = { config, ok: true, backend: info.backend, build: await page.evaluate(() => window.taskvecState.build), threads: info.cpu_threads, storage: info.storage, resident_weight_bytes: info.resident_weight_bytes, report };
  } catch (e) {
    line = { config, ok: false, error: String(e.message || e).split("\n")[0] };
  }
  line.seconds = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(line));
  await ctx.close();
}
