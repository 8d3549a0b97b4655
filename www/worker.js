// The model worker: owns the wasm module and the loaded model, so the page never freezes.
// Messages: {id, op, args} -> {id, ok, result} | {id, ok:false, error} and {id, progress}.
// Two builds of the same crate: pkg/ (WebGPU + single-threaded CPU) and pkg/threads/ (CPU only,
// shared memory, a rayon pool in nested workers). The threaded one needs a cross-origin isolated
// page (COOP/COEP, which `taskvec serve` sends); without it the CPU runs on one thread.
let tv = null;
let ready = null;
let backend = null;
let model = null;

const CACHE = "taskvec-models-v1";
/** Threads for the CPU pool: the machine's cores, capped (more rarely pays off for these sizes). */
const MAX_THREADS = 8;

/** Imports a build; `fresh` gives a new instance (after a lost GPU the old one may be unusable). */
async function loadBuild(threaded, fresh = false) {
  const url = threaded ? "../pkg/threads/taskvec.js" : "../pkg/taskvec.js";
  const m = await import(fresh ? url + "?instance=" + Date.now() : url);
  await m.default();
  return m;
}

/** Whether this browser validates WebAssembly relaxed SIMD (the threaded build's fused multiply-add). */
async function hasRelaxedSimd() {
  try {
    return await (await import("./vendor/wasm-feature-detect.js")).relaxedSimd();
  } catch (e) {
    return false;
  }
}

/**
 * The CPU build: the threaded one (a pool of `threads`, default one per core) when the page is
 * cross-origin isolated and the browser has relaxed SIMD, also for one thread, since its kernels
 * are faster per thread; else the single-threaded build. `build: "single"` forces the latter.
 */
async function bootCpu(threads, notes, fresh = false, build = null) {
  const cores = Math.max(1, Math.min(MAX_THREADS, (self.navigator && self.navigator.hardwareConcurrency) || 1));
  const want = threads == null ? cores : Math.max(1, Math.min(64, threads | 0));
  let why = null;
  if (build === "single") {
    why = "the single-threaded build was asked for (?build=single)";
  } else if (!self.crossOriginIsolated) {
    why = "the page is not cross-origin isolated (its server sends no COOP/COEP headers), so shared memory is off";
  } else if (!await hasRelaxedSimd()) {
    why = "this browser has no WebAssembly relaxed SIMD, which the threaded build uses";
  } else {
    try {
      const m = await loadBuild(true);
      await m.initThreadPool(want);
      tv = m;
      return { threads: m.cpuThreads(), build: "threads", why: want === 1 ? "one thread was asked for (?threads=1)" : null };
    } catch (e) {
      why = "the threaded build failed to start (" + String(e.message || e) + ")";
    }
  }
  if (want > 1 && build !== "single") notes.push("CPU on one thread: " + why + ".");
  if (fresh || !tv || !tv.hasWebGpu()) tv = await loadBuild(false, fresh); // not the threaded one
  return { threads: 1, build: "single", why };
}

async function boot(preferGpu, threads, build) {
  const notes = [];
  if (preferGpu && self.navigator && self.navigator.gpu) {
    try {
      tv = await loadBuild(false);
      await tv.initWebGpu();
      backend = "webgpu";
      return { backend, threads: 1, notice: null, gpu: tv.webGpuLimits() };
    } catch (e) {
      notes.push("WebGPU failed (" + String(e.message || e) + "): running on the CPU (WebAssembly) instead.");
    }
  } else if (preferGpu) {
    notes.push("This browser has no WebGPU: running on the CPU (WebAssembly) instead.");
  }
  backend = "cpu";
  const cpu = await bootCpu(threads, notes, false, build);
  return { backend, threads: cpu.threads, build: cpu.build, threadNote: cpu.why, notice: notes.join(" ") || (preferGpu ? null : "CPU backend chosen: running on WebAssembly.") };
}

