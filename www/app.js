// The taskvec page: UI wiring. All model work happens in the worker (client.js); every piece
// of user or file text is rendered with textContent, never as HTML.
import { ModelClient } from "./client.js";
import * as lib from "./library.js";
import * as plots from "./plots.js";
import { initPaperPanel } from "./panels/paper.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const client = new ModelClient();
/** Everything the page shows, also read by the browser tests. */
const state = (window.taskvecState = { backend: null, info: null, tasks: [], last: {} });
// For bench/browser_bench.mjs: the same figures as `taskvec bench`, measured in the worker.
window.taskvecBench = (opts) => client.call("bench", opts || {});
window.taskvecProbe = (opts) => client.call("probe", opts || {});
// For bench/browser_bench.mjs --image: the image path's figures ({image: Uint8Array, runs}).
window.taskvecImageBench = (opts) => client.call("imageBench", opts);
// Test hooks: lose the WebGPU device; pretend its buffers are smaller (bytes, or null to undo);
// check (sizes "check") or time ("bench") the fused quantized kernel against the tensor-op path;
// check the CPU build's dense product.
window.taskvecDebug = {
  loseGpu: () => client.call("debugLoseGpu"),
  limitGpuBuffer: (bytes) => client.call("debugLimitGpuBuffer", { bytes }),
  fusedCheck: (sizes, runs) => client.call("fusedCheck", { sizes, runs }),
  denseCheck: (runs) => client.call("denseCheck", { runs }),
};
// For bench/browser_table.mjs: the paper's table in the worker (the same op the panel runs).
window.taskvecTable = (req) => client.call("table", { req });
const paper = initPaperPanel({ client, state });

const MODELS = {
  smollm2: { label: "SmolLM2-135M-Instruct · Q4_1 · text only (local models/)", model: "../models/SmolLM2-135M-Instruct.Q4_1.gguf" },
  tiny: { label: "Tiny random SmolVLM · test model, images (local models/tiny/)", model: "../models/tiny/tiny_lm.gguf", mmproj: "../models/tiny/tiny_mmproj.gguf" },
  "random-smolvlm": {
    label: "Random SmolVLM-256M · real size, random weights, for speed tests (local models/random-smolvlm/, built by models/make-random-smolvlm.sh)",
    model: "../models/random-smolvlm/SmolVLM-256M-random-Q8_0.gguf",
    mmproj: "../models/random-smolvlm/mmproj-SmolVLM-256M-random-f32.gguf",
  },
  smolvlm: {
    label: "SmolVLM-256M-Instruct · Q8_0 · images (download from the model hub)",
    model: "https://huggingface.co/ggml-org/SmolVLM-256M-Instruct-GGUF/resolve/main/SmolVLM-256M-Instruct-Q8_0.gguf",
    mmproj: "https://huggingface.co/ggml-org/SmolVLM-256M-Instruct-GGUF/resolve/main/mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
  },
  url: { label: "Any URL…" },
};
const TASK_WORDS = { country_capital: "capital", country_currency: "currency", animal_latin: "species", animal_young: "baby", food_color: "color", food_flavor: "flavor" };

function text(el, s) { el.textContent = s == null ? "" : String(s); }
function busy(btns, on) { for (const b of btns) b.disabled = on; }
function showError(id, e) { text($(id), e ? (e.message || String(e)) : ""); }
function progress(bar, status) {
  return (p) => {
    bar.hidden = false;
    if (p.total) { bar.max = p.total; bar.value = p.done; } else bar.removeAttribute("value");
    const mb = (n) => (n / 1048576).toFixed(1) + " MB";
    text(status, p.total > 4096 ? `${p.what}: ${mb(p.done)} / ${mb(p.total)}` : p.total ? `${p.what}: ${p.done} / ${p.total}` : p.what);
  };
}
function opt(value, label) { const o = document.createElement("option"); o.value = value; o.textContent = label; return o; }

