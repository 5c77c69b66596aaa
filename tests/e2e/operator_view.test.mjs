// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test: the Operator view (#/operator). Reached from the page's tabs with the keyboard; its uPlot charts
// draw (their canvas pixels read back); while a job runs its numbers move (the running job's progress from the
// events, the counts by state read again on its job events); a job that fails in GStreamer shows in the recent
// failures with its error message; axe finds nothing serious in light and dark.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, auditAccessibility, dumpDiagnostics, launchBrowser, makeClip, removeDir, requireToolsOrSkip, screenshot,
  tempDir, unwritablePipelines, waitFor, watchPage, writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();

// The view's figures, read in one round trip.
function opsState(page) {
  return page.evaluate(() => {
    const t = (id) => document.getElementById(id)?.textContent.trim() ?? null;
    return {
      hash: location.hash,
      visible: !document.getElementById('operator-view').hidden,
      queued: t('ops-n-queued'), running: t('ops-n-running'), succeeded: t('ops-n-succeeded'), failed: t('ops-n-failed'),
      speed: t('ops-speed'), storage: t('ops-storage'), error: document.getElementById('ops-error').hidden ? null : t('ops-error'),
      jobs: [...document.querySelectorAll('#ops-running li')].map((li) => ({
        id: li.dataset.jobId, progress: Number(li.querySelector('progress').value), stats: li.querySelector('.job-stats').textContent,
      })),
      failures: [...document.querySelectorAll('#ops-failures li')].map((li) => ({
        id: li.dataset.jobId, text: li.textContent.trim(), message: li.querySelector('.failure-message')?.textContent.trim(),
      })),
      workers: [...document.querySelectorAll('#ops-workers tr')].map((tr) => tr.textContent.trim()),
    };
  });
}

// How many pixels of the chart's canvas are (nearly) the colour of the CSS variable `color`, and how many are
// painted at all.
function chartPixels(page, chart, color) {
  return page.evaluate(([id, variable]) => {
    const canvas = document.querySelector(`#${id} canvas`);
    if (!canvas || !canvas.width || !canvas.height) return null;
    const probe = document.createElement('canvas').getContext('2d');
    probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue(variable).trim();
    probe.fillRect(0, 0, 1, 1);
    const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    let matching = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      painted++;
      if (data[i + 3] > 200 && Math.abs(data[i] - r) < 12 && Math.abs(data[i + 1] - g) < 12 && Math.abs(data[i + 2] - b) < 12) matching++;
    }
    return { painted, matching, width: canvas.width, height: canvas.height };
  }, [chart, color]);
}

