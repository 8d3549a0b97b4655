// The four layer-wise plots, drawn with Observable Plot (vendored from npm). All labels are
// data passed to Plot, which renders them as SVG text, never as HTML.
/* global Plot */

/** A layer axis with integer ticks only. */
const layerAxis = (label = "layer") => ({ label, tickFormat: (d) => (Number.isInteger(d) ? String(d) : "") });

function put(fig, node) {
  const box = document.querySelector(`#${fig} .plot`);
  box.replaceChildren(node);
  return box;
}

function empty(fig, text) {
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = text;
  put(fig, p);
}

/** (a) Logit lens: heatmap of the top token per layer, and tracked-token curves. */
export function lens(data) {
  if (!data) return empty("plot-lens", "Apply a vector to see the logit lens.");
  const cells = data.layers.map((l) => ({ layer: l.layer, token: JSON.stringify(l.top[0][0]), p: l.top[0][1] }));
  const heat = Plot.plot({
    height: 110, marginLeft: 50, x: layerAxis(), y: { label: null, axis: null },
    color: { scheme: "blues", domain: [0, 1], legend: true, label: "top-1 probability" },
    marks: [
      Plot.cell(cells, { x: "layer", y: () => "top-1", fill: "p", title: (d) => `layer ${d.layer}: ${d.token} ${d.p.toFixed(3)}` }),
      Plot.text(cells, { x: "layer", y: () => "top-1", text: "token", rotate: -60, fontSize: 9 }),
    ],
  });
  const curves = [];
  data.tracked_tokens.forEach(([word, tok], i) => {
    for (const l of data.layers) curves.push({ layer: l.layer, p: l.tracked[i], series: `${word} (${JSON.stringify(tok)})` });
  });
  const lines = Plot.plot({
    height: 220, marginLeft: 50, x: layerAxis(), y: { label: "probability", domain: [0, 1] },
    color: { legend: true },
    marks: [Plot.ruleY([0]), Plot.line(curves, { x: "layer", y: "p", stroke: "series", marker: "dot" })],
  });
  const wrap = document.createElement("div");
  wrap.append(heat, lines);
  put("plot-lens", wrap);
}

/** (b) Patch sweep for one query: probability of each layer's greedy answer; baselines as rules. */
export function sweep(data) {
  if (!data) return empty("plot-sweep", "Apply a vector to see the sweep.");
  const pts = data.sweep.map((s) => ({ layer: s.layer, p: s.prob, answer: s.text }));
  const base = [
    { y: data.zero_shot.top[0][1], label: `zero-shot: ${JSON.stringify(data.zero_shot.top[0][0])}` },
    ...(data.icl ? [{ y: data.icl.top[0][1], label: `in context: ${JSON.stringify(data.icl.top[0][0])}` }] : []),
  ];
  put("plot-sweep", Plot.plot({
    height: 260, marginLeft: 50, x: layerAxis("patched layer"), y: { label: "probability of the first answer token", domain: [0, 1] },
    marks: [
      Plot.ruleY(base, { y: "y", stroke: "#999", strokeDasharray: "4,3" }),
      Plot.text(base, { y: "y", x: 0, text: "label", dy: -6, textAnchor: "start", fill: "#666" }),
      Plot.line(pts, { x: "layer", y: "p", stroke: "#2f5bd3" }),
      Plot.dot(pts, { x: "layer", y: "p", fill: "#2f5bd3", title: (d) => `layer ${d.layer}: ${JSON.stringify(d.answer)} ${d.p.toFixed(3)}` }),
      Plot.text(pts, { x: "layer", y: "p", text: (d) => d.answer, dy: -10, fontSize: 9, rotate: -45 }),
      Plot.ruleX([data.layer], { stroke: "#d33", strokeOpacity: 0.4 }),
    ],
  }));
}

/** (b') Accuracy per layer from the protocol (test and validation), with zero-shot and ICL
 * baselines and the layer chosen on validation. */
