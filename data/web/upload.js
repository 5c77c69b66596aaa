// The upload form: a file chosen or dropped is uploaded at once with tus (tus-js-client, which index.html
// loads as window.tus; docs/api.md "Resumable uploads"), in chunks that the server writes and confirms one
// by one: the bar shows the bytes the server has confirmed, Pause and Resume stop and go on, a lost
// connection is tried again (and goes on by itself when the browser is back online), and after a reload of
// the page the same file picked again goes on from where the server is. tus-js-client keeps the upload's
// address in localStorage (keyed by the file's name, type, size and date) until it has succeeded.

import { ApiError, api, askForKey, authHeaders, errorFromBody, on } from './api.js';
import { isStreamingOutput, loadPipelines } from './jobs.js';
import { el, formatMB } from './util.js';

const input = document.getElementById('file-input');
const zone = document.getElementById('drop-zone');
const titleInput = document.getElementById('title-input');
const pipelineSelect = document.getElementById('pipeline-select');
const encoderSelect = document.getElementById('encoder-select');
const pipelineHint = document.getElementById('pipeline-hint');
const optionsError = document.getElementById('options-error');
const progress = document.getElementById('upload-progress');
const statusEl = document.getElementById('upload-status');
const pauseButton = document.getElementById('upload-pause');
const resumeButton = document.getElementById('upload-resume');
const cancelButton = document.getElementById('upload-cancel');
const errorBox = document.getElementById('upload-error');

const MiB = 1024 * 1024;
// Waits before the tries again of a request that failed for want of the server; after the last one the
// upload stops until Resume is pressed or the browser is back online.
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000];

const statusOf = (err) => (err && err.originalResponse ? err.originalResponse.getStatus() : 0);

/**
 * Failures that another try may mend: no answer, the server's own trouble (5xx), another offset or a lock
 * (409, 423: a PATCH cut a moment ago may still hold the upload) and a rate limit (429). Others are refusals.
 */
function transient(status) {
  return status === 0 || status >= 500 || status === 409 || status === 423 || status === 429;
}

// The upload under way: {file, upload (a tus.Upload), state, confirmed and sent bytes, total, resumedFrom, speed, meter, shown}.
// state: 'starting' (looking for an earlier upload of the file), 'running', 'paused', 'interrupted' (the
// server could not be reached), 'finishing' (every byte is in: reading the video), 'canceling'.
let current = null;
let optionsFailed = false; // read again when a key is given (they failed for the want of one)
let onUploaded = () => {};

function showError(message) {
  errorBox.textContent = message || '';
  errorBox.hidden = !message;
}

function showButtons() {
  const state = current ? current.state : null;
  pauseButton.hidden = state !== 'running';
  resumeButton.hidden = state !== 'paused' && state !== 'interrupted';
  cancelButton.hidden = !current || state === 'finishing';
  cancelButton.disabled = state === 'canceling';
}

function setBusy(busy) {
  zone.classList.toggle('busy', busy);
  zone.setAttribute('aria-disabled', String(busy));
  input.disabled = busy;
  progress.hidden = false;
  showButtons();
}

/** Speed over the last two seconds of progress events, in bytes per second. */
function speedMeter() {
  const samples = [];
  return (loaded) => {
    const now = performance.now();
    samples.push([now, loaded]);
    while (samples.length > 2 && now - samples[0][0] > 2000) samples.shift();
    const [t0, b0] = samples[0];
    return now > t0 ? ((loaded - b0) * 1000) / (now - t0) : 0;
  };
}

/**
 * Bytes per PATCH: about a twentieth of the file, 1 to 8 MiB, so that the bar (what the server confirmed)
 * moves in steps of about 5 % and a chunk is never large for the server to write and sync at once.
 */
function chunkSizeFor(size) {
  return Math.min(8 * MiB, Math.max(MiB, Math.ceil(size / 20)));
}

const percent = (part, whole) => (whole > 0 ? Math.min(100, (part / whole) * 100) : 0);

function resumedNote(job) {
  return job.resumedFrom === null ? ''
    : ` (resumed: ${Math.floor(percent(job.resumedFrom, job.total))}% was already on the server)`;
}

