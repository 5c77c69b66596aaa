// SPDX-License-Identifier: LGPL-2.1-or-later
// Helpers of the browser end-to-end tests: a real `sluice serve` on an ephemeral port, test media made
// with ffmpeg, Debian's chromium driven by playwright-core, and the checks shared by the tests.
//
// Run one test file directly (`node tests/e2e/upload_play.test.mjs`) or through `meson test --suite e2e`.
// Environment: SLUICE_BINARY (the server; meson's test_env sets it, with SLUICE_DATA_DIR pointing at
// data/ so that the server finds the page), SLUICE_CHROMIUM (default /usr/bin/chromium),
// SLUICE_E2E_ARTIFACTS (where screenshots go; default <build dir>/tests/e2e-artifacts).
// SLUICE_TEST_AUTH=keys (the `keys` suite): every server runs with [auth] mode=keys and an admin key made with
// `sluice keys create` before it starts; the calls a test makes from here send it as a Bearer header, and the
// page is given it through its own key form: when the page asks for a key, the harness types it in.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SKIP = 77;
export const TEST_AUTH = process.env.SLUICE_TEST_AUTH || 'none';
if (!['none', 'keys'].includes(TEST_AUTH)) throw new Error(`SLUICE_TEST_AUTH must be none or keys, not ${TEST_AUTH}`);
const harnessKeys = new Map(); // data folder -> the admin key the harness made in its catalog
let lastHarnessKey = null; // the key the page is given when it asks for one

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return null;
}

// Exits with 77 (meson's "skipped") when something the browser tests need is not installed; returns
// playwright-core's chromium otherwise. Called before anything else in each test file.
export async function requireToolsOrSkip() {
  const chromiumPath = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';
  const missing = [];
  if (!fs.existsSync(chromiumPath)) missing.push(`${chromiumPath} (Debian package chromium; run tools/setup)`);
  if (!fs.existsSync(path.join(HERE, 'node_modules', 'playwright-core', 'package.json')))
    missing.push('tests/e2e/node_modules/playwright-core (run tools/setup, or npm ci in tests/e2e)');
  if (!which('ffmpeg')) missing.push('ffmpeg');
  const binary = process.env.SLUICE_BINARY;
  if (!binary || !fs.existsSync(binary)) missing.push(`the server binary (SLUICE_BINARY=${binary || ''}; run through meson test)`);
  if (missing.length) {
    console.log(`SKIP: the browser tests need: ${missing.join('; ')}`);
    process.exit(SKIP);
  }
  const { chromium } = await import('playwright-core');
  return { chromium, chromiumPath, binary };
}

export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `sluice-e2e-${prefix}-`));
}

export function removeDir(dir) {
  try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
}

export function artifactsDir() {
  const dir = process.env.SLUICE_E2E_ARTIFACTS ||
    path.join(process.env.MESON_BUILD_ROOT || process.cwd(), 'tests', 'e2e-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export async function screenshot(page, name) {
  const file = path.join(artifactsDir(), name);
  try {
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
  } catch (e) {
    console.log(`screenshot ${file} failed: ${e.message}`);
  }
  return file;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls fn (sync or async) until it returns a truthy value; throws with message and the last value.
export async function waitFor(fn, { timeout = 10000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const detail = lastError ? `; last error: ${lastError.message}` : `; last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${detail}`);
    }
    await sleep(interval);
  }
}

