// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test 4: a server whose uploads make a CMAF package plus the extras (poster, storyboard,
// preview). Upload through the page; the library shows the poster once its job is done; the player
// plays the package with hls.js, then with dash.js over the same .m4s files (the MPD and the HLS
// playlists name the same segments), each with its quality menu; the seek bar seeks by click and
// keyboard and shows the storyboard's tile for the time under the pointer.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, dumpDiagnostics, launchBrowser, makeClip, pageState, parseMaster, removeDir,
  requireToolsOrSkip, screenshot, sleep, tempDir, waitFor, watchPage, writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();
// 16 s: the storyboard's default interval (5 s) gives 4 tiles; with 4 s segments, 4 per rendition.
const CLIP_SECONDS = 16;

// A storyboard's WebVTT, read here independently of the page: [{start, end, sheet, x, y, w, h}].
function parseVtt(text, vttUrl) {
  const seconds = (ts) => {
    const parts = ts.split(':').map(Number);
    return parts.reduce((acc, p) => acc * 60 + p, 0);
  };
  const cues = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\S+) --> (\S+)/.exec(lines[i]);
    if (!m) continue;
    const payload = (lines[i + 1] || '').trim();
    const [file, fragment = ''] = payload.split('#');
    const xywh = /xywh=(\d+),(\d+),(\d+),(\d+)/.exec(fragment);
    assert.ok(xywh, `cue ${lines[i]} has #xywh= (got "${payload}")`);
    const [x, y, w, h] = xywh.slice(1).map(Number);
    cues.push({ start: seconds(m[1]), end: seconds(m[2]), sheet: new URL(file, vttUrl).href, x, y, w, h });
  }
  return cues;
}

