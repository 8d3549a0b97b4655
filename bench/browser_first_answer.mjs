// Manual measurement (not part of the test suite; run with `node bench/browser_first_answer.mjs [webgpu|cpu]`): page open → first answer with the real SmolLM2
// on WebGPU (SwiftShader in headless Chromium here). Needs `taskvec serve` on PORT (default 8080).
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const port = process.env.PORT || "8080";
const backend = process.argv[2] || "webgpu";
const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "tv-")), {
  executablePath: "/usr/bin/chromium", headless: true,
  args: ["--enable-unsafe-webgpu", "--no-sandbox", "--headless=new", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await ctx.newPage();
const t0 = Date.now();
await page.goto(`http://127.0.0.1:${port}/www/index.html${backend === "cpu" ? "?backend=cpu" : ""}`);
await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 1800000 });
const tLoad = (Date.now() - t0) / 1000;
await page.check("input[name=spec][value=instruction]");
await page.click("#extract-btn");
await page.waitForFunction(() => /saved/.test(document.querySelector("#task-status").textContent) || document.querySelector("#task-error").textContent, null, { timeout: 1800000 });
await page.fill("#query-text", "Germany");
await page.selectOption("#layer-choice", "15");
await page.click("#apply-btn");
await page.waitForFunction(() => window.taskvecState.last.apply || document.querySelector("#apply-error").textContent, null, { timeout: 1800000 });
const r = await page.evaluate(() => ({ backend: window.taskvecState.backend, answer: window.taskvecState.last.apply && window.taskvecState.last.apply.patched.text, err: document.querySelector("#apply-error").textContent }));
console.log(JSON.stringify({ ...r, model_ready_s: tLoad, first_answer_s: (Date.now() - t0) / 1000 }));
await ctx.close();
