// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test: the page uploads with tus (tus-js-client). A real clip of ~30 MB goes up over a throttled
// connection; the page is reloaded at about 40 %, the same file picked again resumes from the server's offset
// (the server receives only the rest: its byte counter and the PATCHes say so), Pause stops the PATCHes and
// Resume goes on, a lost network (the browser offline) interrupts it and it goes on by itself once back online;
// the video becomes ready and its source is the file, byte for byte.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, dumpDiagnostics, launchBrowser, pageState, removeDir, requireToolsOrSkip, screenshot, sleep, tempDir,
  waitFor, watchPage, writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();

const UPLOADS = '/api/v1/uploads';
// The throttled upload speed: ~30 MB take ~15 s, time enough to reload, pause and resume.
const UPLOAD_BYTES_PER_S = 2 * 1024 * 1024;

// 20 s of 640x360 H.264 + AAC at ~12 Mbit/s (noise keeps the encoder from making it small): ~30 MB of real
// media that the default pipeline turns into a ladder in a few seconds.
function makeBigClip(file) {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25:duration=20',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=20',
    '-vf', 'noise=alls=30:allf=t', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', '25',
    '-b:v', '12M', '-minrate', '12M', '-maxrate', '12M', '-bufsize', '4M',
    '-c:a', 'aac', '-b:a', '96k', '-shortest', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg failed (${r.status}): ${r.stderr}`);
  return file;
}

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

// The server's count of upload body bytes received (GET /metrics).
async function uploadBytes(server) {
  const r = await server.json('/metrics');
  assert.equal(r.status, 200, `GET /metrics: ${JSON.stringify(r.body).slice(0, 200)}`);
  const m = /^sluice_upload_bytes_total(?:\{\})?\s+(\S+)$/m.exec(String(r.body));
  assert.ok(m, 'sluice_upload_bytes_total in /metrics');
  return Number(m[1]);
}

async function uploadJson(server, id) {
  const r = await server.json(`${UPLOADS}/${id}`);
  assert.equal(r.status, 200, `GET ${UPLOADS}/${id}: ${JSON.stringify(r.body)}`);
  return r.body;
}

// The page's upload controls: which buttons show.
function buttons(page) {
  return page.evaluate(() => Object.fromEntries(['pause', 'resume', 'cancel'].map((b) => {
    const e = document.querySelector(`#upload-${b}`);
    const r = e.getBoundingClientRect();
    return [b, !e.hidden && !e.disabled && r.width > 0 && r.height > 0];
  })));
}

function tusEntries(page) {
  return page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('tus::')));
}

async function openPage(page, server) {
  const response = await page.goto(server.url + '/');
  assert.equal(response.status(), 200, 'GET / answers the page');
  await waitFor(async () => (await pageState(page)).connection?.state === 'open',
    { timeout: 15000, message: '#connection-status data-state="open"' });
  await waitFor(() => page.evaluate(() => document.querySelector('#pipeline-select')?.value === 'hls'),
    { timeout: 10000, message: '#pipeline-select filled with the default pipeline "hls"' });
}

