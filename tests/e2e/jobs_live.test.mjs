// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test 3: the library's job controls and live playback.
//  1. A job that fails for real (a pipeline whose sink cannot write) shows its error in words; Retry
//     queues a new job that fails again; Delete (after confirm()) removes the item, the video and its files.
//  2. An upload canceled half-way: the page says Canceled, the server keeps nothing of it.
//  3. A video plays while its job is still running (the EVENT playlist, #live-note), and goes on
//     playing once the job has finished.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, auditAccessibility, dumpDiagnostics, launchBrowser, makeClip, pageState, playerState, readRecorder, removeDir,
  requireToolsOrSkip, screenshot, sleep, startRecorder, tempDir, unwritablePipelines, waitFor, watchPage,
  writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();

// The page after GET /, with its live connection open and its selects filled from the API.
async function openLibrary(page, server) {
  const response = await page.goto(server.url + '/');
  assert.equal(response.status(), 200, 'GET / answers the page');
  await waitFor(async () => (await pageState(page)).connection?.state === 'open',
    { timeout: 15000, message: '#connection-status data-state="open"' });
  await waitFor(() => page.evaluate(() => document.querySelector('#pipeline-select')?.disabled === false),
    { timeout: 10000, message: '#pipeline-select filled from GET /api/v1/pipelines' });
}

// A request to the API that gives up after 10 s, so that a server that stops answering fails the test
// with a message (waitFor reports the last error) rather than hanging it.
const ask = (server, pathname, init = {}) => server.json(pathname, { ...init, signal: AbortSignal.timeout(10000) });

// Says whether the server still answers (for the diagnostics of a failure).
async function stillAnswers(server) {
  if (!server.url) return;
  try {
    const h = await ask(server, '/health');
    console.log(`GET /health: ${h.status} ${JSON.stringify(h.body)}`);
  } catch (e) {
    console.log(`GET /health: no answer (${e.message}): the server does not answer HTTP any more`);
  }
}

const itemOf = (id) => `#library li.video[data-video-id="${id}"]`;
const itemState = async (page, id) => (await pageState(page)).videos.find((v) => v.id === id)?.state ?? null;