// ---------- model ----------
async function loadModel(source, files) {
  showError("model-error", null);
  const bar = $("load-progress"), status = $("load-status");
  busy([$("load-btn")], true);
  try {
    let res;
    if (source === "files") {
      const gguf = files.filter((f) => /\.gguf$/i.test(f.name));
      if (!gguf.length) throw new Error("choose a .gguf file");
      const mm = gguf.find((f) => /mmproj/i.test(f.name));
      const main = gguf.find((f) => f !== mm);
      if (!main) throw new Error("the files hold only a vision projector (mmproj); add the language model GGUF");
      const model = await main.arrayBuffer();
      const mmproj = mm ? await mm.arrayBuffer() : null;
      res = await client.call("load", { source: "bytes", model, mmproj, storage: $("weights-choice").value }, progress(bar, status), [model, ...(mmproj ? [mmproj] : [])]);
    } else {
      const choice = MODELS[$("model-choice").value];
      const urls = choice.model ? { model: new URL(choice.model, location.href).href, mmproj: choice.mmproj ? new URL(choice.mmproj, location.href).href : null }
        : { model: $("model-url").value.trim(), mmproj: $("mmproj-url").value.trim() || null };
      if (!urls.model) throw new Error("enter the model's URL");
      res = await client.call("load", { source: "url", urls, storage: $("weights-choice").value }, progress(bar, status));
    }
    state.info = res.info;
    showCard(res.info);
    paper.modelChanged(res.info);
    showThumbs();
    text(status, "ready" + (res.notes.length ? " · " + res.notes.join(" ") : ""));
  } catch (e) {
    text(status, state.info ? "kept the previous model" : "");
    showError("model-error", e);
  } finally {
    bar.hidden = true;
    busy([$("load-btn")], false);
  }
}

function showCard(info) {
  const rows = [
    ["name", info.name], ["format", info.format], ["weights in the file", info.quant], ["file size", (info.file_bytes / 1048576).toFixed(1) + " MB"], ["matrices in memory", info.storage], ["weights in memory", (info.resident_weight_bytes / 1048576).toFixed(1) + " MB"],
    ["layers", info.layers], ["hidden size", info.hidden], ["images", info.vision ? "yes" : "no (text only)"], ["backend", info.backend === "cpu" ? `cpu, ${threadsLabel(info.cpu_threads)}` : info.backend], ["fingerprint", info.fingerprint],
  ];
  const card = $("model-card");
  card.replaceChildren();
  if (info.vision) rows.push(["image → answer", "estimating…"]);
  for (const [k, v] of rows) { const dt = document.createElement("dt"); text(dt, k); const dd = document.createElement("dd"); text(dd, v); card.append(dt, dd); }
  state.imageAnswer = { estimate: null, measured: null, dd: info.vision ? card.lastElementChild : null };
  if (info.vision) {
    const a = state.imageAnswer;
    client.call("estimateApply").then((e) => { if (e && a === state.imageAnswer) { a.estimate = e; showImageAnswer(); } })
      .catch((e) => { text(a.dd, "no estimate (" + String(e.message || e) + ")"); });
  }
  const layer = $("layer-choice");
  layer.replaceChildren(opt("", "recommended"));
  for (let l = 0; l < info.layers; l++) layer.append(opt(String(l), String(l)));
  const to = $("layer-to");
  to.replaceChildren(opt("", "(one layer)"));
  for (let l = 0; l < info.layers; l++) to.append(opt(String(l), String(l)));
}

/** "1 thread", "2 threads". */
const threadsLabel = (n) => `${n} thread${n === 1 ? "" : "s"}`;

/** The backend badge, its tooltip and the notice line for a boot or a fallback. */
function showBackend(b) {
  state.backend = b.backend;
  state.threads = b.threads;
  state.build = b.build || null;
  text($("backend"), b.backend === "webgpu" ? "WebGPU" : `CPU (WebAssembly, ${threadsLabel(b.threads)})`);
  const build = b.build === "threads" ? "threaded build (relaxed SIMD)" : b.build === "single" ? "single-threaded build" : "";
  $("backend").title = [build, b.threadNote ? "one thread: " + b.threadNote : ""].filter(Boolean).join("; ");
  document.body.dataset.threads = String(b.threads);
  if (b.notice) { $("notice").hidden = false; text($("notice"), b.notice); }
}

