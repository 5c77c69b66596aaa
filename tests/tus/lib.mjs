// SPDX-License-Identifier: LGPL-2.1-or-later
// Helpers of the resumable upload tests (tests/tus): the two targets (a real `sluice serve`, and the reference
// @tus/server with @tus/file-store, each a process of its own on port 0 in a temporary folder, which can be
// killed with SIGKILL and started again on the same folder and port), test media made with ffmpeg, raw HTTP
// requests, an HTTP stack for tus-js-client that stops a body at a chosen byte, and the table of results.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import { Server as SluiceServer, removeDir, sleep, tempDir, waitFor } from '../e2e/lib.mjs';

export { removeDir, sleep, tempDir, waitFor };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SKIP = 77;
export const TUS_PATH = '/api/v1/uploads';
// [uploads] max-size of the sluice under test, and the reference's maxSize: both announce it as Tus-Max-Size.
export const MAX_SIZE = 256 * 1024 * 1024;

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return null;
}

// Exits with 77 (meson's "skipped") and the reason when something these tests need is missing.
export function requireOrSkip(target) {
  const missing = [];
  for (const pkg of ['tus-js-client', '@tus/server', '@tus/file-store']) {
    if (!fs.existsSync(path.join(HERE, 'node_modules', pkg, 'package.json')))
      missing.push(`tests/tus/node_modules/${pkg} (run tools/setup, or npm ci in tests/tus)`);
  }
  if (!which('ffmpeg')) missing.push('ffmpeg');
  if (target === 'sluice') {
    const binary = process.env.SLUICE_BINARY;
    if (!binary || !fs.existsSync(binary))
      missing.push(`the server binary (SLUICE_BINARY=${binary || ''}; run through meson test)`);
  }
  if (missing.length) {
    console.log(`SKIP: the tus tests need: ${missing.join('; ')}`);
    process.exit(SKIP);
  }
}

export function sha256(bufOrFile) {
  const h = crypto.createHash('sha256');
  h.update(Buffer.isBuffer(bufOrFile) ? bufOrFile : fs.readFileSync(bufOrFile));
  return h.digest('hex');
}

// ---------------------------------------------------------------------------------------------------------
// Media

// A real MP4 (H.264 + AAC, `seconds` of testsrc2, moov first) of exactly `size` bytes: the clip, then one
// top-level ISO-BMFF `free` box of random bytes up to the size. Demuxers skip a `free` box, so sluice takes
// the file for the short clip it is (a quick transcode), while every one of its bytes still has to arrive in
// its place: random, so that a byte lost, doubled or moved by a resume changes the checksum.
export function makeMedia(file, size, { seconds = 4, width = 320, height = 240 } = {}) {
  const clip = `${file}.clip.mp4`;
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=25:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', '25',
    '-c:a', 'aac', '-b:a', '64k', '-shortest', '-movflags', '+faststart', clip], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg failed (${r.status}): ${r.stderr}`);
  const head = fs.readFileSync(clip);
  fs.rmSync(clip);
  const pad = size - head.length;
  if (pad < 8) throw new Error(`the clip (${head.length} bytes) does not fit in ${size} bytes`);
  const box = Buffer.alloc(8);
  box.writeUInt32BE(pad, 0);
  box.write('free', 4, 'latin1');
  const data = Buffer.concat([head, box, crypto.randomBytes(pad - 8)]);
  fs.writeFileSync(file, data);
  return data;
}

// ---------------------------------------------------------------------------------------------------------
// Raw HTTP

// One request on its own connection; resolves { status, headers (lower-case names), body (string), json }.
export function rq(method, url, { headers = {}, body = null, timeout = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    const h = { 'Tus-Resumable': '1.0.0', ...headers };
    for (const [k, v] of Object.entries(h)) if (v === null) delete h[k];
    if (body !== null && !Object.keys(h).some((k) => k.toLowerCase() === 'content-length'))
      h['Content-Length'] = String(Buffer.byteLength(body));
    const req = http.request(url, { method, headers: h, agent: false, timeout });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in ${timeout} ms`)));
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

export function b64(s) {
  return Buffer.from(s, 'utf8').toString('base64');
}

// ---------------------------------------------------------------------------------------------------------
// Targets. Both serve the tus protocol at /api/v1/uploads and share this interface:
//   start() / kill() (SIGKILL) / restart() (same folder, same port) / stop()
//   base, endpoint, dataDir, files() (what the data folder holds, catalog files aside), tail()
//   storedSha(uploadUrl, lastResponse): the sha256 of what the server stored for a finished upload.

