// SPDX-License-Identifier: LGPL-2.1-or-later
// Browser test: the page's API key form against a server with [auth] mode=keys. The page says that a key is
// needed; a wrong key reads as 401 in words, a key without the upload scope as 403 in words (and the page asks
// for another); the right key uploads a clip that turns ready. The key lives in the tab's sessionStorage only:
// not in localStorage, cookies or the URL, and a new tab or a new browser context asks again.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import {
  Server, auditAccessibility, createKey, dumpDiagnostics, launchBrowser, makeClip, pageState, removeDir, requireToolsOrSkip,
  screenshot, tempDir, waitFor, watchPage, writeConfig,
} from './lib.mjs';

const { chromium, chromiumPath } = await requireToolsOrSkip();
const DIALOG = 'dialog.key-dialog[open]';
const KEY_ITEM = 'sluice-api-key';

// The form as a person sees it: open or not, its words, what the input is.
const keyForm = (page) => page.evaluate((sel) => {
  const d = document.querySelector(sel);
  if (!d) return null;
  const input = d.querySelector('input[name="key"]');
  return { text: d.textContent.replace(/\s+/g, ' ').trim(), heading: d.querySelector('h2')?.textContent.trim() ?? null,
    inputType: input?.type ?? null };
}, DIALOG);

async function typeKey(page, key) {
  await page.waitForSelector(DIALOG, { timeout: 15000 });
  await page.fill(`${DIALOG} input[name="key"]`, key);
  await page.click(`${DIALOG} button[value="ok"]`);
  await page.waitForSelector('dialog.key-dialog', { state: 'detached', timeout: 5000 });
}

const shown = (page, sel) => page.evaluate((s) => {
  const e = document.querySelector(s);
  return e && !e.hidden ? e.textContent.replace(/\s+/g, ' ').trim() : null;
}, sel);

// Where a key could be kept by the page, read from the page itself and from the browser.
async function storage(page) {
  const inPage = await page.evaluate((item) => ({
    session: sessionStorage.getItem(item),
    local: Object.fromEntries(Object.keys(localStorage).map((k) => [k, localStorage.getItem(k)])),
    cookie: document.cookie,
  }), KEY_ITEM);
  return { ...inPage, cookies: await page.context().cookies(), url: page.url() };
}

const TITLE = 'the key form: 401 and 403 in words, the right key works, the key in sessionStorage only';