/** The model card's "image → answer" row: the estimate (arithmetic ÷ a measured product rate), then the last measured apply. */
function showImageAnswer() {
  const a = state.imageAnswer;
  if (!a || !a.dd) return;
  const parts = [];
  if (a.measured != null) parts.push(`${(a.measured / 1000).toFixed(1)} s measured (last image)`);
  if (a.estimate) parts.push(`≈ ${(a.estimate.ms / 1000).toFixed(1)} s estimated`);
  text(a.dd, parts.join(" · ") || "–");
  if (a.estimate) a.dd.title = `Estimate: ${a.estimate.gflop.toFixed(0)} GFLOP (vision encoder, three prompts, the sweep) at ${a.estimate.gflops.toFixed(1)} GFLOP/s, the rate of a vision-layer-sized matrix product measured on this device after loading, times 2 for the other operations (1.6–2.8× in measurements).`;
}

// ---------- task ----------
function addRow(ex) {
  const tr = document.createElement("tr");
  const inCell = document.createElement("td");
  if (ex.image) {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(new Blob([ex.image]));
    img.alt = ex.label || "image";
    const span = document.createElement("span");
    text(span, " " + (ex.label || "image"));
    inCell.append(img, span);
    tr.imageBytes = ex.image;
    tr.imageLabel = ex.label || "image";
    if (ex.builtin) tr.dataset.image = ex.builtin;
  } else {
    const input = document.createElement("input");
    input.value = ex.text || "";
    input.className = "ex-in";
    inCell.append(input);
  }
  const outCell = document.createElement("td");
  const out = document.createElement("input");
  out.value = ex.output || "";
  out.className = "ex-out";
  outCell.append(out);
  const rm = document.createElement("td");
  const b = document.createElement("button");
  text(b, "✕");
  b.title = "remove";
  b.onclick = () => {
    tr.remove();
    if (tr.dataset.image) for (const t of document.querySelectorAll("#thumbs .thumb.added")) if (t.dataset.image === tr.dataset.image) t.classList.remove("added");
  };
  rm.append(b);
  tr.append(inCell, outCell, rm);
  $("examples").tBodies[0].append(tr);
}

function applyPreset(name) {
  const t = state.tasks.find((x) => x.name === name);
  $("examples").tBodies[0].replaceChildren();
  showThumbs();
  if (!t) return;
  for (const [x, y] of t.pairs.slice(0, 30)) addRow({ text: x, output: y });
  $("instruction").value = t.instruction;
  $("task-name").value = t.name;
}

/** The built-in task's pictures as thumbnails; a click adds the item as an image example. */
function showThumbs() {
  const t = state.tasks.find((x) => x.name === $("preset").value);
  const items = t ? t.items.filter((i) => i.image) : [];
  $("thumbs-box").hidden = !items.length;
  const grid = $("thumbs");
  if (grid.dataset.task === (t ? t.name : "")) { noteVision(); return; }
  grid.dataset.task = t ? t.name : "";
  grid.replaceChildren(...items.map((item) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "thumb";
    b.title = `${item.input} → ${item.output} (${item.split} split) · ${item.image}`;
    b.dataset.image = item.image;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = item.input;
    img.src = "../data/images/" + item.image;
    const cap = document.createElement("span");
    text(cap, item.input);
    b.append(img, cap);
    b.onclick = () => addBuiltinImage(item, b).catch((e) => showError("task-error", e));
    return b;
  }));
  text($("thumbs-count"), `${items.length} of ${t ? t.items.length : 0} items have one`);
  noteVision();
}

function noteVision() {
  const grid = $("thumbs");
  grid.title = state.info && !state.info.vision ? "this model has no vision encoder: extracting from image examples needs a VLM (the tiny VLM or SmolVLM)" : "";
}

async function addBuiltinImage(item, button) {
  const body = $("examples").tBodies[0];
  const have = [...body.rows].find((tr) => tr.dataset.image === item.image);
  if (have) { have.scrollIntoView({ block: "nearest" }); have.classList.add("flash"); setTimeout(() => have.classList.remove("flash"), 800); return; }
  const res = await fetch(new URL("../data/images/" + item.image, location.href));
  if (!res.ok) throw new Error(`${item.image}: HTTP ${res.status}`);
  addRow({ image: new Uint8Array(await res.arrayBuffer()), label: item.image, output: item.output, builtin: item.image });
  button.classList.add("added");
  body.rows[body.rows.length - 1].scrollIntoView({ block: "nearest" });
}

