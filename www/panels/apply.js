// "3 · Apply to a query": a saved vector on a text or image query, at a layer, with the steering
// controls; the answers, the patch sweep (b) and the logit lens of the in-context prompt (a).
import * as plots from "../plots.js";
import * as store from "../store.js";
import { $, state, text, opt, fillMenu, layerOptions, showError, busy, readImage } from "../ui.js";

/** Wires the panel; `onImageApply(ms)` gets the time each image query took. */
export function initApplyPanel({ client, onImageApply }) {
  /** The chosen query image, `{ bytes, label }`, or null for a text query. */
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

  /** The request of wasm `WebModel::apply` (Rust's `ApplyIn`; unset fields take its defaults). */
  function applyRequest(entry, q) {
    const layerV = $("layer-choice").value;
    const req = {
      query: queryImage ? { image: queryImage.bytes, label: queryImage.label } : { text: q },
      layer: layerV === "" ? null : Number(layerV),
      allow_transfer: $("allow-transfer").checked,
      steering: steeringChoice(entry, layerV),
    };
    const tokens = Number($("steer-tokens").value);
    if (tokens) req.max_tokens = Math.max(1, Math.min(64, tokens));
    return req;
  }

  async function applyVector() {
    showError("apply-error", null);
    busy([$("apply-btn")], true);
    try {
      const entry = (await store.list()).find((e) => e.id === $("vector-choice").value);
      if (!entry) throw new Error("extract or import a vector first");
      const q = $("query-text").value.trim();
      if (!queryImage && !q) throw new Error("type a text query or choose an image");
      const req = applyRequest(entry, q);
      text($("apply-status"), "running…");
      const t0 = performance.now();
      // Steered runs stream both continuations into the side-by-side view as tokens arrive.
      const paper = isPaperPatch(req.steering);
      $("steer-compare").hidden = paper;
      if (!paper) { text($("steer-on"), ""); text($("steer-off"), ""); text($("steer-desc"), ""); }
      const onStream = (p) => { if (!paper && p.stream) text($(p.stream === "patched" ? "steer-on" : "steer-off"), p.text); };
      const r = await client.call("apply", { vector: entry.json, req }, onStream);
      showSteered(r);
      state.last.apply = r;
      if (queryImage) onImageApply(performance.now() - t0);
      text($("ans-patched"), answerText(r.patched) + `  · layer ${r.layer}`);
      text($("ans-zero"), answerText(r.zero_shot));
      text($("ans-icl"), answerText(r.icl));
      plots.sweep(r);
      // Logit lens of the in-context prompt (the examples recorded in the vector + the query).
      const { prompt, task_word } = await client.call("lensPrompt", { json: entry.json, query: queryImage ? null : q });
      const track = [queryImage ? null : q, task_word, r.patched.text.trim() || null].filter(Boolean);
      const lens = await client.call("lens", { prompt, image: queryImage ? queryImage.bytes : null, track, top: 3 });
      state.last.lens = { prompt, track, result: lens };
      plots.lens(lens);
      text($("apply-status"), "");
    } catch (e) { showError("apply-error", e); text($("apply-status"), ""); }
    finally { busy([$("apply-btn")], false); }
  }

  function clearQueryImage() {
    queryImage = null;
    $("query-preview").hidden = true;
  }

  /** A new model: its layers in the layer menus. */
  function modelChanged(info) {
    $("layer-choice").replaceChildren(...layerOptions(info.layers, opt("", "recommended")));
    $("layer-to").replaceChildren(...layerOptions(info.layers, opt("", "(one layer)")));
  }

  /** The library's vectors in the menu: `chosen` if given, else the selected one kept, else the newest. */
  function vectorsChanged(entries, chosen) {
    const kept = fillMenu($("vector-choice"), entries);
    if (chosen) $("vector-choice").value = chosen;
    else if (!kept && entries.length) $("vector-choice").value = entries[entries.length - 1].id;
  }

  $("apply-btn").onclick = applyVector;
  $("steer-scale").oninput = () => text($("steer-scale-out"), $("steer-scale").value);
  $("query-image").onchange = async (ev) => {
    const f = ev.target.files[0];
    if (!f) return clearQueryImage();
    try {
      queryImage = { bytes: await readImage(f), label: f.name };
    } catch (e) { return showError("apply-error", e); }
    $("query-preview").src = URL.createObjectURL(f);
    $("query-preview").hidden = false;
  };
  $("query-text").oninput = () => { if ($("query-text").value) { clearQueryImage(); $("query-image").value = ""; } };
  return {
    modelChanged,
    vectorsChanged,
    chooseLayer: (layer) => { $("layer-choice").value = String(layer); },
  };
}