test('a failed job in words, Retry, then Delete', { timeout: 120000 }, async () => {
  const work = tempDir('jobs-failed');
  const dataDir = path.join(work, 'data');
  const pipelines = unwritablePipelines(path.join(work, 'pipelines'));
  // One attempt: the pipeline error fails the job at once instead of being retried with a backoff.
  const config = writeConfig(work, '[jobs]\nextras=\nconcurrent=1\nmax-attempts=1\n');
  // G_DEBUG without fatal-criticals for this server only: when hlssink2 cannot open its fragment,
  // GStreamer 1.22's mpegtsmux can emit a critical on its own error path (data flow before the segment
  // event), which would abort the server in the tests' environment. What is tested here is what the
  // server and the page do with the failure.
  const server = new Server({ dataDir, config, env: { SLUICE_PIPELINES_DIR: pipelines, G_DEBUG: '' } });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    const clip = makeClip(path.join(work, 'short.mp4'), { width: 320, height: 180, seconds: 2 });
    await server.start();
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    const dialogs = [];
    page.on('dialog', (d) => { dialogs.push({ type: d.type(), message: d.message() }); d.accept(); });

    await openLibrary(page, server);
    const offered = await page.evaluate(() => [...document.querySelectorAll('#pipeline-select option')].map((o) => o.value));
    assert.ok(offered.includes('unwritable'), `#pipeline-select offers the private "unwritable" pipeline (offers ${JSON.stringify(offered)})`);
    await page.selectOption('#pipeline-select', 'unwritable');
    await page.evaluate(() => { window.__sluiceE2EMarker = 'same page'; });

    await page.setInputFiles('#file-input', clip);
    await waitFor(async () => /uploaded/i.test((await pageState(page)).uploadStatus || ''),
      { timeout: 30000, message: '#upload-status saying "Uploaded: …"' });
    const list = (await ask(server, '/api/v1/videos')).body.videos;
    assert.equal(list.length, 1, 'the server holds one video');
    const id = list[0].id;
    const firstJob = list[0].jobs[0];
    assert.equal(firstJob.pipeline, 'unwritable', 'the upload\'s job uses the pipeline chosen in #pipeline-select');
    const item = itemOf(id);
    await page.waitForSelector(item, { timeout: 15000 });

    // The job fails (one attempt); the item says why, in the job's own words.
    await waitFor(async () => (await itemState(page, id)) === 'failed',
      { timeout: 60000, interval: 200, message: `${item} data-state="failed"` });
    const job = (await ask(server, `/api/v1/jobs/${firstJob.id}`)).body;
    assert.equal(job.state, 'failed', `GET /api/v1/jobs/${firstJob.id}: ${JSON.stringify(job)}`);
    assert.equal(job.attempts, 1, 'max-attempts=1: one attempt');
    assert.ok(job.error && job.error.message, `the failed job has an error message: ${JSON.stringify(job.error)}`);
    assert.match(job.error.message, /sluice-unwritable/, 'the error names what GStreamer could not write');
    const shown = await page.evaluate((sel) => {
      const li = document.querySelector(sel);
      const e = li.querySelector('.job-error');
      const r = e ? e.getBoundingClientRect() : null;
      return { error: e ? e.textContent.trim() : null, visible: !!r && r.width > 0 && r.height > 0,
        state: li.querySelector('.state')?.textContent.trim(), retry: !!li.querySelector('button.retry'),
        bar: !!li.querySelector('progress.job-progress') };
    }, item);
    console.log(`failed item: ${JSON.stringify(shown)}; the job's error: ${JSON.stringify(job.error)}`);
    assert.ok(shown.error !== null && shown.visible, '.job-error is shown');
    assert.ok(shown.error.includes(job.error.message.trim()), `.job-error "${shown.error}" contains the job's error.message "${job.error.message}"`);
    assert.equal(shown.state, 'failed', '.state says failed');
    assert.equal(shown.bar, false, 'no progress bar on a failed item');
    assert.ok(shown.retry, 'a failed item has button.retry');
    // In one step: the item is drawn anew by each event of the failure (a locator's element may be replaced).
    await page.evaluate((sel) => document.querySelector(sel)?.scrollIntoView({ block: 'nearest' }), item);
    await screenshot(page, 'job-failed.png');
    // A failed item: its error and Retry.
    await auditAccessibility(page, 'library with a failed job');

    // Retry: a second job for the same video, which fails the same way.
    await startRecorder(page);
    await page.click(`${item} button.retry`);
    const jobs = await waitFor(async () => {
      const v = (await ask(server, `/api/v1/videos/${id}`)).body;
      return v.jobs && v.jobs.length === 2 ? v.jobs : null;
    }, { timeout: 15000, message: `GET /api/v1/videos/${id} listing 2 jobs after Retry` });
    const retried = jobs[0];
    assert.notEqual(retried.id, firstJob.id, 'Retry created a new job (the newest first)');
    console.log(`the retry's job: ${JSON.stringify({ id: retried.id, pipeline: retried.pipeline, encoder: retried.encoder, ladder: retried.ladder, params: retried.params, state: retried.state })}; the failed one: ${JSON.stringify({ pipeline: firstJob.pipeline, encoder: firstJob.encoder, ladder: firstJob.ladder, params: firstJob.params })}`);
    await waitFor(async () => {
      const rec = await readRecorder(page);
      return rec.items.some((e) => e.id === id && e.state !== 'failed');
    }, { timeout: 15000, interval: 100, message: `${item} to leave "failed" after Retry` });
    const end = await waitFor(async () => {
      const j = (await ask(server, `/api/v1/jobs/${retried.id}`)).body;
      return ['succeeded', 'failed', 'canceled'].includes(j.state) ? j : null;
    }, { timeout: 60000, interval: 200, message: `the retry's job ${retried.id} to finish` });
    console.log(`item states after Retry: ${JSON.stringify((await readRecorder(page)).items.filter((e) => e.id === id).map((e) => e.state))}; the retry's job ended ${end.state} (pipeline ${end.pipeline})`);
    assert.equal(end.pipeline, firstJob.pipeline,
      `Retry repeats the failed job: its new job runs pipeline "${firstJob.pipeline}" as the failed one did (it runs "${end.pipeline}")`);
    assert.equal(end.state, 'failed', `the retried job fails again (${end.state})`);
    await waitFor(async () => (await itemState(page, id)) === 'failed',
      { timeout: 15000, interval: 200, message: `${item} back to data-state="failed"` });
    const again = await page.evaluate((sel) => document.querySelector(sel + ' .job-error')?.textContent.trim() ?? null, item);
    assert.ok(again && again.includes(end.error.message.trim()), `.job-error shows the retried job's error (${JSON.stringify(again)})`);

    // Delete, accepting confirm(): the item goes without a reload, the video and its folder too.
    assert.ok(fs.existsSync(path.join(dataDir, 'videos', id)), `DATA/videos/${id} exists before Delete`);
    await page.click(`${item} button.delete`);
    await page.waitForSelector(item, { state: 'detached', timeout: 15000 });
    console.log(`dialogs: ${JSON.stringify(dialogs)}`);
    assert.equal(dialogs.length, 1, 'Delete asked once');
    assert.equal(dialogs[0].type, 'confirm', 'Delete asks with confirm()');
    assert.ok(dialogs[0].message.includes(list[0].title), `the question names the video ("${dialogs[0].message}")`);
    assert.equal(await page.evaluate(() => window.__sluiceE2EMarker), 'same page', 'the page was not reloaded');
    const gone = await ask(server, `/api/v1/videos/${id}`);
    assert.equal(gone.status, 404, `GET /api/v1/videos/${id} after Delete: ${gone.status} ${JSON.stringify(gone.body)}`);
    assert.equal(fs.existsSync(path.join(dataDir, 'videos', id)), false, `DATA/videos/${id} is gone`);
    const after = await pageState(page);
    assert.equal(after.videos.length, 0, 'the library is empty');
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await stillAnswers(server);
    await dumpDiagnostics('jobs-failed', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});

test('an upload canceled half-way leaves nothing behind', { timeout: 90000 }, async () => {
  const work = tempDir('upload-cancel');
  const dataDir = path.join(work, 'data');
  const config = writeConfig(work, '[jobs]\nextras=\nconcurrent=1\n');
  const server = new Server({ dataDir, config });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    // 4 MB of random bytes named .mp4: at 256 KiB/s the upload would take 16 s; it never ends.
    const big = path.join(work, 'big.mp4');
    fs.writeFileSync(big, crypto.randomBytes(4 * 1024 * 1024));
    await server.start();
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    await openLibrary(page, server);

    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024 });

    await page.setInputFiles('#file-input', big);
    const mid = await waitFor(async () => {
      const s = await pageState(page);
      return s.uploadProgress > 0 && s.uploadProgress < 100 ? s : null;
    }, { timeout: 20000, interval: 50, message: '#upload-progress between 0 and 100' });
    // The server has begun to receive it: the page uploads with tus, into DATA/resumable/.
    const uploads = path.join(dataDir, 'resumable');
    const during = await waitFor(() => {
      const names = fs.existsSync(uploads) ? fs.readdirSync(uploads) : [];
      return names.length > 0 ? names : null;
    }, { timeout: 5000, interval: 50, message: 'the upload\'s file in DATA/resumable/' });
    console.log(`while uploading: progress ${mid.uploadProgress}, status ${JSON.stringify(mid.uploadStatus)}, DATA/resumable ${JSON.stringify(during)}`);
    const cancelVisible = await page.evaluate(() => {
      const b = document.querySelector('#upload-cancel');
      const r = b.getBoundingClientRect();
      return !b.hidden && !b.disabled && r.width > 0 && r.height > 0;
    });
    assert.ok(cancelVisible, '#upload-cancel is shown while the upload runs');
    assert.ok((await pageState(page)).uploadProgress < 100, 'the upload is still under way when Cancel is clicked');
    await page.click('#upload-cancel');

    const canceled = await waitFor(async () => {
      const s = await pageState(page);
      return /canceled/i.test(s.uploadStatus || '') ? s : null;
    }, { timeout: 10000, message: '#upload-status saying Canceled' });
    console.log(`after cancel: ${JSON.stringify({ status: canceled.uploadStatus, error: canceled.uploadError, progress: canceled.uploadProgress })}`);
    assert.ok(!canceled.uploadError, `no #upload-error for a cancel (got ${JSON.stringify(canceled.uploadError)})`);
    await screenshot(page, 'upload-canceled.png');
    const left = await waitFor(() => {
      const names = fs.existsSync(uploads) ? fs.readdirSync(uploads) : [];
      return names.length === 0 ? names : null;
    }, { timeout: 5000, interval: 100, message: 'DATA/resumable/ to be empty after the cancel' }).catch((e) => {
      throw new Error(`${e.message}; DATA/resumable holds ${JSON.stringify(fs.readdirSync(uploads))}`);
    });
    assert.deepEqual(left, []);
    const list = await ask(server, '/api/v1/videos');
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.videos, [], 'no video was kept');
    assert.equal((await pageState(page)).videos.length, 0, 'the library stays empty');
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await stillAnswers(server);
    await dumpDiagnostics('upload-cancel', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});