class TargetBase {
  constructor(name, root) {
    this.name = name;
    this.root = root;
    this.dataDir = path.join(root, 'data');
    fs.mkdirSync(this.dataDir, { recursive: true });
    this.port = 0;
    this.base = null;
  }

  get endpoint() { return this.base + TUS_PATH; }

  uploadUrl(id) { return `${this.endpoint}/${id}`; }

  files() {
    const out = [];
    const walk = (dir) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else out.push(path.relative(this.dataDir, p));
      }
    };
    if (fs.existsSync(this.dataDir)) walk(this.dataDir);
    return out.filter((f) => !this.ignored(f)).sort();
  }

  ignored() { return false; }

  // Headers every request to the target carries (the harness's API key when sluice runs with [auth] keys).
  authHeaders() { return {}; }
}

export class SluiceTarget extends TargetBase {
  constructor(root, { expiry = null } = {}) {
    super('sluice', root);
    // One job per upload (no poster/storyboard/preview), so that a video is ready after one short transcode.
    let conf = `[uploads]\nmax-size=${MAX_SIZE}\n`;
    if (expiry) conf += `resumable-expiry=${expiry}\n`;
    conf += '\n[jobs]\nextras=\nconcurrent=1\n';
    this.config = path.join(root, 'sluice.conf');
    fs.writeFileSync(this.config, conf);
    this.server = null;
  }

  async start() {
    const listen = `127.0.0.1:${this.port}`;
    this.server = new SluiceServer({ dataDir: this.dataDir, config: this.config, listen, name: 'sluice' });
    const url = await this.server.start();
    this.base = url.replace(/\/$/, '');
    this.port = this.server.port;
    return this;
  }

  // SLUICE_TEST_AUTH=keys (tests/e2e/lib.mjs's Server makes the key): sent as a Bearer header.
  authHeaders() {
    return this.server?.apiKey ? { Authorization: `Bearer ${this.server.apiKey}` } : {};
  }

  restart() { return this.start(); }

  async kill() {
    const proc = this.server?.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGKILL');
    await this.server.exited;
  }

  async stop() {
    if (this.server) await this.server.stop();
  }

  alive() {
    const p = this.server?.proc;
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  tail(n = 40) { return this.server ? this.server.tail(n) : ''; }

  ignored(f) { return /^sluice\.db(-wal|-shm|-journal)?$/.test(f); }

  async json(pathname) {
    return rq('GET', this.base + pathname, { headers: { 'Tus-Resumable': null, ...this.authHeaders() } });
  }

  // The video made of a finished upload: Sluice-Video-Id of the answer that finished it, else the upload's
  // video_id (GET /api/v1/uploads/ID); then waits until the video is ready and hashes videos/ID/source.*.
  async videoOf(uploadUrl, lastResponse) {
    let vid = lastResponse?.getHeader ? lastResponse.getHeader('Sluice-Video-Id')
      : lastResponse?.headers?.['sluice-video-id'];
    if (!vid) {
      const id = new URL(uploadUrl).pathname.split('/').pop();
      const u = await waitFor(async () => {
        const r = await this.json(`${TUS_PATH}/${id}`);
        return r.status === 200 && r.json && ['completed', 'failed'].includes(r.json.state) ? r.json : null;
      }, { timeout: 60000, interval: 200, message: `upload ${id} to complete` });
      if (u.state !== 'completed') throw new Error(`upload ${id} ${u.state}: ${JSON.stringify(u.error)}`);
      vid = u.video_id;
    }
    return vid;
  }

  async waitReady(vid, timeout = 180000) {
    let last = null;
    await waitFor(async () => {
      const r = await this.json(`/api/v1/videos/${vid}`);
      last = r.json;
      if (r.status === 200 && r.json?.state === 'failed') throw new Error(`video ${vid} failed: ${r.body}`);
      return r.status === 200 && r.json?.state === 'ready';
    }, { timeout, interval: 250, message: `video ${vid} to be ready` }).catch((e) => {
      throw new Error(`${e.message}; last: ${JSON.stringify(last)?.slice(0, 400)}`);
    });
    return last;
  }

  sourceFile(vid) {
    const dir = path.join(this.dataDir, 'videos', vid);
    const name = fs.existsSync(dir) ? fs.readdirSync(dir).find((n) => n.startsWith('source.')) : null;
    return name ? path.join(dir, name) : null;
  }

  async storedSha(uploadUrl, lastResponse) {
    const vid = await this.videoOf(uploadUrl, lastResponse);
    await this.waitReady(vid);
    const file = this.sourceFile(vid);
    if (!file) throw new Error(`videos/${vid}/source.* is missing`);
    return { sha: sha256(file), detail: `video ${vid} ready, ${path.relative(this.dataDir, file)}` };
  }
}

export class ReferenceTarget extends TargetBase {
  constructor(root, { expiryMs = 0 } = {}) {
    super('reference', root);
    this.expiryMs = expiryMs;
    this.proc = null;
    this.log = [];
  }

