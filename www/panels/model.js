// "1 · Model": the model menu, loading from a URL or from dropped files, the model card, and the
// backend badge (at boot, and when the worker moves to the CPU after a WebGPU failure).
import { $, state, text, opt, el, showError, busy, progress, dropZone, threadsLabel } from "../ui.js";

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

/** Wires the panel; `onModel(info)` is called for every model shown on the card. */
export function initModelPanel({ client, params, onModel }) {
  /** The card's "image → answer" row: its cell, the estimate and the last measured image apply. */
  let imageAnswer = null;

  async function load(source, files) {
    showError("model-error", null);
    const bar = $("load-progress"), status = $("load-status");
    busy([$("load-btn")], true);
    try {
      const storage = $("weights-choice").value;
      let res;
      if (source === "files") {
        const gguf = files.filter((f) => /\.gguf$/i.test(f.name));
        if (!gguf.length) throw new Error("choose a .gguf file");
        const mm = gguf.find((f) => /mmproj/i.test(f.name));
        const main = gguf.find((f) => f !== mm);
        if (!main) throw new Error("the files hold only a vision projector (mmproj); add the language model GGUF");
        const model = await main.arrayBuffer();
        const mmproj = mm ? await mm.arrayBuffer() : null;
        res = await client.call("load", { source: "bytes", model, mmproj, storage }, progress(bar, status), [model, ...(mmproj ? [mmproj] : [])]);
      } else {
        const choice = MODELS[$("model-choice").value];
        const urls = choice.model ? { model: new URL(choice.model, location.href).href, mmproj: choice.mmproj ? new URL(choice.mmproj, location.href).href : null }
          : { model: $("model-url").value.trim(), mmproj: $("mmproj-url").value.trim() || null };
        if (!urls.model) throw new Error("enter the model's URL");
        res = await client.call("load", { source: "url", urls, storage }, progress(bar, status));
      }
      showModel(res.info);
      text(status, "ready" + (res.notes.length ? " · " + res.notes.join(" ") : ""));
    } catch (e) {
      text(status, state.info ? "kept the previous model" : "");
      showError("model-error", e);
    } finally {
      bar.hidden = true;
      busy([$("load-btn")], false);
    }
  }

  function showModel(info) {
    state.info = info;
    showCard(info);
    onModel(info);
  }

  function showCard(info) {
    const rows = [
      ["name", info.name], ["format", info.format], ["weights in the file", info.quant], ["file size", (info.file_bytes / 1048576).toFixed(1) + " MB"], ["matrices in memory", info.storage], ["weights in memory", (info.resident_weight_bytes / 1048576).toFixed(1) + " MB"],
      ["layers", info.layers], ["hidden size", info.hidden], ["images", info.vision ? "yes" : "no (text only)"], ["backend", info.backend === "cpu" ? `cpu, ${threadsLabel(info.cpu_threads)}` : info.backend], ["fingerprint", info.fingerprint],
    ];
    if (info.vision) rows.push(["image → answer", "estimating…"]);
    const card = $("model-card");
    card.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    const a = (imageAnswer = info.vision ? { estimate: null, measured: null, dd: card.lastElementChild } : null);
    if (a) {
      client.call("estimateApply").then((e) => { if (e && a === imageAnswer) { a.estimate = e; showImageAnswer(); } })
        .catch((e) => { text(a.dd, "no estimate (" + String(e.message || e) + ")"); });
    }
  }

  /** The "image → answer" row: the estimate (arithmetic ÷ a measured product rate), then the last measured apply. */
  function showImageAnswer() {
    const a = imageAnswer;
    if (!a) return;
    const parts = [];
    if (a.measured != null) parts.push(`${(a.measured / 1000).toFixed(1)} s measured (last image)`);
    if (a.estimate) parts.push(`≈ ${(a.estimate.ms / 1000).toFixed(1)} s estimated`);
    text(a.dd, parts.join(" · ") || "–");
    if (a.estimate) a.dd.title = `Estimate: ${a.estimate.gflop.toFixed(0)} GFLOP (vision encoder, three prompts, the sweep) at ${a.estimate.gflops.toFixed(1)} GFLOP/s, the rate of a vision-layer-sized matrix product measured on this device after loading, times 2 for the other operations (1.6–2.8× in measurements).`;
  }

  /** Records the time an image apply took, for the card. */
  function imageApplied(ms) {
    if (!imageAnswer) return;
    imageAnswer.measured = ms;
    showImageAnswer();
  }

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

  /** Starts the worker's wasm module on the backend the page's parameters ask for. */
  async function boot() {
    const preferGpu = params.get("backend") !== "cpu";
    const threads = params.get("threads") ? Number(params.get("threads")) : undefined;
    const build = params.get("build") === "single" ? "single" : undefined;
    const b = await client.call("init", { preferGpu, threads, build });
    showBackend(b);
    if (b.gpu) $("backend").title = `${b.gpu.adapter || "adapter"}: ${(b.gpu.max_storage_buffer_binding_size / 1048576).toFixed(0)} MiB per storage buffer, ${(b.gpu.max_buffer_size / 1048576).toFixed(0)} MiB per buffer`;
    // The worker moves to the CPU by itself when the GPU is lost or cannot hold the model.
    client.onEvent = (ev) => {
      if (ev.event !== "backend") return;
      showBackend(ev);
      if (ev.info) showModel(ev.info);
    };
  }

  const choice = $("model-choice");
  for (const [k, m] of Object.entries(MODELS)) choice.append(opt(k, m.label));
  const pick = params.get("model") || "smollm2";
  choice.value = MODELS[pick] ? pick : "smollm2";
  const weights = params.get("weights");
  if (weights && [...$("weights-choice").options].some((o) => o.value === weights)) $("weights-choice").value = weights;
  const showUrlRow = () => { $("url-row").hidden = choice.value !== "url"; };
  showUrlRow();
  choice.onchange = showUrlRow;
  $("load-btn").onclick = () => load("url");
  $("model-files").onchange = (ev) => load("files", [...ev.target.files]);
  dropZone($("model-drop"), (files) => load("files", files));
  return { boot, load, imageApplied };
}