// Test media, made at run time (nothing binary is committed). H.264 + AAC in MP4. A rotation tag
// (phones store landscape pixels plus a display rotation) is added by a second, stream-copy pass:
// Debian 12's ffmpeg writes `-metadata:s:v rotate=N` as a display matrix only when copying.
function ffmpeg(args) {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

export function makeClip(file, { width = 640, height = 360, seconds = 10, rate = 25, rotate = null } = {}) {
  const encoded = rotate === null ? file : `${file}.flat.mp4`;
  ffmpeg(['-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=${rate}:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', String(rate),
    '-c:a', 'aac', '-b:a', '96k', '-shortest', encoded]);
  if (rotate !== null) {
    ffmpeg(['-i', encoded, '-c', 'copy', '-metadata:s:v:0', `rotate=${rotate}`, file]);
    fs.rmSync(encoded);
  }
  return file;
}

// `sluice keys create` on a data folder (made when missing); returns the key.
export function createKey(dataDir, name, scope) {
  const r = spawnSync(process.env.SLUICE_BINARY,
    ['keys', 'create', '--data', dataDir, '--name', name, '--scope', scope], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sluice keys create failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

// A `sluice serve` process. start() resolves once it printed "serving on URL".
export class Server {
  // env: variables added to (or, with value null, removed from) the server's environment.
  // apiKey: sent as a Bearer header by json() and upload(). harnessAuth: false keeps the configuration as it
  // is with SLUICE_TEST_AUTH=keys (a configuration with an [auth] section of its own is kept as it is too).
  constructor({ dataDir, config = null, listen = '127.0.0.1:0', name = 'server', env = null, apiKey = null,
    harnessAuth = true }) {
    this.dataDir = dataDir;
    this.config = config;
    this.env = env;
    this.listen = listen;
    this.name = name;
    this.apiKey = apiKey;
    this.harnessAuth = harnessAuth && TEST_AUTH === 'keys';
    this.log = [];
    this.proc = null;
    this.url = null;
    this.port = null;
  }

  // SLUICE_TEST_AUTH=keys: [auth] mode=keys added to the configuration, and the harness's admin key (one per
  // data folder, so that a restart on the same folder keeps it).
  setUpHarnessAuth() {
    if (!this.config) {
      this.config = path.join(path.dirname(path.resolve(this.dataDir)), 'sluice-harness.conf');
      fs.writeFileSync(this.config, '');
    }
    const text = fs.readFileSync(this.config, 'utf8');
    const marker = '# added by the test harness (SLUICE_TEST_AUTH=keys)';
    if (/^\s*\[auth\]/m.test(text) && !text.includes(marker)) return; // the test's own [auth]
    if (!text.includes(marker)) fs.writeFileSync(this.config, `${text}\n${marker}\n[auth]\nmode=keys\n`);
    const where = path.resolve(this.dataDir);
    if (!harnessKeys.has(where)) harnessKeys.set(where, createKey(this.dataDir, 'test-harness', 'admin'));
    if (!this.apiKey) this.apiKey = harnessKeys.get(where);
    lastHarnessKey = this.apiKey;
    this.keysOn = true;
  }

  async start(timeoutMs = 60000) {
    if (this.harnessAuth) this.setUpHarnessAuth();
    // The live ports on free ones: servers (and other runs) on one machine never collide.
    const args = ['serve', '--listen', this.listen, '--data', this.dataDir, '--rtsp-listen', '127.0.0.1:0',
      '--srt-listen', '127.0.0.1:0'];
    if (this.config) args.push('--config', this.config);
    this.log.push(`$ ${process.env.SLUICE_BINARY} ${args.join(' ')}`);
    let env = process.env;
    if (this.env) {
      env = { ...process.env };
      for (const [k, v] of Object.entries(this.env)) {
        if (v === null) delete env[k];
        else env[k] = v;
      }
      this.log.push(`  with ${Object.entries(this.env).map(([k, v]) => `${k}=${v ?? '(unset)'}`).join(' ')}`);
    }
    const proc = spawn(process.env.SLUICE_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.proc = proc;
    this.exited = once(proc, 'exit');
    readline.createInterface({ input: proc.stderr }).on('line', (l) => this.pushLog(`[stderr] ${l}`));
    const out = readline.createInterface({ input: proc.stdout });
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} did not print its URL in ${timeoutMs} ms:\n${this.tail()}`)), timeoutMs);
      out.on('line', (l) => {
        this.pushLog(`[stdout] ${l}`);
        const m = /serving on (http:\/\/\S+?)\/?$/.exec(l);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      proc.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code ?? signal}) before serving:\n${this.tail()}`));
      });
    });
    this.url = url;
    this.port = Number(new URL(url).port);
    if (this.keysOn) {
      // The keys suite must not pass by running open: the API refuses a request without the key.
      const res = await fetch(`${url}/api/v1/jobs`);
      await res.arrayBuffer();
      if (res.status !== 401) {
        throw new Error(`SLUICE_TEST_AUTH=keys, yet GET /api/v1/jobs without the key answers ${res.status}`);
      }
    }
    return url;
  }

  pushLog(line) {
    this.log.push(line);
    if (this.log.length > 400) this.log.splice(0, this.log.length - 400);
  }

  tail(n = 40) {
    return this.log.slice(-n).join('\n');
  }

  // SIGTERM, then SIGKILL after timeoutMs; resolves with the exit code or signal.
  async stop(timeoutMs = 15000) {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return proc ? (proc.exitCode ?? proc.signalCode) : null;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
    const [code, signal] = await this.exited;
    clearTimeout(timer);
    return code ?? signal;
  }

  async json(pathname, init = {}) {
    if (this.apiKey) {
      const headers = new Headers(init.headers || {});
      if (!headers.has('Authorization')) headers.set('Authorization', `Bearer ${this.apiKey}`);
      init = { ...init, headers };
    }
    const res = await fetch(this.url + pathname, init);
    const text = await res.text();
    let body = null;
    try { body = JSON.parse(text); } catch { body = text; }
    return { status: res.status, body, headers: res.headers };
  }

  // A multipart upload through the API (the way curl -F does it).
  async upload(file, fields = {}, { filename = path.basename(file), type = 'application/octet-stream' } = {}) {
    const form = new FormData();
    form.append('file', new Blob([fs.readFileSync(file)], { type }), filename);
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    return this.json('/api/v1/videos', { method: 'POST', body: form });
  }
}