test(TITLE, { timeout: 280000 }, async () => {
  const work = tempDir('auth-form');
  const dataDir = path.join(work, 'data');
  // The test's own [auth]: the harness adds nothing, with or without SLUICE_TEST_AUTH.
  const config = writeConfig(work, '[jobs]\nextras=\nconcurrent=1\n[auth]\nmode=keys\n');
  const reader = createKey(dataDir, 'reader', 'read');
  const uploader = createKey(dataDir, 'uploader', 'upload,read');
  const wrong = `sk_${'Q'.repeat(43)}`;
  const server = new Server({ dataDir, config, apiKey: uploader });
  let browser = null;
  let second = null;
  let page = null;
  let watcher = null;
  try {
    const clip = makeClip(path.join(work, 'clip.mp4'), { width: 320, height: 240, seconds: 4 });
    await server.start();
    const bare = await fetch(`${server.url}/api/v1/videos`);
    assert.equal(bare.status, 401, 'the API needs a key');
    browser = await launchBrowser(chromium, chromiumPath, { answerKeyForm: false });
    page = browser.page;
    watcher = watchPage(page);
    // Refused requests are logged by the browser: here they are the point.
    watcher.allowed.push(/status of 40[13]/, /EventSource's response has a status 401/);

    // 1. The page loads and says that a key is needed.
    const response = await page.goto(server.url + '/');
    assert.equal(response.status(), 200, 'the page itself is open');
    await page.waitForSelector(DIALOG, { timeout: 15000 });
    const asked = await keyForm(page);
    console.log(`the form: ${JSON.stringify(asked)}`);
    assert.equal(asked.heading, 'This server needs an API key');
    assert.match(asked.text, /sessionStorage/, 'the form says where the key is kept');
    assert.equal(asked.inputType, 'password', 'the key is typed into a password field');
    assert.equal((await pageState(page)).videos.length, 0);
    assert.equal((await storage(page)).session, null, 'no key kept before one is given');

    // 2. A wrong key: 401 in words, and the form again saying why.
    await typeKey(page, wrong);
    const words401 = await waitFor(() => shown(page, '#options-error'),
      { timeout: 15000, message: '#options-error after a wrong key' });
    console.log(`#options-error: ${JSON.stringify(words401)}`);
    assert.match(words401, /Not signed in: this server needs an API key\. unknown API key/, 'the 401 in words');
    // The library's first load asks again (the form says why) or, when it was waiting for the same form, failed
    // too and offers to try again, which asks.
    const next = await waitFor(async () => (await page.$(DIALOG) ? 'form' : null) ||
      ((await shown(page, '#library-error')) ? 'library' : null),
    { timeout: 15000, message: 'the form or #library-error' });
    if (next === 'library') {
      assert.match(await shown(page, '#library-error'), /Not signed in: this server needs an API key/,
        'the library says why');
      await page.click('#library-error button');
    }
    await page.waitForSelector(DIALOG, { timeout: 15000 });
    assert.match((await keyForm(page)).text, /The key given is not accepted \(unknown, revoked or mistyped\)\./,
      'the form asks again, saying the key was not accepted');

    // 3. A key that may only read: the page works, an upload is refused with 403 in words. The Operator tab stays
    // hidden: the page asks whether the key may read the figures, and it may not.
    const statsAsked = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/stats', { timeout: 15000 });
    await typeKey(page, reader);
    assert.equal((await statsAsked).status(), 403, 'a read key may not read the operator\'s figures');
    assert.equal(await page.isHidden('#tab-operator'), true, 'no Operator tab for a read key');
    await waitFor(async () => (await pageState(page)).connection?.state === 'open',
      { timeout: 15000, message: 'the event stream open with the read key' });
    await waitFor(() => page.evaluate(() => document.querySelector('#pipeline-select')?.value === 'hls'),
      { timeout: 15000, message: 'the pipelines read again once a good key was given' });
    assert.equal(await shown(page, '#options-error'), null, 'the options error is gone with a good key');
    await page.setInputFiles('#file-input', clip);
    const words403 = await waitFor(() => shown(page, '#upload-error'), { timeout: 30000, message: '#upload-error' });
    console.log(`#upload-error: ${JSON.stringify(words403)}`);
    assert.match(words403, /^Not allowed with this API key\. .*'upload'.*it grants: read/, 'the 403 in words');
    assert.match(await shown(page, '#upload-status'), /failed/);
    assert.equal((await server.json('/api/v1/videos')).body.videos.length, 0, 'nothing was uploaded');
    // The page offers to take another key.
    await page.waitForSelector(DIALOG, { timeout: 15000 });
    assert.match((await keyForm(page)).text, /This key may not upload: give one with the upload scope/);
    await screenshot(page, 'auth-form-403.png');
    // The key form (a modal dialog) over the upload's 403 in words.
    await auditAccessibility(page, 'the key form');

    // 4. The right key: upload, job, ready.
    await typeKey(page, uploader);
    await page.setInputFiles('#file-input', clip);
    await waitFor(async () => /uploaded/i.test((await pageState(page)).uploadStatus || ''),
      { timeout: 30000, message: '#upload-status "Uploaded: …"' });
    assert.equal(await shown(page, '#upload-error'), null, 'no upload error with the right key');
    const list = await server.json('/api/v1/videos');
    assert.equal(list.body.videos.length, 1);
    const id = list.body.videos[0].id;
    await waitFor(async () => (await pageState(page)).videos.find((v) => v.id === id)?.state === 'ready',
      { timeout: 120000, interval: 250, message: `the video ${id} ready in the library` });
    const jobs = (await server.json(`/api/v1/videos/${id}/jobs`)).body.jobs;
    assert.ok(jobs.some((j) => j.state === 'succeeded'), `a job succeeded: ${JSON.stringify(jobs)}`);

    // 5. Where the key is: sessionStorage only.
    const kept = await storage(page);
    assert.equal(kept.session, uploader, 'the key is in sessionStorage');
    for (const [k, v] of Object.entries(kept.local)) {
      assert.ok(!v.includes(uploader) && !k.includes(uploader), `the key is not in localStorage (${k})`);
    }
    assert.equal(kept.cookie, '', 'no cookie');
    assert.deepEqual(kept.cookies, [], 'the browser holds no cookie for the page');
    assert.ok(!kept.url.includes(uploader), 'the key is not in the address');
    // A reload of the tab keeps it (no form).
    await page.reload();
    await waitFor(async () => (await pageState(page)).videos.some((v) => v.id === id && v.state === 'ready'),
      { timeout: 15000, message: 'the library after a reload, with the kept key' });
    assert.equal(await page.$(DIALOG), null, 'no form after a reload of the same tab');
    assert.deepEqual(watcher.check(), [], 'no uncaught page errors and no unexpected console errors');

    // 6. The tab closed: a new tab of the same browser has no key and asks again; so does a new context.
    const context = browser.context;
    await page.close();
    page = await context.newPage();
    await page.goto(server.url + '/');
    await page.waitForSelector(DIALOG, { timeout: 15000 });
    assert.equal((await storage(page)).session, null, 'a new tab has no key');
    second = await launchBrowser(chromium, chromiumPath, { answerKeyForm: false });
    await second.page.goto(server.url + '/');
    await second.page.waitForSelector(DIALOG, { timeout: 15000 });
    const fresh = await storage(second.page);
    assert.equal(fresh.session, null, 'a new browser context has no key');
    assert.deepEqual(fresh.local, {}, 'nor anything in localStorage');
  } catch (e) {
    await dumpDiagnostics('auth-form', { page, watcher, servers: [server] });
    throw e;
  } finally {
    if (second) await second.close();
    if (browser) await browser.close();
    const rc = await server.stop();
    removeDir(work);
    assert.equal(rc, 0, `the server exits 0 on SIGTERM:\n${server.tail()}`);
  }
});
