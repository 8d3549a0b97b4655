// A promise-based client for the model worker.
export class ModelClient {
  constructor() {
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.pending = new Map();
    this.next = 1;
    /** Called with the worker's own events, e.g. `{event: "backend", ...}` after a WebGPU failure. */
    this.onEvent = null;
    this.worker.onmessage = (ev) => {
      const m = ev.data;
      if (m.event) { if (this.onEvent) this.onEvent(m); return; }
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.progress) { if (p.onProgress) p.onProgress(m.progress); return; }
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result); else p.reject(new Error(m.error));
    };
    this.worker.onerror = (ev) => {
      for (const p of this.pending.values()) p.reject(new Error("the model worker crashed: " + (ev.message || "unknown error")));
      this.pending.clear();
    };
  }

  /** Calls `op` in the worker; `transfer` lists ArrayBuffers to move rather than copy. */
  call(op, args = {}, onProgress = null, transfer = []) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }
}