// A private descriptions folder (for SLUICE_PIPELINES_DIR): copies of the real ones plus "unwritable",
// the hls description with its sink writing under /proc/sluice-unwritable/, so that every run of it
// fails inside GStreamer (a pipeline error), as tests/server/test_retry.py does.
export function unwritablePipelines(dir) {
  const source = process.env.SLUICE_PIPELINES_DIR || path.join(HERE, '..', '..', 'pipelines');
  fs.mkdirSync(dir, { recursive: true });
  for (const name of fs.readdirSync(source)) {
    if (name.endsWith('.json')) fs.copyFileSync(path.join(source, name), path.join(dir, name));
  }
  const broken = JSON.parse(fs.readFileSync(path.join(source, 'hls.json'), 'utf8'));
  broken.name = 'unwritable';
  broken.summary = 'test only: writes its segments where it cannot';
  broken.fragments.sink = broken.fragments.sink.replace('{out}/', '/proc/sluice-unwritable/');
  if (!broken.fragments.sink.includes('/proc/sluice-unwritable/')) throw new Error('hls.json\'s sink has no {out}/ to replace');
  fs.writeFileSync(path.join(dir, 'unwritable.json'), JSON.stringify(broken));
  return dir;
}

// The player's state (video#player), read in one round trip.
export function playerState(page) {
  return page.evaluate(() => {
    const v = document.querySelector('video#player');
    if (!v) return null;
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    const note = document.querySelector('#live-note');
    const r = note ? note.getBoundingClientRect() : null;
    return {
      t: v.currentTime, paused: v.paused, ended: v.ended, readyState: v.readyState, duration: v.duration,
      error: v.error ? `${v.error.code} ${v.error.message}` : null,
      frames: q ? q.totalVideoFrames : null, dropped: q ? q.droppedVideoFrames : null, src: v.currentSrc,
      liveNote: note ? { hidden: note.hidden, visible: !note.hidden && r.width > 0 && r.height > 0, text: note.textContent.trim() } : null,
      waiting: document.querySelector('#player-waiting')?.hidden === false ? document.querySelector('#player-waiting').textContent.trim() : null,
      playerError: document.querySelector('#player-error')?.hidden === false ? document.querySelector('#player-error').textContent.trim() : null,
    };
  });
}

export function writeConfig(dir, text) {
  const file = path.join(dir, 'sluice.conf');
  fs.writeFileSync(file, text);
  return file;
}

const keyForms = new WeakMap(); // page -> what answerKeyForm saw