export function accuracy(r) {
  const pts = r.patched.map((a, layer) => ({ layer, a, split: "test" }))
    .concat((r.val_patched || []).map((a, layer) => ({ layer, a, split: "validation" })));
  put("plot-sweep", Plot.plot({
    height: 260, marginLeft: 50, x: layerAxis("patched layer"), y: { label: "accuracy", domain: [0, 1] },
    color: { domain: ["test", "validation"], range: ["#2f5bd3", "#e08a1e"], legend: true },
    marks: [
      Plot.ruleY([r.zero_shot], { stroke: "#999", strokeDasharray: "4,3" }),
      Plot.text([r.zero_shot], { y: (d) => d, x: 0, text: () => `zero-shot ${r.zero_shot.toFixed(2)}`, dy: -6, textAnchor: "start", fill: "#666" }),
      Plot.ruleY([r.icl], { stroke: "#6a6", strokeDasharray: "4,3" }),
      Plot.text([r.icl], { y: (d) => d, x: 0, text: () => `in context ${r.icl.toFixed(2)}`, dy: -6, textAnchor: "start", fill: "#484" }),
      Plot.ruleX([r.selected_layer], { stroke: "#d33", strokeOpacity: 0.4 }),
      Plot.text([r.selected_layer], { x: (d) => d, y: 1, text: () => `chosen on validation: layer ${r.selected_layer}`, dy: 6, dx: 4, textAnchor: "start", fill: "#a33" }),
      Plot.line(pts, { x: "layer", y: "a", stroke: "split", marker: "dot" }),
    ],
  }));
}

/** (c) Cosine similarity per layer between two vectors. */
export function cosine(data, a, b) {
  if (!data) return empty("plot-cosine", "Save two vectors (e.g. from text examples and from the instruction) to compare them.");
  const pts = data.per_layer.map((c, layer) => ({ layer, c }));
  put("plot-cosine", Plot.plot({
    caption: `${a}  vs  ${b}`, height: 240, marginLeft: 50, x: layerAxis(), y: { label: "cosine similarity", domain: [-1, 1] },
    marks: [Plot.ruleY([0]), Plot.line(pts, { x: "layer", y: "c", stroke: "#8a3ffc", marker: "dot" })],
  }));
}

/** (d) Similarity matrix across saved vectors. */
export function matrix(data, fullNames) {
  if (!data) return empty("plot-matrix", "Save two or more vectors to see the matrix.");
  const names = fullNames.map((n, i) => `${i + 1}. ${n.length > 22 ? n.slice(0, 21) + "…" : n}`);
  const cells = [];
  data.matrix_mean_over_layers.forEach((row, i) => row.forEach((c, j) => cells.push({ a: names[i], b: names[j], c })));
  put("plot-matrix", Plot.plot({
    height: 110 + 30 * names.length, marginLeft: 170, marginBottom: 110, width: 240 + 60 * names.length,
    x: { label: null, tickRotate: -35, domain: names }, y: { label: null, domain: names },
    color: { scheme: "rdbu", domain: [-1, 1], legend: true, label: "mean cosine" },
    marks: [Plot.cell(cells, { x: "b", y: "a", fill: "c" }), Plot.text(cells, { x: "b", y: "a", text: (d) => d.c.toFixed(2), fontSize: 10 })],
  }));
}