function showWords(job, force) {
  const now = performance.now();
  // The words (read out by screen readers) twice a second at most, but at once when a chunk is confirmed.
  if (!force && now - job.shown < 500) return;
  job.shown = now;
  let text = `${formatMB(job.confirmed)} of ${formatMB(job.total)} on the server, ${formatMB(job.speed)}/s${resumedNote(job)}`;
  if (job.sent >= job.total && job.confirmed < job.total) text += '; sent: the server is checking the file…';
  statusEl.textContent = text;
}

// Bytes handed to the connection: the speed, and the words once everything is sent.
function showSent(job, sent) {
  if (job !== current || job.state !== 'running') return;
  job.speed = job.meter(sent);
  job.sent = sent;
  showWords(job, job.total > 0 && sent >= job.total);
}

// Bytes the server confirmed (the Upload-Offset of a PATCH's answer): the bar.
function showConfirmed(job, accepted) {
  if (job !== current) return;
  job.confirmed = accepted;
  progress.value = percent(accepted, job.total);
  if (job.state === 'running') showWords(job, true);
}

function end(job) {
  if (job !== current) return;
  current = null;
  setBusy(false);
}

// Removes what tus-js-client keeps of an upload that cannot go on (refused, failed, gone).
function forget(stored) {
  if (!stored || !stored.urlStorageKey) return Promise.resolve();
  return window.tus.defaultOptions.urlStorage.removeUpload(stored.urlStorageKey).catch(() => {});
}

async function forgetUpload(upload) {
  try {
    const stored = await upload.findPreviousUploads();
    await Promise.all(stored.filter((s) => s.uploadUrl === upload.url).map(forget));
  } catch {
    // nothing kept
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The video an upload became. The last PATCH's answer names it (Sluice-Video-Id); an upload resumed with
 * all its bytes already there ends with a HEAD, which does not: the upload's JSON does, once its ingest is over.
 */
async function videoIdOf(job, lastResponse) {
  const id = lastResponse ? lastResponse.getHeader('Sluice-Video-Id') : null;
  if (id) return id;
  for (let i = 0; i < 600; i++) {
    const u = await api(job.upload.url);
    if (u && u.state === 'completed' && u.video_id) return u.video_id;
    if (u && u.state === 'failed') {
      throw new ApiError(u.error && u.error.message ? u.error.message : 'The server could not take the file.',
        { code: u.error ? u.error.code : '' });
    }
    await sleep(1000);
  }
  throw new ApiError('The server took every byte but has not said which video the file became.');
}

async function succeeded(job, lastResponse) {
  if (job !== current) return;
  job.state = 'finishing';
  showButtons();
  progress.value = 100;
  try {
    const id = await videoIdOf(job, lastResponse);
    const video = await api(`/api/v1/videos/${encodeURIComponent(id)}`);
    statusEl.textContent = `Uploaded: ${video ? video.title || video.filename : job.file.name}`;
    titleInput.value = '';
    if (video) onUploaded(video);
  } catch (e) {
    progress.value = 0;
    statusEl.textContent = `The upload of ${job.file.name} failed.`;
    showError(e.message);
  } finally {
    end(job);
  }
}

function failed(job, err) {
  if (job !== current || job.state === 'canceling') return;
  const res = err && err.originalResponse;
  const status = statusOf(err);
  if (transient(status)) {
    // After the tries again (or at once when offline): what the server confirmed is kept; Resume (or the
    // network coming back) goes on from there.
    job.state = 'interrupted';
    showButtons();
    statusEl.textContent = `Interrupted with ${formatMB(job.confirmed)} of ${formatMB(job.total)} on the server: ` +
      'Resume goes on from there (it does by itself when the network is back).';
    showError(status === 0
      ? 'The connection to the server was lost. Check that sluice is running and the network is up.'
      : errorFromBody(status, '', res.getBody()).message);
    return;
  }
  const error = errorFromBody(status, '', res.getBody());
  if (status === 401) {
    askForKey('Give a key with the upload scope, then upload again.');
  } else if (error.code === 'forbidden') {
    askForKey('This key may not upload: give one with the upload scope, then upload again.');
  } else {
    // Refused for good (not media, too large, a bad option, gone): nothing to resume.
    forgetUpload(job.upload);
  }
  progress.value = 0;
  statusEl.textContent = `The upload of ${job.file.name} failed.`;
  showError(error.message);
  end(job);
}

/**
 * An earlier upload of this file (same name, type, size and date, to this server) that did not finish, e.g.
 * before a reload of the page: the upload goes on from the server's offset. One that is gone, failed or of
 * another length is forgotten, and the file goes up anew.
 */
async function resumeEarlier(job) {
  const stored = await job.upload.findPreviousUploads();
  if (!stored.length) return;
  stored.sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime));
  const [newest, ...older] = stored;
  await Promise.all(older.map(forget));
  let info = null;
  try {
    info = await api(newest.uploadUrl);
  } catch (e) {
    if (e.status === 404 || e.status === 410) {
      await forget(newest);
      return;
    }
    // Not known now (no answer): tus-js-client asks the server again (HEAD) when it starts.
  }
  if (info && (info.state === 'failed' || (info.length !== null && info.length !== job.file.size))) {
    await forget(newest);
    return;
  }
  job.upload.resumeFromPreviousUpload(newest);
  if (info) {
    job.resumedFrom = info.offset;
    showConfirmed(job, info.offset);
    statusEl.textContent = `Resuming: ${Math.floor(percent(info.offset, job.total))}% ` +
      `(${formatMB(info.offset)} of ${formatMB(job.total)}) already on the server`;
  }
}