// SLUICE_TEST_AUTH=keys: whenever the page shows its key form (dialog.key-dialog), types the harness's key into it
// and presses "Use this key", as a person would. Counts how often the page asked (watchPage's check() wants once).
function answerKeyForm(page) {
  const form = { asked: 0, answered: 0 };
  keyForms.set(page, form);
  const dialog = 'dialog.key-dialog[open]';
  (async () => {
    for (;;) {
      try {
        await page.waitForSelector(dialog, { timeout: 0 });
        form.asked += 1;
        await page.fill(`${dialog} input[name="key"]`, lastHarnessKey || '');
        await page.click(`${dialog} button[value="ok"]`);
        form.answered += 1;
        await page.waitForSelector('dialog.key-dialog', { state: 'detached', timeout: 0 });
      } catch {
        if (page.isClosed()) return;
        await sleep(100);
      }
    }
  })();
  return form;
}

// Debian's chromium, headless, a fresh profile in a temporary folder. answerKeyForm: see answerKeyForm() (on by
// default with SLUICE_TEST_AUTH=keys; a test of the form itself turns it off).
export async function launchBrowser(chromium, chromiumPath, { answerKeyForm: answer = TEST_AUTH === 'keys' } = {}) {
  const profile = tempDir('profile');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  if (answer) {
    answerKeyForm(page);
    context.on('page', answerKeyForm);
  }
  return {
    context,
    page,
    async close() {
      try { await context.close(); } catch { /* already gone */ }
      removeDir(profile);
    },
  };
}

