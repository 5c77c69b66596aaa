// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test 5: a signed CMAF package played to its end in Chromium with hls.js, then with dash.js, from
// the tokened master playlist and MPD URLs only: every media request the players make carries the token
// (sluice rewrote every URL they were served), none is refused; the same master without a token is 403.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, dumpDiagnostics, launchBrowser, makeClip, removeDir, requireToolsOrSkip, tempDir, waitFor, watchPage,
  writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();
const CLIP_SECONDS = 6;
const DASH_SCRIPT = '/web/node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js';

test('signed cmaf package: hls.js and dash.js play to the end through tokened URLs', { timeout: 240000 }, async () => {
  const work = tempDir('signed-play');
  const config = writeConfig(work,
    '[jobs]\npipeline=cmaf\nconcurrent=1\nextras=\n[playback]\nkeys=k1:0123456789abcdef-e2e-secret\n');
  const server = new Server({ dataDir: path.join(work, 'data'), config });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    const clip = makeClip(path.join(work, 'clip.mp4'), { width: 640, height: 360, seconds: CLIP_SECONDS });
    await server.start();
    const up = await server.upload(clip, { playback_policy: 'signed', ladder: '240p,360p' }, { type: 'video/mp4' });
    assert.equal(up.status, 201, JSON.stringify(up.body));
    const id = up.body.video.id;
    assert.equal(up.body.video.playback_policy, 'signed');
    const video = await waitFor(async () => {
      const r = await server.json(`/api/v1/videos/${id}`);
      const j = r.body.jobs[0];
      if (j.state === 'failed' || j.state === 'canceled') throw new Error(`the cmaf job ended ${j.state}: ${j.error}`);
      return j.state === 'succeeded' ? r.body : null;
    }, { timeout: 180000, interval: 500, message: 'the cmaf job to succeed' });
    const tok = await server.json(`/api/v1/videos/${id}/playback-tokens`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ttl: 600 }),
    });
    assert.equal(tok.status, 200, JSON.stringify(tok.body));
    const token = tok.body.token;
    const bare = await fetch(server.url + video.playback.hls);
    assert.equal(bare.status, 403, 'the master without a token');

    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    const requests = []; // every media request: {path, token, status}
    page.on('response', (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/videos/')) requests.push({ path: u.pathname, token: u.searchParams.get('token'), status: r.status() });
    });
    await page.goto(server.url + '/');
    await waitFor(() => page.evaluate(() => !!window.Hls), { timeout: 15000, message: 'window.Hls' });

    const playToEnd = async (label, start) => {
      await page.evaluate(start);
      const s = await waitFor(() => page.evaluate(() => {
        const v = document.querySelector('video#signed');
        return v.ended || v.error ? { ended: v.ended, t: v.currentTime, duration: v.duration,
          error: v.error ? `${v.error.code} ${v.error.message}` : null,
          frames: v.getVideoPlaybackQuality().totalVideoFrames, src: v.currentSrc } : null;
      }), { timeout: 60000, interval: 250, message: `${label}: video#signed to end` });
      console.log(`${label}: ${JSON.stringify(s)}`);
      assert.equal(s.error, null, `${label}: no media error`);
      assert.ok(s.ended, `${label}: ended`);
      assert.ok(s.t >= CLIP_SECONDS - 0.5, `${label}: played to ${s.t} s of ${CLIP_SECONDS}`);
      assert.ok(s.frames > 0, `${label}: frames decoded`);
      assert.ok(s.src.startsWith('blob:'), `${label}: through MSE`);
    };

    const hlsUrl = `${video.playback.hls}?token=${token}`;
    await playToEnd('hls.js', `(() => {
      document.body.insertAdjacentHTML('beforeend', '<video id="signed" muted playsinline></video>');
      const v = document.querySelector('video#signed');
      const hls = new Hls();
      window.__signedHls = hls;
      hls.loadSource(${JSON.stringify(hlsUrl)});
      hls.attachMedia(v);
      v.play().catch(() => {});
    })()`);
    const hlsRequests = requests.splice(0);

    const dashUrl = `${video.playback.dash}?token=${token}`;
    await playToEnd('dash.js', `(async () => {
      window.__signedHls.destroy();
      document.querySelector('video#signed').remove();
      await new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = ${JSON.stringify(DASH_SCRIPT)};
        s.onload = resolve;
        s.onerror = () => reject(new Error('dash.js did not load'));
        document.head.appendChild(s);
      });
      document.body.insertAdjacentHTML('beforeend', '<video id="signed" muted playsinline></video>');
      const v = document.querySelector('video#signed');
      const p = dashjs.MediaPlayer().create();
      p.initialize(v, ${JSON.stringify(dashUrl)}, true);
    })()`);
    const dashRequests = requests.splice(0);

    for (const [label, list, kinds] of [['hls.js', hlsRequests, ['.m3u8', 'init.mp4', '.m4s']],
      ['dash.js', dashRequests, ['.mpd', 'init.mp4', '.m4s']]]) {
      console.log(`${label}: ${list.length} media requests: ${JSON.stringify(list.map((r) => `${r.status} ${r.path}`))}`);
      for (const k of kinds) assert.ok(list.some((r) => r.path.endsWith(k)), `${label}: requested a ${k}`);
      for (const r of list) {
        assert.equal(r.token, token, `${label}: ${r.path} carries the token`);
        assert.ok(r.status === 200 || r.status === 206, `${label}: ${r.path} answered ${r.status}`);
      }
    }
    assert.deepEqual(watcher.check(), [], 'no page errors');
  } catch (e) {
    await dumpDiagnostics('signed-play', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
