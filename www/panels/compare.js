// The library's vectors compared (those of the newest vector's shape, the only comparable ones):
// (c) cosine per layer between two of them, (d) the similarity matrix, (e) the map (PCA).
import * as plots from "../plots.js";
import * as store from "../store.js";
import { $, state, fillMenu, layerOptions, showError } from "../ui.js";

/** The entries of the newest entry's shape (layers × hidden). */
function sameShape(entries) {
  const last = entries[entries.length - 1];
  if (!last) return [];
  const { layers, hidden } = last.summary.model;
  return entries.filter((e) => e.summary.model.layers === layers && e.summary.model.hidden === hidden);
}

/** Names made unique with " (2)", " (3)"… for the plots' axes. */
function uniqueNames(entries) {
  const seen = new Map();
  return entries.map((e) => { const n = seen.get(e.name) || 0; seen.set(e.name, n + 1); return n ? `${e.name} (${n + 1})` : e.name; });
}

/** Wires the plots (c), (d) and (e); `refresh(entries)` redraws them for a new library list. */
export function initComparePlots({ client }) {
  async function refreshSimilarity(entries) {
    const same = sameShape(entries).slice(-12);
    for (const id of ["cos-a", "cos-b"]) fillMenu($(id), same);
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

  /** The map: PCA of the newest vector's shape's vectors at the chosen layer. */
  async function refreshMap(entries) {
    const last = entries[entries.length - 1];
    const same = sameShape(entries);
    const sel = $("map-layer"), was = sel.value;
    if (last && sel.options.length !== last.summary.model.layers) {
      sel.replaceChildren(...layerOptions(last.summary.model.layers));
      sel.value = String(last.summary.recommended_layer);
    } else if (was) sel.value = was;
    if (same.length < 2) { state.last.map = null; return plots.map(null); }
    try {
      state.last.map = await client.call("map", { jsons: same.map((e) => e.json), layer: Number(sel.value) });
      plots.map(state.last.map, uniqueNames(same));
    } catch (e) { showError("library-error", e); }
  }

  $("map-layer").onchange = async () => refreshMap(await store.list());
  $("cos-a").onchange = $("cos-b").onchange = async () => refreshSimilarity(await store.list());
  return {
    refresh: async (entries) => { await refreshSimilarity(entries); await refreshMap(entries); },
  };
}