/** Downloads a URL with progress, using the Cache API when it can (quota errors are reported, not fatal). */
async function download(url, label, report) {
  let cache = null;
  try { cache = await caches.open(CACHE); } catch (_) { cache = null; }
  if (cache) {
    const hit = await cache.match(url);
    if (hit) {
      const buf = new Uint8Array(await hit.arrayBuffer());
      report({ what: label + " (from browser cache)", done: buf.length, total: buf.length });
      return { bytes: buf, cached: true, note: null };
    }
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error("download of " + url + " failed: HTTP " + res.status);
  const total = Number(res.headers.get("content-length")) || 0;
  const reader = res.body.getReader();
  const parts = [];
  let done = 0;
  for (;;) {
    const { done: end, value } = await reader.read();
    if (end) break;
    parts.push(value);
    done += value.length;
    report({ what: label, done, total });
  }
  const bytes = new Uint8Array(done);
  let off = 0;
  for (const p of parts) { bytes.set(p, off); off += p.length; }
  let note = null;
  if (cache) {
    try {
      await cache.put(url, new Response(bytes, { headers: { "content-type": "application/octet-stream" } }));
    } catch (e) {
      note = "Not cached (" + (e.name === "QuotaExceededError" ? "browser storage quota exceeded" : String(e.message || e)) + "): the model will be downloaded again next time.";
    }
  }
  return { bytes, cached: false, note };
}

/** The files of the model loaded on WebGPU, kept to reload it on the CPU if the GPU is lost. */
let gpuFiles = null;

/** The refusal of a model too big for the GPU's buffers (src/web/gpu.rs `check_webgpu_room`). */
const TOO_BIG = /cannot hold the model/;

/**
 * Whether an error means the GPU is gone or cannot hold the model (then the CPU takes over):
 * a trapped instance, the size refusal, or a device that no longer computes one tiny op.
 */
async function gpuTrouble(e) {
  if (e instanceof WebAssembly.RuntimeError) return true;
  if (TOO_BIG.test(String((e && e.message) || e))) return true;
  try { return !(await tv.webGpuAlive()); } catch (_) { return true; }
}

/** A running check of the GPU after a failed step: resolves true when the CPU took over. */
let switching = null;

function checkGpu(e, report) {
  if (!switching) {
    switching = (async () => {
      try {
        if (!(await gpuTrouble(e))) return false;
        await fallBackToCpu(e, report);
        return true;
      } finally {
        switching = null;
      }
    })();
  }
  return switching;
}

/** Moves to the CPU backend after a WebGPU failure and reloads the model there. */
async function fallBackToCpu(e, report) {
  const why = String((e && e.message) || e).split("\n")[0];
  const notes = [];
  backend = "cpu";
  model = null; // the GPU model (and perhaps its whole wasm instance) is unusable: not freed
  const cpu = await bootCpu(undefined, notes, true);
  const files = gpuFiles;
  gpuFiles = null;
  if (files) {
    report({ what: "the GPU failed: reloading the model on the CPU", done: 0, total: 0 });
    model = loadGguf(files);
  }
  const what = TOO_BIG.test(why) ? why : `The WebGPU device stopped working (${why})`;
  const notice = `${what}: switched to the CPU (WebAssembly, ${cpu.threads} thread${cpu.threads === 1 ? "" : "s"})` +
    (files ? " and reloaded the model there." : ".") + (notes.length ? " " + notes.join(" ") : "");
  self.postMessage({ event: "backend", backend, threads: cpu.threads, build: cpu.build, threadNote: cpu.why, notice, info: model ? model.info() : null });
}

/** Builds a model from GGUF bytes `{ model, mmproj?, storage? }` on the current backend. */
function loadGguf(a) {
  return tv.WebModel.loadGguf(backend, a.model, a.mmproj || undefined, a.storage || undefined);
}

const ops = {
  async init({ preferGpu, threads, build }) { ready = boot(preferGpu, threads, build); return ready; },
  async limits() { return tv.limits(); },
  async builtinTasks() { return tv.builtinTasks(); },
  async load({ source, model: m, mmproj, urls, storage }, report) {
    const files = { model: m, mmproj };
    const notes = [];
    if (source === "url") {
      for (const [key, label] of [["model", "model"], ["mmproj", "vision projector"]]) {
        if (!urls[key]) continue;
        const d = await download(urls[key], label, report);
        if (d.note) notes.push(d.note);
        files[key] = d.bytes;
      }
    }
    report({ what: "building the model on " + backend, done: 0, total: 0 });
    const gguf = { model: new Uint8Array(files.model), mmproj: files.mmproj ? new Uint8Array(files.mmproj) : null, storage };
    const next = loadGguf(gguf); // throws, keeping the previous model, on failure
    if (model) model.free();
    model = next;
    gpuFiles = backend === "webgpu" ? gguf : null;
    return { info: model.info(), notes };
  },
  async bench({ prefill, decode, runs, naive }) {
    need();
    return model.bench(prefill || 128, decode || 32, runs || 3, !!naive);
  },
  async probe({ runs }) {
    need();
    return model.probe(runs || 3);
  },
  async imageBench({ image, runs, maxTokens }) {
    need();
    return model.imageBench(image, runs || 3, maxTokens || 8);
  },
  async exportVector({ json, format, layers, scale }) { return tv.exportVector(json, format, layers || undefined, scale == null ? undefined : scale); },
  async importSafetensors({ bytes }) { return tv.importSafetensors(new Uint8Array(bytes)); },
  // This build's dense f32 product (relaxed-SIMD panels in the threaded build) against f64.
  async denseCheck({ runs }) { return tv.denseCheck(runs || 0); },
  // The fused WebGPU kernel against the tensor-op path (null on the CPU backend).
  async fusedCheck({ sizes, runs }) { return backend === "webgpu" ? tv.fusedCheck(sizes || "check", runs || 3) : null; },
  async debugLoseGpu() { return backend === "webgpu" ? tv.debugLoseWebGpu() : false; },
  async debugLimitGpuBuffer({ bytes }) { if (backend === "webgpu") tv.debugLimitWebGpuBuffer(bytes); return true; },
  async estimateApply() { return model ? model.estimateApply() : null; },
  async tableRows() { return tv.tableRows(); },
  async table({ req }, report) {
    need();
    const rowInfo = new Map(tv.tableRows().map((r) => [r.id, r]));
    const images = {};
    if ((req.rows || []).some((id) => rowInfo.get(id) && rowInfo.get(id).images)) {
      const paths = [...new Set(tv.builtinTasks().filter((t) => req.tasks.includes(t.name)).flatMap((t) => t.items.map((i) => i.image).filter(Boolean)))];
      let done = 0;
      report({ what: "fetching the tasks' images", done, total: paths.length });
      const fetchOne = async (p) => {
        const url = new URL("../data/images/" + p, self.location.href);
        const res = await fetch(url);
        if (!res.ok) throw new Error("image " + p + ": HTTP " + res.status);
        images[p] = new Uint8Array(await res.arrayBuffer());
        report({ what: "fetching the tasks' images", done: ++done, total: paths.length });
      };
      // A few downloads at a time.
      const queue = paths.slice();
      await Promise.all(Array.from({ length: 6 }, async () => { while (queue.length) await fetchOne(queue.shift()); }));
    }
    return model.table(req, images, (done, total, what) => report({ what, done, total }));
  },
  async extract({ req }, report) {
    need();
    return model.extract(req, (done, total) => report({ what: "extraction prompts", done, total }));
  },
  async evaluate({ req }, report) {
    need();
    return model.evaluate(req, (done, total) => report({ what: "test items", done, total }));
  },
  // `req` is Rust's `ApplyIn` as the page built it (apply.js `applyRequest`).
  async apply({ vector, req }, report) {
    need();
    return model.apply(vector, req, (which, text) => report({ stream: which, text }));
  },
  async lensAggregate({ task, prompts, seed }, report) {
    need();
    return model.lensAggregate(task, prompts || 20, BigInt(seed || 0), (done, total) => report({ what: "prompts", done, total }));
  },
  async lens({ prompt, image, track, top }) {
    need();
    return model.lens(prompt, image || undefined, track, top || 5);
  },
  async lensPrompt({ json, query }) { return tv.lensPrompt(json, query == null ? undefined : query); },
  async inspect({ json }) { return tv.inspectVector(json); },
  async similarity({ jsons }) { return tv.similarity(jsons); },
  async combine({ jsons, weights, expression, allowTransfer }) { return tv.combineVectors(jsons, Float32Array.from(weights), expression, !!allowTransfer, new Date().toISOString().replace(/\.\d+Z$/, "Z")); },
  async map({ jsons, layer }) { return tv.mapVectors(jsons, layer); },
};

function need() {
  if (!model) throw new Error("load a model first");
}

self.onmessage = async (ev) => {
  const { id, op, args } = ev.data;
  const report = (p) => self.postMessage({ id, progress: p });
  try {
    if (op !== "init" && ready) await ready;
    const f = ops[op];
    if (!f) throw new Error("unknown operation " + op);
    if (switching) await switching;
    const started = backend;
    let result;
    try {
      result = await f(args || {}, report);
    } catch (e) {
      // A lost GPU, or a model too big for it: continue on the CPU and run the step again
      // (also when another step found the GPU lost while this one ran).
      if (started !== "webgpu" || op === "init") throw e;
      if (backend === "webgpu" && !(await checkGpu(e, report))) throw e;
      if (switching) await switching;
      result = await f(args || {}, report);
    }
    self.postMessage({ id, ok: true, result });
  } catch (e) {
    self.postMessage({ id, ok: false, error: String((e && e.message) || e) });
  }
};