async function start(file) {
  if (!file) return;
  if (current) {
    showError('An upload is already under way (or paused): wait for it to finish or cancel it first.');
    return;
  }
  const tus = window.tus;
  if (!tus || !tus.isSupported) {
    showError('The upload library (tus-js-client) did not load: reload the page.');
    return;
  }
  showError('');
  progress.value = 0;
  statusEl.textContent = `Starting the upload of ${file.name} (${formatMB(file.size)})…`;
  const metadata = { filename: file.name };
  if (file.type) metadata.filetype = file.type;
  const fields = {
    title: titleInput.value.trim(),
    pipeline: pipelineSelect.disabled ? '' : pipelineSelect.value,
    encoder: encoderSelect.disabled ? '' : encoderSelect.value,
  };
  for (const [name, value] of Object.entries(fields)) if (value) metadata[name] = value;

  const job = {
    file, state: 'starting', confirmed: 0, sent: 0, speed: 0, total: file.size, resumedFrom: null, meter: speedMeter(), shown: 0,
  };
  job.upload = new tus.Upload(file, {
    endpoint: new URL('/api/v1/uploads', location.href).href,
    chunkSize: chunkSizeFor(file.size),
    retryDelays: RETRY_DELAYS,
    onShouldRetry: (err) => transient(statusOf(err)) && navigator.onLine !== false,
    headers: authHeaders({}),
    metadata,
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    onProgress: (sent) => showSent(job, sent),
    onChunkComplete: (chunk, accepted) => showConfirmed(job, accepted),
    onSuccess: (payload) => succeeded(job, payload ? payload.lastResponse : null),
    onError: (err) => failed(job, err),
  });
  current = job;
  setBusy(true);
  try {
    await resumeEarlier(job);
  } catch {
    // nothing kept: a new upload
  }
  if (job !== current || job.state !== 'starting') return; // canceled meanwhile
  job.state = 'running';
  showButtons();
  job.meter(job.confirmed);
  job.upload.start();
}

function pause() {
  const job = current;
  if (!job || job.state !== 'running') return;
  job.state = 'paused';
  job.upload.abort();
  showButtons();
  statusEl.textContent = `Paused with ${formatMB(job.confirmed)} of ${formatMB(job.total)} on the server.`;
}

function resume() {
  const job = current;
  if (!job || (job.state !== 'paused' && job.state !== 'interrupted')) return;
  job.state = 'running';
  showError('');
  job.meter = speedMeter();
  job.meter(job.confirmed);
  job.upload.options.headers = authHeaders({});
  showButtons();
  statusEl.textContent = `Resuming with ${formatMB(job.confirmed)} of ${formatMB(job.total)} on the server…`;
  job.upload.start();
}

// Cancel: the upload is deleted from the server (tus termination) and forgotten here.
async function cancel() {
  const job = current;
  if (!job || job.state === 'canceling' || job.state === 'finishing') return;
  job.state = 'canceling';
  showButtons();
  statusEl.textContent = 'Canceling…';
  let removed = true;
  const { upload } = job;
  upload.abort();
  if (upload.url) {
    // The server keeps an upload locked while a PATCH writes it (a DELETE then gets 423): the PATCH just
    // cut is let go first. tus-js-client tries a 423 again anyway.
    await sleep(500);
    try {
      upload.options.headers = authHeaders({});
      await window.tus.Upload.terminate(upload.url, upload.options);
    } catch {
      removed = false;
    }
    await forgetUpload(upload);
  }
  progress.value = 0;
  statusEl.textContent = removed ? 'Canceled'
    : 'Canceled (the server could not be told: what it received goes when the upload expires)';
  end(job);
}