function spec() { return document.querySelector("input[name=spec]:checked").value; }

function taskRequest() {
  const examples = [];
  for (const tr of $("examples").tBodies[0].rows) {
    const out = tr.querySelector(".ex-out").value.trim();
    if (tr.imageBytes) examples.push({ image: tr.imageBytes, label: tr.imageLabel, output: out });
    else {
      const x = tr.querySelector(".ex-in").value.trim();
      if (!x && !out) continue;
      examples.push({ text: x, output: out });
    }
  }
  const s = spec();
  if (s !== "instruction" && examples.length < 2) throw new Error("give at least two examples (input and answer)");
  if (s !== "text" && !$("instruction").value.trim().endsWith(":")) throw new Error("the instruction must end with ':'");
  const prompts = Number($("prompts").value), seed = Number($("seed").value);
  if (!(prompts >= 1 && prompts <= 200)) throw new Error("prompts must be between 1 and 200");
  if (!(seed >= 0)) throw new Error("the seed must be a non-negative number");
  return { name: $("task-name").value.trim() || "task", spec: s, examples, instruction: $("instruction").value.trim() || null, prompts, seed, read_at: $("read-at").value, created_at: new Date().toISOString() };
}

async function extract() {
  showError("task-error", null);
  const btns = [$("extract-btn"), $("evaluate-btn")];
  busy(btns, true);
  try {
    const req = taskRequest();
    const json = await client.call("extract", { req }, progress($("task-progress"), $("task-status")));
    state.last.vector = json;
    const id = await save(json, `${req.name} · ${req.spec === "text" ? (req.examples.some((e) => e.image) ? "image examples" : "text examples") : req.spec}`);
    $("vector-choice").value = id;
    text($("task-status"), "vector extracted and saved in the library");
  } catch (e) { showError("task-error", e); text($("task-status"), ""); }
  finally { $("task-progress").hidden = true; busy(btns, false); }
}

async function evaluateTask() {
  showError("task-error", null);
  const btns = [$("extract-btn"), $("evaluate-btn")];
  busy(btns, true);
  try {
    const req = taskRequest();
    const r = await client.call("evaluate", { req }, progress($("task-progress"), $("task-status")));
    state.last.evaluate = r;
    plots.accuracy(r);
    $("layer-choice").value = String(r.selected_layer);
    text($("task-status"), `zero-shot ${r.zero_shot.toFixed(2)} · in context ${r.icl.toFixed(2)} · patched ${r.test_at_selected.toFixed(2)} at layer ${r.selected_layer}, the layer chosen on validation (${r.n_val} validation / ${r.n_test} test items; best on test: ${r.patched[r.best_layer].toFixed(2)} at layer ${r.best_layer}). Layer ${r.selected_layer} is now selected for Apply.`);
  } catch (e) { showError("task-error", e); text($("task-status"), ""); }
  finally { $("task-progress").hidden = true; busy(btns, false); }
}

// ---------- query ----------
let queryImage = null;

function answerText(a) {
  if (!a) return "–";
  const top = a.top[0];
  return `${JSON.stringify(a.text)}   (first token ${JSON.stringify(top[0])}, p = ${top[1].toFixed(3)})`;
}

/** The steering controls as the library's `Steering` ({op, scale, layers, every_token}). */
function steeringChoice(entry, layerV) {
  const to = $("layer-to").value;
  const from = layerV === "" ? entry.summary.recommended_layer : Number(layerV);
  let layers = layerV === "" ? null : [from, from];
  if (to !== "") layers = [Math.min(from, Number(to)), Math.max(from, Number(to))];
  return { op: $("steer-op").value, scale: Number($("steer-scale").value), layers, every_token: $("steer-every").checked };
}

