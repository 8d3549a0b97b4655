// "6 · Vector library": the saved vectors (IndexedDB, store.js) with rename, export (JSON,
// safetensors, llama.cpp control vector) and delete; imports; vector arithmetic.
import * as store from "../store.js";
import { $, limits, el, fillMenu, showError, dropZone, download } from "../ui.js";

/** Wires the panel; `onChange(entries, chosen)` is called with every new list of saved vectors. */
export function initLibraryPanel({ client, onChange }) {
  /**
   * Saves a vector file's JSON text under `name`; returns its id. With `choose`, the other panels
   * select it before its row shows, so a visible row means every panel is up to date.
   */
  async function save(json, name, { choose = false } = {}) {
    const summary = await client.call("inspect", { json });
    const id = "v" + Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
    await store.put({ id, name, json, summary, saved: Date.now() });
    await refresh(choose ? id : null);
    return id;
  }

  async function importFiles(files) {
    showError("library-error", null);
    const errors = [];
    for (const f of files) {
      try {
        if (f.size > limits.vector_bytes) throw new Error(`larger than ${limits.vector_bytes >> 20} MiB`);
        const json = /\.safetensors$/i.test(f.name)
          ? await client.call("importSafetensors", { bytes: new Uint8Array(await f.arrayBuffer()) })
          : await f.text();
        const summary = await client.call("inspect", { json });
        await save(json, `${summary.task} · imported`);
      } catch (e) { errors.push(`${f.name}: ${e.message || e}`); }
    }
    if (errors.length) showError("library-error", new Error(errors.join("\n")));
  }

  const fileName = (name, ext) => name.replace(/[^\w.-]+/g, "_") + ext;

  /** Downloads a library entry for other tools (`taskvec export`'s bytes): safetensors, or llama.cpp's control vector at the recommended layer. */
  async function exportFor(e, format) {
    showError("library-error", null);
    try {
      const bytes = await client.call("exportVector", { json: e.json, format });
      download(fileName(e.name, format === "safetensors" ? ".safetensors" : ".control-vector.gguf"), bytes, "application/octet-stream");
    } catch (err) { showError("library-error", err); }
  }

  function entryRow(e) {
    const name = el("input", { value: e.name });
    name.onchange = async () => { e.name = name.value; await store.put(e); refresh(); };
    const cells = [name, e.summary.spec, `${e.summary.model.id} (${e.summary.model.layers}×${e.summary.model.hidden})`, String(e.summary.recommended_layer), e.summary.created_at || ""];
    const actions = el("td", {},
      el("button", { text: "export", onclick: () => download(fileName(e.name, ".json"), e.json, "application/json") }), " ",
      el("button", { text: "safetensors", title: "tensor `vectors` [layers, hidden] + the file in the metadata (taskvec import reads it back)", onclick: () => exportFor(e, "safetensors") }), " ",
      el("button", { text: "llama.cpp", title: "llama.cpp control vector (direction.N) of the recommended layer: added at every position, not a patch", onclick: () => exportFor(e, "control-vector") }), " ",
      el("button", { text: "delete", onclick: async () => { await store.remove(e.id); refresh(); } }));
    return el("tr", {}, ...cells.map((c) => el("td", {}, c)), actions);
  }

  /** Tells the other panels (`chosen`: the id they should select, if any), then shows the saved vectors. */
  async function refresh(chosen = null) {
    const entries = await store.list();
    for (const id of ["comb-a", "comb-b"]) fillMenu($(id), entries);
    await onChange(entries, chosen);
    $("library").tBodies[0].replaceChildren(...entries.map(entryRow));
  }

  /** Saves `a ± k·b` from the arithmetic row (the library code of `taskvec combine`). */
  async function combineSelected() {
    showError("library-error", null);
    try {
      const entries = await store.list();
      const a = entries.find((e) => e.id === $("comb-a").value), b = entries.find((e) => e.id === $("comb-b").value);
      if (!a || !b) throw new Error("save two vectors first");
      const k = Number($("comb-op").value) * Number($("comb-k").value);
      if (!Number.isFinite(k)) throw new Error("the weight must be a number");
      const expression = `${a.name} ${k < 0 ? "-" : "+"} ${b.name} * ${Math.abs(k)}`;
      const json = await client.call("combine", { jsons: [a.json, b.json], weights: [1, k], expression, allowTransfer: $("comb-transfer").checked });
      await save(json, expression);
    } catch (e) { showError("library-error", e); }
  }

  $("comb-btn").onclick = combineSelected;
  $("import-files").onchange = async (ev) => { await importFiles([...ev.target.files]); ev.target.value = ""; };
  dropZone($("vector-drop"), importFiles);
  return { save, refresh };
}