function fillSelect(select, options, selected) {
  select.replaceChildren(...options.map(({ value, text, title }) =>
    el('option', { value, text, title, selected: value === selected })));
  select.value = selected;
  select.disabled = false;
}

async function loadOptions() {
  const problems = [];
  const [pipelines, encoders] = await Promise.allSettled([loadPipelines(), api('/api/v1/encoders')]);

  if (pipelines.status === 'fulfilled' && pipelines.value && Array.isArray(pipelines.value.pipelines)) {
    // Only what makes a video playable: posters, storyboards and previews follow an upload on their own, and the
    // live ladders (live-hls, live-cmaf) are streams' pipelines, not an upload's.
    const list = pipelines.value.pipelines.filter((p) => isStreamingOutput(p.output) && !/^live-/.test(p.output));
    const summaries = new Map(list.map((p) => [p.name, p.summary || '']));
    fillSelect(pipelineSelect, list.map((p) => ({ value: p.name, text: p.name, title: p.summary })),
      pipelines.value.default || (list[0] && list[0].name));
    const showHint = () => { pipelineHint.textContent = summaries.get(pipelineSelect.value) || ''; };
    pipelineSelect.addEventListener('change', showHint);
    showHint();
  } else {
    problems.push(`pipelines (${pipelines.reason ? pipelines.reason.message : 'an unexpected answer'})`);
  }

  if (encoders.status === 'fulfilled' && encoders.value && Array.isArray(encoders.value.encoders)) {
    const e = encoders.value;
    const options = [{ value: 'auto', text: e.auto ? `auto (${e.auto})` : 'auto', title: 'The first encoder that works here' }];
    for (const enc of e.encoders) {
      if (enc.runs) options.push({ value: enc.name, text: `${enc.name} · ${enc.hardware ? 'hardware' : 'software'}`, title: enc.summary });
    }
    fillSelect(encoderSelect, options, options.some((o) => o.value === e.default) ? e.default : 'auto');
  } else {
    problems.push(`encoders (${encoders.reason ? encoders.reason.message : 'an unexpected answer'})`);
  }

  optionsFailed = problems.length > 0;
  optionsError.textContent = optionsFailed
    ? `Could not read the ${problems.join(' and ')}; uploads use the server's defaults.` : '';
  optionsError.hidden = !optionsFailed;
}

/** onUploaded(video) is called with the video an upload became. */
export function initUpload(callbacks = {}) {
  if (callbacks.onUploaded) onUploaded = callbacks.onUploaded;
  input.addEventListener('change', () => {
    const file = input.files && input.files[0];
    start(file);
    input.value = ''; // so that choosing the same file again (to resume it) fires "change"
  });
  zone.addEventListener('click', (e) => {
    // The label and the input open the picker themselves.
    if (current || e.target.closest('label, input')) return;
    input.click();
  });
  zone.addEventListener('keydown', (e) => {
    if (e.target !== zone || (e.key !== 'Enter' && e.key !== ' ')) return;
    e.preventDefault();
    if (!current) input.click();
  });
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  zone.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = current ? 'none' : 'copy';
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    const files = e.dataTransfer ? e.dataTransfer.files : null;
    if (!files || files.length === 0) return;
    start(files[0]); // one at a time: the first file of several
  });
  // A file dropped next to the zone must not replace the page with the file.
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (hasFiles(e) && !zone.contains(e.target)) {
        e.preventDefault();
        if (e.dataTransfer) e.dataTransfer.dropEffect = 'none';
      }
    });
  }
  pauseButton.addEventListener('click', pause);
  resumeButton.addEventListener('click', resume);
  cancelButton.addEventListener('click', cancel);
  // Back online after a lost connection: the interrupted upload goes on.
  window.addEventListener('online', () => {
    if (current && current.state === 'interrupted') resume();
  });
  // A key given meanwhile is the one the next requests of the upload send.
  on('key', () => {
    if (current && current.upload) current.upload.options.headers = authHeaders({});
  });
  loadOptions();
  on('key', () => {
    if (optionsFailed) loadOptions();
  });
}