/** The paper's table: each row's average over tasks, with its 95 % bootstrap interval. */
export function tableAverages(t) {
  const kinds = { no_context: "no context", in_context: "in context", patched: "patched (layer chosen on validation)" };
  const bars = t.rows.map((r) => ({ label: r.label, mean: r.average.mean, lo: r.average.lo, hi: r.average.hi, kind: kinds[r.measure] || r.measure, layer: r.layer }));
  const domain = bars.map((b) => b.label);
  put("plot-table-avg", Plot.plot({
    height: 50 + 28 * bars.length, marginTop: 10, marginLeft: 230, marginRight: 40, width: 760,
    x: { label: `test accuracy, average over ${t.tasks.length} task${t.tasks.length > 1 ? "s" : ""} →`, domain: [0, 1], grid: true },
    y: { label: null, domain },
    color: { domain: Object.values(kinds), range: ["#9aa3b5", "#6aa56a", "#2f5bd3"], legend: true },
    marks: [
      Plot.barX(bars, { x: "mean", y: "label", fill: "kind", fillOpacity: 0.85,
        title: (d) => `${d.label}: ${d.mean.toFixed(3)} [${d.lo.toFixed(3)}, ${d.hi.toFixed(3)}]${d.layer == null ? "" : ` · layer ${d.layer}`}` }),
      Plot.ruleY(bars, { y: "label", x1: "lo", x2: "hi", stroke: "#1d2330" }),
      Plot.tickX(bars, { y: "label", x: "lo", stroke: "#1d2330", inset: 7 }),
      Plot.tickX(bars, { y: "label", x: "hi", stroke: "#1d2330", inset: 7 }),
      Plot.text(bars, { y: "label", x: "hi", text: (d) => d.mean.toFixed(2), dx: 6, textAnchor: "start", fill: "#1d2330" }),
      Plot.ruleX([0]),
    ],
  }));
}

/** (e) Map of vectors: PCA points coloured by task, shaped by specification. */
export function map(data, names) {
  if (!data) return empty("plot-map", "Save two or more vectors of one model to see the map.");
  const pts = data.points.map((p, i) => ({ x: p.xy[0], y: p.xy[1], task: p.task, spec: p.spec.replace(/_/g, " "), name: names[i] }));
  const pct = (v) => `${(100 * v).toFixed(1)} %`;
  put("plot-map", Plot.plot({
    height: 360, width: 620, grid: true, inset: 20,
    x: { label: `PC1 (${pct(data.explained[0])}) →` }, y: { label: `↑ PC2 (${pct(data.explained[1])})` },
    color: { legend: true, label: "task" }, symbol: { legend: true, label: "specification" },
    marks: [
      Plot.dot(pts, { x: "x", y: "y", stroke: "task", symbol: "spec", r: 6, strokeWidth: 2, title: (d) => `${d.name}\n${d.task} · ${d.spec}` }),
      Plot.text(pts, { x: "x", y: "y", text: (d) => (d.name.length > 18 ? d.name.slice(0, 17) + "…" : d.name), dy: -11, fontSize: 9 }),
    ],
  }));
}

/** (f) The aggregated lens: three probability curves with bands, and the top-1 tokens' heatmap. */
export function phases(data) {
  if (!data) return empty("plot-phases", "Run it to see the input → task → answer phases.");
  const series = [["input", "input (query)"], ["task", `task word (${JSON.stringify(data.task_word || "")})`], ["answer", "answer"]];
  const pts = [];
  for (const l of data.layers) for (const [k, label] of series) if (l[k]) pts.push({ layer: l.layer, series: label, ...l[k] });
  const lines = Plot.plot({
    height: 240, marginLeft: 50, x: layerAxis(), y: { label: `probability (mean of ${data.prompts} prompts)`, zero: true },
    color: { legend: true },
    marks: [
      Plot.areaY(pts, { x: "layer", y1: "lo", y2: "hi", fill: "series", fillOpacity: 0.15 }),
      Plot.line(pts, { x: "layer", y: "mean", stroke: "series", marker: "dot" }),
      Plot.ruleY([0]),
    ],
  });
  const cells = [];
  for (const l of data.layers) l.top.forEach(([tok, share], rank) => cells.push({ layer: l.layer, rank: `top-1 #${rank + 1}`, tok: JSON.stringify(tok), share }));
  const heat = Plot.plot({
    height: 120, marginLeft: 60, x: layerAxis(), y: { label: null },
    color: { scheme: "purples", domain: [0, 1], legend: true, label: "share of prompts" },
    marks: [Plot.cell(cells, { x: "layer", y: "rank", fill: "share", title: (d) => `layer ${d.layer}: ${d.tok} tops ${(100 * d.share).toFixed(0)} %` }),
      Plot.text(cells, { x: "layer", y: "rank", text: "tok", rotate: -60, fontSize: 8 })],
  });
  const box = document.createElement("div");
  box.append(lines, heat);
  put("plot-phases", box);
}