/** Whether a steering request is the paper's patch (replace at scale 1 into one layer, prompt
 * only) — the JS twin of Rust's `Steering::is_paper`. */
function isPaperPatch(s) {
  return s.op === "replace" && s.scale === 1 && !s.every_token && (!s.layers || s.layers[0] === s.layers[1]);
}

/** Steered and unsteered continuations side by side (shown for anything but the paper's patch). */
function showSteered(r) {
  const s = r.steering;
  const paper = isPaperPatch(s);
  $("steer-compare").hidden = paper;
  if (paper) return;
  const span = s.layers[0] === s.layers[1] ? `layer ${s.layers[0]}` : `layers ${s.layers[0]}–${s.layers[1]}`;
  text($("steer-desc"), `(${s.op} × ${s.scale}, ${span}${s.every_token ? ", every token" : ", query only"})`);
  text($("steer-on"), r.patched.text);
  text($("steer-off"), r.zero_shot.text);
}

async function applyVector() {
  showError("apply-error", null);
  busy([$("apply-btn")], true);
  try {
    const entry = (await lib.list()).find((e) => e.id === $("vector-choice").value);
    if (!entry) throw new Error("extract or import a vector first");
    const q = $("query-text").value.trim();
    if (!queryImage && !q) throw new Error("type a text query or choose an image");
    const query = queryImage ? { image: queryImage.bytes, label: queryImage.label } : { text: q };
    const layerV = $("layer-choice").value;
    const steering = steeringChoice(entry, layerV);
    text($("apply-status"), "running…");
    const t0 = performance.now();
    const maxTokens = Math.max(1, Math.min(64, Number($("steer-tokens").value) || 8));
    // Steered runs stream both continuations into the side-by-side view as tokens arrive.
    const paper = isPaperPatch(steering);
    $("steer-compare").hidden = paper;
    if (!paper) { text($("steer-on"), ""); text($("steer-off"), ""); text($("steer-desc"), ""); }
    const onStream = (p) => { if (!paper && p.stream) text($(p.stream === "patched" ? "steer-on" : "steer-off"), p.text); };
    const r = await client.call("apply", { vector: entry.json, layer: layerV === "" ? null : Number(layerV), query, allowTransfer: $("allow-transfer").checked, maxTokens, steering }, onStream);
    showSteered(r);
    state.last.apply = r;
    if (queryImage && state.imageAnswer) { state.imageAnswer.measured = performance.now() - t0; showImageAnswer(); }
    text($("ans-patched"), answerText(r.patched) + `  · layer ${r.layer}`);
    text($("ans-zero"), answerText(r.zero_shot));
    text($("ans-icl"), answerText(r.icl));
    plots.sweep(r);
    // Logit lens of the in-context prompt (the examples recorded in the vector + the query).
    const demos = (entry.summaryExamples || []).filter((e) => !e.image).slice(0, 5);
    const x = queryImage ? "<image>" : q;
    const prompt = demos.map((d) => `Q:${d.input}\nA:${d.output}\n\n`).join("") + `Q:${x}\nA:`;
    const track = [queryImage ? null : q, TASK_WORDS[entry.summary.task] || null, r.patched.text.trim() || null].filter(Boolean);
    const lens = await client.call("lens", { prompt, image: queryImage ? queryImage.bytes : null, track, top: 3 });
    state.last.lens = { prompt, track, result: lens };
    plots.lens(lens);
    text($("apply-status"), "");
  } catch (e) { showError("apply-error", e); text($("apply-status"), ""); }
  finally { busy([$("apply-btn")], false); }
}

// ---------- library ----------
async function save(json, name) {
  const summary = await client.call("inspect", { json });
  const parsed = JSON.parse(json);
  const id = "v" + Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  await lib.put({ id, name, json, summary, summaryExamples: parsed.task.examples || [], saved: Date.now() });
  await refreshLibrary();
  return id;
}

async function importFiles(files) {
  showError("library-error", null);
  const errors = [];
  for (const f of files) {
    try {
      if (f.size > 64 * 1048576) throw new Error("larger than 64 MiB");
      const json = /\.safetensors$/i.test(f.name)
        ? await client.call("importSafetensors", { bytes: new Uint8Array(await f.arrayBuffer()) })
        : await f.text();
      const summary = await client.call("inspect", { json });
      await save(json, `${summary.task} · imported`);
    } catch (e) { errors.push(`${f.name}: ${e.message || e}`); }
  }
  if (errors.length) showError("library-error", new Error(errors.join("\n")));
}

