// The vector library: task-vector JSON files kept in IndexedDB, keyed by an id.
const DB = "taskvec";
const STORE = "vectors";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "id" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, f) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const out = f(t.objectStore(STORE));
    t.oncomplete = () => resolve(out && "result" in out ? out.result : undefined);
    t.onerror = () => reject(t.error);
  });
}

/** All entries {id, name, json, summary, saved} sorted by save time. */
export async function list() {
  const all = (await tx("readonly", (s) => s.getAll())) || [];
  return all.sort((a, b) => a.saved - b.saved);
}

export function put(entry) { return tx("readwrite", (s) => s.put(entry)); }
export function remove(id) { return tx("readwrite", (s) => s.delete(id)); }