test('plays the EVENT playlist while the job runs, and goes on once it is done', { timeout: 240000 }, async () => {
  const work = tempDir('live-play');
  // 40 s of 640x360 (about 9 MB): with the slowest preset the job runs for about 25 s here (1.5x
  // real time on two shared cores), long enough to be playing while it runs.
  const CLIP_SECONDS = 40;
  const config = writeConfig(work, '[uploads]\nauto-transcode=false\n[jobs]\nextras=\nconcurrent=1\n');
  const server = new Server({ dataDir: path.join(work, 'data'), config });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    const clip = makeClip(path.join(work, 'clip.mp4'), { width: 640, height: 360, seconds: CLIP_SECONDS });
    await server.start();
    const up = await server.upload(clip, { title: 'Live clip' }, { type: 'video/mp4' });
    assert.equal(up.status, 201, `API upload: ${JSON.stringify(up.body)}`);
    const id = up.body.video.id;
    assert.ok(!up.body.job, `auto-transcode=false: no job with the upload (${JSON.stringify(up.body.job)})`);
    // The browser is up before the job starts, so that the page opens as soon as the job runs.
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);

    // A slow job: the slowest preset, 1 s segments (so that the EVENT playlist grows often).
    const created = await ask(server, `/api/v1/videos/${id}/jobs`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ params: { preset: 'veryslow', segment_seconds: 1 }, ladder: '240p,360p' }),
    });
    assert.equal(created.status, 202, `POST /api/v1/videos/${id}/jobs: ${JSON.stringify(created.body)}`);
    const jobId = created.body.id;
    const jobStarted = Date.now();
    const since = () => `${((Date.now() - jobStarted) / 1000).toFixed(1)} s`;
    const jobOf = async () => (await ask(server, `/api/v1/jobs/${jobId}`)).body;
    await waitFor(async () => (await jobOf()).state === 'running', { timeout: 30000, interval: 50, message: `job ${jobId} running` });

    const response = await page.goto(`${server.url}/#/videos/${id}`);
    assert.equal(response.status(), 200);
    assert.equal((await jobOf()).state, 'running', 'the player page is opened while the job runs');
    await page.waitForSelector('video#player', { state: 'visible', timeout: 15000 });

    // Playing: currentTime advances by at least 1 s and frames are decoded. The job is read after the
    // player, so that "running" then means it was running when the player had played. Meanwhile the
    // video JSON is watched too: when did the API first list the live playlist?
    let listedLive = null;
    let s0 = null;
    let playing = null;
    let jobThen = null;
    let lastWhileRunning = null; // the page as it was at the last look while the job ran
    let listedLiveAt = 0;
    let waitingShot = false;
    const deadline = Date.now() + 120000;
    for (;;) {
      const s = await playerState(page);
      const j = await jobOf();
      if (listedLive === null) {
        const v = (await ask(server, `/api/v1/videos/${id}`)).body;
        if (v.playback && v.playback.hls && v.playback.live) { listedLive = since(); listedLiveAt = Date.now(); }
      }
      if (s && s.t > 0 && s0 === null) s0 = s;
      if (s0 && s.t >= s0.t + 1 && s.frames > 0) { playing = s; jobThen = j; break; }
      if (j.state !== 'running' || Date.now() > deadline) {
        const w = lastWhileRunning || s;
        assert.fail(`the job was ${j.state} after ${since()} and the player had not played 1 s yet (currentTime ${s0 ? `${s0.t} -> ${s.t}` : s.t}); ` +
          `the API listed the live playlist (playback.hls, live) from ${listedLive ?? 'never'} of the job on; ` +
          `the page at the last look while the job ran: currentTime ${w.t}, #player-waiting ${JSON.stringify(w.waiting)}, ` +
          `#live-note ${JSON.stringify(w.liveNote)}, hls.js attached: ${w.attached}` +
          (listedLive ? '' : ' (make the clip longer if this machine is too fast)'));
      }
      if (j.state === 'running') {
        lastWhileRunning = { ...s, attached: await page.evaluate(() => !!window.sluicePlayer) };
        // Not playing 5 s after the API listed the live playlist: keep a picture of what the page shows.
        if (s.t === 0 && listedLiveAt && Date.now() - listedLiveAt > 5000 && !waitingShot) {
          waitingShot = true;
          await screenshot(page, 'player-live-not-playing.png');
        }
      }
      await sleep(100);
    }
    console.log(`playing after ${since()} of the job (the API listed the live playlist from ${listedLive}): ${JSON.stringify(playing)}; job ${jobThen.state} ${JSON.stringify(jobThen.progress)}`);
    await screenshot(page, 'player-live.png');
    assert.equal(playing.error, null, 'no media error');
    assert.ok(playing.src.startsWith('blob:'), `hls.js plays through MSE (currentSrc ${playing.src})`);
    assert.equal(jobThen.state, 'running', `the job is still running while the video plays (${jobThen.state}); make the clip longer if this machine is too fast`);
    assert.ok(playing.liveNote && playing.liveNote.visible, `#live-note is visible while the job runs (${JSON.stringify(playing.liveNote)})`);
    const hlsState = await page.evaluate(() => {
      const h = window.sluicePlayer;
      const level = h && h.levels[h.currentLevel >= 0 ? h.currentLevel : 0];
      return h ? { url: h.url, live: level?.details?.live ?? null, type: level?.details?.type ?? null } : null;
    });
    console.log(`hls.js while the job runs: ${JSON.stringify(hlsState)}`);
    assert.ok(hlsState && hlsState.url.endsWith(`/videos/${id}/hls/master.m3u8`), 'hls.js plays the video\'s master playlist');
    assert.equal(hlsState.live, true, 'hls.js sees a live (EVENT, no ENDLIST) playlist');

    // The job finishes; the same player goes on.
    const done = await waitFor(async () => {
      const j = await jobOf();
      return ['succeeded', 'failed', 'canceled'].includes(j.state) ? j : null;
    }, { timeout: 180000, interval: 500, message: `job ${jobId} to finish` });
    console.log(`job ${done.state} after ${since()}`);
    assert.equal(done.state, 'succeeded', `the job succeeded: ${JSON.stringify(done.error)}`);
    const a = await playerState(page);
    await sleep(2500);
    const b = await playerState(page);
    console.log(`after the job: ${JSON.stringify(a)} -> ${JSON.stringify(b)}`);
    assert.equal(b.error, null, 'no media error after the job');
    assert.ok(b.t - a.t >= 1 || (b.ended && b.t >= CLIP_SECONDS - 1.5), `playback goes on after the job (${a.t} -> ${b.t}, ended ${b.ended})`);
    assert.ok(b.t > playing.t, 'further than when the job was running');
    await waitFor(async () => (await playerState(page)).liveNote?.hidden === true,
      { timeout: 10000, message: '#live-note hidden once the job has succeeded' });
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await stillAnswers(server);
    await dumpDiagnostics('live-play', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
