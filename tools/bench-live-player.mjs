// SPDX-License-Identifier: LGPL-2.1-or-later
// The player of `tools/bench live`: opens the web page's own live player (#/streams/ID, hls.js) in Debian's chromium
// (playwright-core from tests/e2e/node_modules), reads the clock burned into each frame it presents and prints one
// JSON line: {"samples": [[display wall ms, latency ms, video height], ...], "frames", "unreadable", "stalls",
// "hlsLatency": [s, ...] (the page's "s behind live"), "library", "browser"}.
//
//   node tools/bench-live-player.mjs --url http://127.0.0.1:8080/#/streams/ID --seconds 30 [--warmup 10]
//                                    [--chromium /usr/bin/chromium] --layout JSON

import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(HERE, '..', 'tests', 'e2e', 'package.json'));
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error('bench-live-player: playwright-core is not installed in tests/e2e (run tools/setup): ' + e.message);
  process.exit(2);
}

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const seconds = Number(args.seconds || 30);
const warmup = Number(args.warmup || 10);
const layout = JSON.parse(args.layout);

const browser = await chromium.launch({
  executablePath: args.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--autoplay-policy=no-user-gesture-required'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.error(`console: ${m.text()}`); });
  await page.goto(args.url);
  // The watch page starts playing by itself once the stream is live.
  await page.waitForFunction(() => {
    const v = document.querySelector('video');
    return v && v.readyState >= 2 && !v.paused && v.currentTime > 0;
  }, null, { timeout: 60000, polling: 200 });
  const result = await page.evaluate(async ({ layout: L, seconds: S, warmup: W }) => {
    const video = document.querySelector('video');
    const w = 320;
    const h = 180;
    const canvas = document.createElement('canvas');
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const centres = [];
    for (let i = 0; i < L.cols * L.rows; i++) {
      const r = Math.floor(i / L.cols);
      const c = i % L.cols;
      centres.push([Math.floor((L.x0 + c * L.cell + L.cell / 2) * w / L.width),
        Math.floor((L.y0 + r * L.cell + L.cell / 2) * h / L.height)]);
    }
    const checksum = (s) => {
      let sum = 0;
      for (let i = 0; i < L.stampBits; i += 4) sum += Math.floor(s / 2 ** i) % 16;
      return sum % 16;
    };
    const decode = () => {
      ctx.drawImage(video, 0, 0, w, h);
      const d = ctx.getImageData(0, 0, w, h).data;
      const levels = centres.map(([x, y]) => {
        let s = 0;
        for (let yy = y - 2; yy < y + 2; yy++) {
          for (let xx = x - 2; xx < x + 2; xx++) {
            const o = (yy * w + xx) * 4;
            s += 0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2];
          }
        }
        return s / 16;
      });
      const [black, white] = levels;
      if (white - black < 60) return null;
      const mid = (white + black) / 2;
      let word = 0;
      for (const v of levels.slice(2)) word = word * 2 + (v > mid ? 1 : 0);
      const check = word % 2 ** L.checkBits;
      const stamp = Math.floor(word / 2 ** L.checkBits);
      return checksum(stamp) === check ? stamp : null;
    };
    const mod = 2 ** L.stampBits;
    const samples = [];
    const hlsLatency = [];
    let frames = 0;
    let unreadable = 0;
    let stalls = 0;
    video.addEventListener('waiting', () => { stalls++; });
    const started = Date.now();
    const latencyEl = document.getElementById('live-latency');
    const sampler = setInterval(() => {
      if (Date.now() - started < W * 1000) return;
      const v = latencyEl && latencyEl.dataset.seconds;
      hlsLatency.push(v ? Number(v) : null);
    }, 500);
    await new Promise((resolve) => {
      const end = () => { clearInterval(sampler); resolve(); };
      const onFrame = (now, meta) => {
        const since = Date.now() - started;
        if (since >= (W + S) * 1000) return end();
        if (since >= W * 1000) {
          // The frame's display time on the wall clock: Date.now() plus how far ahead of now it is shown.
          const display = Date.now() + Math.max(0, (meta.expectedDisplayTime || now) - performance.now());
          frames++;
          const stamp = decode();
          if (stamp === null) unreadable++;
          else samples.push([display, ((Math.round(display) - stamp) % mod + mod) % mod, video.videoHeight]);
        }
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
      setTimeout(end, (W + S) * 1000 + 5000);
    });
    // The page's player configuration, as hls.js holds it.
    return { samples, frames, unreadable, stalls, hlsLatency, library: `hls.js ${window.Hls?.version || ''}`.trim() };
  }, { layout, seconds, warmup });
  result.browser = browser.version();
  console.log(JSON.stringify(result));
} catch (e) {
  console.error(`bench-live-player: ${e.stack || e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
