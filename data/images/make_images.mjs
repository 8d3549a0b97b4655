// Regenerates every PNG under data/images/ from third-party npm packages.
//
// The packages are NOT part of this repository and must be installed
// outside it (only the produced PNGs are committed; see ATTRIBUTION.md):
//
//   mkdir -p /tmp/imggen && cd /tmp/imggen && npm init -y
//   npm install flag-icons@7.5.0 @lobehub/fluent-emoji-3d@1.1.0 \
//       @resvg/resvg-js@2.6.2 sharp@0.35.5
//
// Then, from the repository root:
//
//   node data/images/make_images.mjs /tmp/imggen
//   # or: TASKVEC_IMAGE_DEPS=/tmp/imggen node data/images/make_images.mjs
//
// The argument / env var names the directory whose node_modules/ holds the
// packages. Output goes next to this script (data/images/{flags,animals,foods});
// PNGs in those folders that are not in the tables below are deleted.
//
// Output format: RGB PNG (8-bit truecolour, no alpha; transparency flattened
// onto white), exactly 224 px wide: flags 224x168 (4:3), emoji 224x224.
// The output is deterministic for the pinned package versions.
//
// Sources:
//   flags   : flag-icons            flags/4x3/<iso2>.svg   (rasterised with resvg)
//   animals : @lobehub/fluent-emoji-3d  assets/<codepoints>.webp (256x256, resized)
//   foods   : @lobehub/fluent-emoji-3d  assets/<codepoints>.webp
// Which task items use which picture is recorded in data/tasks/*.tsv
// (4th column); data/images/check.mjs verifies the two agree.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT_DIR = path.dirname(fileURLToPath(import.meta.url));
const WIDTH = 224;

// Package versions the committed PNGs were made with.
const EXPECTED_VERSIONS = {
  'flag-icons': '7.5.0',
  '@lobehub/fluent-emoji-3d': '1.1.0',
  '@resvg/resvg-js': '2.6.2',
  sharp: '0.35.5',
};

// ISO 3166-1 alpha-2 codes -> flags/<code>.png from flags/4x3/<code>.svg.
// Every country in data/tasks/country_capital.tsv and country_currency.tsv.
const FLAGS = {
  al: 'Albania', dz: 'Algeria', ao: 'Angola', ar: 'Argentina', am: 'Armenia',
  au: 'Australia', at: 'Austria', bh: 'Bahrain', bd: 'Bangladesh', be: 'Belgium',
  bw: 'Botswana', br: 'Brazil', bg: 'Bulgaria', kh: 'Cambodia', ca: 'Canada',
  cl: 'Chile', cn: 'China', co: 'Colombia', hr: 'Croatia', cu: 'Cuba',
  cz: 'Czech Republic', dk: 'Denmark', ec: 'Ecuador', eg: 'Egypt', ee: 'Estonia',
  et: 'Ethiopia', fi: 'Finland', fr: 'France', de: 'Germany', gh: 'Ghana',
  gr: 'Greece', gt: 'Guatemala', hu: 'Hungary', is: 'Iceland', in: 'India',
  id: 'Indonesia', ir: 'Iran', iq: 'Iraq', ie: 'Ireland', il: 'Israel',
  it: 'Italy', jm: 'Jamaica', jp: 'Japan', jo: 'Jordan', kz: 'Kazakhstan',
  ke: 'Kenya', kw: 'Kuwait', la: 'Laos', lv: 'Latvia', lb: 'Lebanon',
  lt: 'Lithuania', mw: 'Malawi', my: 'Malaysia', mx: 'Mexico', mn: 'Mongolia',
  ma: 'Morocco', mm: 'Myanmar', np: 'Nepal', nl: 'Netherlands', nz: 'New Zealand',
  ng: 'Nigeria', kp: 'North Korea', no: 'Norway', om: 'Oman', pk: 'Pakistan',
  pa: 'Panama', pe: 'Peru', ph: 'Philippines', pl: 'Poland', pt: 'Portugal',
  qa: 'Qatar', ro: 'Romania', ru: 'Russia', sa: 'Saudi Arabia', sn: 'Senegal',
  rs: 'Serbia', sg: 'Singapore', za: 'South Africa', kr: 'South Korea', es: 'Spain',
  lk: 'Sri Lanka', se: 'Sweden', ch: 'Switzerland', tz: 'Tanzania', th: 'Thailand',
  tn: 'Tunisia', tr: 'Turkey', ug: 'Uganda', ua: 'Ukraine', ae: 'United Arab Emirates',
  gb: 'United Kingdom', us: 'United States', uy: 'Uruguay', ve: 'Venezuela', vn: 'Vietnam',
  zm: 'Zambia', zw: 'Zimbabwe',
};

