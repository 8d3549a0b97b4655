// Browser tests of steering, vector arithmetic and the map of vectors (tiny random SmolVLM,
// WebGPU on SwiftShader): each equals the CLI (`taskvec apply --mode …`, `combine`, `map`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { browserHarness, clearLibrary, close, tiny, out, work, cliJson, cli, sameVectors } from "./harness.mjs";

const { open } = browserHarness();

const libraryJsons = (page) => page.evaluate(async () => (await new Promise((res) => { const r = indexedDB.open("taskvec", 1); r.onsuccess = () => { const q = r.result.transaction("vectors").objectStore("vectors").getAll(); q.onsuccess = () => res(q.result); }; })).sort((a, b) => a.saved - b.saved).map((e) => e.json));

async function extract(page, preset, spec, count) {
  await page.selectOption("#preset", preset);
  await page.check(`input[name=spec][value=${spec}]`);
  await page.fill("#prompts", "4");
  await page.fill("#seed", "0");
  await page.click("#extract-btn");
  await page.waitForFunction((n) => document.querySelectorAll("#library tbody tr").length === n || document.querySelector("#task-error").textContent, count, { timeout: 300000 });
  assert.equal(await page.textContent("#task-error"), "");
}

test("steering, arithmetic and the map in the page equal the CLI", { timeout: 900000 }, async () => {
  const { page, problems } = await open("model=tiny");
  await clearLibrary(page);
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === "1", null, { timeout: 120000 });
  await extract(page, "country_capital", "text", 1);
  await extract(page, "country_capital", "instruction", 2);
  await extract(page, "country_currency", "text", 3);
  const jsons = await libraryJsons(page);
  const files = jsons.map((j, i) => { const f = join(work, `steer${i}.json`); writeFileSync(f, j); return f; });

  // Each saved vector is the CLI's for the same examples (so a steering mismatch below is the
  // steering's, not the extraction's).
  jsons.forEach((j, i) => {
    const got = JSON.parse(j), t = got.task;
    const tsv = join(work, `steer-pairs${i}.tsv`), f = join(work, `steer-cli${i}.json`);
    writeFileSync(tsv, t.examples.map((e) => `${e.input}\t${e.output}`).join("\n") + "\n");
    const spec = t.spec === "instruction" ? ["--spec", "instruction", "--instruction", t.instruction] : ["--spec", "text"];
    cli("extract", ...tiny, "--pairs", tsv, ...spec, "--prompts", String(t.prompts), "--seed", String(t.seed), ...(got.prompt_format.read_at ? ["--read-at", got.prompt_format.read_at] : []), "--out", f);
    sameVectors(got, JSON.parse(readFileSync(f, "utf8")));
  });

  // Steering: add-normalized × 0.75 at layers 1–3, every token, 6 tokens, side by side.
  await page.selectOption("#vector-choice", { index: 0 });
  assert.equal(await page.inputValue("#vector-choice"), (await page.evaluate(async () => (await import("./store.js")).list()))[0].id, "the first saved vector is the one applied");
  await page.fill("#query-text", "Germany");
  await page.selectOption("#layer-choice", "1");
  await page.selectOption("#layer-to", "3");
  await page.selectOption("#steer-op", "add-normalized");
  await page.$eval("#steer-scale", (el) => { el.value = "0.75"; el.dispatchEvent(new Event("input")); });
  assert.equal(await page.textContent("#steer-scale-out"), "0.75");
  await page.check("#steer-every");
  await page.fill("#steer-tokens", "6");
  await page.evaluate(() => {
    window.taskvecState.last = {};
    // the steered continuation streams in: record every text the view shows
    window.seenSteered = [];
    new MutationObserver(() => window.seenSteered.push(document.querySelector("#steer-on").textContent))
      .observe(document.querySelector("#steer-on"), { childList: true, characterData: true, subtree: true });
  });
  await page.click("#apply-btn");
  await page.waitForFunction(() => window.taskvecState.last.apply || document.querySelector("#apply-error").textContent, null, { timeout: 300000 });
  assert.equal(await page.textContent("#apply-error"), "");
  const r = await page.evaluate(() => window.taskvecState.last.apply);
  const ref = cliJson("apply", ...tiny, "--vector", files[0], "--text", "Germany", "--mode", "add-normalized", "--scale", "0.75", "--layers", "1-3", "--every-token", "--max-tokens", "6", "--json");
  assert.deepEqual(r.steering, ref.steering);
  assert.deepEqual(r.patched.ids, ref.patched.ids, "steered ids");
  assert.deepEqual(r.zero_shot.ids, ref.zero_shot.ids, "unsteered ids");
  assert.equal(r.patched.ids.length, 6);
  assert.equal(await page.isVisible("#steer-compare"), true);
  assert.equal(await page.textContent("#steer-on"), ref.patched.text);
  const seen = [...new Set(await page.evaluate(() => window.seenSteered.filter((t) => t)))];
  assert.ok(seen.length >= 3, `streamed token by token: ${JSON.stringify(seen)}`);
  assert.equal(await page.textContent("#steer-off"), ref.zero_shot.text);
  await page.locator("#query-panel").screenshot({ path: join(out, "steering-panel.png") });

  // The three phases: the page's aggregated lens equals `taskvec lens --task`.
  await page.selectOption("#phases-task", "country_capital");
  await page.fill("#phases-n", "4");
  await page.click("#phases-btn");
  await page.waitForFunction(() => window.taskvecState.last.phases || document.querySelector("#apply-error").textContent, null, { timeout: 300000 });
  assert.equal(await page.textContent("#apply-error"), "");
  const ph = await page.evaluate(() => window.taskvecState.last.phases);
  const phRef = cliJson("lens", ...tiny, "--task", "country_capital", "--prompts", "4", "--json");
  assert.equal(ph.prompts, 4);
  phRef.layers.forEach((l, i) => {
    for (const k of ["input", "task", "answer"]) close(ph.layers[i][k].mean, l[k].mean, 1e-4, `phase ${k} layer ${i}`);
    assert.deepEqual(ph.layers[i].top.map((t) => t[0]), l.top.map((t) => t[0]), `top tokens layer ${i}`);
  });
  assert.ok(await page.locator("#plot-phases svg").count() > 0, "the phases are drawn");
  await page.locator("#plot-phases").screenshot({ path: join(out, "phases.png") });

  // Arithmetic: capital(text) − 0.5 × currency(text) = the CLI's combine.
  await page.selectOption("#comb-a", { index: 0 });
  await page.selectOption("#comb-op", "-1");
  await page.fill("#comb-k", "0.5");
  await page.selectOption("#comb-b", { index: 2 });
  await page.click("#comb-btn");
  await page.waitForFunction(() => document.querySelectorAll("#library tbody tr").length === 4 || document.querySelector("#library-error").textContent, null, { timeout: 60000 });
  assert.equal(await page.textContent("#library-error"), "");
  const combined = JSON.parse((await libraryJsons(page))[3]);
  cli("combine", files[0], "-", files[2], "x", "0.5", "--out", join(work, "comb.json"));
  const want = JSON.parse(readFileSync(join(work, "comb.json"), "utf8"));
  assert.deepEqual(combined.vectors, want.vectors);
  assert.equal(combined.task.spec, "combination");
  assert.deepEqual(combined.derivation.terms.map((t) => t.weight), [1, -0.5]);

  // The map: PCA of the four vectors at layer 2 equals `taskvec map --json`.
  await page.selectOption("#map-layer", "2");
  await page.waitForFunction(() => window.taskvecState.last.map && window.taskvecState.last.map.layer === 2 && window.taskvecState.last.map.points.length === 4, null, { timeout: 60000 });
  const m = await page.evaluate(() => window.taskvecState.last.map);
  writeFileSync(join(work, "comb-page.json"), JSON.stringify(combined));
  const mref = cliJson("map", ...files, join(work, "comb-page.json"), "--layer", "2", "--json");
  m.points.forEach((p, i) => { close(p.xy[0], mref.points[i].xy[0], 1e-4, `map x ${i}`); close(p.xy[1], mref.points[i].xy[1], 1e-4, `map y ${i}`); });
  assert.ok(await page.locator("#plot-map svg").count() > 0, "the map is drawn");
  await page.locator("#library-panel").screenshot({ path: join(out, "map-panel.png") });
  assert.deepEqual(problems, []);
  await page.close();
});