test('tus upload from the page: reload at 40 % resumes from the server\'s offset, pause and resume, offline and back', { timeout: 280000 }, async () => {
  const work = tempDir('tus-resume');
  const dataDir = path.join(work, 'data');
  const config = writeConfig(work, '[jobs]\nextras=\nconcurrent=1\n');
  const server = new Server({ dataDir, config });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    const clip = makeBigClip(path.join(work, 'big clip.mp4'));
    const size = fs.statSync(clip).size;
    console.log(`clip: ${size} bytes`);
    assert.ok(size > 20 * 1024 * 1024 && size < 48 * 1024 * 1024, `a clip of 20 to 48 MiB (${size} bytes)`);
    await server.start();
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);

    // Every request of the page to the tus endpoint, in order.
    const seen = [];
    let uploadId = null;
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (!u.pathname.startsWith(UPLOADS)) return;
      const h = r.headers();
      seen.push({ method: r.method(), path: u.pathname, offset: h['upload-offset'] ?? null, at: Date.now() });
    });
    page.on('response', (r) => {
      const u = new URL(r.url());
      if (r.request().method() === 'POST' && u.pathname === UPLOADS && r.status() === 201) {
        uploadId = r.headers().location.split('/').pop();
      }
    });

    await openPage(page, server);
    assert.equal(await page.evaluate(() => typeof window.tus?.Upload), 'function', 'tus-js-client is loaded (window.tus)');
    const tusScript = await server.json('/web/node_modules/tus-js-client/dist/tus.min.js');
    assert.equal(tusScript.status, 200, 'the server sends tus-js-client\'s browser build');
    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: UPLOAD_BYTES_PER_S });

    const bytes0 = await uploadBytes(server);
    await page.setInputFiles('#file-input', clip);
    await waitFor(() => uploadId, { timeout: 15000, message: `POST ${UPLOADS} answered 201 with a Location` });
    const created = await uploadJson(server, uploadId);
    assert.equal(created.length, size, 'Upload-Length is the file\'s size');
    assert.equal(created.metadata.filename, 'big clip.mp4', 'metadata filename');
    assert.equal(created.metadata.pipeline, 'hls', 'metadata pipeline (the form\'s)');
    assert.ok((await tusEntries(page)).length === 1, 'tus-js-client keeps the upload\'s address for resuming');

    // The bar counts what the server confirmed: it never runs ahead of the server's offset.
    const before = await waitFor(async () => {
      const [u, s] = [await uploadJson(server, uploadId), await pageState(page)];
      assert.ok(s.uploadProgress <= (u.offset / size) * 100 + 0.01,
        `#upload-progress ${s.uploadProgress} is not ahead of the server's offset ${u.offset} (${((u.offset / size) * 100).toFixed(1)}%)`);
      return u.offset >= 0.4 * size ? { u, s } : null;
    }, { timeout: 60000, interval: 100, message: 'the server\'s offset at 40 %' });
    console.log(`before the reload: server offset ${before.u.offset} (${((before.u.offset / size) * 100).toFixed(1)}%), ` +
      `bar ${before.s.uploadProgress.toFixed(1)}, status ${JSON.stringify(before.s.uploadStatus)}`);
    assert.ok(before.s.uploadProgress > 0, 'the bar moved before the reload');
    assert.match(before.s.uploadStatus, /MB of [\d.]+ MB on the server/, '#upload-status says how much the server has');
    assert.ok((await buttons(page)).pause, 'Pause is shown while the upload runs');

    // 1. Reload in the middle of the upload.
    watcher.expectNetworkErrors = true; // the PATCH cut by the reload
    await page.reload();
    await waitFor(async () => (await pageState(page)).connection?.state === 'open',
      { timeout: 15000, message: '#connection-status open after the reload' });
    watcher.expectNetworkErrors = false;
    await waitFor(() => page.evaluate(() => document.querySelector('#pipeline-select')?.value === 'hls'),
      { timeout: 10000, message: '#pipeline-select after the reload' });
    await sleep(500);
    const atReload = await uploadJson(server, uploadId);
    const bytesAtReload = await uploadBytes(server);
    assert.equal(atReload.state, 'receiving');
    assert.ok(atReload.offset >= before.u.offset && atReload.offset < size,
      `the server kept what it had (${atReload.offset} of ${size})`);
    const patchesBefore = seen.filter((r) => r.method === 'PATCH').length;

    // The same file picked again: it resumes, and says so.
    await page.setInputFiles('#file-input', clip);
    const expectedPct = Math.floor((atReload.offset / size) * 100);
    const resuming = await waitFor(async () => {
      const s = await pageState(page);
      return /resum/i.test(s.uploadStatus || '') ? s : null;
    }, { timeout: 10000, interval: 50, message: '#upload-status saying it resumes' });
    console.log(`after picking the file again: ${JSON.stringify(resuming.uploadStatus)}, bar ${resuming.uploadProgress.toFixed(1)}`);
    assert.match(resuming.uploadStatus, new RegExp(`${expectedPct}%`), `#upload-status gives the ${expectedPct}% already on the server`);
    await screenshot(page, 'tus-resuming.png');
    await waitFor(() => seen.filter((r) => r.method === 'PATCH').length > patchesBefore,
      { timeout: 10000, message: 'a PATCH after the reload' });
    const firstAfter = seen.filter((r) => r.method === 'PATCH')[patchesBefore];
    assert.equal(firstAfter.path, `${UPLOADS}/${uploadId}`, 'the PATCHes after the reload go to the same upload');
    assert.equal(Number(firstAfter.offset), atReload.offset, 'the first PATCH after the reload starts at the server\'s offset');
    assert.equal(seen.filter((r) => r.method === 'POST').length, 1, 'no second upload was created');

    // 2. Pause: the PATCHes stop, the server's offset stands still; Resume finishes.
    await waitFor(async () => (await uploadJson(server, uploadId)).offset > atReload.offset,
      { timeout: 20000, interval: 100, message: 'the offset to move after the reload' });
    await page.click('#upload-pause');
    await waitFor(async () => (await buttons(page)).resume, { timeout: 5000, message: 'Resume shown once paused' });
    assert.equal((await buttons(page)).pause, false, 'Pause hidden once paused');
    assert.match((await pageState(page)).uploadStatus, /paused/i, '#upload-status says paused');
    await sleep(500); // the cut PATCH's bytes are recorded
    const paused = await uploadJson(server, uploadId);
    const patchesPaused = seen.filter((r) => r.method === 'PATCH').length;
    await sleep(1500);
    const stillPaused = await uploadJson(server, uploadId);
    console.log(`paused: offset ${paused.offset} then ${stillPaused.offset} 1.5 s later (${((paused.offset / size) * 100).toFixed(1)}%)`);
    assert.equal(stillPaused.offset, paused.offset, 'the server\'s offset does not move while paused');
    assert.equal(seen.filter((r) => r.method === 'PATCH').length, patchesPaused, 'no PATCH while paused');
    assert.ok(paused.offset < size, 'paused before the end');
    await screenshot(page, 'tus-paused.png');
    await page.click('#upload-resume');

    // 3. The network lost (the browser offline): the upload stops with what the server has, and goes on by
    // itself when the network is back.
    await waitFor(async () => (await uploadJson(server, uploadId)).offset >= 0.6 * size,
      { timeout: 20000, interval: 100, message: 'the server\'s offset at 60 % after Resume' });
    watcher.expectNetworkErrors = true; // the PATCH cut by the lost network
    await cdp.send('Network.emulateNetworkConditions',
      { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: UPLOAD_BYTES_PER_S });
    const interrupted = await waitFor(async () => {
      const s = await pageState(page);
      return /interrupted/i.test(s.uploadStatus || '') ? s : null;
    }, { timeout: 10000, interval: 50, message: '#upload-status saying the upload is interrupted' });
    console.log(`offline: ${JSON.stringify(interrupted.uploadStatus)}; #upload-error ${JSON.stringify(interrupted.uploadError)}`);
    assert.ok((await buttons(page)).resume, 'Resume is offered while offline');
    await sleep(500);
    const offline = await uploadJson(server, uploadId);
    assert.ok(offline.offset < size, 'interrupted before the end');
    await cdp.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: UPLOAD_BYTES_PER_S });

    const uploaded = await waitFor(async () => {
      const s = await pageState(page);
      if (s.uploadError) throw new Error(`#upload-error: ${s.uploadError}`);
      return /uploaded/i.test(s.uploadStatus || '') ? s : null;
    }, { timeout: 60000, interval: 100, message: '#upload-status saying "Uploaded: …"' });
    watcher.expectNetworkErrors = false;
    assert.equal(uploaded.uploadProgress, 100, 'the bar is full');
    assert.equal(uploaded.uploadError, '', 'no #upload-error once back online and done');
    const done = await uploadJson(server, uploadId);
    assert.equal(done.state, 'completed');
    assert.equal(done.offset, size);
    const id = done.video_id;
    assert.ok(id, 'the upload names its video');

    // What the server received after the reload: the rest of the file (its byte counter, and the PATCHes).
    const bytesEnd = await uploadBytes(server);
    const afterReload = bytesEnd - bytesAtReload;
    const patchesAfter = seen.filter((r) => r.method === 'PATCH').slice(patchesBefore);
    console.log(`file ${size} bytes; server offset at the reload ${atReload.offset}; bytes received after the reload ${afterReload} ` +
      `(${((afterReload / size) * 100).toFixed(1)}% of the file) in ${patchesAfter.length} PATCHes; ` +
      `received in all ${bytesEnd - bytes0} (${bytesEnd - bytes0 - size} more than the file: cut PATCHes resent)`);
    assert.ok(afterReload < size, `less than the file was sent after the reload (${afterReload} < ${size})`);
    assert.ok(afterReload <= size - atReload.offset + 16 * 1024 * 1024,
      `about the rest of the file was sent after the reload (${afterReload}, the rest being ${size - atReload.offset})`);
    assert.ok(afterReload >= size - atReload.offset, 'every byte of the rest arrived');
    for (let i = 1; i < patchesAfter.length; i++) {
      assert.ok(Number(patchesAfter[i].offset) >= Number(patchesAfter[i - 1].offset),
        `the PATCHes after the reload never go back (${patchesAfter.map((p) => p.offset).join(', ')})`);
    }
    assert.deepEqual(await tusEntries(page), [], 'the upload\'s address is forgotten once it succeeded');

    // The video: in the library, ready; its source is the file, byte for byte.
    const item = `#library li.video[data-video-id="${id}"]`;
    await page.waitForSelector(item, { timeout: 15000 });
    await waitFor(async () => (await pageState(page)).videos.find((v) => v.id === id)?.state === 'ready',
      { timeout: 180000, interval: 250, message: `${item} data-state="ready"` });
    const videoDir = path.join(dataDir, 'videos', id);
    const source = fs.readdirSync(videoDir).find((n) => n.startsWith('source.'));
    assert.ok(source, `a source file in videos/${id}: ${fs.readdirSync(videoDir).join(', ')}`);
    assert.equal(sha256(path.join(videoDir, source)), sha256(clip), 'the source is the file, byte for byte');
    const list = await server.json('/api/v1/videos');
    assert.equal(list.body.videos.length, 1, 'one video');
    assert.equal(list.body.videos[0].filename, 'big clip.mp4');
    await screenshot(page, 'tus-resume.png');
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await dumpDiagnostics('tus-resume', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
