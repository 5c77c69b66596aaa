// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test: the page's Streams view (#/streams).
//  1. A stream made with the view's form: its key and ingest URLs (with the ffmpeg and OBS hints) are shown once,
//     never after a reload; the list shows it idle and follows the `stream` events (a stream made and deleted
//     elsewhere comes and goes); its watch page says it is not live yet; Delete removes it.
//  2. Live playback, when the server has the live engine (it prints "RTSP on rtsp://..." at start; otherwise
//     this part is skipped, saying so): ffmpeg publishes to the RTSP ingest URL the view showed, the watch page
//     starts playing by itself when the stream goes live, currentTime advances for 15 s, the LIVE badge, the
//     latency behind the live edge and "Go live".

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, auditAccessibility, dumpDiagnostics, launchBrowser, removeDir, requireToolsOrSkip, screenshot, sleep, tempDir,
  waitFor, watchPage, writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();

// A server for streams; the harness puts its RTSP and SRT ports on free ones.
function streamServer(work, name) {
  const config = writeConfig(work, '[jobs]\nconcurrent=1\n');
  return new Server({ dataDir: path.join(work, 'data'), config, name });
}

// What the server printed at start about its live ports ("sluice: RTSP on rtsp://127.0.0.1:PORT/",
// "sluice: SRT on srt://127.0.0.1:PORT"): the ports, or null without the live engine.
async function livePorts(server) {
  const find = (re) => server.log.map((l) => re.exec(l)).find(Boolean);
  const rtsp = await waitFor(() => find(/RTSP on rtsp:\/\/[^\s/]+:(\d+)/), { timeout: 3000, message: 'the RTSP line' }).catch(() => null);
  const srt = find(/SRT on srt:\/\/[^\s/]+:(\d+)/);
  return rtsp ? { rtsp: Number(rtsp[1]), srt: srt ? Number(srt[1]) : null, line: rtsp[0] } : null;
}

async function openStreams(page, server) {
  const response = await page.goto(`${server.url}/#/streams`);
  assert.equal(response.status(), 200, 'GET / answers the page');
  await streamsReady(page);
}

// The Streams view with the page's live connection open and its list read.
async function streamsReady(page) {
  await waitFor(() => page.evaluate(() => document.querySelector('#connection-status')?.dataset.state === 'open'),
    { timeout: 15000, message: '#connection-status data-state="open"' });
  await waitFor(() => page.evaluate(() => !document.querySelector('#streams-view').hidden
    && !/Loading/.test(document.querySelector('#streams-empty').textContent)),
  { timeout: 15000, message: 'the Streams view, its list read' });
}

// The list as the page shows it.
function listed(page) {
  return page.evaluate(() => [...document.querySelectorAll('#streams li.stream')].map((li) => ({
    id: li.dataset.streamId,
    state: li.dataset.state,
    title: li.querySelector('.title')?.textContent.trim(),
    badge: li.querySelector('.state')?.textContent.trim(),
    figures: Object.fromEntries([...li.querySelectorAll('[data-figure]')].map((d) => [d.dataset.figure, d.textContent.trim()])),
    watch: li.querySelector('a.watch')?.getAttribute('href'),
  })));
}

// What the created panel shows (null when it is hidden).
function createdPanel(page) {
  return page.evaluate(() => {
    const card = document.querySelector('#stream-created');
    if (card.hidden) return null;
    const value = (k) => {
      const e = card.querySelector(`[data-copy="${k}"]`);
      return e ? ('value' in e ? e.value : e.textContent) : null;
    };
    return {
      id: card.dataset.streamId,
      text: card.textContent,
      key: value('key'), rtsp: value('rtsp'), srt: value('srt'),
      ffmpegRtsp: value('ffmpeg-rtsp'), ffmpegSrt: value('ffmpeg-srt'),
      obs: card.querySelector('.obs-hint')?.textContent ?? null,
      warning: card.querySelector('.warning')?.textContent ?? null,
    };
  });
}

// Everything of the page a key could hide in: its markup, the values of its inputs, its storage.
function pageHolds(page, secret) {
  return page.evaluate((s) => {
    const inputs = [...document.querySelectorAll('input, textarea')].map((i) => i.value).join('\n');
    const stored = [localStorage, sessionStorage].map((st) => Object.keys(st).map((k) => `${k}=${st.getItem(k)}`).join('\n')).join('\n');
    return document.documentElement.outerHTML.includes(s) || inputs.includes(s) || stored.includes(s);
  }, secret);
}

