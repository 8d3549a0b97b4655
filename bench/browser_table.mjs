// The paper's table inside headless Chromium: the page's worker runs `taskvec table`'s code on
// the CPU (WebAssembly) backend, and the same request runs natively, in one run, for the time
// the page needs. Not part of the tests.
//
//   node bench/browser_table.mjs [--model smollm2|tiny] [--rows a,b] [--tasks a,b] [--seeds 0] [--prompts 30]
//
// Needs `taskvec serve` on PORT (default 8080) from the repository root and target/release/taskvec.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i < 0 ? dflt : args[i + 1];
};
const model = opt("--model", "smollm2");
const rows = opt("--rows", model === "tiny" ? "" : "no-context-text,text-icl,text-patch,instruction-text,ensemble-text");
const tasks = opt("--tasks", "country_capital");
const seeds = opt("--seeds", "0");
const prompts = Number(opt("--prompts", "30"));
const port = process.env.PORT || "8080";
const split = (s) => s.split(",").filter(Boolean);
const req = { rows: split(rows), tasks: split(tasks), seeds: split(seeds).map(Number), prompts, read_at: "demo" };

const files = model === "tiny"
  ? ["--model", "models/tiny/tiny_lm.gguf", "--mmproj", "models/tiny/tiny_mmproj.gguf"]
  : ["--model", "models/SmolLM2-135M-Instruct.Q4_1.gguf"];
let t0 = Date.now();
const native = JSON.parse(execFileSync("target/release/taskvec",
  ["table", ...files, "--tasks", tasks, "--seeds", seeds, "--prompts", String(prompts), "--json", ...(rows ? ["--rows", rows] : [])],
  { encoding: "utf8", maxBuffer: 64 << 20 }));
const nativeS = (Date.now() - t0) / 1000;

const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "tv-table-")), {
  executablePath: "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--headless=new", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await ctx.newPage();
await page.goto(`http://127.0.0.1:${port}/www/index.html?model=${model}&backend=cpu`);
await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 600000 });
t0 = Date.now();
const web = await page.evaluate((req) => window.taskvecTable(req), req);
const webS = (Date.now() - t0) / 1000;
await ctx.close();
const same = JSON.stringify(web.rows.map((r) => r.cells.map((c) => c.mean.toFixed(4)))) ===
  JSON.stringify(native.rows.map((r) => r.cells.map((c) => c.mean.toFixed(4))));
console.log(JSON.stringify({ model, req, native_seconds: nativeS, page_cpu_seconds: webS, ratio: webS / nativeS, same_cells: same }));