test('the Operator view: charts drawn, numbers moving with a job, a failure with its message, axe', { timeout: 120000 }, async () => {
  const work = tempDir('operator');
  const pipelines = unwritablePipelines(path.join(work, 'pipelines'));
  // One attempt: the failing job fails at once instead of being retried after a backoff.
  const config = writeConfig(work, '[jobs]\nextras=\nconcurrent=1\nmax-attempts=1\n');
  // G_DEBUG without fatal-criticals: see unwritablePipelines (GStreamer 1.22's mpegtsmux on its error path).
  const server = new Server({ dataDir: path.join(work, 'data'), config, env: { SLUICE_PIPELINES_DIR: pipelines, G_DEBUG: '' } });
  let browser = null;
  let page = null;
  let watcher = null;
  try {
    // 20 s of 640x360: a job of a few seconds, long enough for several progress events.
    const clip = makeClip(path.join(work, 'clip.mp4'), { width: 640, height: 360, seconds: 20 });
    const small = makeClip(path.join(work, 'small.mp4'), { width: 320, height: 180, seconds: 2 });
    await server.start();
    browser = await launchBrowser(chromium, chromiumPath);
    page = browser.page;
    watcher = watchPage(page);
    await page.goto(server.url + '/');
    await waitFor(() => page.evaluate(() => document.getElementById('connection-status').dataset.state === 'open'),
      { timeout: 15000, message: 'the event stream open' });

    // 1. The tab shows for an admin key (or a server without [auth]), and the keyboard reaches and follows it.
    await page.waitForSelector('#tab-operator:not([hidden])', { timeout: 15000 });
    await page.focus('#tab-operator');
    await page.keyboard.press('Enter');
    await waitFor(async () => (await opsState(page)).visible, { timeout: 5000, message: '#operator-view shown' });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'operator-heading', 'the focus moves to the view\'s heading');
    assert.equal(await page.getAttribute('#tab-operator', 'aria-current'), 'page', 'the tab is the current one');
    const first = await waitFor(async () => { const s = await opsState(page); return s.succeeded === '0' ? s : null; },
      { timeout: 10000, message: 'the figures read' });
    assert.equal(first.error, null);
    assert.equal(first.running, '0');
    assert.equal(first.workers.length, 1, `this server, as its one worker (${JSON.stringify(first.workers)})`);
    await waitFor(() => chartPixels(page, 'chart-jobs', '--muted'), { timeout: 10000, message: 'the jobs chart drawn' });

    // 2. A job runs: its progress moves in the list, the counts follow its job events.
    await page.evaluate(() => {
      const seen = { progress: [], running: [], succeeded: [] };
      window.__opsSeen = seen;
      const add = (list, v) => { if (v !== null && list[list.length - 1] !== v) list.push(v); };
      setInterval(() => {
        const li = document.querySelector('#ops-running li progress');
        add(seen.progress, li ? Number(li.value) : null);
        add(seen.running, document.getElementById('ops-n-running').textContent);
        add(seen.succeeded, document.getElementById('ops-n-succeeded').textContent);
      }, 50);
    });
    const ok = await server.upload(clip, { ladder: '360p,240p' });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    const okJob = ok.body.job.id;
    await waitFor(async () => (await server.json(`/api/v1/jobs/${okJob}`)).body.state === 'succeeded',
      { timeout: 60000, interval: 250, message: `job ${okJob} succeeded` });
    const after = await waitFor(async () => { const s = await opsState(page); return s.succeeded === '1' ? s : null; },
      { timeout: 10000, message: '#ops-n-succeeded 1 after the job event' });
    // The sampler runs every 50 ms: wait for it to have recorded the count just read.
    const seen = await waitFor(async () => { const s = await page.evaluate(() => window.__opsSeen); return s.succeeded.includes('1') ? s : null; },
      { timeout: 2000, message: 'the page\'s sampler saw #ops-n-succeeded 1' });
    console.log(`seen while the job ran: ${JSON.stringify(seen)}`);
    const moving = seen.progress.filter((p) => p > 0 && p < 100);
    assert.ok(new Set(moving).size >= 2, `the running job's progress moved (${JSON.stringify(seen.progress)})`);
    assert.ok(seen.running.includes('1'), `#ops-n-running showed 1 while it ran (${JSON.stringify(seen.running)})`);
    assert.deepEqual(seen.succeeded.slice(-2), ['0', '1'], 'the succeeded count went from 0 to 1');
    assert.equal(after.running, '0');
    assert.deepEqual(after.jobs, [], 'no running job left in the list');
    assert.match(after.speed, /^\d+\.\d\d×$/, `a transcode speed (${after.speed})`);

    // The charts draw it: the succeeded bar in the jobs chart, the speed's point, the queue's line.
    const bars = await waitFor(async () => { const p = await chartPixels(page, 'chart-jobs', '--ok'); return p?.matching > 20 ? p : null; },
      { timeout: 5000, message: 'the succeeded bar drawn in #chart-jobs' });
    const point = await chartPixels(page, 'chart-speed', '--accent');
    const queue = await chartPixels(page, 'chart-queue', '--accent');
    console.log(`canvas pixels: jobs ${JSON.stringify(bars)}, speed ${JSON.stringify(point)}, queue ${JSON.stringify(queue)}`);
    assert.ok(point.matching > 5, 'the speed chart has its point');
    assert.ok(queue.matching > 5, 'the queue chart has its running line');

    // 3. A job that fails in GStreamer: it shows in the recent failures with its message.
    const bad = await server.upload(small, { pipeline: 'unwritable', ladder: '240p', title: 'broken clip' });
    assert.equal(bad.status, 201, JSON.stringify(bad.body));
    const badJob = bad.body.job.id;
    const failed = await waitFor(async () => { const j = (await server.json(`/api/v1/jobs/${badJob}`)).body; return j.state === 'failed' ? j : null; },
      { timeout: 60000, interval: 250, message: `job ${badJob} failed` });
    const shown = await waitFor(async () => { const s = await opsState(page); return s.failures.length ? s : null; },
      { timeout: 10000, message: 'a recent failure listed' });
    console.log(`failure shown: ${JSON.stringify(shown.failures)}`);
    assert.equal(shown.failed, '1');
    assert.equal(shown.failures[0].id, badJob);
    assert.equal(shown.failures[0].message, `${failed.error.code} ${failed.error.message}`, 'the job\'s error code and message');
    assert.match(shown.failures[0].text, /broken clip/, 'the video\'s title');
    assert.match(shown.failures[0].text, /unwritable/, 'the pipeline');
    const failedBars = await chartPixels(page, 'chart-jobs', '--danger');
    assert.ok(failedBars.matching > 20, `the failed bar drawn (${JSON.stringify(failedBars)})`);
    await screenshot(page, 'operator.png');

    await auditAccessibility(page, 'operator');
    // Dark: the charts are drawn again in the dark scheme's colours.
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await waitFor(async () => { const p = await chartPixels(page, 'chart-jobs', '--ok'); return p?.matching > 20 ? p : null; },
      { timeout: 5000, message: 'the succeeded bar drawn in the dark colours' });
    console.log(`dark: ${JSON.stringify(dark)}`);
    await screenshot(page, 'operator-dark.png');
    await page.emulateMedia({ colorScheme: null });
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no console errors');
  } catch (e) {
    await dumpDiagnostics('operator', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (browser) await browser.close();
    await server.stop();
    removeDir(work);
  }
});
