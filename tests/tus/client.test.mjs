// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads (tus 1.0.0, docs/api.md) driven by tus-js-client and raw requests, the same cases against a
// real `sluice serve` and against the reference server (@tus/server with @tus/file-store), with a table of what
// each answered.
//
//   node tests/tus/client.test.mjs sluice      # sluice ($SLUICE_BINARY), and the reference beside it for the table
//   node tests/tus/client.test.mjs sluice --no-compare
//   node tests/tus/client.test.mjs reference   # the reference alone (checks the cases themselves)
//   node tests/tus/client.test.mjs sluice --only resume,checksum
//
// Every status the contract names is checked on each target; where both ran, a status that differs between them
// fails unless the case says why the reference legitimately answers otherwise (it lacks the checksum and the
// concatenation extensions, answers text instead of sluice's JSON errors, sweeps on its own schedule). Exit 0:
// every check held; 1: one did not; 77: node_modules, ffmpeg or the server binary is missing.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import {
  GatedStack, MAX_SIZE, Results, SKIP, b64, drained, makeMedia, makeTarget, removeDir, requireOrSkip, rq,
  sha256, sleep, startUpload, tally, tempDir, waitFor,
} from './lib.mjs';

const argv = process.argv.slice(2);
const target = argv[0];
if (!['sluice', 'reference'].includes(target)) {
  console.log('usage: node tests/tus/client.test.mjs sluice|reference [--no-compare] [--only CASE,...]');
  process.exit(2);
}
requireOrSkip(target);
const tus = await import('tus-js-client');

const targets = target === 'sluice' && !argv.includes('--no-compare') ? ['sluice', 'reference'] : [target];
const onlyArg = argv.indexOf('--only');
const only = onlyArg >= 0 ? argv[onlyArg + 1].split(',') : null;

const MiB = 1024 * 1024;
const CONTRACT_EXTENSIONS =
  'checksum,concatenation,creation,creation-defer-length,creation-with-upload,expiration,termination';
const REFERENCE_EXTENSIONS = 'creation,creation-defer-length,creation-with-upload,expiration,termination';
const NO_CHECKSUM = '@tus/file-store lacks the checksum extension (not in its Tus-Extension): it ignores Upload-Checksum';
const NO_CONCAT = '@tus/file-store lacks the concatenation extension (not in its Tus-Extension): Upload-Concat gets 501';

const results = new Results();
const root = tempDir('tus');
const media = {};

function sortedList(v) {
  return v === undefined ? '(none)' : v.split(',').map((s) => s.trim()).filter(Boolean).sort().join(',');
}

function header(r, name) {
  const v = r.headers[name.toLowerCase()];
  return v === undefined ? '(none)' : v;
}

