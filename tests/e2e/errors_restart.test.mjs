// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test 2: a text file uploaded through the page shows the server's own error message; then the
// server restarts on the same port and the open page follows: "reconnecting…", connected again, and a
// video uploaded through the API afterwards appears in the library without reloading the page.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, auditAccessibility, dumpDiagnostics, launchBrowser, makeClip, pageState, readRecorder, removeDir,
  requireToolsOrSkip, screenshot, startRecorder, tempDir, waitFor, watchPage, writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();

test('upload errors in words, and the page survives a server restart', { timeout: 280000 }, async () => {
  const work = tempDir('errors-restart');
  const dataDir = path.join(work, 'data');
  const config = writeConfig(work, '[jobs]\nextras=\nconcurrent=1\n');
  const servers = [new Server({ dataDir, config, name: 'server (first start)' })];
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    const text = path.join(work, 'notes.txt');
    fs.writeFileSync(text, 'These are meeting notes, not a video.\n'.repeat(20));
    // A phone-like portrait clip: landscape pixels with a rotation tag.
    const phone = makeClip(path.join(work, 'phone.mp4'), { width: 320, height: 180, seconds: 3, rotate: 90 });

    await servers[0].start();
    const url = servers[0].url;
    const port = servers[0].port;
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    // The page's own upload of the text file is answered 415: the browser logs that failed request.
    watcher.allowed.push(/^Failed to load resource: the server responded with a status of 415/);

    const response = await page.goto(url + '/');
    assert.equal(response.status(), 200, 'GET / answers the page');
    await waitFor(async () => (await pageState(page)).connection?.state === 'open',
      { timeout: 15000, message: '#connection-status data-state="open"' });

    // 1. The text file through the page: #upload-error shows the server's message verbatim.
    const expected = await servers[0].upload(text, { title: '' }, { filename: 'notes.txt', type: 'text/plain' });
    assert.equal(expected.status, 415, `the API refuses a text file: ${JSON.stringify(expected.body)}`);
    assert.equal(expected.body.error.code, 'not_media');
    const message = expected.body.error.message;
    await page.setInputFiles('#file-input', text);
    const shown = await waitFor(async () => {
      const s = await pageState(page);
      return s.uploadError ? s : null;
    }, { timeout: 20000, message: '#upload-error to show a message' });
    console.log(`#upload-error: ${JSON.stringify(shown.uploadError)}; the API says: ${JSON.stringify(message)}`);
    assert.equal(shown.uploadError, message, '#upload-error shows the server\'s JSON message verbatim');
    const errorBox = await page.evaluate(() => {
      const e = document.querySelector('#upload-error');
      const r = e.getBoundingClientRect();
      return { role: e.getAttribute('role'), hidden: e.hidden, visible: r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden' };
    });
    assert.equal(errorBox.role, 'alert', '#upload-error has role="alert"');
    assert.ok(errorBox.visible && !errorBox.hidden, '#upload-error is visible');
    assert.ok(!/uploaded/i.test(shown.uploadStatus || ''), `#upload-status does not claim success (${JSON.stringify(shown.uploadStatus)})`);
    assert.equal((await servers[0].json('/api/v1/videos')).body.videos.length, 0, 'nothing was kept');
    assert.equal(shown.videos.length, 0, 'the library stays empty');
    await screenshot(page, 'upload-error.png');
    await auditAccessibility(page, 'upload with an error');

    // 2. Restart the server on the same port, same data folder. The page is not reloaded: a marker
    // set on its window now must still be there at the end.
    await page.evaluate(() => { window.__sluiceE2EMarker = 'same page'; });
    await startRecorder(page);
    watcher.expectNetworkErrors = true;
    const code = await servers[0].stop();
    console.log(`first server stopped (${code})`);
    await waitFor(async () => (await pageState(page)).connection?.state === 'closed',
      { timeout: 15000, message: '#connection-status data-state="closed" while the server is down' });
    const down = await pageState(page);
    assert.match(down.connection.text, /reconnecting/i, `#connection-status says reconnecting… (got "${down.connection.text}")`);
    await screenshot(page, 'reconnecting.png');

    servers.push(new Server({ dataDir, config, listen: `127.0.0.1:${port}`, name: 'server (restarted)' }));
    await servers[1].start();
    assert.equal(servers[1].url, url, 'the restarted server serves on the same address');
    await waitFor(async () => (await pageState(page)).connection?.state === 'open',
      { timeout: 30000, interval: 200, message: '#connection-status back to "open" after the restart (EventSource reconnected)' });
    watcher.expectNetworkErrors = false;
    // The in-page recorder ticks every 50 ms: give it the tick that sees "open" too.
    const rec = await waitFor(async () => {
      const r = await readRecorder(page);
      return r.connection.length && r.connection[r.connection.length - 1].startsWith('open|') ? r : null;
    }, { timeout: 2000, interval: 50, message: 'the recorder to see "open"' }).catch(() => readRecorder(page));
    console.log(`connection states seen: ${JSON.stringify(rec.connection)}`);
    assert.ok(rec.connection.some((c) => c.startsWith('closed|')), 'went through "closed"');
    assert.ok(rec.connection[rec.connection.length - 1].startsWith('open|'), 'ends "open"');
    assert.match((await pageState(page)).connection.text, /connected/i, '#connection-status says connected again');

    // 3. An upload through the API appears in the open page (a `video` event over the new stream),
    // and its job's events bring it to ready.
    const up = await servers[1].upload(phone, { title: 'Phone clip' }, { type: 'video/mp4' });
    assert.equal(up.status, 201, `API upload: ${JSON.stringify(up.body)}`);
    const id = up.body.video.id;
    const item = `#library li.video[data-video-id="${id}"]`;
    await page.waitForSelector(item, { timeout: 20000 });
    await waitFor(async () => (await pageState(page)).videos.find((v) => v.id === id)?.state === 'ready',
      { timeout: 120000, interval: 250, message: `${item} data-state="ready"` });
    const s = await pageState(page);
    const v = s.videos.find((x) => x.id === id);
    assert.equal(v.title, 'Phone clip', '.title of the API upload');
    assert.equal(v.play, `#/videos/${id}`, 'a.play of the API upload');
    assert.equal(s.videos.length, 1, 'one video in the library');
    assert.equal(await page.evaluate(() => window.__sluiceE2EMarker), 'same page', 'the page was not reloaded');

    // The rotation tag is honoured: the portrait clip's renditions are portrait.
    const master = await (await fetch(`${url}/videos/${id}/hls/master.m3u8`)).text();
    const res = [...master.matchAll(/RESOLUTION=(\d+)x(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.ok(res.length >= 1 && res.every(([w, h]) => h > w), `portrait renditions for a rotated clip: ${JSON.stringify(res)}`);
    // The library shows the displayed (upright) size, as the video JSON's media reports it.
    const pic = (await servers[1].json(`/api/v1/videos/${id}`)).body.media.video;
    const resolution = await page.evaluate((sel) => document.querySelector(sel + ' .resolution')?.textContent.trim(), item);
    console.log(`rotated clip: stored ${pic.width}x${pic.height}, displayed ${pic.display_width}x${pic.display_height}; .resolution ${JSON.stringify(resolution)}`);
    assert.equal(resolution, `${pic.display_width}×${pic.display_height}`, '.resolution is the displayed size of the rotated clip');
    await screenshot(page, 'after-restart.png');

    // Readable on a phone: at 360 px wide nothing scrolls sideways.
    await page.setViewportSize({ width: 360, height: 740 });
    const overflow = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
    await screenshot(page, 'library-360px.png');
    assert.ok(overflow.scroll <= overflow.client, `no horizontal scrolling at 360 px (scrollWidth ${overflow.scroll} > ${overflow.client})`);
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors besides the expected network errors');
  } catch (e) {
    await dumpDiagnostics('errors-restart', { page, watcher, servers });
    throw e;
  } finally {
    if (browser) await browser.close();
    for (const s of servers) await s.stop();
    removeDir(work);
  }
});