async function createThroughForm(page, { title, ladder = '', record = false, pipeline = 'live-hls' }) {
  await page.fill('#stream-title', title);
  await page.selectOption('#stream-pipeline', pipeline);
  await page.fill('#stream-ladder', ladder);
  if (record) await page.check('#stream-record');
  await page.click('#stream-create');
  return waitFor(() => createdPanel(page), { timeout: 15000, message: '#stream-created shown after Create stream' });
}

const FFMPEG = 'ffmpeg -re -i INPUT -c:v libx264 -preset veryfast -tune zerolatency -g 60 -c:a aac';

test('a stream made in the view: key and ingest URLs once, the list, events, delete', { timeout: 120000 }, async () => {
  const work = tempDir('streams-view');
  const server = streamServer(work, 'server');
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    await server.start();
    const ports = await livePorts(server);
    console.log(`live ports: ${JSON.stringify(ports)}`);
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    watcher = watchPage(page);
    const dialogs = [];
    page.on('dialog', (d) => { dialogs.push({ type: d.type(), message: d.message() }); d.accept(); });

    await openStreams(page, server);
    const start = await page.evaluate(() => ({
      tab: document.querySelector('#tab-streams')?.getAttribute('aria-current'),
      empty: document.querySelector('#streams-empty').hidden ? null : document.querySelector('#streams-empty').textContent.trim(),
      created: document.querySelector('#stream-created').hidden,
      pipelines: [...document.querySelectorAll('#stream-pipeline option')].map((o) => o.value),
    }));
    console.log(`Streams view at start: ${JSON.stringify(start)}`);
    assert.equal(start.tab, 'page', 'the Streams tab is the current one');
    assert.match(start.empty || '', /No streams yet/, 'an empty list says so');
    assert.ok(start.created, 'no created panel before anything is made');
    assert.deepEqual(start.pipelines, ['live-hls', 'live-cmaf'], 'the form offers the two live pipelines');

    // A refusal in the server's words (422 for a ladder that does not parse), with the field focused.
    watcher.allowed.push(/status of 422/);
    await page.fill('#stream-ladder', '99999p');
    await page.click('#stream-create');
    const refusal = await waitFor(() => page.evaluate(() => {
      const e = document.querySelector('#stream-form-error');
      return e.hidden ? null : { text: e.textContent.trim(), focused: document.activeElement?.id };
    }), { timeout: 10000, message: '#stream-form-error after a bad ladder' });
    console.log(`refusal: ${JSON.stringify(refusal)}`);
    assert.match(refusal.text, /^Could not create the stream: .*ladder/, 'the error names the ladder, in the server\'s words');
    assert.equal(refusal.focused, 'stream-ladder', 'the field the server names gets the focus');
    assert.equal((await server.json('/api/v1/streams')).body.streams.length, 0, 'nothing was made');

    // Created through the form: the panel shows the key and the ingest URLs, once.
    const shown = await createThroughForm(page, { title: 'Morning show', ladder: '360p', record: true });
    const { id, key } = shown;
    console.log(`created panel: ${JSON.stringify({ ...shown, text: undefined })}`);
    assert.match(id || '', /^[0-9a-f]{16}$/, 'the panel belongs to the new stream');
    assert.match(key || '', /^lk_[A-Za-z0-9_-]{20,}$/, 'the panel shows the stream key');
    // The ports the server listens on (without the live engine, the configured ones it would use).
    const port = (name) => (ports && ports[name] ? String(ports[name]) : '\\d+');
    assert.match(shown.rtsp || '', new RegExp(`^rtsp://127\\.0\\.0\\.1:${port('rtsp')}/live/${key}$`), 'the RTSP ingest URL, with the key');
    assert.match(shown.srt || '', new RegExp(`^srt://127\\.0\\.0\\.1:${port('srt')}\\?streamid=${key}$`), 'the SRT ingest URL, with the key');
    assert.equal(shown.ffmpegRtsp, `${FFMPEG} -f rtsp -rtsp_transport tcp ${shown.rtsp}`, 'the ffmpeg command for RTSP');
    assert.equal(shown.ffmpegSrt, `${FFMPEG} -f mpegts "${shown.srt}"`, 'the ffmpeg command for SRT');
    assert.match(shown.obs || '', /OBS.*Custom.*SRT ingest URL/s, 'the OBS hint: a custom server, the SRT URL');
    assert.match(shown.warning || '', /not shown again/, 'the panel warns that the key is not shown again');

    const server1 = (await server.json(`/api/v1/streams/${id}`)).body;
    assert.equal(server1.title, 'Morning show', 'the server holds the title given in the form');
    assert.equal(server1.ladder, '360p', 'and the ladder');
    assert.equal(server1.record, true, 'and the record box');
    assert.equal(server1.pipeline, 'live-hls', 'and the pipeline');
    assert.equal(server1.source, null, 'no source: a published stream');

    // The Copy button puts the key on the clipboard.
    await page.click('#stream-created [data-copy="key"] + button.copy');
    await waitFor(() => page.evaluate(() => /Copied/.test(document.querySelector('#stream-created .copy-status')?.textContent || '')),
      { timeout: 5000, message: 'the key\'s copy status "Copied"' });
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key, 'the clipboard holds the key');

    // The list shows it, idle, without its key.
    const item = `#streams li.stream[data-stream-id="${id}"]`;
    await page.waitForSelector(item, { timeout: 10000 });
    let rows = await listed(page);
    console.log(`list: ${JSON.stringify(rows)}`);
    assert.equal(rows.length, 1, 'one stream listed');
    assert.equal(rows[0].title, 'Morning show');
    assert.equal(rows[0].state, 'idle', 'the new stream is idle');
    assert.equal(rows[0].badge, 'idle');
    assert.deepEqual(rows[0].figures, { kbps: '–', fps: '–', dropped: '0', latency: '–' }, 'no input figures while idle');
    assert.equal(rows[0].watch, `#/streams/${id}`);
    assert.equal(await page.evaluate((k) => document.querySelector('#streams').textContent.includes(k), key), false, 'the list does not show the key');
    await screenshot(page, 'streams-created.png');
    // The view with its created panel (the key and ingest URLs) and its list.
    await auditAccessibility(page, 'streams');
    // Readable on a phone: at 360 px wide nothing scrolls sideways, long URLs and commands included.
    await page.setViewportSize({ width: 360, height: 740 });
    const overflow = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
    await screenshot(page, 'streams-created-360px.png');
    assert.ok(overflow.scroll <= overflow.client, `no horizontal scrolling at 360 px (scrollWidth ${overflow.scroll} > ${overflow.client})`);
    await page.setViewportSize({ width: 1280, height: 900 });

    // After a reload: the list, and the key nowhere.
    await page.reload();
    await streamsReady(page);
    await page.waitForSelector(item, { timeout: 10000 });
    assert.equal(await createdPanel(page), null, 'no created panel after a reload');
    assert.equal(await pageHolds(page, key), false, 'the key is nowhere in the page after a reload (markup, inputs, storage)');
    rows = await listed(page);
    assert.equal(rows.length === 1 && rows[0].state, 'idle', 'the list still shows it idle after a reload');

    // Its watch page: not live yet, and says it starts by itself.
    await page.click(`${item} a.watch`);
    const watching = await waitFor(() => page.evaluate(() => {
      const w = document.querySelector('#player-waiting');
      if (document.querySelector('#player-view').hidden || w.hidden || !w.textContent.trim()) return null;
      return {
        hash: location.hash, title: document.querySelector('#video-title').textContent.trim(), waiting: w.textContent.trim(),
        liveBar: !document.querySelector('#live-bar').hidden, seek: !document.querySelector('#seek').hidden,
        playlist: document.querySelector('#playlist-url').value, back: document.querySelector('#back-link').getAttribute('href'),
        state: document.querySelector('#video-facts .state')?.textContent.trim(), src: document.querySelector('video#player').currentSrc,
      };
    }), { timeout: 10000, message: 'the stream\'s watch page with its waiting note' });
    console.log(`watch page: ${JSON.stringify(watching)}`);
    assert.equal(watching.hash, `#/streams/${id}`);
    assert.equal(watching.title, 'Morning show');
    assert.equal(watching.state, 'idle');
    assert.match(watching.waiting, /nothing to watch yet.*starts playing here by itself/s, 'an idle stream says it is not live yet');
    assert.equal(watching.liveBar, false, 'no LIVE badge while not playing');
    assert.equal(watching.seek, false, 'no seek bar for a live stream');
    assert.equal(watching.src, '', 'nothing plays');
    assert.equal(watching.playlist, `${server.url}/streams/${id}/master.m3u8`, 'the stream\'s playlist URL');
    assert.equal(watching.back, '#/streams', 'the back link goes to the streams');
    await page.click('#back-link');
    await page.waitForSelector(item, { timeout: 10000 });

    // The events: a stream made elsewhere appears with its title, and goes when deleted elsewhere.
    const other = await server.json('/api/v1/streams', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ title: 'From the API' }),
    });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    const otherItem = `#streams li.stream[data-stream-id="${other.body.id}"]`;
    await page.waitForSelector(otherItem, { timeout: 10000 });
    rows = await listed(page);
    assert.deepEqual(rows.map((r) => r.title), ['From the API', 'Morning show'], 'newest first, the new one with its title');
    assert.equal(await pageHolds(page, other.body.key), false, 'the key of a stream made elsewhere is nowhere in the page');
    const gone = await server.json(`/api/v1/streams/${other.body.id}`, { method: 'DELETE' });
    assert.equal(gone.status, 204);
    await page.waitForSelector(otherItem, { state: 'detached', timeout: 10000 });

    // Delete (after confirm()): the item goes, the stream too.
    await page.click(`${item} button.delete`);
    await page.waitForSelector(item, { state: 'detached', timeout: 10000 });
    assert.equal(dialogs.length, 1, 'Delete asked once');
    assert.equal(dialogs[0].type, 'confirm', 'with confirm()');
    assert.match(dialogs[0].message, /Morning show/, 'naming the stream');
    assert.equal((await server.json(`/api/v1/streams/${id}`)).status, 404, 'the stream is gone from the server');
    const end = await page.evaluate(() => ({
      empty: document.querySelector('#streams-empty').hidden ? null : document.querySelector('#streams-empty').textContent.trim(),
      count: document.querySelector('#streams-count').textContent,
      focused: document.activeElement?.id,
    }));
    assert.match(end.empty || '', /No streams yet/, 'the list is empty again');
    assert.equal(end.count, '');
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await dumpDiagnostics('streams-view', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});

