// Checks data/tasks/*.tsv against data/images/ (no dependencies, Node >= 18):
//   node data/images/check.mjs
// - every TSV line is `input<TAB>output<TAB>split<TAB>image`, split val|test,
//   inputs unique, no stray whitespace, the split follows the rule in
//   data/tasks/README.md;
// - every referenced PNG exists, decodes (CRCs, zlib stream, filter bytes) and is
//   8-bit RGB, 224 px wide, 168 px high for flags/ and 224 px for the rest;
// - no PNG under data/images/ is left unreferenced.
// Prints per task: items, val, test, image items (val/test). Exits 1 on a problem.

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const IMAGES = path.dirname(fileURLToPath(import.meta.url));
const TASKS = path.join(IMAGES, '..', 'tasks');
const TASK_NAMES = ['country_capital', 'country_currency', 'animal_latin', 'animal_young', 'food_color', 'food_flavor'];
const HEADER = '# input\toutput\tsplit\timage';
const WIDTH = 224;

const problems = [];
const fail = (msg) => problems.push(msg);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// Returns {width, height, colorType, bitDepth} or throws.
function decodePng(file) {
  const buf = fs.readFileSync(file);
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!buf.subarray(0, 8).equals(sig)) throw new Error('not a PNG');
  let off = 8;
  let ihdr = null;
  const idat = [];
  let sawEnd = false;
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    const crc = buf.readUInt32BE(off + 8 + len);
    if (crc32(buf.subarray(off + 4, off + 8 + len)) !== crc) throw new Error(`bad CRC in ${type}`);
    if (type === 'IHDR') {
      ihdr = {
        width: data.readUInt32BE(0), height: data.readUInt32BE(4),
        bitDepth: data[8], colorType: data[9], interlace: data[12],
      };
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') { sawEnd = true; break; }
    off += 12 + len;
  }
  if (!ihdr || !sawEnd || idat.length === 0) throw new Error('missing IHDR/IDAT/IEND');
  if (ihdr.colorType !== 2 || ihdr.bitDepth !== 8 || ihdr.interlace !== 0) {
    throw new Error(`not 8-bit non-interlaced RGB (colour type ${ihdr.colorType}, depth ${ihdr.bitDepth})`);
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = 1 + ihdr.width * 3;
  if (raw.length !== stride * ihdr.height) throw new Error(`pixel data is ${raw.length} bytes, want ${stride * ihdr.height}`);
  for (let y = 0; y < ihdr.height; y++) if (raw[y * stride] > 4) throw new Error(`bad filter byte on row ${y}`);
  return ihdr;
}

const referenced = new Set();
const checked = new Map(); // image -> ok
const rows = [];
for (const name of TASK_NAMES) {
  const file = path.join(TASKS, `${name}.tsv`);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  if (lines[0] !== HEADER) fail(`${name}: first line is not the header comment`);
  const seen = new Set();
  const items = [];
  lines.forEach((line, i) => {
    const where = `${name}.tsv:${i + 1}`;
    if (line.trim() === '' || line.startsWith('#')) return;
    const f = line.split('\t');
    if (f.length !== 4) return fail(`${where}: ${f.length} fields`);
    const [input, output, split, image] = f;
    for (const x of f) if (x !== x.trim() || x === '' || /\s\s/.test(x)) fail(`${where}: empty field or stray whitespace`);
    if (seen.has(input)) fail(`${where}: duplicate input ${input}`);
    seen.add(input);
    if (split !== 'val' && split !== 'test') fail(`${where}: split ${split}`);
    if (image !== '-') {
      referenced.add(image);
      if (!checked.has(image)) {
        const p = path.join(IMAGES, image);
        let ok = false;
        if (!/^(flags|animals|foods)\/[a-z0-9-]+\.png$/.test(image)) fail(`${where}: odd image path ${image}`);
        else if (!fs.existsSync(p)) fail(`${where}: missing ${image}`);
        else {
          try {
            const h = decodePng(p);
            const wantH = image.startsWith('flags/') ? 168 : 224;
            if (h.width !== WIDTH || h.height !== wantH) fail(`${image}: ${h.width}x${h.height}, want ${WIDTH}x${wantH}`);
            else ok = true;
          } catch (e) {
            fail(`${image}: ${e.message}`);
          }
        }
        checked.set(image, ok);
      }
    }
    items.push({ input, output, split, image });
  });
  // Split rule: within image items and within text-only items separately,
  // the 1st, 4th, 7th, ... (file order) are val, the rest test.
  const counter = { img: 0, txt: 0 };
  for (const it of items) {
    const k = it.image === '-' ? 'txt' : 'img';
    const want = counter[k] % 3 === 0 ? 'val' : 'test';
    counter[k]++;
    if (it.split !== want) fail(`${name}: ${it.input} is ${it.split}, the split rule says ${want}`);
  }
  const n = (pred) => items.filter(pred).length;
  const row = {
    task: name,
    items: items.length,
    val: n((x) => x.split === 'val'),
    test: n((x) => x.split === 'test'),
    image: n((x) => x.image !== '-'),
    image_val: n((x) => x.image !== '-' && x.split === 'val'),
    image_test: n((x) => x.image !== '-' && x.split === 'test'),
  };
  if (row.image_val < 10 || row.image_test < 20) fail(`${name}: too few image items (${row.image_val} val, ${row.image_test} test)`);
  rows.push(row);
}

let pngs = 0;
let bytes = 0;
for (const folder of fs.readdirSync(IMAGES, { withFileTypes: true })) {
  if (!folder.isDirectory()) continue;
  for (const f of fs.readdirSync(path.join(IMAGES, folder.name))) {
    const rel = `${folder.name}/${f}`;
    if (!f.endsWith('.png')) continue;
    pngs++;
    bytes += fs.statSync(path.join(IMAGES, rel)).size;
    if (!referenced.has(rel)) fail(`unreferenced ${rel}`);
  }
}

console.log('task              items  val  test  image (val/test)');
for (const r of rows) {
  console.log(`${r.task.padEnd(17)} ${String(r.items).padStart(5)} ${String(r.val).padStart(4)} ${String(r.test).padStart(5)}  ` +
    `${String(r.image).padStart(5)} (${r.image_val}/${r.image_test})`);
}
console.log(`${pngs} PNGs, ${bytes} bytes; ${referenced.size} referenced`);
if (problems.length) {
  for (const p of problems) console.error(`problem: ${p}`);
  process.exit(1);
}
console.log('ok');