// slug -> [Fluent Emoji 3D asset (Unicode code points), Unicode emoji name].
// animals/<slug>.png
const ANIMALS = {
  lion: ['1f981', 'lion'],
  tiger: ['1f405', 'tiger'],
  leopard: ['1f406', 'leopard'],
  cat: ['1f408', 'cat'],
  dog: ['1f415', 'dog'],
  wolf: ['1f43a', 'wolf'],
  fox: ['1f98a', 'fox'],
  'polar-bear': ['1f43b-200d-2744-fe0f', 'polar bear'],
  bear: ['1f43b', 'bear'],
  panda: ['1f43c', 'panda'],
  gorilla: ['1f98d', 'gorilla'],
  mouse: ['1f401', 'mouse'],
  rat: ['1f400', 'rat'],
  hamster: ['1f439', 'hamster'],
  rabbit: ['1f407', 'rabbit'],
  beaver: ['1f9ab', 'beaver'],
  hedgehog: ['1f994', 'hedgehog'],
  bat: ['1f987', 'bat'],
  raccoon: ['1f99d', 'raccoon'],
  skunk: ['1f9a8', 'skunk'],
  otter: ['1f9a6', 'otter'],
  seal: ['1f9ad', 'seal'],
  cow: ['1f404', 'cow'],
  'water-buffalo': ['1f403', 'water buffalo'],
  bison: ['1f9ac', 'bison'],
  sheep: ['1f411', 'ewe'],
  goat: ['1f410', 'goat'],
  pig: ['1f416', 'pig'],
  'wild-boar': ['1f417', 'boar'],
  horse: ['1f40e', 'horse'],
  donkey: ['1facf', 'donkey'],
  zebra: ['1f993', 'zebra'],
  deer: ['1f98c', 'deer'],
  moose: ['1face', 'moose'],
  camel: ['1f42a', 'camel'],
  'two-hump-camel': ['1f42b', 'two-hump camel'],
  llama: ['1f999', 'llama'],
  giraffe: ['1f992', 'giraffe'],
  elephant: ['1f418', 'elephant'],
  mammoth: ['1f9a3', 'mammoth'],
  rhinoceros: ['1f98f', 'rhinoceros'],
  hippopotamus: ['1f99b', 'hippopotamus'],
  kangaroo: ['1f998', 'kangaroo'],
  koala: ['1f428', 'koala'],
  whale: ['1f40b', 'whale'],
  dolphin: ['1f42c', 'dolphin'],
  shark: ['1f988', 'shark'],
  fish: ['1f41f', 'fish'],
  octopus: ['1f419', 'octopus'],
  chicken: ['1f414', 'chicken'],
  turkey: ['1f983', 'turkey'],
  duck: ['1f986', 'duck'],
  goose: ['1fabf', 'goose'],
  swan: ['1f9a2', 'swan'],
  eagle: ['1f985', 'eagle'],
  owl: ['1f989', 'owl'],
  peacock: ['1f99a', 'peacock'],
  penguin: ['1f427', 'penguin'],
  dodo: ['1f9a4', 'dodo'],
  't-rex': ['1f996', 'T-Rex'],
  frog: ['1f438', 'frog'],
  honeybee: ['1f41d', 'honeybee'],
  butterfly: ['1f98b', 'butterfly'],
  fly: ['1fab0', 'fly'],
  spider: ['1f577-fe0f', 'spider'],
};

// foods/<slug>.png
const FOODS = {
  banana: ['1f34c', 'banana'],
  tomato: ['1f345', 'tomato'],
  lemon: ['1f34b', 'lemon'],
  'red-apple': ['1f34e', 'red apple'],
  strawberry: ['1f353', 'strawberry'],
  cherries: ['1f352', 'cherries'],
  tangerine: ['1f34a', 'tangerine'],
  mango: ['1f96d', 'mango'],
  watermelon: ['1f349', 'watermelon'],
  melon: ['1f348', 'melon'],
  grapes: ['1f347', 'grapes'],
  peach: ['1f351', 'peach'],
  pear: ['1f350', 'pear'],
  blueberries: ['1fad0', 'blueberries'],
  kiwi: ['1f95d', 'kiwi fruit'],
  avocado: ['1f951', 'avocado'],
  olive: ['1fad2', 'olive'],
  carrot: ['1f955', 'carrot'],
  broccoli: ['1f966', 'broccoli'],
  'leafy-green': ['1f96c', 'leafy green'],
  cucumber: ['1f952', 'cucumber'],
  'pea-pod': ['1fadb', 'pea pod'],
  corn: ['1f33d', 'ear of corn'],
  eggplant: ['1f346', 'eggplant'],
  garlic: ['1f9c4', 'garlic'],
  ginger: ['1fada', 'ginger root'],
  'hot-pepper': ['1f336-fe0f', 'hot pepper'],
  'sweet-potato': ['1f360', 'roasted sweet potato'],
  'jack-o-lantern': ['1f383', 'jack-o-lantern'],
  'kidney-beans': ['1fad8', 'beans'],
  peanut: ['1f95c', 'peanuts'],
  chestnut: ['1f330', 'chestnut'],
  butter: ['1f9c8', 'butter'],
  cheese: ['1f9c0', 'cheese wedge'],
  milk: ['1f95b', 'glass of milk'],
  'cooked-rice': ['1f35a', 'cooked rice'],
  salt: ['1f9c2', 'salt'],
  bacon: ['1f953', 'bacon'],
  pretzel: ['1f968', 'pretzel'],
  'french-fries': ['1f35f', 'french fries'],
  honey: ['1f36f', 'honey pot'],
  candy: ['1f36c', 'candy'],
  lollipop: ['1f36d', 'lollipop'],
  'chocolate-bar': ['1f36b', 'chocolate bar'],
  cake: ['1f370', 'shortcake'],
  cupcake: ['1f9c1', 'cupcake'],
  cookie: ['1f36a', 'cookie'],
  'fortune-cookie': ['1f960', 'fortune cookie'],
  doughnut: ['1f369', 'doughnut'],
  custard: ['1f36e', 'custard'],
  'ice-cream': ['1f368', 'ice cream'],
  'soft-serve': ['1f366', 'soft ice cream'],
  'shaved-ice': ['1f367', 'shaved ice'],
  dango: ['1f361', 'dango'],
  coffee: ['2615', 'hot beverage'],
  beer: ['1f37a', 'beer mug'],
  'bubble-tea': ['1f9cb', 'bubble tea'],
};

