// (f) The three phases: the logit lens aggregated over many five-shot prompts of a built-in task
// (`taskvec lens --task`).
import * as plots from "../plots.js";
import { $, state, text, taskOption, showError, busy, progress } from "../ui.js";

export function initPhasesPlot({ client }) {
  async function run() {
    showError("apply-error", null);
    busy([$("phases-btn")], true);
    try {
      const n = Math.max(2, Math.min(200, Number($("phases-n").value) || 20));
      state.last.phases = await client.call("lensAggregate", { task: $("phases-task").value, prompts: n, seed: 0 }, progress($("phases-progress"), $("apply-status")));
      plots.phases(state.last.phases);
      text($("apply-status"), "");
    } catch (e) { showError("apply-error", e); text($("apply-status"), ""); }
    finally { $("phases-progress").hidden = true; busy([$("phases-btn")], false); }
  }

  /** Fills the task menu with the built-in tasks. */
  function start(tasks) {
    $("phases-task").append(...tasks.map(taskOption));
  }

  $("phases-btn").onclick = run;
  return { start };
}
