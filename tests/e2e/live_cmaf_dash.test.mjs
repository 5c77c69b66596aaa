// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test: the dynamic MPD of a live-cmaf stream plays in dash.js (the copy the page ships, loaded into the
// page the way engines.js loads it) while ffmpeg publishes over RTSP: joining once the stream is older than the
// MPD's suggested delay, it starts near the live edge, currentTime advances for 10 s without a stall, and dash.js
// reports no error. Skipped (saying so) when the server has no live engine.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, dumpDiagnostics, launchBrowser, removeDir, requireToolsOrSkip, screenshot, sleep, tempDir, waitFor,
  watchPage, writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();

const DASH_SCRIPT = '/web/node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js';

test('live-cmaf: dash.js plays the dynamic MPD and currentTime advances', { timeout: 240000 }, async (t) => {
  const work = tempDir('live-cmaf-dash');
  const config = writeConfig(work, '[jobs]\nconcurrent=1\n[live]\nwindow=8\n');
  const server = new Server({ dataDir: path.join(work, 'data'), config, name: 'live-cmaf' });
  let browser = null;
  let publisher = null;
  let page = null;
  let watcher = null;
  const publisherLog = [];
  try {
    await server.start();
    const rtsp = await waitFor(() => server.log.map((l) => /RTSP on rtsp:\/\/[^\s/]+:(\d+)/.exec(l)).find(Boolean),
      { timeout: 3000, message: 'the RTSP line' }).catch(() => null);
    if (!rtsp) {
      t.skip('the server has no live engine (it printed no "RTSP on rtsp://..." line)');
      return;
    }
    const made = await server.json('/api/v1/streams', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'dash live', pipeline: 'live-cmaf', ladder: '360p' }),
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const { id } = made.body;
    assert.equal(made.body.playback.dash, `/streams/${id}/manifest.mpd`);

    const args = ['-hide_banner', '-loglevel', 'warning', '-re',
      '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-t', '90', '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '50', '-pix_fmt', 'yuv420p',
      '-c:a', 'aac', '-f', 'rtsp', '-rtsp_transport', 'tcp', made.body.ingest.rtsp];
    publisher = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    publisher.stderr.on('data', (d) => publisherLog.push(String(d)));

    // Live once every track has a segment (the MPD is written then).
    await waitFor(async () => (await server.json(`/api/v1/streams/${id}`)).body.state === 'live',
      { timeout: 60000, interval: 250, message: 'the stream to be live' });

    // A viewer of a stream younger than the MPD's suggestedPresentationDelay: dash.js caps its delay at what is
    // available and plays from the first segment, closer to the live edge than segments can be promised (it then
    // waits for one, the stall this test must not see). Join once the video's timeline covers that delay.
    const covered = async () => {
      const mpd = await (await fetch(`${server.url}/streams/${id}/manifest.mpd`)).text();
      const delay = Number(/suggestedPresentationDelay="PT([\d.]+)S"/.exec(mpd)?.[1]);
      const video = /<SegmentTemplate timescale="(\d+)"[^>]*>\s*<SegmentTimeline>([\s\S]*?)<\/SegmentTimeline>/.exec(mpd);
      if (!video || !(delay > 0)) return null;
      let ticks = 0;
      for (const s of video[2].matchAll(/<S(?: t="\d+")? d="(\d+)"(?: r="(\d+)")?\/>/g)) {
        ticks += Number(s[1]) * (1 + Number(s[2] || 0));
      }
      const seconds = ticks / Number(video[1]);
      return seconds >= delay ? { seconds, delay } : null;
    };
    console.log(`joining at ${JSON.stringify(await waitFor(covered,
      { timeout: 30000, interval: 250, message: 'the MPD to cover its suggested delay' }))}`);

    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    const response = await page.goto(`${server.url}/`);
    assert.equal(response.status(), 200);
    // GET /api/v1/pipelines lists the live ladders too; the upload form does not offer them for a file.
    const offered = await waitFor(() => page.evaluate(() => {
      const options = [...(document.querySelector('#pipeline-select')?.options || [])].map((o) => o.value);
      return options.includes('hls') ? options : null;
    }), { timeout: 15000, message: '#pipeline-select filled' });
    assert.deepEqual(offered.filter((name) => name.startsWith('live-')), [], `offered: ${offered}`);
    const listed = (await server.json('/api/v1/pipelines')).body.pipelines.map((p) => p.name);
    assert.ok(listed.includes('live-hls') && listed.includes('live-cmaf'), `listed: ${listed}`);
    await page.evaluate(async ({ script, mpd }) => {
      await new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = script;
        s.onload = resolve;
        s.onerror = () => reject(new Error('dash.js did not load'));
        document.head.appendChild(s);
      });
      const video = document.createElement('video');
      video.id = 'dash-test';
      video.muted = true;
      document.body.appendChild(video);
      window.dashErrors = [];
      const player = window.dashjs.MediaPlayer().create();
      player.on(window.dashjs.MediaPlayer.events.ERROR, (e) => window.dashErrors.push(JSON.stringify(e.error || e)));
      player.initialize(video, mpd, true);
      window.dashPlayer = player;
    }, { script: DASH_SCRIPT, mpd: `${server.url}/streams/${id}/manifest.mpd` });

    const started = await waitFor(() => page.evaluate(() => {
      const v = document.querySelector('#dash-test');
      return v.currentTime > 0 && !v.paused ? { t: v.currentTime, dynamic: window.dashPlayer.isDynamic() } : null;
    }), { timeout: 60000, interval: 250, message: 'dash.js to play the live MPD' });
    console.log(`playing: ${JSON.stringify(started)}`);
    assert.equal(started.dynamic, true, 'dash.js sees a dynamic MPD');

    const samples = [];
    for (let i = 0; i <= 10; i++) {
      samples.push(await page.evaluate(() => {
        const v = document.querySelector('#dash-test');
        const p = window.dashPlayer;
        return { t: v.currentTime, paused: v.paused, latency: p.getCurrentLiveLatency(), errors: window.dashErrors.length };
      }));
      if (i < 10) await sleep(1000);
    }
    console.log(`samples: ${JSON.stringify(samples)}`);
    await screenshot(page, 'live-cmaf-dash');
    const advanced = samples[samples.length - 1].t - samples[0].t;
    assert.ok(advanced > 8, `currentTime advanced ${advanced.toFixed(2)} s in 10 s`);
    for (let i = 1; i < samples.length; i++) assert.ok(samples[i].t >= samples[i - 1].t, 'currentTime never goes back');
    assert.ok(samples.every((s) => !s.paused), 'it never stalls into pause');
    // Near the live edge: about the suggested delay (6 s), within the window (8 s) and a segment.
    const latency = samples[samples.length - 1].latency;
    assert.ok(latency > 0 && latency < 12, `live latency ${latency} s`);
    assert.deepEqual(await page.evaluate(() => window.dashErrors), [], 'dash.js reported no error');
    assert.deepEqual(watcher.check(), []);
  } catch (e) {
    await dumpDiagnostics('live-cmaf-dash', { page, watcher, servers: [server] });
    console.log(`--- publisher (ffmpeg) ---\n${publisherLog.join('').slice(-3000)}`);
    throw e;
  } finally {
    if (publisher && publisher.exitCode === null) publisher.kill('SIGKILL');
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