function download(name, data, ext = ".json", type = "application/json") {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([data], { type }));
  a.download = name.replace(/[^\w.-]+/g, "_") + ext;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/** Downloads a library entry for other tools (`taskvec export`'s bytes): safetensors, or llama.cpp's control vector at the recommended layer. */
async function exportFor(e, format) {
  showError("library-error", null);
  try {
    const bytes = await client.call("exportVector", { json: e.json, format });
    download(e.name, bytes, format === "safetensors" ? ".safetensors" : ".control-vector.gguf", "application/octet-stream");
  } catch (err) { showError("library-error", err); }
}

async function refreshLibrary() {
  const entries = await lib.list();
  const body = $("library").tBodies[0];
  body.replaceChildren();
  const choice = $("vector-choice"), keep = choice.value;
  choice.replaceChildren();
  for (const e of entries) {
    const tr = document.createElement("tr");
    const name = document.createElement("input");
    name.value = e.name;
    name.onchange = async () => { e.name = name.value; await lib.put(e); refreshLibrary(); };
    const cells = [name, e.summary.spec, `${e.summary.model.id} (${e.summary.model.layers}×${e.summary.model.hidden})`, String(e.summary.recommended_layer), e.summary.created_at || ""];
    for (const c of cells) { const td = document.createElement("td"); if (typeof c === "string") text(td, c); else td.append(c); tr.append(td); }
    const act = document.createElement("td");
    const ex = document.createElement("button"); text(ex, "export"); ex.onclick = () => download(e.name, e.json);
    const st = document.createElement("button"); text(st, "safetensors"); st.title = "tensor `vectors` [layers, hidden] + the file in the metadata (taskvec import reads it back)"; st.onclick = () => exportFor(e, "safetensors");
    const cv = document.createElement("button"); text(cv, "llama.cpp"); cv.title = "llama.cpp control vector (direction.N) of the recommended layer: added at every position, not a patch"; cv.onclick = () => exportFor(e, "control-vector");
    const del = document.createElement("button"); text(del, "delete"); del.onclick = async () => { await lib.remove(e.id); refreshLibrary(); };
    act.append(ex, " ", st, " ", cv, " ", del);
    tr.append(act);
    body.append(tr);
    choice.append(opt(e.id, e.name));
  }
  if (entries.some((e) => e.id === keep)) choice.value = keep;
  else if (entries.length) choice.value = entries[entries.length - 1].id;
  for (const id of ["comb-a", "comb-b"]) {
    const sel = $(id), was = sel.value;
    sel.replaceChildren(...entries.map((e) => opt(e.id, e.name)));
    if (entries.some((e) => e.id === was)) sel.value = was;
  }
  await refreshSimilarity(entries);
  await refreshMap(entries);
}

/** (f): the aggregated logit lens of a built-in task (`taskvec lens --task`). */
async function runPhases() {
  showError("apply-error", null);
  busy([$("phases-btn")], true);
  try {
    const n = Math.max(2, Math.min(200, Number($("phases-n").value) || 20));
    state.last.phases = await client.call("lensAggregate", { task: $("phases-task").value, prompts: n, seed: 0 }, progress($("phases-progress"), $("apply-status")));
    plots.phases(state.last.phases);
    text($("apply-status"), "");
  } catch (e) { showError("apply-error", e); text($("apply-status"), ""); }
  finally { $("phases-progress").hidden = true; busy([$("phases-btn")], false); }
}

