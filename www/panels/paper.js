// "Reproduce the paper": the paper's table (rows of experiments × the built-in tasks) run in the
// worker with the same code as `taskvec table`, shown as a heat-table and a bar plot of the
// rows' averages. Every piece of result text goes through textContent, never HTML.
import * as plots from "../plots.js";
import { $, el, download, promptsValue } from "../ui.js";

/* global d3, Plot */

const LLM_ONLY = "llm-xpatch";
const NEEDS_VISION = "needs image queries: load a model with a vision encoder (the tiny VLM or SmolVLM) to run it";
const CLI_ONLY = "CLI only: taskvec table --source-model";

const fmt = (x) => x.toFixed(2);

function duration(ms) {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

/** Wires the panel. `state` is the page's shared state (window.taskvecState). */
export function initPaperPanel({ client, state }) {
  let rows = [];
  let result = null;
  const rowBoxes = new Map();

  function rowItem(r) {
    const box = el("input", { type: "checkbox", value: r.id });
    const label = el("label", { class: "check" }, box, " ", el("span", { text: r.label }), " ", el("code", { text: r.id }));
    const why = el("small", { class: "why" });
    label.append(" ", why);
    rowBoxes.set(r.id, { box, label, why, row: r, shown: false });
    return label;
  }

  function renderRowChoices() {
    const imageRows = rows.filter((r) => r.images), textRows = rows.filter((r) => !r.images);
    $("paper-rows").replaceChildren(
      el("legend", { text: "Rows" }),
      el("div", { class: "checks" },
        el("div", {}, el("p", { class: "group", text: "Image queries (need a vision encoder)" }), ...imageRows.map(rowItem)),
        el("div", {}, el("p", { class: "group", text: "Text queries" }), ...textRows.map(rowItem))),
      el("div", { class: "row" },
        el("button", { type: "button", text: "all runnable", onclick: () => setAll(true) }),
        el("button", { type: "button", text: "none", onclick: () => setAll(false) })),
    );
  }

  function setAll(on) { for (const { box } of rowBoxes.values()) if (!box.disabled) box.checked = on; }

  /** Enables the rows the loaded model can run; newly runnable rows are checked. */
  function modelChanged(info) {
    const vision = !!(info && info.vision);
    for (const entry of rowBoxes.values()) {
      const { box, label, why, row } = entry;
      const reason = row.id === LLM_ONLY ? CLI_ONLY : row.images && !vision ? NEEDS_VISION : "";
      const wasDisabled = box.disabled || !entry.shown;
      box.disabled = !!reason;
      if (reason) box.checked = false;
      else if (wasDisabled) box.checked = true;
      entry.shown = true;
      label.title = reason;
      label.classList.toggle("off", !!reason);
      why.textContent = row.id === LLM_ONLY ? "(CLI only)" : "";
    }
    const note = $("paper-rows-note");
    note.textContent = vision ? "" : info ? `${info.name} has no vision encoder: the image-query rows are disabled. Load the tiny VLM or SmolVLM (section 1) to run them.` : "No model loaded yet: load one in section 1.";
    note.hidden = vision;
  }

  function request() {
    const ids = [...rowBoxes.values()].filter((r) => r.box.checked && !r.box.disabled).map((r) => r.row.id);
    if (!ids.length) throw new Error("choose at least one row");
    const tasks = [...document.querySelectorAll("#paper-tasks input:checked")].map((b) => b.value);
    if (!tasks.length) throw new Error("choose at least one task");
    const seedText = $("paper-seeds").value.trim();
    const seeds = seedText.split(/[\s,]+/).filter(Boolean).map(Number);
    if (!seeds.length || !seeds.every((s) => Number.isInteger(s) && s >= 0)) throw new Error("seeds: non-negative integers separated by commas, e.g. 0,1,2");
    if (new Set(seeds).size !== seeds.length) throw new Error("seeds: each seed once");
    return { rows: ids, tasks, seeds, prompts: promptsValue($("paper-prompts")), read_at: $("paper-read-at").value };
  }

  function progressView() {
    const bar = $("paper-progress"), status = $("paper-status");
    let phase = null, phaseStart = 0;
    return (p) => {
      const now = performance.now();
      if (phase !== p.total) { phase = p.total; phaseStart = now; }
      bar.hidden = false;
      if (p.total) { bar.max = p.total; bar.value = p.done; } else bar.removeAttribute("value");
      let eta = "";
      const spent = now - phaseStart;
      if (p.total && p.done > 0 && p.done < p.total && spent > 1500) eta = ` · about ${duration((spent / p.done) * (p.total - p.done))} left`;
      status.textContent = `${p.what} · ${p.done} / ${p.total}${eta}`;
    };
  }

  async function run() {
    $("paper-error").textContent = "";
    const btn = $("paper-run");
    btn.disabled = true;
    try {
      const req = request();
      $("paper-status").textContent = "starting…";
      const t0 = performance.now();
      const r = await client.call("table", { req }, progressView());
      const ms = performance.now() - t0;
      result = r;
      state.last.table = r;
      state.last.tableMs = ms;
      show(r, ms);
      $("paper-status").textContent = `done in ${duration(ms)}`;
    } catch (e) {
      $("paper-error").textContent = e.message || String(e);
      $("paper-status").textContent = "";
    } finally {
      $("paper-progress").hidden = true;
      btn.disabled = false;
    }
  }

  function show(r, ms) {
    $("paper-result").hidden = false;
    const seeds = r.seeds.join(", ");
    $("paper-summary").textContent = `${r.model} · ${r.tasks.length} task${r.tasks.length > 1 ? "s" : ""} × ${r.seeds.length} seed${r.seeds.length > 1 ? "s" : ""} (${seeds}) · up to ${r.prompts} prompts per vector · exemplar vectors read at ${r.read_at === "demo" ? "the last demonstration's A:" : "the query's final :"} · took ${duration(ms)} · vision encoder ran on ${r.images_encoded} image${r.images_encoded === 1 ? "" : "s"} since the model was loaded (features cached per image)`;
    heatTable(r);
    plots.tableAverages(r);
  }

  function heatTable(r) {
    const colour = (m) => d3.interpolateYlGnBu(m);
    const head = el("tr", {}, el("th", { text: "row" }), el("th", { text: "layer", title: "the patch layer chosen on validation (averaged over seeds and tasks); – for rows that patch nothing" }),
      ...r.tasks.map((t) => el("th", { text: t })), el("th", { class: "avg", text: "average" }));
    const body = r.rows.map((row) => {
      const tr = el("tr", {}, el("th", { class: "label", text: row.label, title: row.id }));
      const layer = el("td", { class: "layer", text: row.layer == null ? "–" : String(row.layer) });
      if (row.val_by_layer.length) layer.title = `validation accuracy per layer: ${row.val_by_layer.map(fmt).join(" ")}\ntest accuracy per layer: ${row.test_by_layer.map(fmt).join(" ")}`;
      tr.append(layer);
      const cells = row.cells.map((c, i) => [c, r.tasks[i]]).concat([[row.average, "average over tasks"]]);
      cells.forEach(([c, task], i) => {
        const td = el("td", { class: "cell" + (i === cells.length - 1 ? " avg" : "") },
          el("span", { class: "acc", text: fmt(c.mean) }), el("span", { class: "ci", text: `[${fmt(c.lo)}, ${fmt(c.hi)}]` }));
        td.style.background = colour(c.mean);
        td.style.color = c.mean > 0.55 ? "#fff" : "#1d2330";
        td.title = `${row.label} · ${task}: test accuracy ${c.mean.toFixed(3)}, 95 % interval [${c.lo.toFixed(3)}, ${c.hi.toFixed(3)}], n = ${c.n} test items`;
        tr.append(td);
      });
      return tr;
    });
    $("paper-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
    const legend = Plot.legend({ color: { scheme: "YlGnBu", domain: [0, 1], label: "test accuracy (cell colour)" }, width: 280 });
    $("paper-legend").replaceChildren(legend);
  }

  /** Called once the worker's wasm module is up: lists the rows and the built-in tasks. */
  async function start(tasks) {
    setTasks(tasks);
    rows = await client.call("tableRows");
    renderRowChoices();
    modelChanged(state.info);
  }

  function setTasks(tasks) {
    $("paper-tasks").replaceChildren(el("legend", { text: "Tasks" }),
      ...tasks.map((t) => el("label", { class: "check", title: `${t.instruction} (${t.text_items} items, ${t.image_items} with a picture)` },
        el("input", { type: "checkbox", value: t.name, checked: true }), " ", el("span", { text: t.name }))));
  }

  $("paper-run").onclick = run;
  $("paper-csv").onclick = () => result && download("taskvec-table.csv", result.csv, "text/csv");
  $("paper-md").onclick = () => result && download("taskvec-table.md", result.markdown, "text/markdown");
  return { modelChanged, start };
}