  async start(timeoutMs = 20000) {
    const args = [path.join(HERE, 'reference_server.mjs'), '--dir', this.dataDir,
      '--listen', `127.0.0.1:${this.port}`, '--max-size', String(MAX_SIZE)];
    if (this.expiryMs) args.push('--expiry-ms', String(this.expiryMs));
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.exited = once(proc, 'exit');
    readline.createInterface({ input: proc.stderr }).on('line', (l) => this.push(`[stderr] ${l}`));
    const out = readline.createInterface({ input: proc.stdout });
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the reference did not listen in ${timeoutMs} ms:\n${this.tail()}`)), timeoutMs);
      out.on('line', (l) => {
        this.push(`[stdout] ${l}`);
        const m = /serving on (http:\/\/\S+?)\/?$/.exec(l);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      proc.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the reference exited (${code ?? signal}) before listening:\n${this.tail()}`));
      });
    });
    this.base = url;
    this.port = Number(new URL(url).port);
    return this;
  }

  restart() { return this.start(); }

  push(l) {
    this.log.push(l);
    if (this.log.length > 200) this.log.splice(0, this.log.length - 200);
  }

  tail(n = 40) { return this.log.slice(-n).join('\n'); }

  alive() { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }

  async kill() {
    if (!this.alive()) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  async stop() {
    if (!this.alive()) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => { try { this.proc.kill('SIGKILL'); } catch { /* gone */ } }, 10000);
    await this.exited;
    clearTimeout(timer);
  }

  async storedSha(uploadUrl) {
    const id = new URL(uploadUrl).pathname.split('/').pop();
    const file = path.join(this.dataDir, id);
    if (!fs.existsSync(file)) throw new Error(`${id} is not in the reference's folder`);
    return { sha: sha256(file), detail: `file ${id}` };
  }
}

export function makeTarget(name, root, opts = {}) {
  return name === 'sluice' ? new SluiceTarget(root, opts) : new ReferenceTarget(root, opts);
}

// ---------------------------------------------------------------------------------------------------------
// tus-js-client helpers

// An HTTP stack for tus-js-client: tus-js-client's own Node stack, except that a request body that crosses
// the byte `gateAt` of the upload stops there (the bytes before it are sent, the connection stays open) and
// `reached` resolves with the request; the test then aborts the upload: a cut at an exact byte, whatever
// the speed of the loopback.
export class GatedStack {
  constructor(tus, gateAt) {
    this.inner = new tus.DefaultHttpStack();
    this.gateAt = gateAt;
    this.reached = new Promise((resolve) => { this._resolve = resolve; });
  }

  getName() { return 'GatedStack'; }

  createRequest(method, url) {
    const req = this.inner.createRequest(method, url);
    const send = req.send.bind(req);
    req.send = (body) => {
      const start = Number(req.getHeader('Upload-Offset') ?? 0);
      const stop = this.gateAt - start;
      if (this.gateAt === null || !(body instanceof Uint8Array) || stop <= 0 || stop >= body.length)
        return send(body);
      this.gateAt = null; // once
      let pos = 0;
      const piece = 64 * 1024;
      const onGate = this._resolve;
      const readable = new Readable({
        read() {
          if (pos >= stop) return; // hold the rest: the request stays open, waiting for bytes
          const end = Math.min(stop, pos + piece);
          this.push(body.subarray(pos, end));
          pos = end;
          if (pos >= stop) onGate({ req, sent: start + stop });
        },
      });
      return send(readable);
    };
    return req;
  }
}

// Waits until what a request wrote has left this process (its socket's buffers are empty).
export async function drained(tusRequest, timeout = 10000) {
  const req = tusRequest.getUnderlyingObject();
  await waitFor(() => req && req.socket && req.writableLength === 0 && req.socket.writableLength === 0,
    { timeout, interval: 20, message: 'the request body to be written' });
}

// Starts a tus-js-client upload; `done` resolves with the last response (onSuccess) or rejects (onError).
// `responses` lists "METHOD STATUS" of every answer, in order.
// onResponse(req, res): called for every answer too.
export function startUpload(tus, file, options, { onResponse = null } = {}) {
  const responses = [];
  let upload;
  const done = new Promise((resolve, reject) => {
    upload = new tus.Upload(file, {
      retryDelays: null,
      ...options,
      onAfterResponse: (req, res) => {
        responses.push(`${req.getMethod()} ${res.getStatus()}`);
        if (onResponse) onResponse(req, res);
      },
      onSuccess: (payload) => resolve(payload.lastResponse),
      onError: (err) => reject(err),
    });
  });
  done.catch(() => {}); // observed by the caller when it awaits; not an unhandled rejection when it does not
  return { upload, done, responses, start: () => upload.start() };
}

