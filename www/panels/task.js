// "2 · Task": the examples table (text and image examples), the built-in presets and their
// pictures as thumbnails, and the two runs on a task: extract a vector, evaluate it per layer.
import * as plots from "../plots.js";
import { $, state, text, opt, taskOption, el, showError, busy, progress, dropZone, readImage, promptsValue } from "../ui.js";

/** Wires the panel. `library.save` keeps an extracted vector (and selects it for applying); `apply` is the query panel. */
export function initTaskPanel({ client, library, apply }) {
  /** The examples table's rows in order: `{ tr, out, input }` for text, `{ tr, out, image, label, builtin }` for images. */
  let rows = [];
  /** The built-in task whose pictures the thumbnails show ("" for none), and each picture's button by path. */
  let thumbsTask = null;
  const thumbs = new Map();

  function addRow(ex) {
    const row = { out: el("input", { className: "ex-out", value: ex.output || "" }) };
    let input;
    if (ex.image) {
      Object.assign(row, { image: ex.image, label: ex.label || "image", builtin: ex.builtin || null });
      input = [el("img", { src: URL.createObjectURL(new Blob([ex.image])), alt: row.label }), el("span", { text: " " + row.label })];
    } else {
      row.input = el("input", { className: "ex-in", value: ex.text || "" });
      input = [row.input];
    }
    const rm = el("button", { text: "✕", title: "remove", onclick: () => removeRow(row) });
    row.tr = el("tr", {}, el("td", {}, ...input), el("td", {}, row.out), el("td", {}, rm));
    rows.push(row);
    $("examples").tBodies[0].append(row.tr);
  }

  function removeRow(row) {
    row.tr.remove();
    rows = rows.filter((r) => r !== row);
    if (row.builtin && thumbs.has(row.builtin)) thumbs.get(row.builtin).classList.remove("added");
  }

  function clearRows() {
    $("examples").tBodies[0].replaceChildren();
    rows = [];
    for (const b of thumbs.values()) b.classList.remove("added");
  }

  function applyPreset(name) {
    const t = state.tasks.find((x) => x.name === name);
    clearRows();
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
    const name = t ? t.name : "";
    if (thumbsTask !== name) {
      thumbsTask = name;
      thumbs.clear();
      $("thumbs").replaceChildren(...items.map((item) => {
        const b = el("button", { type: "button", className: "thumb", title: `${item.input} → ${item.output} (${item.split} split) · ${item.image}` },
          el("img", { loading: "lazy", alt: item.input, src: "../data/images/" + item.image }), el("span", { text: item.input }));
        b.onclick = () => addBuiltinImage(item, b).catch((e) => showError("task-error", e));
        thumbs.set(item.image, b);
        return b;
      }));
      text($("thumbs-count"), `${items.length} of ${t ? t.items.length : 0} items have one`);
    }
    $("thumbs").title = state.info && !state.info.vision ? "this model has no vision encoder: extracting from image examples needs a VLM (the tiny VLM or SmolVLM)" : "";
  }

  async function addBuiltinImage(item, button) {
    const have = rows.find((r) => r.builtin === item.image);
    if (have) { have.tr.scrollIntoView({ block: "nearest" }); have.tr.classList.add("flash"); setTimeout(() => have.tr.classList.remove("flash"), 800); return; }
    const res = await fetch(new URL("../data/images/" + item.image, location.href));
    if (!res.ok) throw new Error(`${item.image}: HTTP ${res.status}`);
    addRow({ image: new Uint8Array(await res.arrayBuffer()), label: item.image, output: item.output, builtin: item.image });
    button.classList.add("added");
    rows[rows.length - 1].tr.scrollIntoView({ block: "nearest" });
  }

  /** Image files as new image examples (an image over the limit is refused); `dropped` files must be images. */
  async function addImageFiles(files, dropped) {
    for (const f of files) {
      try {
        if (dropped && !f.type.startsWith("image/")) throw new Error(`${f.name}: only images can be dropped here`);
        addRow({ image: await readImage(f), label: f.name, output: "" });
      } catch (e) { showError("task-error", e); }
    }
  }

  function taskRequest() {
    const examples = [];
    for (const r of rows) {
      const out = r.out.value.trim();
      if (r.image) examples.push({ image: r.image, label: r.label, output: out });
      else {
        const x = r.input.value.trim();
        if (!x && !out) continue;
        examples.push({ text: x, output: out });
      }
    }
    const spec = document.querySelector("input[name=spec]:checked").value;
    if (spec !== "instruction" && examples.length < 2) throw new Error("give at least two examples (input and answer)");
    if (spec !== "text" && !$("instruction").value.trim().endsWith(":")) throw new Error("the instruction must end with ':'");
    const prompts = promptsValue($("prompts")), seed = Number($("seed").value);
    if (!(seed >= 0)) throw new Error("the seed must be a non-negative number");
    return { name: $("task-name").value.trim() || "task", spec, examples, instruction: $("instruction").value.trim() || null, prompts, seed, read_at: $("read-at").value, created_at: new Date().toISOString() };
  }

  /** Runs `op` ("extract" or "evaluate") on the task, with progress; `done(req, result)` shows it. */
  async function run(op, done) {
    showError("task-error", null);
    const btns = [$("extract-btn"), $("evaluate-btn")];
    busy(btns, true);
    try {
      const req = taskRequest();
      const r = await client.call(op, { req }, progress($("task-progress"), $("task-status")));
      await done(req, r);
    } catch (e) { showError("task-error", e); text($("task-status"), ""); }
    finally { $("task-progress").hidden = true; busy(btns, false); }
  }

  const extract = () => run("extract", async (req, json) => {
    state.last.vector = json;
    const kind = req.spec === "text" ? (req.examples.some((e) => e.image) ? "image examples" : "text examples") : req.spec;
    await library.save(json, `${req.name} · ${kind}`, { choose: true });
    text($("task-status"), "vector extracted and saved in the library");
  });

  const evaluate = () => run("evaluate", async (req, r) => {
    state.last.evaluate = r;
    plots.accuracy(r);
    apply.chooseLayer(r.selected_layer);
    text($("task-status"), `zero-shot ${r.zero_shot.toFixed(2)} · in context ${r.icl.toFixed(2)} · patched ${r.test_at_selected.toFixed(2)} at layer ${r.selected_layer}, the layer chosen on validation (${r.n_val} validation / ${r.n_test} test items; best on test: ${r.patched[r.best_layer].toFixed(2)} at layer ${r.best_layer}). Layer ${r.selected_layer} is now selected for Apply.`);
  });

  /** Fills the preset menu with the built-in tasks and shows the first one. */
  function start(tasks) {
    $("preset").append(...tasks.map(taskOption), opt("", "custom (empty)"));
    $("preset").onchange = () => applyPreset($("preset").value);
    applyPreset(tasks[0].name);
  }

  $("add-row").onclick = () => addRow({});
  $("clear-examples").onclick = clearRows;
  $("add-images").onchange = async (ev) => { await addImageFiles([...ev.target.files]); ev.target.value = ""; };
  dropZone(document.querySelector(".examples-box"), (files) => addImageFiles(files, true));
  $("extract-btn").onclick = extract;
  $("evaluate-btn").onclick = evaluate;
  return { start, modelChanged: showThumbs };
}