// Runs one case on one target: a fresh server in its own folder, stopped and removed afterwards.
async function runCase(name, targetName, fn, targetOpts = {}) {
  const dir = path.join(root, `${targetName}-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  const tg = makeTarget(targetName, dir, targetOpts[targetName] || {});
  const check = (step, got, expected, opts) => results.check(targetName, name, step, got, expected, opts);
  const started = Date.now();
  console.log(`# ${name} on ${targetName}`);
  try {
    await tg.start();
    await fn(tg, check);
    check('server still running', tg.alive() ? 'yes' : 'no', 'yes');
  } catch (e) {
    results.error(targetName, name, e);
    console.log(`  ${e.stack || e}\n  --- ${targetName} log (tail) ---\n${tg.tail()}`);
  } finally {
    try { await tg.stop(); } catch (e) { console.log(`  stop: ${e.message}`); }
    removeDir(dir);
    console.log(`  (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  }
}

// Raw tus requests on one upload, each answer checked for Tus-Resumable: 1.0.0.
function client(tg, check) {
  const missing = [];
  const call = async (method, url, opts = {}) => {
    const r = await rq(method, url, { ...opts, headers: { ...tg.authHeaders(), ...(opts.headers || {}) } });
    if (r.headers['tus-resumable'] !== '1.0.0') missing.push(`${method} ${r.status}`);
    return r;
  };
  return {
    call,
    create: (headers = {}) => call('POST', tg.endpoint, { headers: { 'Upload-Length': '1000', ...headers } }),
    patch: (url, offset, body, headers = {}) => call('PATCH', url, {
      headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset), ...headers },
      body,
    }),
    head: (url) => call('HEAD', url),
    del: (url) => call('DELETE', url),
    finish: () => check('Tus-Resumable: 1.0.0 on every answer',
      missing.length ? `missing on ${missing.join(', ')}` : 'yes', 'yes'),
  };
}

// The absolute URL of a Location (sluice answers a path, as the reference does here with relativeLocation).
function located(tg, r) {
  const loc = r.headers.location;
  if (!loc) throw new Error(`no Location in the ${r.status} answer: ${r.body.slice(0, 200)}`);
  return new URL(loc, tg.endpoint).href;
}

// Sluice's error bodies are JSON {"error": {"code", "message"}}; the reference answers plain text, so these rows
// are sluice's alone.
function jsonCode(tg, check, step, r, code) {
  if (tg.name !== 'sluice') return;
  const ctype = r.headers['content-type'] || '';
  const got = ctype.startsWith('application/json') && r.json?.error ? r.json.error.code
    : `not a JSON error (${ctype}): ${r.body.slice(0, 80)}`;
  check(`${step}: JSON error code`, got, code);
}

// Polls HEAD until the offset stops moving (the server finishing a cut request); returns the answer.
async function settledHead(c, url) {
  let prev = null;
  let r = null;
  await waitFor(async () => {
    r = await c.head(url);
    const same = prev !== null && r.status === prev.status
      && r.headers['upload-offset'] === prev.headers['upload-offset'];
    prev = r;
    return same;
  }, { timeout: 15000, interval: 300, message: 'the offset to settle' });
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// The cases

const cases = {
  // OPTIONS: what each server says it supports.
  async options(tg, check) {
    const r = await rq('OPTIONS', tg.endpoint, { headers: { 'Tus-Resumable': null } });
    check('OPTIONS (no Tus-Resumable)', r.status, 204);
    check('Tus-Version', header(r, 'Tus-Version'), '1.0.0');
    check('Tus-Extension', sortedList(r.headers['tus-extension']), CONTRACT_EXTENSIONS,
      { reference: REFERENCE_EXTENSIONS, why: '@tus/file-store implements neither checksum nor concatenation' });
    check('Tus-Max-Size', header(r, 'Tus-Max-Size'), String(MAX_SIZE));
    check('Tus-Checksum-Algorithm', sortedList(r.headers['tus-checksum-algorithm']), 'md5,sha1,sha256',
      { reference: '(none)', why: NO_CHECKSUM });
  },

  // 64 MiB cut at 30% (the client aborts), the server killed with SIGKILL and started again on the same folder and
  // port, the upload resumed by tus-js-client from its URL storage (same fingerprint, same upload URL).
  async resume(tg, check) {
    const data = media.big;
    const size = data.length;
    const storage = new tus.FileUrlStorage(path.join(tg.root, 'tus-urls.json'));
    const cutAt = Math.floor(size * 0.3);
    const stack = new GatedStack(tus, cutAt);
    const metadata = { filename: 'resume.mp4', title: 'resume after kill -9' };
    const first = startUpload(tus, data,
      { endpoint: tg.endpoint, headers: tg.authHeaders(), metadata, urlStorage: storage, httpStack: stack });
    first.start();
    const { req, sent } = await Promise.race([
      stack.reached,
      first.done.then(() => { throw new Error('the upload finished before the cut'); }),
      sleep(60000).then(() => { throw new Error('the cut was not reached in 60 s'); }),
    ]);
    await drained(req);
    await sleep(300);
    await first.upload.abort(false);
    const url = first.upload.url;
    check('first try: answers before the cut', tally(first.responses), 'POST 201');
    const c = client(tg, check);
    const before = await settledHead(c, url);
    check('HEAD after the cut', before.status, 200);
    const kept = Number(before.headers['upload-offset']);
    console.log(`  cut after ${sent} of ${size} bytes; the server kept ${kept}`);
    check('offset kept after the cut in (0, bytes sent]',
      kept > 0 && kept <= sent ? 'yes' : `no: ${kept} of ${sent}`, 'yes');
    await tg.kill();
    await tg.restart();
    const after = await c.head(url);
    check('HEAD after kill -9 and restart', after.status, 200);
    check('offset after restart == offset before the kill',
      after.headers['upload-offset'] === before.headers['upload-offset'] ? 'yes'
        : `no: ${before.headers['upload-offset']} -> ${after.headers['upload-offset']}`, 'yes');
    check('Upload-Length after restart', header(after, 'Upload-Length'), String(size));

    const patches = [];
    const second = startUpload(tus, data, {
      endpoint: tg.endpoint, headers: tg.authHeaders(), metadata, urlStorage: storage,
      onBeforeRequest: (rq2) => { if (rq2.getMethod() === 'PATCH') patches.push(rq2.getHeader('Upload-Offset')); },
    });
    const previous = await second.upload.findPreviousUploads();
    check('tus-js-client finds the upload by fingerprint', previous.length, 1);
    if (!previous.length) return;
    second.upload.resumeFromPreviousUpload(previous[0]);
    second.start();
    const last = await second.done;
    check('resume: answers', tally(second.responses), 'HEAD 200, PATCH 204');
    check('resume: same upload URL', second.upload.url === url ? 'yes' : `no: ${second.upload.url}`, 'yes');
    check('resume: PATCH from the kept offset',
      patches[0] === after.headers['upload-offset'] ? 'yes' : `no: ${patches}`, 'yes');
    if (tg.name === 'sluice')
      check('last PATCH: Sluice-Video-Id', last.getHeader('Sluice-Video-Id') ? 'yes' : 'no', 'yes');
    const stored = await tg.storedSha(url, last);
    console.log(`  stored: ${stored.detail}`);
    check('stored file: sha256 of the 64 MiB file', stored.sha === sha256(data) ? 'identical' : 'differs', 'identical');
  },

  // parallelUploads: 3 (concatenation): three partial uploads, then the final one joins them.
  async parallel(tg, check) {
    const data = media.mid;
    const partials = [];
    // Partial upload URLs: the Location of each POST with Upload-Concat: partial.
    const options = { endpoint: tg.endpoint, headers: tg.authHeaders(), metadata: { filename: 'parallel.mp4' },
      parallelUploads: 3 };
    const u = startUpload(tus, data, options, {
      onResponse: (req, res) => {
        if (req.getMethod() === 'POST' && req.getHeader('Upload-Concat') === 'partial' && res.getHeader('Location'))
          partials.push(new URL(res.getHeader('Location'), tg.endpoint).href);
      },
    });
    u.start();
    let last = null;
    let error = null;
    try { last = await u.done; } catch (e) { error = e; }
    await sleep(500); // the other parts' answers, when one failed
    check('outcome', error ? `error ${error.originalResponse?.getStatus() ?? error.message}` : 'success', 'success',
      { reference: 'error 501', why: NO_CONCAT });
    check('answers', tally(u.responses), 'POST 201 x4, PATCH 204 x3',
      { reference: 'POST 501 x3', why: NO_CONCAT });
    if (error) return;
    const finalUrl = u.upload.url;
    const stored = await tg.storedSha(finalUrl, last);
    console.log(`  stored: ${stored.detail}`);
    check('stored file: sha256', stored.sha === sha256(data) ? 'identical' : 'differs', 'identical');
    const c = client(tg, check);
    const heads = [];
    for (const p of partials) heads.push((await c.head(p)).status);
    check('HEAD on each partial once joined (removed)', heads.join(','), '404,404,404');
    const fh = await c.head(finalUrl);
    check('HEAD on the final upload', fh.status, 200);
    const concat = header(fh, 'Upload-Concat');
    check('HEAD: Upload-Concat of the final upload', /^final;/.test(concat) ? 'final;...' : concat, 'final;...');
    const fp = await c.patch(finalUrl, Number(fh.headers['upload-offset'] ?? 0), crypto.randomBytes(10));
    check('PATCH on the final upload', fp.status, 403);
    c.finish();
  },

  // uploadDataDuringCreation: the whole file in the POST (creation-with-upload).
  async creationWithUpload(tg, check) {
    const data = media.small;
    const u = startUpload(tus, data, { endpoint: tg.endpoint, headers: tg.authHeaders(),
      metadata: { filename: 'created.mp4' }, uploadDataDuringCreation: true });
    u.start();
    const last = await u.done;
    check('answers', tally(u.responses), 'POST 201');
    check('Upload-Offset of the 201', last.getHeader('Upload-Offset'), String(data.length));
    const stored = await tg.storedSha(u.upload.url, last);
    console.log(`  stored: ${stored.detail}`);
    check('stored file: sha256', stored.sha === sha256(data) ? 'identical' : 'differs', 'identical');
  },

  // chunkSize: 1 MiB: one PATCH per MiB, each on the connection the one before used (Node's agent keeps them
  // alive), with no retry: every PATCH must be answered.
  async chunks(tg, check) {
    const data = media.small;
    const u = startUpload(tus, data, { endpoint: tg.endpoint, headers: tg.authHeaders(),
      metadata: { filename: 'chunks.mp4' }, chunkSize: MiB });
    u.start();
    let last = null;
    let error = null;
    try { last = await u.done; } catch (e) { error = e; }
    check('outcome', error ? `error ${error.originalResponse?.getStatus() ?? error.message}` : 'success', 'success');
    check('answers', tally(u.responses), `POST 201, PATCH 204 x${Math.ceil(data.length / MiB)}`);
    if (error) return;
    const stored = await tg.storedSha(u.upload.url, last);
    console.log(`  stored: ${stored.detail}`);
    check('stored file: sha256', stored.sha === sha256(data) ? 'identical' : 'differs', 'identical');
  },

  // Upload-Checksum (tus-js-client sends none: raw requests).
  async checksum(tg, check) {
    const c = client(tg, check);
    const created = await c.create();
    check('POST', created.status, 201);
    const url = located(tg, created);
    const chunk = crypto.randomBytes(100);
    const digest = (alg, buf) => crypto.createHash(alg).update(buf).digest('base64');
    const wrong = await c.patch(url, 0, chunk,
      { 'Upload-Checksum': `sha256 ${digest('sha256', Buffer.from('other bytes'))}` });
    check('PATCH, sha256 mismatch', wrong.status, 460, { reference: 204, why: NO_CHECKSUM });
    jsonCode(tg, check, 'PATCH, sha256 mismatch', wrong, 'checksum_mismatch');
    let h = await c.head(url);
    check('HEAD: the mismatched bytes were not kept', header(h, 'Upload-Offset'), '0', { reference: '100', why: NO_CHECKSUM });
    let offset = Number(h.headers['upload-offset']);
    const md5wrong = await c.patch(url, offset, chunk, { 'Upload-Checksum': `md5 ${digest('md5', Buffer.from('x'))}` });
    check('PATCH, md5 mismatch', md5wrong.status, 460, { reference: 204, why: NO_CHECKSUM });
    h = await c.head(url);
    offset = Number(h.headers['upload-offset']);
    const unknownAlg = await c.patch(url, offset, chunk, { 'Upload-Checksum': `crc32 ${b64('1234')}` });
    check('PATCH, unsupported algorithm crc32', unknownAlg.status, 400, { reference: 204, why: NO_CHECKSUM });
    jsonCode(tg, check, 'PATCH, unsupported algorithm crc32', unknownAlg, 'bad_request');
    h = await c.head(url);
    offset = Number(h.headers['upload-offset']);
    const good = await c.patch(url, offset, chunk, { 'Upload-Checksum': `sha1 ${digest('sha1', chunk)}` });
    check('PATCH, sha1 matches', good.status, 204);
    check('Upload-Offset grows by the 100 bytes', good.headers['upload-offset'] === String(offset + 100) ? 'yes'
      : `no: ${offset} -> ${header(good, 'Upload-Offset')}`, 'yes');
    const good256 = await c.patch(url, offset + 100, chunk, { 'Upload-Checksum': `sha256 ${digest('sha256', chunk)}` });
    check('PATCH, sha256 matches', good256.status, 204);
    check('DELETE', (await c.del(url)).status, 204);
    c.finish();
  },

  // Upload-Offset other than the server's: 409, nothing changed.
  async offset(tg, check) {
    const c = client(tg, check);
    const created = await c.create();
    check('POST', created.status, 201);
    const url = located(tg, created);
    const p1 = await c.patch(url, 0, crypto.randomBytes(100));
    check('PATCH at 0', p1.status, 204);
    check('Upload-Offset after PATCH at 0', header(p1, 'Upload-Offset'), '100');
    const behind = await c.patch(url, 50, crypto.randomBytes(10));
    check('PATCH at 50 (server at 100)', behind.status, 409);
    jsonCode(tg, check, 'PATCH at 50', behind, 'offset_mismatch');
    // docs/api.md: sluice's 409 carries the server's Upload-Offset (tus does not ask for it; the reference omits it).
    if (tg.name === 'sluice') check('PATCH at 50: the 409 carries Upload-Offset', header(behind, 'Upload-Offset'), '100');
    check('PATCH at 0 again', (await c.patch(url, 0, crypto.randomBytes(10))).status, 409);
    check('PATCH at 200 (ahead)', (await c.patch(url, 200, crypto.randomBytes(10))).status, 409);
    const h = await c.head(url);
    check('HEAD', h.status, 200);
    check('HEAD: offset unchanged by the refused PATCHes', header(h, 'Upload-Offset'), '100');
    check('HEAD: Cache-Control', header(h, 'Cache-Control'), 'no-store');
    const p2 = await c.patch(url, 100, crypto.randomBytes(50));
    check('PATCH at 100', p2.status, 204);
    check('Upload-Offset after PATCH at 100', header(p2, 'Upload-Offset'), '150');
    check('DELETE', (await c.del(url)).status, 204);
    c.finish();
  },

  // Upload-Defer-Length: 1, then the length in a PATCH.
  async deferLength(tg, check) {
    const c = client(tg, check);
    const created = await c.call('POST', tg.endpoint, { headers: { 'Upload-Defer-Length': '1' } });
    check('POST with Upload-Defer-Length: 1', created.status, 201);
    const url = located(tg, created);
    let h = await c.head(url);
    check('HEAD: Upload-Defer-Length', header(h, 'Upload-Defer-Length'), '1');
    check('HEAD: no Upload-Length yet', header(h, 'Upload-Length'), '(none)');
    const p = await c.patch(url, 0, crypto.randomBytes(100), { 'Upload-Length': '1000' });
    check('PATCH declaring Upload-Length: 1000', p.status, 204);
    h = await c.head(url);
    check('HEAD: Upload-Length', header(h, 'Upload-Length'), '1000');
    check('HEAD: Upload-Offset', header(h, 'Upload-Offset'), '100');
    check('DELETE', (await c.del(url)).status, 204);
    c.finish();
  },

  // An upload past its expiry (2 s here): 410 (or 404 once swept), then swept: 404 and nothing left on disk.
  async expiry(tg, check) {
    const c = client(tg, check);
    const filesBefore = tg.files();
    const t0 = Date.now();
    const created = await c.create();
    check('POST', created.status, 201);
    const url = located(tg, created);
    const expires = Date.parse(created.headers['upload-expires'] || '');
    // HTTP dates have whole seconds: within 2 s of creation + 2 s.
    check('Upload-Expires = creation + 2 s',
      Number.isFinite(expires) && Math.abs(expires - (t0 + 2000)) <= 2000 ? 'yes'
        : `no: ${created.headers['upload-expires']}`, 'yes');
    const p = await c.patch(url, 0, crypto.randomBytes(100));
    check('PATCH before expiry', p.status, 204);
    check('PATCH: Upload-Expires', p.headers['upload-expires'] ? 'present' : 'absent', 'present');
    // HEAD every 50 ms from before the expiry until the upload is gone: the statuses seen, in order, once each.
    const sweep = 'an expired upload answers 410 until the sweep removes it, then 404: whether a request sees the 410 '
      + 'depends on the sweep\'s schedule (sluice: every resumable-expiry/4, at least 1 s; the reference: 250 ms)';
    const seen = [];
    const deadline = t0 + 90000;
    let afterExpiry = null;
    while (Date.now() < deadline) {
      const st = (await c.head(url)).status;
      if (seen[seen.length - 1] !== st) seen.push(st);
      if (afterExpiry === null && Date.now() > t0 + 2100) {
        afterExpiry = await c.patch(url, 100, crypto.randomBytes(10));
        if (seen[seen.length - 1] !== afterExpiry.status) seen.push(afterExpiry.status);
      }
      if (st === 404) break;
      await sleep(50);
    }
    // Gone before 2.1 s (a server that sweeps at once): the PATCH is tried now.
    if (afterExpiry === null) {
      afterExpiry = await c.patch(url, 100, crypto.randomBytes(10));
      if (seen[seen.length - 1] !== afterExpiry.status) seen.push(afterExpiry.status);
    }
    check('HEAD every 50 ms until gone: statuses seen', seen.join(' '), ['200 410 404', '200 404'], { differ: sweep });
    check('PATCH after expiry', afterExpiry?.status, [410, 404], { differ: sweep });
    if (afterExpiry)
      jsonCode(tg, check, 'PATCH after expiry', afterExpiry, afterExpiry.status === 410 ? 'gone' : 'not_found');
    let left = [];
    await waitFor(() => { left = tg.files().filter((f) => !filesBefore.includes(f)); return left.length === 0; },
      { timeout: 10000, interval: 200, message: 'no leftover' }).catch(() => {});
    check('data folder: nothing left of the upload', left.length ? left.join(' ') : 'nothing', 'nothing');
    if (tg.name === 'sluice') {
      const id = new URL(url).pathname.split('/').pop();
      check('GET /api/v1/uploads/ID once swept', (await tg.json(`/api/v1/uploads/${id}`)).status, 404);
    }
    c.finish();
  },

  // DELETE (termination): 204, then 404 everywhere, and neither file nor row left.
  async termination(tg, check) {
    const c = client(tg, check);
    const filesBefore = tg.files();
    const created = await c.create();
    check('POST', created.status, 201);
    const url = located(tg, created);
    check('PATCH 100 bytes', (await c.patch(url, 0, crypto.randomBytes(100))).status, 204);
    check('DELETE', (await c.del(url)).status, 204);
    check('HEAD after DELETE', (await c.head(url)).status, 404);
    const p = await c.patch(url, 100, crypto.randomBytes(10));
    check('PATCH after DELETE', p.status, 404);
    jsonCode(tg, check, 'PATCH after DELETE', p, 'not_found');
    check('DELETE again', (await c.del(url)).status, 404);
    let left = [];
    await waitFor(() => { left = tg.files().filter((f) => !filesBefore.includes(f)); return left.length === 0; },
      { timeout: 5000, interval: 100, message: 'no leftover' }).catch(() => {});
    check('data folder: nothing left of the upload', left.length ? left.join(' ') : 'nothing', 'nothing');
    if (tg.name === 'sluice') {
      const id = new URL(url).pathname.split('/').pop();
      check('GET /api/v1/uploads/ID after DELETE (row gone)', (await tg.json(`/api/v1/uploads/${id}`)).status, 404);
    }
    c.finish();
  },
};

// Per-target options of a case's server.
const caseTargetOpts = {
  expiry: { sluice: { expiry: '2s' }, reference: { expiryMs: 2000 } },
};

// ---------------------------------------------------------------------------------------------------------

const mediaDir = path.join(root, 'media');
fs.mkdirSync(mediaDir);
let exitCode = 1;
try {
  const t0 = Date.now();
  media.big = makeMedia(path.join(mediaDir, 'big.mp4'), 64 * MiB);
  media.mid = makeMedia(path.join(mediaDir, 'mid.mp4'), 6 * MiB + 12345);
  media.small = makeMedia(path.join(mediaDir, 'small.mp4'), 3 * MiB + 777);
  console.log(`media: 64 MiB, 6 MiB, 3 MiB MP4s in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const [name, fn] of Object.entries(cases)) {
    if (only && !only.includes(name)) continue;
    for (const t of targets) await runCase(name, t, fn, caseTargetOpts[name]);
  }
  results.print(targets);
  const failures = results.failures();
  const differ = results.disagreements();
  console.log(`\n${results.order.length} checks: ${failures.length} failed, ${differ.length} undocumented `
    + 'differences between sluice and the reference');
  exitCode = failures.length || differ.length ? 1 : 0;
} catch (e) {
  console.log(`error: ${e.stack || e}`);
} finally {
  removeDir(root);
}
process.exit(exitCode);