function depsDir() {
  const d = process.argv[2] || process.env.TASKVEC_IMAGE_DEPS;
  if (!d) {
    console.error('usage: node make_images.mjs <dir with node_modules/> (or set TASKVEC_IMAGE_DEPS)');
    process.exit(2);
  }
  return path.resolve(d);
}

async function main() {
  const deps = depsDir();
  const require = createRequire(path.join(deps, 'package.json'));
  const pkgDir = (name) => path.join(deps, 'node_modules', name);
  for (const [name, want] of Object.entries(EXPECTED_VERSIONS)) {
    const got = JSON.parse(fs.readFileSync(path.join(pkgDir(name), 'package.json'), 'utf8')).version;
    if (got !== want) console.warn(`warning: ${name} is ${got}, the committed PNGs used ${want}`);
  }
  const sharp = require('sharp');
  const { Resvg } = require('@resvg/resvg-js');
  // Deterministic, single-threaded libvips; no cache between files.
  sharp.concurrency(1);
  sharp.cache(false);

  const pngOpts = { compressionLevel: 9, adaptiveFiltering: true, palette: false };
  const written = { flags: new Set(), animals: new Set(), foods: new Set() };
  const save = async (img, folder, slug, height) => {
    const buf = await img.flatten({ background: '#ffffff' }).removeAlpha().png(pngOpts).toBuffer();
    const meta = await sharp(buf).metadata();
    if (meta.width !== WIDTH || meta.height !== height || meta.channels !== 3) {
      throw new Error(`${folder}/${slug}: got ${meta.width}x${meta.height}x${meta.channels}`);
    }
    fs.mkdirSync(path.join(OUT_DIR, folder), { recursive: true });
    fs.writeFileSync(path.join(OUT_DIR, folder, `${slug}.png`), buf);
    written[folder].add(`${slug}.png`);
  };

  const flagDir = path.join(pkgDir('flag-icons'), 'flags', '4x3');
  for (const code of Object.keys(FLAGS).sort()) {
    const svg = fs.readFileSync(path.join(flagDir, `${code}.svg`));
    const rgba = new Resvg(svg, {
      fitTo: { mode: 'width', value: WIDTH },
      background: '#ffffff',
      font: { loadSystemFonts: false },
    }).render().asPng();
    await save(sharp(rgba), 'flags', code, (WIDTH * 3) / 4);
  }

  const emojiDir = path.join(pkgDir('@lobehub/fluent-emoji-3d'), 'assets');
  for (const [folder, table] of [['animals', ANIMALS], ['foods', FOODS]]) {
    for (const slug of Object.keys(table).sort()) {
      const [cp] = table[slug];
      const img = sharp(path.join(emojiDir, `${cp}.webp`)).resize(WIDTH, WIDTH, {
        kernel: 'lanczos3',
        fit: 'contain',
        background: { r: 255, g: 255, b: 255, alpha: 0 },
      });
      await save(img, folder, slug, WIDTH);
    }
  }

  // Remove stale PNGs so the folders hold exactly the tables above.
  let removed = 0;
  for (const folder of Object.keys(written)) {
    for (const f of fs.readdirSync(path.join(OUT_DIR, folder))) {
      if (f.endsWith('.png') && !written[folder].has(f)) {
        fs.unlinkSync(path.join(OUT_DIR, folder, f));
        removed++;
      }
    }
  }
  const n = Object.values(written).reduce((a, s) => a + s.size, 0);
  console.log(`wrote ${n} PNGs (${written.flags.size} flags, ${written.animals.size} animals, ` +
    `${written.foods.size} foods) to ${OUT_DIR}; removed ${removed} stale`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
