// What the page's panels share: the page's state, the library's limits, and small DOM helpers.
// Every piece of user or file text goes through textContent (`text`, `el`), never HTML.

export const $ = (id) => document.getElementById(id);

/** Everything the page shows, also read by the browser tests and benches. */
export const state = (window.taskvecState = { backend: null, info: null, tasks: [], last: {} });

/** The library's limits (wasm `limits()`: image_bytes, vector_bytes, max_prompts,
 * max_examples), asked of the worker once at boot. */
export const limits = {};

/** The page's own cap on extraction prompts (the library allows `limits.max_prompts`). */
export const PAGE_MAX_PROMPTS = 200;

export function text(node, s) { node.textContent = s == null ? "" : String(s); }
export function busy(btns, on) { for (const b of btns) b.disabled = on; }
export function showError(id, e) { text($(id), e ? (e.message || String(e)) : ""); }
export function opt(value, label) { const o = document.createElement("option"); o.value = value; o.textContent = label; return o; }
/** Fills a menu with library entries (option value: id), keeping its choice if it is still
 * there; returns whether it was. */
export function fillMenu(sel, entries) {
  const keep = sel.value;
  sel.replaceChildren(...entries.map((e) => opt(e.id, e.name)));
  const kept = entries.some((e) => e.id === keep);
  if (kept) sel.value = keep;
  return kept;
}
/** A built-in task as a menu option ("country – capital"). */
export const taskOption = (t) => opt(t.name, t.name.replace("_", " – "));
/** The options of a layer menu: `first` (if any), then "0" … "n-1". */
export function layerOptions(n, ...first) { return [...first, ...Array.from({ length: n }, (_, l) => opt(String(l), String(l)))]; }

/** An element with properties (`class`, `text` or any DOM property) and children. */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "text") text(e, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

const mb = (n) => (n / 1048576).toFixed(1) + " MB";
/** "1 thread", "2 threads". */
export const threadsLabel = (n) => `${n} thread${n === 1 ? "" : "s"}`;

/** A worker progress callback showing `{what, done, total}` in a bar and a status line. */
export function progress(bar, status) {
  return (p) => {
    bar.hidden = false;
    if (p.total) { bar.max = p.total; bar.value = p.done; } else bar.removeAttribute("value");
    text(status, p.total > 4096 ? `${p.what}: ${mb(p.done)} / ${mb(p.total)}` : p.total ? `${p.what}: ${p.done} / ${p.total}` : p.what);
  };
}

/** Calls `onFiles(files)` for files dropped on `node`. */
export function dropZone(node, onFiles) {
  node.addEventListener("dragover", (ev) => { ev.preventDefault(); node.classList.add("over"); });
  node.addEventListener("dragleave", () => node.classList.remove("over"));
  node.addEventListener("drop", (ev) => { ev.preventDefault(); node.classList.remove("over"); onFiles([...ev.dataTransfer.files]); });
}

/** Saves `data` as a file named `filename`. */
export function download(filename, data, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([data], { type }));
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/** An image file's bytes; a file over the library's image limit is refused before it is read. */
export async function readImage(f) {
  if (f.size > limits.image_bytes) throw new Error(`${f.name}: images over ${limits.image_bytes >> 20} MiB are refused`);
  return new Uint8Array(await f.arrayBuffer());
}

/** The extraction prompts typed in `input`: an integer from 1 to the page's cap. */
export function promptsValue(input) {
  const n = Number(input.value);
  if (!(Number.isInteger(n) && n >= 1 && n <= PAGE_MAX_PROMPTS)) throw new Error(`prompts must be an integer between 1 and ${PAGE_MAX_PROMPTS}`);
  return n;
}
