// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test 1: upload a clip through the page's file input, watch its job's live progress (SSE) in
// the library until it is ready, open the player, and check that hls.js plays it and that the quality
// menu lists and switches the master playlist's variants.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, auditAccessibility, dumpDiagnostics, launchBrowser, makeClip, pageState, parseMaster, readRecorder,
  removeDir, requireToolsOrSkip, screenshot, sleep, startRecorder, tempDir, waitFor, watchPage,
  writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();
const CLIP_SECONDS = 30;

test('upload through the page, live progress, play with hls.js and switch quality', { timeout: 280000 }, async () => {
  const work = tempDir('upload-play');
  // One job at a time; the upload's job uses the default pipeline, encoder and ladder.
  const config = writeConfig(work, '[jobs]\nextras=\nconcurrent=1\n');
  const server = new Server({ dataDir: path.join(work, 'data'), config });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    // 30 s of 640x360 (7 MB): a ladder of 240p + 360p, and a job of a few seconds even on a fast
    // machine (it transcodes at about 15x real time), so that several progress events arrive.
    const clip = makeClip(path.join(work, 'clip.mp4'), { width: 640, height: 360, seconds: CLIP_SECONDS });
    await server.start();
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);

    const response = await page.goto(server.url + '/');
    assert.equal(response.status(), 200, 'GET / answers the page');
    assert.match(response.headers()['content-security-policy'] || '', /default-src 'self'/, 'the page is sent with its CSP');

    // The EventSource is open before the upload, so that every job and progress event reaches the page.
    await waitFor(async () => (await pageState(page)).connection?.state === 'open',
      { timeout: 15000, message: '#connection-status data-state="open"' });
    const conn = await pageState(page);
    assert.match(conn.connection.text, /connected/i, '#connection-status says connected');
    // The selects are filled from the API: the default pipeline is selected.
    await waitFor(() => page.evaluate(() => document.querySelector('#pipeline-select')?.value === 'hls'),
      { timeout: 10000, message: '#pipeline-select filled with the default pipeline "hls"' });
    await waitFor(() => page.evaluate(() => [...(document.querySelector('#encoder-select')?.options || [])].some((o) => o.value === 'auto')),
      { timeout: 10000, message: '#encoder-select offering "auto"' });
    assert.equal((await pageState(page)).videos.length, 0, 'the library starts empty');

    await startRecorder(page);
    // Choosing a file starts the upload at once.
    await page.setInputFiles('#file-input', clip);
    await waitFor(async () => (await pageState(page)).uploadProgress === 100,
      { timeout: 30000, message: '#upload-progress value 100' });
    const uploaded = await waitFor(async () => {
      const s = await pageState(page);
      return /uploaded/i.test(s.uploadStatus || '') ? s : null;
    }, { timeout: 30000, message: '#upload-status saying "Uploaded: …"' });
    assert.ok(!uploaded.uploadError, `no #upload-error (got ${JSON.stringify(uploaded.uploadError)})`);

    // The server has the video; the page lists it (from the `video` created event).
    const list = await server.json('/api/v1/videos');
    assert.equal(list.status, 200);
    assert.equal(list.body.videos.length, 1, 'the server holds one video');
    const video = list.body.videos[0];
    const id = video.id;
    assert.match(uploaded.uploadStatus, new RegExp(`Uploaded:\\s*${video.title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
      '#upload-status names the uploaded title');
    const item = `#library li.video[data-video-id="${id}"]`;
    await page.waitForSelector(item, { timeout: 15000 });

    // The job runs (progress bar moving, from `progress` events), then the item turns ready.
    await waitFor(async () => (await pageState(page)).videos.find((v) => v.id === id)?.state === 'ready',
      { timeout: 180000, interval: 250, message: `${item} data-state="ready"` });
    const rec = await readRecorder(page);
    const running = rec.items.filter((e) => e.id === id && e.progress !== null && e.progress > 0 && e.progress < 100);
    console.log(`progress values seen while the job ran: ${JSON.stringify([...new Set(running.map((e) => e.progress))])}`);
    console.log(`states seen: ${JSON.stringify([...new Set(rec.items.filter((e) => e.id === id).map((e) => e.state))])}`);
    const distinct = new Set(running.map((e) => e.progress));
    assert.ok(distinct.size >= 2, `a live progress bar (0 < value < 100, updated at least once) was shown while the job ran; saw ${JSON.stringify(rec.items)}`);
    assert.ok(running.some((e) => e.state === 'processing'), 'the bar moved while the item was "processing"');
    assert.ok(running.some((e) => /%/.test(e.stats || '')), `.job-stats showed a percentage (saw ${JSON.stringify(running.map((e) => e.stats))})`);

    const details = await page.evaluate((sel) => {
      const li = document.querySelector(sel);
      const t = (s) => li.querySelector(s)?.textContent.trim() ?? null;
      return { title: t('.title'), duration: t('.duration'), resolution: t('.resolution'), state: t('.state'),
        hasBar: !!li.querySelector('progress.job-progress'), play: li.querySelector('a.play')?.getAttribute('href') ?? null };
    }, item);
    console.log(`library item: ${JSON.stringify(details)}`);
    assert.equal(details.state, 'ready', '.state says ready');
    assert.equal(details.title, video.title, '.title');
    assert.equal(details.duration, `0:${CLIP_SECONDS}`, `.duration of a ${CLIP_SECONDS} s clip`);
    assert.match(details.resolution || '', /640\s*×\s*360/, '.resolution');
    assert.equal(details.hasBar, false, 'no progress bar once the job has finished');
    assert.equal(details.play, `#/videos/${id}`, 'a.play links to the player page');
    await screenshot(page, 'library.png');
    // The upload form and the library with its ready video.
    await auditAccessibility(page, 'library and upload');

    // The player page.
    await page.click(`${item} a.play`);
    await waitFor(() => page.evaluate(() => location.hash), { message: 'the hash route to change' });
    assert.equal(new URL(page.url()).hash, `#/videos/${id}`);
    await page.waitForSelector('video#player', { state: 'attached', timeout: 15000 });
    await waitFor(() => page.evaluate(() => !!window.sluicePlayer), { timeout: 15000, message: 'window.sluicePlayer (the Hls instance)' });

    const videoState = () => page.evaluate(() => {
      const v = document.querySelector('video#player');
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
      return { t: v.currentTime, paused: v.paused, ended: v.ended, readyState: v.readyState, duration: v.duration,
        error: v.error ? `${v.error.code} ${v.error.message}` : null, muted: v.muted,
        frames: q ? q.totalVideoFrames : null, dropped: q ? q.droppedVideoFrames : null, src: v.currentSrc };
    });
    // The page autoplays (muted); a person would press play otherwise: do that, and say so.
    let autoplayed = true;
    try {
      await waitFor(async () => (await videoState()).t > 0, { timeout: 10000, message: 'the video to start by itself' });
    } catch {
      autoplayed = false;
      console.log(`NOTE: the player did not start by itself: ${JSON.stringify(await videoState())}; pressing play`);
      await page.evaluate(() => document.querySelector('video#player').play());
    }
    const s0 = await waitFor(async () => { const s = await videoState(); return s.t > 0 ? s : null; },
      { timeout: 20000, message: 'video#player currentTime > 0' });
    await sleep(3000);
    const s1 = await videoState();
    console.log(`playback: ${JSON.stringify(s0)} -> ${JSON.stringify(s1)} (autoplay: ${autoplayed})`);
    assert.equal(s1.error, null, 'no media error');
    assert.ok(s1.t - s0.t > 1.5 || s1.ended, `currentTime advances (${s0.t} -> ${s1.t})`);
    assert.ok(s1.frames > 0, `getVideoPlaybackQuality().totalVideoFrames > 0 (got ${s1.frames})`);
    assert.ok(s1.src.startsWith('blob:'), `hls.js plays through MSE (currentSrc ${s1.src})`);

    // The quality menu: "Auto" + one option per variant of the master playlist.
    const masterRes = await fetch(`${server.url}/videos/${id}/hls/master.m3u8`);
    assert.equal(masterRes.status, 200);
    const variants = parseMaster(await masterRes.text());
    assert.ok(variants.length >= 2, `the 640x360 source gets at least two renditions (got ${variants.length})`);
    const menu = await page.evaluate(() => ({
      options: [...document.querySelectorAll('#quality-select option')].map((o) => ({ value: o.value, text: o.textContent.trim() })),
      levels: window.sluicePlayer.levels.map((l) => ({ width: l.width, height: l.height, bitrate: l.bitrate })),
    }));
    console.log(`master variants: ${JSON.stringify(variants.map((v) => `${v.width}x${v.height} ${v.bandwidth}`))}`);
    console.log(`quality options: ${JSON.stringify(menu.options)}`);
    assert.equal(menu.options.length, variants.length + 1, 'one option per variant, plus Auto');
    assert.deepEqual(menu.options[0], { value: '-1', text: 'Auto' }, 'the first option is Auto (-1)');
    assert.equal(menu.levels.length, variants.length, 'hls.js has one level per variant');
    menu.levels.forEach((l, i) => {
      const o = menu.options[i + 1];
      assert.equal(o.value, String(i), `option ${i + 1} has the level index as value`);
      assert.ok(o.text.includes(`${l.width}×${l.height}`), `option "${o.text}" names level ${i}'s size ${l.width}×${l.height}`);
    });
    const sizes = (arr) => arr.map((v) => `${v.width}x${v.height}`).sort();
    assert.deepEqual(sizes(menu.levels), sizes(variants), 'the options cover exactly the master playlist\'s resolutions');

    // Choosing a level switches to it (LEVEL_SWITCHED updates #current-level).
    await waitFor(() => page.evaluate(() => window.sluicePlayer.currentLevel >= 0), { timeout: 15000, message: 'a current level' });
    const before = await page.evaluate(() => window.sluicePlayer.currentLevel);
    const target = before === menu.levels.length - 1 ? 0 : menu.levels.length - 1;
    // Not at the very end of the clip, so that the new level has fragments left to load.
    await page.evaluate(() => {
      const v = document.querySelector('video#player');
      if (v.ended || v.duration - v.currentTime < 4) { v.currentTime = 0; v.play(); }
    });
    await page.selectOption('#quality-select', String(target));
    const switched = await waitFor(() => page.evaluate((want) => {
      const cl = document.querySelector('#current-level');
      const r = { level: window.sluicePlayer.currentLevel, dataLevel: cl?.dataset.level, text: cl?.textContent.trim() };
      return r.level === want && r.dataLevel === String(want) ? r : null;
    }, target), { timeout: 15000, interval: 200, message: `hls.currentLevel and #current-level data-level to become ${target}` });
    console.log(`switched from level ${before} to ${JSON.stringify(switched)}`);
    const tl = menu.levels[target];
    assert.ok(switched.text.includes(`${tl.width}×${tl.height}`), `#current-level names ${tl.width}×${tl.height} (got "${switched.text}")`);

    // Back to Auto.
    await page.selectOption('#quality-select', '-1');
    await waitFor(() => page.evaluate(() => window.sluicePlayer.autoLevelEnabled), { timeout: 5000, message: 'hls.autoLevelEnabled after choosing Auto' });

    const meta = await page.evaluate(() => ({
      playlistUrl: document.querySelector('#playlist-url')?.value ?? null,
      videoMeta: document.querySelector('#video-meta')?.textContent.trim() ?? null,
      bandwidth: document.querySelector('#bandwidth-estimate')?.textContent.trim() ?? null,
      back: document.querySelector('a#back-link')?.getAttribute('href') ?? null,
    }));
    console.log(`player page: ${JSON.stringify(meta)}`);
    assert.equal(meta.playlistUrl, `${server.url}/videos/${id}/hls/master.m3u8`, '#playlist-url is the absolute master URL');
    assert.ok(meta.videoMeta && meta.videoMeta.includes(video.title), '#video-meta names the title');
    assert.match(meta.bandwidth || '', /bit\/s/, '#bandwidth-estimate shows a rate');
    assert.equal(meta.back, '#/', 'a#back-link goes back to the library');

    await screenshot(page, 'player.png');
    await auditAccessibility(page, 'player');
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await dumpDiagnostics('upload-play', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
