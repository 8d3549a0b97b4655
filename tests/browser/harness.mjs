// Shared setup of the browser tests: `taskvec serve` on 127.0.0.1 and a headless Chromium
// (Debian's chromium, driven by playwright-core). The CLI (`target/release/taskvec`) is the
// reference for every number the page shows. Not a test file itself (node --test skips it).
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const bin = join(root, "target/release/taskvec");
export const tiny = ["--model", join(root, "models/tiny/tiny_lm.gguf"), "--mmproj", join(root, "models/tiny/tiny_mmproj.gguf")];
export const out = join(root, "test-results");
export const work = mkdtempSync(join(tmpdir(), "taskvec-browser-"));

export const cli = (...args) => execFileSync(bin, args, { encoding: "utf8", cwd: root });
export const cliIn = (cwd, ...args) => execFileSync(bin, args, { encoding: "utf8", cwd });
export const cliJson = (...args) => JSON.parse(cli(...args));

/** Starts the server and the browser before the file's tests and stops them after. */
export function browserHarness() {
  const port = 18000 + Math.floor(Math.random() * 2000);
  const h = { port, base: `http://127.0.0.1:${port}/www/index.html`, ctx: null, server: null };
  before(async () => {
    mkdirSync(out, { recursive: true });
    h.server = spawn(bin, ["serve", "--port", String(port), "--root", root], { stdio: ["ignore", "ignore", "pipe"] });
    for (let i = 0; i < 100; i++) {
      try { if ((await fetch(h.base)).ok) break; } catch (_) { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    h.ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "taskvec-chrome-")), {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      acceptDownloads: true,
      args: ["--enable-unsafe-webgpu", "--no-sandbox", "--headless=new", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  });
  after(async () => {
    if (h.ctx) await h.ctx.close();
    if (h.server) h.server.kill();
  });

  /** Opens the page; fails on any page error or dialog (an XSS would fire one) or external request. */
  h.open = async (query) => {
    const page = await h.ctx.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push("pageerror: " + e.message));
    page.on("dialog", async (d) => { problems.push("dialog: " + d.message()); await d.dismiss(); });
    page.on("request", (r) => { if (!r.url().startsWith(`http://127.0.0.1:${port}/`) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) problems.push("external request: " + r.url()); });
    // The page's modules load in parallel; on a busy 2-core machine that has taken over 30 s.
    await page.goto(`${h.base}?${query}`, { timeout: 120000 });
    await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 120000 });
    assert.equal(await page.evaluate(() => document.body.dataset.ready), "1", await page.textContent("#model-error"));
    return { page, problems };
  };
  return h;
}

export async function clearLibrary(page) {
  await page.evaluate(async () => {
    await new Promise((res) => { const r = indexedDB.open("taskvec", 1); r.onsuccess = () => { const t = r.result.transaction("vectors", "readwrite"); t.objectStore("vectors").clear(); t.oncomplete = res; }; });
  });
}

export function close(a, b, tol, what) {
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);
}

/** A vector file without its creation time and tool. */
export const strip = (j) => { const o = JSON.parse(j); delete o.created_at; delete o.created_by; return o; };

/**
 * Checks two files' vectors agree and then makes them identical so that the rest of the files
 * can be compared exactly. They are the same Rust code on the CPU backend, but not bit for bit:
 * the wasm build multiplies with gemm's simd128 kernels, the native build with AVX/FMA ones,
 * which round differently (measured: ≤ 1e-5 relative on the tiny VLM).
 */
export function sameVectors(p, c) {
  assert.equal(p.vectors.length, c.vectors.length, "layers");
  let abs = 0, rel = 0;
  p.vectors.forEach((row, l) => {
    assert.equal(row.length, c.vectors[l].length, `hidden size at layer ${l}`);
    row.forEach((x, i) => {
      const y = c.vectors[l][i], e = Math.abs(x - y);
      abs = Math.max(abs, e);
      rel = Math.max(rel, e / (1 + Math.abs(y)));
    });
  });
  assert.ok(rel <= 1e-5, `vectors: page and CLI differ by ${rel} (relative) at most`);
  p.vectors = c.vectors;
  return { abs, rel };
}