/** Saves `a ± k·b` from the arithmetic row (the library code of `taskvec combine`). */
async function combineSelected() {
  showError("library-error", null);
  try {
    const entries = await lib.list();
    const a = entries.find((e) => e.id === $("comb-a").value), b = entries.find((e) => e.id === $("comb-b").value);
    if (!a || !b) throw new Error("save two vectors first");
    const k = Number($("comb-op").value) * Number($("comb-k").value);
    if (!Number.isFinite(k)) throw new Error("the weight must be a number");
    const expression = `${a.name} ${k < 0 ? "-" : "+"} ${b.name} * ${Math.abs(k)}`;
    const json = await client.call("combine", { jsons: [a.json, b.json], weights: [1, k], expression, allowTransfer: $("comb-transfer").checked });
    await save(json, expression);
  } catch (e) { showError("library-error", e); }
}

/** The map panel: PCA of the newest vector's model's vectors at the chosen layer. */
async function refreshMap(entries) {
  const last = entries[entries.length - 1];
  const same = last ? entries.filter((e) => e.summary.model.layers === last.summary.model.layers && e.summary.model.hidden === last.summary.model.hidden) : [];
  const sel = $("map-layer"), was = sel.value;
  if (last && sel.options.length !== last.summary.model.layers) {
    sel.replaceChildren(...Array.from({ length: last.summary.model.layers }, (_, l) => opt(String(l), String(l))));
    sel.value = String(last.summary.recommended_layer);
  } else if (was) sel.value = was;
  if (same.length < 2) { state.last.map = null; return plots.map(null); }
  try {
    state.last.map = await client.call("map", { jsons: same.map((e) => e.json), layer: Number(sel.value) });
    plots.map(state.last.map, uniqueNames(same));
  } catch (e) { showError("library-error", e); }
}

function uniqueNames(entries) {
  const seen = new Map();
  return entries.map((e) => { const n = seen.get(e.name) || 0; seen.set(e.name, n + 1); return n ? `${e.name} (${n + 1})` : e.name; });
}

async function refreshSimilarity(entries) {
  // Vectors of one shape only are comparable: use those of the newest vector's shape.
  const last = entries[entries.length - 1];
  const same = last ? entries.filter((e) => e.summary.model.layers === last.summary.model.layers && e.summary.model.hidden === last.summary.model.hidden).slice(-12) : [];
  for (const id of ["cos-a", "cos-b"]) {
    const sel = $(id), keep = sel.value;
    sel.replaceChildren(...same.map((e) => opt(e.id, e.name)));
    if (same.some((e) => e.id === keep)) sel.value = keep;
  }
  if (same.length >= 2 && (!$("cos-a").value || $("cos-a").value === $("cos-b").value)) {
    $("cos-a").value = same[same.length - 2].id;
    $("cos-b").value = same[same.length - 1].id;
  }
  try {
    const a = same.find((e) => e.id === $("cos-a").value), b = same.find((e) => e.id === $("cos-b").value);
    if (a && b && a !== b) {
      state.last.cosine = await client.call("similarity", { jsons: [a.json, b.json] });
      plots.cosine(state.last.cosine, a.name, b.name);
    } else plots.cosine(null);
    if (same.length >= 2) {
      state.last.matrix = await client.call("similarity", { jsons: same.map((e) => e.json) });
      plots.matrix(state.last.matrix, uniqueNames(same));
    } else plots.matrix(null);
  } catch (e) { showError("library-error", e); }
}

function dropZone(el, onFiles) {
  el.addEventListener("dragover", (ev) => { ev.preventDefault(); el.classList.add("over"); });
  el.addEventListener("dragleave", () => el.classList.remove("over"));
  el.addEventListener("drop", (ev) => { ev.preventDefault(); el.classList.remove("over"); onFiles([...ev.dataTransfer.files]); });
}

