// The model worker: owns the wasm module and the loaded model, so the page never freezes.
// Messages: {id, op, args} -> {id, ok, result} | {id, ok:false, error} and {id, progress}.
import init, * as tv from "../pkg/taskvec.js";

let ready = null;
let backend = null;
let model = null;

const CACHE = "taskvec-models-v1";

async function boot(preferGpu) {
  await init();
  if (preferGpu && self.navigator && self.navigator.gpu) {
    try {
      await tv.initWebGpu();
      backend = "webgpu";
      return { backend, notice: null };
    } catch (e) {
      backend = "cpu";
      return { backend, notice: "WebGPU failed (" + String(e.message || e) + "): running on the CPU (WebAssembly) instead." };
    }
  }
  backend = "cpu";
  return { backend, notice: preferGpu ? "This browser has no WebGPU: running on the CPU (WebAssembly) instead." : "CPU backend chosen: running on WebAssembly." };
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

function loadBytes(kind, a) {
  if (kind === "hf") return tv.WebModel.loadHf(backend, a.config, a.preprocessor || undefined, a.tokenizer, a.weights, a.storage || undefined);
  return tv.WebModel.loadGguf(backend, a.model, a.mmproj || undefined, a.storage || undefined);
}

const ops = {
  async init({ preferGpu }) { ready = boot(preferGpu); return ready; },
  async builtinTasks() { return tv.builtinTasks(); },
  async load({ source, model: m, mmproj, urls, storage }, report) {
    let files = { model: m, mmproj };
    const notes = [];
    if (source === "url") {
      const a = await download(urls.model, "model", report);
      if (a.note) notes.push(a.note);
      files.model = a.bytes;
      if (urls.mmproj) {
        const b = await download(urls.mmproj, "vision projector", report);
        if (b.note) notes.push(b.note);
        files.mmproj = b.bytes;
      }
    }
    report({ what: "building the model on " + backend, done: 0, total: 0 });
    let next;
    try {
      next = loadBytes("gguf", { model: new Uint8Array(files.model), mmproj: files.mmproj ? new Uint8Array(files.mmproj) : null, storage });
    } catch (e) {
      // Keep the previous model on failure.
      throw e;
    }
    if (model) model.free();
    model = next;
    return { info: model.info(), notes };
  },
  async info() { return model ? model.info() : null; },
  async bench({ prefill, decode, runs, naive }) {
    need();
    return model.bench(prefill || 128, decode || 32, runs || 3, !!naive);
  },
  async probe({ runs }) {
    need();
    return model.probe(runs || 3);
  },
  async tableRows() { return tv.tableRows(); },
  async imagesEncoded() { return model ? model.imagesEncoded() : 0; },
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
  async apply({ vector, layer, query, allowTransfer, maxTokens }) {
    need();
    return model.apply(vector, layer == null ? undefined : layer, query, !!allowTransfer, maxTokens || 8);
  },
  async lens({ prompt, image, track, top }) {
    need();
    return model.lens(prompt, image || undefined, track, top || 5);
  },
  async queryText({ text }) { return tv.WebModel.queryText(text == null ? undefined : text); },
  async inspect({ json }) { return tv.inspectVector(json); },
  async check({ json, allowTransfer }) { need(); tv.checkVector(json, model, !!allowTransfer); return true; },
  async similarity({ jsons }) { return tv.similarity(jsons); },
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
    const result = await f(args || {}, report);
    self.postMessage({ id, ok: true, result });
  } catch (e) {
    self.postMessage({ id, ok: false, error: String((e && e.message) || e) });
  }
};
