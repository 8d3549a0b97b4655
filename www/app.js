// The taskvec page: starts the model worker (client.js) and wires the panels (panels/), which
// share the page's state and helpers (ui.js). All model work happens in the worker.
import { ModelClient } from "./client.js";
import * as plots from "./plots.js";
import { state, limits, showError } from "./ui.js";
import { initModelPanel } from "./panels/model.js";
import { initTaskPanel } from "./panels/task.js";
import { initApplyPanel } from "./panels/apply.js";
import { initLibraryPanel } from "./panels/library.js";
import { initComparePlots } from "./panels/compare.js";
import { initPhasesPlot } from "./panels/phases.js";
import { initPaperPanel } from "./panels/paper.js";

const params = new URLSearchParams(location.search);
const client = new ModelClient();
// For bench/browser_bench.mjs: the same figures as `taskvec bench`, measured in the worker.
window.taskvecBench = (opts) => client.call("bench", opts || {});
window.taskvecProbe = (opts) => client.call("probe", opts || {});
// For bench/browser_bench.mjs --image: the image path's figures ({image: Uint8Array, runs}).
window.taskvecImageBench = (opts) => client.call("imageBench", opts);
// Test hooks: lose the WebGPU device; pretend its buffers are smaller (bytes, or null to undo);
// check (sizes "check") or time ("bench") the fused quantized kernel against the tensor-op path;
// check the CPU build's dense product.
window.taskvecDebug = {
  loseGpu: () => client.call("debugLoseGpu"),
  limitGpuBuffer: (bytes) => client.call("debugLimitGpuBuffer", { bytes }),
  fusedCheck: (sizes, runs) => client.call("fusedCheck", { sizes, runs }),
  denseCheck: (runs) => client.call("denseCheck", { runs }),
};
// For bench/browser_table.mjs: the paper's table in the worker (the same op the panel runs).
window.taskvecTable = (req) => client.call("table", { req });

const paper = initPaperPanel({ client, state });
const phases = initPhasesPlot({ client });
const compare = initComparePlots({ client });
const apply = initApplyPanel({ client, onImageApply: (ms) => model.imageApplied(ms) });
const library = initLibraryPanel({ client, onChange: async (entries, chosen) => { apply.vectorsChanged(entries, chosen); await compare.refresh(entries); } });
const task = initTaskPanel({ client, library, apply });
const model = initModelPanel({
  client,
  params,
  onModel: (info) => { apply.modelChanged(info); paper.modelChanged(info); task.modelChanged(); },
});

async function main() {
  await model.boot();
  Object.assign(limits, await client.call("limits"));
  state.tasks = await client.call("builtinTasks");
  phases.start(state.tasks);
  await paper.start(state.tasks);
  task.start(state.tasks);
  plots.lens(null); plots.sweep(null);
  await library.refresh();
  if (params.get("autoload") !== "0") await model.load("url");
  state.ready = true;
  document.body.dataset.ready = "1";
}

main().catch((e) => { showError("model-error", e); document.body.dataset.ready = "error"; });