// Records uncaught page errors and console errors. Network errors are expected only while
// `expectNetworkErrors` is true (a server restart) or when they match `allowed` (e.g. a 415 answer).
export function watchPage(page) {
  const w = {
    pageErrors: [],
    consoleErrors: [],
    expectNetworkErrors: false,
    allowed: [],
    check() {
      const problems = [];
      for (const e of w.pageErrors) problems.push(`uncaught page error: ${e}`);
      for (const e of w.consoleErrors) problems.push(`console error: ${e}`);
      // With keys on, the page asks for the key once (its first API call is answered 401), and never again.
      const form = keyForms.get(page);
      if (form && form.asked !== 1) problems.push(`the page asked for the API key ${form.asked} times (expected once)`);
      return problems;
    },
  };
  const networkError = /^Failed to load resource|net::ERR_|EventSource/;
  const unauthorized = /status of 401|status 401/;
  page.on('pageerror', (err) => w.pageErrors.push(`${err.message}\n${err.stack || ''}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const loc = msg.location();
    if (w.allowed.some((re) => re.test(text))) return;
    // With keys on, the requests the page makes before it has the key are refused: that is how it learns it needs one.
    const form = keyForms.get(page);
    if (form && form.answered === 0 && unauthorized.test(text)) return;
    if (w.expectNetworkErrors && networkError.test(text)) return;
    w.consoleErrors.push(`${text} (${loc.url || '?'}:${loc.lineNumber ?? '?'})`);
  });
  return w;
}

// The page's state, read in one round trip. Runs as a CDP evaluation, so the page's CSP does not apply.
export function pageState(page) {
  return page.evaluate(() => {
    const $ = (s) => document.querySelector(s);
    const text = (s) => ($(s) ? $(s).textContent.trim() : null);
    return {
      hash: location.hash,
      connection: $('#connection-status') ? { state: $('#connection-status').dataset.state, text: text('#connection-status') } : null,
      uploadProgress: $('#upload-progress') ? Number($('#upload-progress').value) : null,
      uploadStatus: text('#upload-status'),
      uploadError: text('#upload-error'),
      videos: [...document.querySelectorAll('#library li.video')].map((li) => ({
        id: li.dataset.videoId,
        state: li.dataset.state,
        title: li.querySelector('.title')?.textContent.trim() ?? null,
        stateText: li.querySelector('.state')?.textContent.trim() ?? null,
        progress: li.querySelector('progress.job-progress') ? Number(li.querySelector('progress.job-progress').value) : null,
        stats: li.querySelector('.job-stats')?.textContent.trim() ?? null,
        play: li.querySelector('a.play')?.getAttribute('href') ?? null,
      })),
    };
  });
}

// Starts an in-page recorder (setInterval, 50 ms) of the library items and the connection status,
// so that short-lived states (a progress bar while the job runs, "reconnecting…") are not missed
// between two polls from here. Read it with readRecorder().
export async function startRecorder(page) {
  await page.evaluate(() => {
    if (window.__sluiceE2E) clearInterval(window.__sluiceE2E.timer);
    const rec = { items: [], connection: [], timer: 0 };
    const seen = new Set();
    let lastConn = '';
    rec.timer = setInterval(() => {
      for (const li of document.querySelectorAll('#library li.video')) {
        const bar = li.querySelector('progress.job-progress');
        const entry = {
          id: li.dataset.videoId,
          state: li.dataset.state,
          progress: bar ? Number(bar.value) : null,
          stats: li.querySelector('.job-stats')?.textContent.trim() ?? null,
        };
        const key = JSON.stringify(entry);
        if (!seen.has(key)) { seen.add(key); rec.items.push(entry); }
      }
      const cs = document.querySelector('#connection-status');
      const conn = cs ? `${cs.dataset.state}|${cs.textContent.trim()}` : 'absent';
      if (conn !== lastConn) { lastConn = conn; rec.connection.push(conn); }
    }, 50);
    window.__sluiceE2E = rec;
  });
}

export function readRecorder(page) {
  return page.evaluate(() => {
    const r = window.__sluiceE2E;
    return r ? { items: r.items, connection: r.connection } : null;
  });
}

// Parses a master playlist: one entry per EXT-X-STREAM-INF with its attributes and URI.
export function parseMaster(text) {
  const lines = text.split(/\r?\n/);
  const variants = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith('#EXT-X-STREAM-INF:')) continue;
    const attrs = {};
    const re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g;
    let m;
    while ((m = re.exec(lines[i].slice('#EXT-X-STREAM-INF:'.length)))) attrs[m[1]] = m[2].replace(/^"|"$/g, '');
    let uri = '';
    for (let j = i + 1; j < lines.length; j++) {
      if (lines[j] && !lines[j].startsWith('#')) { uri = lines[j].trim(); break; }
    }
    const [w, h] = (attrs.RESOLUTION || '0x0').split('x').map(Number);
    variants.push({ attrs, uri, width: w, height: h, bandwidth: Number(attrs.BANDWIDTH) });
  }
  return variants;
}

// Shows the diagnostics of a failed test: the page's state, its errors, the server's log tail.
export async function dumpDiagnostics(label, { page, watcher, servers = [] }) {
  console.log(`--- diagnostics (${label}) ---`);
  if (page) {
    try { console.log('page url:', page.url()); } catch { /* closed */ }
    try { console.log('page state:', JSON.stringify(await pageState(page), null, 1)); } catch (e) { console.log('page state unavailable:', e.message); }
    await screenshot(page, `failure-${label}.png`);
  }
  if (watcher) for (const p of watcher.check()) console.log(p);
  for (const s of servers) if (s) console.log(`--- ${s.name} log (tail) ---\n${s.tail()}`);
}

// ---------------------------------------------------------------------------------------------
// Accessibility: @axe-core/playwright (pinned in package.json; it puts axe-core in every frame by evaluation, which
// the page's CSP does not refuse) on the page as it is now, in the light and the dark scheme (prefers-color-scheme
// emulated, which is what the page's colours follow). A violation of impact "serious" or "critical" fails the test,
// listed with its rule, help and elements. Run it on a view once it has its content.
export async function auditAccessibility(page, view, { schemes = ['light', 'dark'] } = {}) {
  const { default: AxeBuilder } = await import('@axe-core/playwright'); // loaded where needed, like playwright-core
  const problems = [];
  const started = Date.now();
  try {
    for (const scheme of schemes) {
      await page.emulateMedia({ colorScheme: scheme });
      // The page's colour transitions end (the longest is 0.3 s) before contrast is measured.
      await sleep(400);
      const r = await new AxeBuilder({ page }).options({ resultTypes: ['violations'] }).analyze();
      for (const v of r.violations) {
        if (v.impact !== 'serious' && v.impact !== 'critical') continue;
        const nodes = v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`);
        problems.push(`${view} (${scheme}): ${v.impact} ${v.id}: ${v.help}\n    ${nodes.join('\n    ')}`);
      }
    }
  } finally {
    await page.emulateMedia({ colorScheme: null });
  }
  console.log(`axe: ${view} audited in ${schemes.join(' and ')} (${Date.now() - started} ms): ${problems.length} serious or critical`);
  if (problems.length) throw new Error(`accessibility violations (axe-core):\n  ${problems.join('\n  ')}`);
}