// The video representations of an MPD: [{id, width, height, bandwidth}].
function mpdVideoRepresentations(text) {
  const reps = [];
  for (const set of text.split('<AdaptationSet').slice(1)) {
    if (!/contentType="video"|mimeType="video\//.test(set.slice(0, set.indexOf('>')))) continue;
    for (const m of set.matchAll(/<Representation\b([^>]*)>/g)) {
      const attr = (name) => (new RegExp(`\\b${name}="([^"]*)"`).exec(m[1]) || [])[1];
      reps.push({ id: attr('id'), width: Number(attr('width')), height: Number(attr('height')), bandwidth: Number(attr('bandwidth')) });
    }
  }
  return reps;
}

const mmss = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

test('cmaf upload: poster in the library, hls.js then dash.js over the same segments, storyboard previews', { timeout: 280000 }, async () => {
  const work = tempDir('cmaf-play');
  // The default extras (poster, storyboard, preview) follow the cmaf job, one job at a time.
  const config = writeConfig(work, '[jobs]\npipeline=cmaf\nconcurrent=1\n');
  const server = new Server({ dataDir: path.join(work, 'data'), config });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    const clip = makeClip(path.join(work, 'clip.mp4'), { width: 640, height: 360, seconds: CLIP_SECONDS });
    await server.start();
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    const requests = []; // every media request of the page, in order: {path, query}
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/videos/')) requests.push({ path: u.pathname, query: u.search });
    });
    const responses = new Map(); // media path -> status of its last response
    page.on('response', (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/videos/')) responses.set(u.pathname, r.status());
    });

    await page.goto(server.url + '/');
    await waitFor(async () => (await pageState(page)).connection?.state === 'open',
      { timeout: 15000, message: '#connection-status data-state="open"' });
    await waitFor(() => page.evaluate(() => document.querySelector('#pipeline-select')?.value === 'cmaf'),
      { timeout: 10000, message: '#pipeline-select showing the configured default "cmaf"' });
    // Only pipelines that make a video playable are offered for an upload; the extras follow by themselves.
    const offered = await page.evaluate(() => [...document.querySelectorAll('#pipeline-select option')].map((o) => o.value));
    assert.deepEqual([...offered].sort(), ['cmaf', 'hls'], `#pipeline-select offers ${JSON.stringify(offered)}`);

    // Upload; the library item, then what its thumbnail shows, sampled every 50 ms.
    await page.setInputFiles('#file-input', clip);
    await waitFor(async () => /uploaded/i.test((await pageState(page)).uploadStatus || ''),
      { timeout: 30000, message: '#upload-status saying "Uploaded: …"' });
    const list = await server.json('/api/v1/videos');
    assert.equal(list.body.videos.length, 1, 'the server holds one video');
    const id = list.body.videos[0].id;
    const item = `#library li.video[data-video-id="${id}"]`;
    await page.waitForSelector(item, { timeout: 15000 });
    await page.evaluate((sel) => {
      const seen = [];
      window.__thumbs = seen;
      window.__thumbTimer = setInterval(() => {
        const li = document.querySelector(sel);
        const img = li && li.querySelector('img.poster');
        const what = !li ? 'none' : img ? `img ${img.complete && img.naturalWidth > 0 ? 'loaded' : 'loading'}` : 'placeholder';
        if (seen[seen.length - 1] !== what) seen.push(what);
      }, 50);
    }, item);

    // The video is ready (the cmaf job), and all four jobs of the profile succeed.
    const video = await waitFor(async () => {
      const r = await server.json(`/api/v1/videos/${id}`);
      const jobs = r.body.jobs || [];
      if (jobs.some((j) => j.state === 'failed' || j.state === 'canceled')) {
        throw new Error(`a job did not succeed: ${JSON.stringify(jobs.map((j) => [j.pipeline, j.state, j.error]))}`);
      }
      return jobs.length === 4 && jobs.every((j) => j.state === 'succeeded') ? r.body : null;
    }, { timeout: 180000, interval: 500, message: 'the cmaf, poster, storyboard and preview jobs to succeed' });
    console.log(`jobs: ${JSON.stringify(video.jobs.map((j) => `${j.pipeline} ${j.state}`))}`);
    console.log(`playback: ${JSON.stringify(video.playback)}; poster ${video.poster}; storyboard ${video.storyboard}; preview ${video.preview}`);
    assert.deepEqual(video.jobs.map((j) => j.pipeline).sort(), ['cmaf', 'poster', 'preview', 'storyboard']);
    assert.equal(video.state, 'ready');
    assert.equal(video.playback.hls, `/videos/${id}/cmaf/master.m3u8`);
    assert.equal(video.playback.dash, `/videos/${id}/cmaf/manifest.mpd`);
    assert.ok(video.poster && video.storyboard, 'the video has a poster and a storyboard');
    await waitFor(async () => (await pageState(page)).videos.find((v) => v.id === id)?.state === 'ready',
      { timeout: 15000, message: `${item} data-state="ready"` });

    // The library's poster: the poster job's JPEG, loaded, without reloading the page.
    const posterUrl = new URL(video.poster, server.url).href;
    const poster = await waitFor(() => page.evaluate((sel) => {
      const img = document.querySelector(`${sel} img.poster`);
      return img && img.complete && img.naturalWidth > 0 ? { src: img.src, w: img.naturalWidth, h: img.naturalHeight } : null;
    }, item), { timeout: 15000, message: `${item} img.poster loaded` });
    const thumbs = await page.evaluate(() => { clearInterval(window.__thumbTimer); return window.__thumbs; });
    console.log(`library poster: ${JSON.stringify(poster)}; thumbnail states seen: ${JSON.stringify(thumbs)}`);
    assert.equal(poster.src, posterUrl, 'the <img> shows the video\'s poster URL');
    assert.ok(poster.w > 0 && poster.h > 0, 'the poster decoded (naturalWidth > 0)');
    assert.equal(thumbs[0], 'placeholder', 'the item showed a placeholder before the poster job finished');
    const state = await pageState(page);
    assert.equal(state.videos.find((v) => v.id === id).stats, null, 'no job progress left on the item');
    await screenshot(page, 'cmaf-library.png');

    // ---------------------------------------------------------------- HLS with hls.js
    await page.click(`${item} a.play`);
    await waitFor(() => page.evaluate(() => !!(window.sluicePlayer && window.sluicePlayer.levels)),
      { timeout: 15000, message: 'window.sluicePlayer (the Hls instance)' });
    const media = () => page.evaluate(() => {
      const v = document.querySelector('video#player');
      const q = v.getVideoPlaybackQuality();
      const f = document.querySelector('#current-format');
      return { t: v.currentTime, paused: v.paused, ended: v.ended, duration: v.duration, frames: q.totalVideoFrames,
        src: v.currentSrc, error: v.error ? `${v.error.code} ${v.error.message}` : null,
        format: f.dataset.format, formatText: f.textContent.trim(), playerError: document.querySelector('#player-error').hidden ? null : document.querySelector('#player-error').textContent };
    });
    const formatMenu = await page.evaluate(() => ({
      hidden: document.querySelector('#format-field').hidden,
      value: document.querySelector('#format-select').value,
      options: [...document.querySelectorAll('#format-select option')].map((o) => ({ value: o.value, text: o.textContent.trim(), disabled: o.disabled })),
      label: document.querySelector('label[for="format-select"]')?.textContent.trim(),
    }));
    console.log(`format menu: ${JSON.stringify(formatMenu)}`);
    assert.equal(formatMenu.hidden, false, 'a video with a DASH manifest offers the format choice');
    assert.equal(formatMenu.label, 'Format');
    assert.equal(formatMenu.value, 'hls', 'HLS is the default');
    assert.deepEqual(formatMenu.options.map((o) => [o.value, o.disabled]), [['hls', false], ['dash', false]]);

    const playsFor = async (label, seconds = 1.5) => {
      const s0 = await waitFor(async () => { const s = await media(); return s.t > 0 && !s.paused ? s : null; },
        { timeout: 20000, message: `${label}: video#player playing` });
      const s1 = await waitFor(async () => { const s = await media(); return s.t - s0.t >= seconds || s.ended ? s : null; },
        { timeout: 15000, interval: 200, message: `${label}: currentTime to advance ${seconds} s from ${s0.t}` });
      console.log(`${label}: ${JSON.stringify(s0)} -> ${JSON.stringify(s1)}`);
      assert.equal(s1.error, null, `${label}: no media error`);
      assert.ok(s1.src.startsWith('blob:'), `${label}: plays through MSE (currentSrc ${s1.src})`);
      return [s0, s1];
    };
    const [, h1] = await playsFor('hls.js');
    assert.ok(h1.frames > 0, `hls.js: video frames decoded (${h1.frames})`);
    assert.equal(h1.format, 'hls');
    assert.match(h1.formatText, /^HLS · hls\.js \d/, '#current-format names HLS and hls.js');

    // The quality menu with hls.js: Auto + the master playlist's variants; a level can be chosen.
    const master = parseMaster(await (await fetch(`${server.url}${video.playback.hls}`)).text());
    const checkQualityMenu = async (label, expected, readLevel) => {
      const options = await page.evaluate(() => [...document.querySelectorAll('#quality-select option')].map((o) => ({ value: o.value, text: o.textContent.trim() })));
      console.log(`${label} quality options: ${JSON.stringify(options)}`);
      assert.deepEqual(options[0], { value: '-1', text: 'Auto' }, `${label}: the first option is Auto`);
      assert.equal(options.length, expected.length + 1, `${label}: one option per level, plus Auto`);
      const sizes = (a) => a.map((l) => `${l.width}×${l.height}`).sort();
      assert.deepEqual(sizes(options.slice(1).map((o) => {
        const [w, h] = /(\d+)×(\d+)/.exec(o.text).slice(1).map(Number);
        return { width: w, height: h };
      })), sizes(expected), `${label}: the options are the package's picture sizes`);
      // Not at the very end, so that the chosen level has segments left to load.
      await page.evaluate(() => { const v = document.querySelector('video#player'); if (v.duration - v.currentTime < 6) v.currentTime = 1; v.play().catch(() => {}); });
      // The last option (the largest level): its value is the level's index.
      const target = Number(options[options.length - 1].value);
      const want = /(\d+×\d+)/.exec(options[options.length - 1].text)[1];
      await page.selectOption('#quality-select', String(target));
      const shown = await waitFor(() => page.evaluate((t) => {
        const cl = document.querySelector('#current-level');
        return cl.dataset.level === String(t) ? cl.textContent.trim() : null;
      }, target), { timeout: 15000, interval: 200, message: `${label}: #current-level data-level to become ${target}` });
      assert.ok(shown.includes(want), `${label}: #current-level names ${want} (got "${shown}")`);
      assert.equal(await readLevel(), target, `${label}: the player plays level ${target}`);
      await page.selectOption('#quality-select', '-1');
      console.log(`${label}: chose level ${target} (${shown}), then Auto`);
    };
    await checkQualityMenu('hls.js', master, () => page.evaluate(() => window.sluicePlayer.currentLevel));
    await waitFor(() => page.evaluate(() => window.sluicePlayer.autoLevelEnabled), { timeout: 5000, message: 'hls.js back on automatic levels' });

    const segmentsOf = (reqs) => new Set(reqs.filter((r) => r.path.startsWith(`/videos/${id}/cmaf/`) && r.path.endsWith('.m4s')).map((r) => r.path));
    const hlsRequests = requests.slice();
    const hlsSegments = segmentsOf(hlsRequests);
    console.log(`hls.js requested ${hlsRequests.length} media files, segments: ${JSON.stringify([...hlsSegments].sort())}`);
    assert.ok(hlsRequests.some((r) => r.path === video.playback.hls), 'hls.js requested the master playlist');
    assert.ok(hlsSegments.size > 0, 'hls.js requested .m4s segments of the cmaf package');

    // ---------------------------------------------------------------- DASH with dash.js
    // (The switch's new load interrupts this play(): its rejection is caught.)
    await page.evaluate(() => { const v = document.querySelector('video#player'); v.currentTime = 1; v.play().catch(() => {}); });
    const framesBefore = (await media()).frames;
    const switchedAt = requests.length;
    await page.selectOption('#format-select', 'dash');
    await waitFor(() => page.evaluate(() => !!(window.sluicePlayer && typeof window.sluicePlayer.getVersion === 'function')),
      { timeout: 20000, message: 'window.sluicePlayer to be the dash.js MediaPlayer' });
    const [, d1] = await playsFor('dash.js');
    assert.equal(d1.format, 'dash');
    assert.match(d1.formatText, /^DASH · dash\.js \d/, '#current-format names DASH and dash.js');
    assert.equal(d1.playerError, null, 'no #player-error');
    // Frames decoded since the switch (the counters may or may not restart with the new source).
    const framesAfter = d1.frames < framesBefore ? d1.frames : d1.frames - framesBefore;
    assert.ok(framesAfter > 0, `dash.js: video frames decoded (${framesBefore} before the switch, ${d1.frames} now)`);

    const mpdText = await (await fetch(`${server.url}${video.playback.dash}`)).text();
    await checkQualityMenu('dash.js', mpdVideoRepresentations(mpdText), () => page.evaluate(() => {
      const p = window.sluicePlayer;
      const reps = p.getRepresentationsByType('video').slice().sort((a, b) => a.bandwidth - b.bandwidth);
      const now = p.getCurrentRepresentationForType('video');
      return reps.findIndex((r) => r.id === now.id);
    }));
    await waitFor(() => page.evaluate(() => window.sluicePlayer.getSettings().streaming.abr.autoSwitchBitrate.video === true),
      { timeout: 5000, message: 'dash.js back on automatic representations' });

    const dashRequests = requests.slice(switchedAt);
    const dashSegments = segmentsOf(dashRequests);
    const shared = [...dashSegments].filter((p) => hlsSegments.has(p));
    console.log(`dash.js requested ${dashRequests.length} media files, segments: ${JSON.stringify([...dashSegments].sort())}; shared with hls.js: ${shared.length}`);
    assert.ok(dashRequests.some((r) => r.path === video.playback.dash), 'dash.js requested the MPD');
    assert.ok(dashSegments.size > 0, 'dash.js requested .m4s segments of the cmaf package');
    assert.ok(shared.length > 0, 'DASH and HLS played some of the very same segment files');
    assert.ok(!dashRequests.some((r) => r.path.endsWith('.m3u8')), 'hls.js loaded nothing more once DASH was chosen (it was destroyed)');

    // ---------------------------------------------------------------- the seek bar
    const bar = await page.evaluate(() => {
      const b = document.querySelector('#seek-bar');
      return { role: b.getAttribute('role'), label: b.getAttribute('aria-label'), tabindex: b.tabIndex, max: Number(b.getAttribute('aria-valuemax')),
        valuetext: b.getAttribute('aria-valuetext'), time: document.querySelector('#seek-time').textContent.trim(), hidden: document.querySelector('#seek').hidden };
    });
    console.log(`seek bar: ${JSON.stringify(bar)}`);
    assert.equal(bar.hidden, false, 'the seek bar is shown');
    assert.equal(bar.role, 'slider');
    assert.ok(bar.label, 'the slider has a label');
    assert.equal(bar.tabindex, 0, 'the slider takes the keyboard focus');
    assert.equal(bar.max, CLIP_SECONDS, 'aria-valuemax is the duration');
    assert.match(bar.valuetext, /^\d+:\d\d of 0:16$/, 'aria-valuetext says "m:ss of 0:16"');
    assert.match(bar.time, /^\d+:\d\d \/ 0:16$/, '#seek-time shows "position / duration"');

    // A click at a quarter of the bar seeks there; the keyboard moves 5 s; Home goes to the start.
    await page.evaluate(() => document.querySelector('video#player').pause());
    const box = await page.locator('#seek-bar').boundingBox();
    const duration = await page.evaluate(() => document.querySelector('video#player').duration);
    await page.mouse.click(box.x + box.width * 0.25, box.y + box.height / 2);
    const clicked = await waitFor(async () => { const s = await media(); return Math.abs(s.t - duration * 0.25) < 0.3 ? s : null; },
      { timeout: 5000, message: `a click at 25% of the seek bar to seek to ${duration * 0.25}` });
    await page.keyboard.press('ArrowRight');
    const keyed = await waitFor(async () => { const s = await media(); return Math.abs(s.t - (clicked.t + 5)) < 0.3 ? s : null; },
      { timeout: 5000, message: 'ArrowRight on the slider to seek 5 s on' });
    const now = await page.evaluate(() => Number(document.querySelector('#seek-bar').getAttribute('aria-valuenow')));
    assert.equal(now, Math.round(keyed.t), 'aria-valuenow follows the position');
    await page.keyboard.press('Home');
    await waitFor(async () => (await media()).t < 0.3, { timeout: 5000, message: 'Home on the slider to seek to the start' });
    console.log(`click -> ${clicked.t.toFixed(2)} s, ArrowRight -> ${keyed.t.toFixed(2)} s, Home -> 0`);

    // Hovering shows the storyboard's tile for the time under the pointer.
    const vttUrl = new URL(video.storyboard, server.url).href;
    const cues = parseVtt(await (await fetch(vttUrl)).text(), vttUrl);
    console.log(`storyboard cues: ${JSON.stringify(cues)}`);
    assert.ok(cues.length >= 3, `at least 3 tiles for ${CLIP_SECONDS} s (got ${cues.length})`);
    await waitFor(() => page.evaluate(() => document.querySelector('#seek').dataset.storyboard === 'ready'),
      { timeout: 10000, message: '#seek data-storyboard="ready"' });
    const hoverAt = async (t) => {
      await page.mouse.move(box.x + (t / duration) * box.width, box.y + box.height / 2, { steps: 4 });
      return waitFor(() => page.evaluate(() => {
        const preview = document.querySelector('#seek-preview');
        const thumb = document.querySelector('#seek-thumb');
        if (preview.hidden) return null;
        const cs = getComputedStyle(thumb);
        const r = preview.getBoundingClientRect();
        return { thumbHidden: thumb.hidden, image: cs.backgroundImage, position: cs.backgroundPosition, width: cs.width, height: cs.height,
          time: document.querySelector('#seek-preview-time').textContent.trim(), visible: r.width > 0 && r.height > 0 };
      }), { timeout: 5000, message: `the seek preview at ${t} s` });
    };
    for (const cue of [cues[1], cues[0], cues[2]]) {
      const t = (cue.start + cue.end) / 2;
      const shown = await waitFor(async () => {
        const s = await hoverAt(t);
        return s.time === mmss(t) ? s : null;
      }, { timeout: 5000, message: `the preview's time to read ${mmss(t)}` });
      console.log(`hover at ${t} s: ${JSON.stringify(shown)}`);
      assert.ok(shown.visible, 'the preview is visible');
      assert.equal(shown.thumbHidden, false, 'the preview shows a storyboard tile');
      assert.equal(shown.image, `url("${cue.sheet}")`, `the tile comes from the cue's sprite sheet (${cue.sheet})`);
      assert.equal(shown.position, `${-cue.x}px ${-cue.y}px`, `the tile is the cue's #xywh=${cue.x},${cue.y},${cue.w},${cue.h}`);
      assert.equal(shown.width, `${cue.w}px`);
      assert.equal(shown.height, `${cue.h}px`);
    }
    // The sheet came from the server; the screenshot shows the tile of the second cue.
    const sheetPath = new URL(cues[1].sheet).pathname;
    await waitFor(() => responses.get(sheetPath) === 200, { timeout: 10000, message: `the sprite sheet ${sheetPath} to load` });
    await hoverAt((cues[1].start + cues[1].end) / 2);
    await sleep(300);
    await screenshot(page, 'cmaf-player-storyboard.png');

    // Moving away hides the preview.
    await page.mouse.move(box.x + box.width / 2, box.y - 200);
    await waitFor(() => page.evaluate(() => document.querySelector('#seek-preview').hidden), { timeout: 5000, message: 'the preview to hide' });

    // Back to HLS: dash.js is destroyed (no more requests by it), hls.js plays again from there.
    const backAt = requests.length;
    await page.selectOption('#format-select', 'hls');
    await waitFor(() => page.evaluate(() => !!(window.sluicePlayer && window.sluicePlayer.levels)),
      { timeout: 15000, message: 'window.sluicePlayer to be an Hls instance again' });
    assert.equal((await media()).paused, true, 'a video paused before the switch stays paused');
    await page.evaluate(() => document.querySelector('video#player').play().catch(() => {}));
    const [, h2] = await playsFor('hls.js again', 1);
    assert.equal(h2.format, 'hls');
    const after = requests.slice(backAt);
    assert.ok(after.some((r) => r.path === video.playback.hls), 'hls.js loaded the master playlist again');
    assert.ok(!after.some((r) => r.path.endsWith('.mpd')), 'dash.js loaded nothing more once HLS was chosen (it was destroyed)');

    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await dumpDiagnostics('cmaf-play', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