// ---------- start ----------
async function main() {
  for (const [k, m] of Object.entries(MODELS)) $("model-choice").append(opt(k, m.label));
  const pick = params.get("model") || "smollm2";
  $("model-choice").value = MODELS[pick] ? pick : "smollm2";
  $("url-row").hidden = $("model-choice").value !== "url";
  const weights = params.get("weights");
  if (weights && [...$("weights-choice").options].some((o) => o.value === weights)) $("weights-choice").value = weights;
  $("model-choice").onchange = () => { $("url-row").hidden = $("model-choice").value !== "url"; };
  $("load-btn").onclick = () => loadModel("url");
  $("model-files").onchange = (ev) => loadModel("files", [...ev.target.files]);
  dropZone($("model-drop"), (files) => loadModel("files", files));
  $("add-row").onclick = () => addRow({});
  $("clear-examples").onclick = () => { $("examples").tBodies[0].replaceChildren(); for (const t of document.querySelectorAll("#thumbs .thumb.added")) t.classList.remove("added"); };
  $("add-images").onchange = async (ev) => {
    for (const f of ev.target.files) {
      if (f.size > 50 * 1048576) { showError("task-error", new Error(`${f.name}: images over 50 MB are refused`)); continue; }
      addRow({ image: new Uint8Array(await f.arrayBuffer()), label: f.name, output: "" });
    }
    ev.target.value = "";
  };
  dropZone(document.querySelector(".examples-box"), async (files) => {
    for (const f of files) {
      if (!f.type.startsWith("image/")) { showError("task-error", new Error(`${f.name}: only images can be dropped here`)); continue; }
      if (f.size > 50 * 1048576) { showError("task-error", new Error(`${f.name}: images over 50 MB are refused`)); continue; }
      addRow({ image: new Uint8Array(await f.arrayBuffer()), label: f.name, output: "" });
    }
  });
  $("extract-btn").onclick = extract;
  $("evaluate-btn").onclick = evaluateTask;
  $("apply-btn").onclick = applyVector;
  $("comb-btn").onclick = combineSelected;
  $("phases-btn").onclick = runPhases;
  $("map-layer").onchange = async () => refreshMap(await lib.list());
  $("steer-scale").oninput = () => text($("steer-scale-out"), $("steer-scale").value);
  $("query-image").onchange = async (ev) => {
    const f = ev.target.files[0];
    if (!f) { queryImage = null; $("query-preview").hidden = true; return; }
    if (f.size > 50 * 1048576) { showError("apply-error", new Error(`${f.name}: images over 50 MB are refused`)); return; }
    queryImage = { bytes: new Uint8Array(await f.arrayBuffer()), label: f.name };
    $("query-preview").src = URL.createObjectURL(f);
    $("query-preview").hidden = false;
  };
  $("query-text").oninput = () => { if ($("query-text").value) { queryImage = null; $("query-preview").hidden = true; $("query-image").value = ""; } };
  $("import-files").onchange = async (ev) => { await importFiles([...ev.target.files]); ev.target.value = ""; };
  dropZone($("vector-drop"), importFiles);
  $("cos-a").onchange = $("cos-b").onchange = async () => refreshSimilarity(await lib.list());

  const preferGpu = params.get("backend") !== "cpu";
  const threads = params.get("threads") ? Number(params.get("threads")) : undefined;
  const build = params.get("build") === "single" ? "single" : undefined;
  const boot = await client.call("init", { preferGpu, threads, build });
  showBackend(boot);
  if (boot.gpu) $("backend").title = `${boot.gpu.adapter || "adapter"}: ${(boot.gpu.max_storage_buffer_binding_size / 1048576).toFixed(0)} MiB per storage buffer, ${(boot.gpu.max_buffer_size / 1048576).toFixed(0)} MiB per buffer`;
  // The worker moves to the CPU by itself when the GPU is lost or cannot hold the model.
  client.onEvent = (ev) => {
    if (ev.event !== "backend") return;
    showBackend(ev);
    if (ev.info) { state.info = ev.info; showCard(ev.info); }
  };
  state.tasks = await client.call("builtinTasks");
  for (const t of state.tasks) $("preset").append(opt(t.name, t.name.replace("_", " – ")));
  for (const t of state.tasks) $("phases-task").append(opt(t.name, t.name.replace("_", " – ")));
  $("preset").append(opt("", "custom (empty)"));
  $("preset").onchange = () => applyPreset($("preset").value);
  await paper.start(state.tasks);
  applyPreset(state.tasks[0].name);
  plots.lens(null); plots.sweep(null);
  await refreshLibrary();
  if (params.get("autoload") !== "0") await loadModel("url");
  state.ready = true;
  document.body.dataset.ready = "1";
}

main().catch((e) => { showError("model-error", e); document.body.dataset.ready = "error"; });