test('a published stream plays live in the view', { timeout: 240000 }, async (t) => {
  const work = tempDir('streams-live');
  const server = streamServer(work, 'server');
  let browser = null;
  let page = null;
  let watcher = null;
  let publisher = null;
  const publisherLog = [];
  try {
    await server.start();
    // The live engine says where it listens when the server starts; without it there is nothing to publish to.
    const ports = await livePorts(server);
    if (!ports) {
      const why = 'this server has no live engine (it printed no "RTSP on rtsp://..." line at start): live playback not tested';
      console.log(`SKIP: ${why}`);
      t.skip(why);
      return;
    }
    console.log(`the server: ${ports.line}`);
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    // A live playlist and its segments may answer 404 for a moment while the first segments are written.
    watcher.allowed.push(/status of 404/);
    page.on('dialog', (d) => d.accept());

    await openStreams(page, server);
    const shown = await createThroughForm(page, { title: 'Live test', ladder: '360p' });
    assert.ok(shown.rtsp && shown.rtsp.includes(`:${ports.rtsp}/`), `the view shows the RTSP ingest URL on port ${ports.rtsp} (${shown.rtsp})`);
    const { id } = shown;

    // The watch page before anything is published: waiting, nothing plays.
    await page.click('#stream-created a.watch');
    await waitFor(() => page.evaluate(() => /starts playing here by itself/.test(document.querySelector('#player-waiting').textContent)
      && !document.querySelector('#player-waiting').hidden), { timeout: 10000, message: 'the waiting note of an idle stream' });

    // Publish as the view says, with a test picture and tone for INPUT.
    const args = ['-hide_banner', '-loglevel', 'warning', '-re',
      '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-t', '120', '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60', '-pix_fmt', 'yuv420p',
      '-c:a', 'aac', '-f', 'rtsp', '-rtsp_transport', 'tcp', shown.rtsp];
    publisher = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    publisher.stderr.on('data', (d) => publisherLog.push(String(d)));

    // The page starts playing by itself once the stream's events say it is live.
    const playing = await waitFor(() => page.evaluate(() => {
      const v = document.querySelector('video#player');
      const state = document.querySelector('#video-facts .state')?.textContent.trim();
      return state === 'live' && window.sluicePlayer && v.currentTime > 0 && !v.paused ? { state, t: v.currentTime } : null;
    }), { timeout: 90000, interval: 250, message: 'the stream live and playing in the page' });
    console.log(`playing: ${JSON.stringify(playing)}`);

    // currentTime advances for 15 s.
    const samples = [];
    for (let i = 0; i <= 15; i++) {
      samples.push(await page.evaluate(() => {
        const v = document.querySelector('video#player');
        const h = window.sluicePlayer;
        return {
          t: v.currentTime, paused: v.paused, latency: h ? h.latency : null, edge: h ? h.liveSyncPosition : null,
          shown: Number(document.querySelector('#live-latency').dataset.seconds),
          badge: !document.querySelector('#live-bar').hidden && document.querySelector('#live-badge').textContent.trim(),
        };
      }));
      if (i < 15) await sleep(1000);
    }
    console.log(`samples: ${JSON.stringify(samples)}`);
    for (let i = 1; i < samples.length; i++) assert.ok(samples[i].t >= samples[i - 1].t, `currentTime never goes back (${i})`);
    const advanced = samples.at(-1).t - samples[0].t;
    assert.ok(advanced >= 12, `currentTime advanced ${advanced.toFixed(1)} s in 15 s`);
    const last = samples.at(-1);
    assert.equal(last.badge, 'LIVE', 'the LIVE badge shows');
    assert.ok(Number.isFinite(last.shown) && last.shown >= 0 && last.shown < 30, `#live-latency shows the latency behind the edge (${last.shown})`);
    assert.ok(Math.abs(last.shown - last.latency) < 2, `#live-latency (${last.shown}) is hls.js's latency (${last.latency})`);

    // The input figures arrive with the events.
    const figures = await waitFor(() => page.evaluate(() => {
      const f = Object.fromEntries([...document.querySelectorAll('#video-facts [data-figure]')].map((d) => [d.dataset.figure, d.textContent.trim()]));
      return f.kbps !== '–' && f.fps !== '–' ? f : null;
    }), { timeout: 15000, message: 'input figures in the facts' });
    console.log(`figures: ${JSON.stringify(figures)}`);

    // Go live: from 8 s behind hls.js's live sync position (as far as the playlist's window allows) back to it.
    await page.evaluate(() => {
      const v = document.querySelector('video#player');
      v.currentTime = Math.max(v.seekable.start(0), window.sluicePlayer.liveSyncPosition - 8);
    });
    await sleep(2000);
    const readLatency = () => page.evaluate(() => ({
      latency: window.sluicePlayer.latency, target: window.sluicePlayer.targetLatency,
      edge: document.querySelector('#live-badge').dataset.edge, shown: document.querySelector('#live-latency').textContent.trim(),
    }));
    const behind = await readLatency();
    await page.click('#go-live');
    await sleep(2000);
    const after = await readLatency();
    console.log(`Go live: before ${JSON.stringify(behind)}, after ${JSON.stringify(after)}`);
    assert.ok(after.latency <= after.target + 2, `after Go live the player is at the live sync position (${after.latency.toFixed(1)} s behind, target ${after.target} s)`);
    assert.equal(after.edge, 'true', 'the LIVE badge is lit at the edge');
    if (behind.latency > behind.target + 3) {
      assert.ok(behind.latency - after.latency >= 2, `Go live moved the player forward (${behind.latency.toFixed(1)} s → ${after.latency.toFixed(1)} s behind)`);
      assert.equal(behind.edge, 'false', 'the LIVE badge is dimmed behind the edge');
    } else {
      console.log('the live playlist\'s window is too short to play far behind its edge: Go live from behind not checked');
    }
    await screenshot(page, 'streams-live.png');
    // The player of a live stream: the LIVE badge, the latency, Go live.
    await auditAccessibility(page, 'player (live stream)');

    // The publisher stops: the page tells what the stream is doing (the engine says how it names it).
    publisher.kill('SIGINT');
    const left = await waitFor(() => page.evaluate(() => {
      const state = document.querySelector('#video-facts .state')?.textContent.trim();
      return state && state !== 'live' ? { state, waiting: document.querySelector('#player-waiting').textContent.trim() } : null;
    }), { timeout: 30000, message: 'the stream to leave "live" once the publisher stopped' }).catch((e) => ({ error: e.message }));
    console.log(`after the publisher stopped: ${JSON.stringify(left)}`);

    await page.click('#back-link');
    await page.click(`#streams li.stream[data-stream-id="${id}"] button.delete`);
    await page.waitForSelector(`#streams li.stream[data-stream-id="${id}"]`, { state: 'detached', timeout: 10000 });
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    console.log(`--- publisher (ffmpeg) ---\n${publisherLog.join('').slice(-3000)}`);
    await dumpDiagnostics('streams-live', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (publisher && publisher.exitCode === null) publisher.kill('SIGKILL');
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