// "POST 201 ×2, PATCH 204" from ["POST 201", "PATCH 204", "POST 201"]: order-free (parallel parts race).
export function tally(responses) {
  const counts = new Map();
  for (const r of responses) counts.set(r, (counts.get(r) || 0) + 1);
  return [...counts.entries()].map(([k, n]) => (n > 1 ? `${k} x${n}` : k)).join(', ');
}

// ---------------------------------------------------------------------------------------------------------
// Results: one row per (case, step), with the contract's value and what each target answered.

export class Results {
  constructor() {
    this.rows = new Map();
    this.order = [];
  }

  // Records `got` of `target` for (kase, step). `expected`: the contract's value, or an array of accepted
  // values. opts.reference: what the reference is expected to answer instead, with opts.why (required)
  // saying why it legitimately differs; opts.differ: why sluice and the reference may answer different
  // values within `expected` (e.g. 404 or 410 after a sweep).
  check(target, kase, step, got, expected, opts = {}) {
    const key = `${kase}\u0000${step}`;
    let row = this.rows.get(key);
    if (!row) {
      row = { kase, step, expected, opts, got: {} };
      this.rows.set(key, row);
      this.order.push(key);
    }
    const want = target === 'reference' && 'reference' in opts ? opts.reference : expected;
    const ok = Array.isArray(want) ? want.some((w) => same(w, got)) : same(want, got);
    row.got[target] = { value: got, ok };
    if (!ok) console.log(`  FAIL [${target}] ${kase}: ${step}: expected ${fmt(want)}, got ${fmt(got)}`);
    return ok;
  }

  // A case that threw: one failing row with the message.
  error(target, kase, err) {
    this.check(target, kase, 'ran to the end', `error: ${err.message.split('\n')[0]}`, 'yes');
  }

  // Rows where both targets answered but differently, without a documented reason.
  disagreements() {
    const out = [];
    for (const key of this.order) {
      const r = this.rows.get(key);
      const s = r.got.sluice;
      const ref = r.got.reference;
      if (!s || !ref) continue;
      if (same(s.value, ref.value)) continue;
      if (r.opts.why || r.opts.differ) continue;
      out.push(r);
    }
    return out;
  }

  failures() {
    const out = [];
    for (const key of this.order) {
      const r = this.rows.get(key);
      for (const [t, g] of Object.entries(r.got)) if (!g.ok) out.push({ ...r, target: t });
    }
    return out;
  }

  print(targets) {
    const header = ['case', 'step', 'contract', ...targets, 'verdict'];
    const lines = [header];
    for (const key of this.order) {
      const r = this.rows.get(key);
      const cells = targets.map((t) => (r.got[t] ? `${fmt(r.got[t].value)}${r.got[t].ok ? '' : ' (!)'}` : '-'));
      let verdict = targets.every((t) => !r.got[t] || r.got[t].ok) ? 'ok' : 'FAIL';
      if (targets.length > 1 && r.got.sluice && r.got.reference && !same(r.got.sluice.value, r.got.reference.value)) {
        if (r.opts.why || r.opts.differ) verdict += ' (differ: documented)';
        else verdict = 'FAIL (targets differ)';
      }
      lines.push([r.kase, r.step, fmt(r.expected), ...cells, verdict]);
    }
    const widths = header.map((_, i) => Math.min(60, Math.max(...lines.map((l) => String(l[i]).length))));
    const cut = (s, w) => (s.length > w ? `${s.slice(0, w - 1)}~` : s.padEnd(w));
    console.log('');
    for (const [i, l] of lines.entries()) {
      console.log(l.map((c, j) => cut(String(c), widths[j])).join(' | '));
      if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
    }
    const notes = this.order.map((k) => this.rows.get(k)).filter((r) => (r.opts.why || r.opts.differ) && r.got.reference);
    if (notes.length) {
      console.log('\nDocumented differences of the reference:');
      for (const r of notes) console.log(`  ${r.kase}: ${r.step}: ${r.opts.why || r.opts.differ}`);
    }
  }
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function fmt(v) {
  if (Array.isArray(v)) return v.map(fmt).join(' or ');
  return typeof v === 'string' ? v : JSON.stringify(v);
}
