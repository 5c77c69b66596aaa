// The library: every video, newest first, kept up to date by the server's events (no polling).

import { api, on } from './api.js';
import { loadPipelines, mainJob, outputOf } from './jobs.js';
import { el, icon, formatBytes, formatDate, formatDuration, formatJobStats, formatSize } from './util.js';

const list = document.getElementById('library');
const emptyNote = document.getElementById('library-empty');
const countEl = document.getElementById('library-count');
const errorBox = document.getElementById('library-error');

const videos = new Map(); // id → video JSON, as the API gives it
const items = new Map(); // id → its <li>
let order = []; // ids, newest first
const deleted = new Set(); // ids seen deleted: a late answer must not bring them back
const fetchSeq = new Map(); // id → number of the newest GET of that video; older answers are dropped
let loaded = false;
let loadSeq = 0;
let touchedWhileLoading = null; // ids changed by events while the list was being read

const JOB_TO_VIDEO_STATE = {
  queued: 'queued',
  running: 'processing',
  succeeded: 'ready',
  failed: 'failed',
  canceled: 'canceled',
};

export function videoTitle(v) {
  return v.title || v.filename || v.id;
}

/** The video's picture size as shown (pixel aspect ratio and rotation applied), or "audio only". */
export function videoResolution(v) {
  const pic = v.media && v.media.video;
  if (pic) return formatSize(pic.display_width || pic.width, pic.display_height || pic.height);
  return v.media && v.media.audio ? 'audio only' : '';
}

/** The poster's URL (a same-site path, from the poster job), or null while there is none. */
export function posterUrl(v) {
  return typeof v.poster === 'string' && v.poster.startsWith('/') ? v.poster : null;
}

/** True when the video has something to play (an HLS playlist or a DASH manifest). */
export function isPlayable(v) {
  return Boolean(v.playback && (v.playback.hls || v.playback.dash));
}

function showError(message) {
  errorBox.replaceChildren();
  if (message) {
    errorBox.append(message);
    errorBox.hidden = false;
  } else {
    errorBox.hidden = true;
  }
}

function updateEmpty() {
  countEl.textContent = loaded && order.length > 0 ? String(order.length) : '';
  if (!loaded) {
    emptyNote.textContent = 'Loading the library…';
    emptyNote.hidden = false;
  } else {
    emptyNote.textContent = 'No videos yet. Upload one above: it shows up here, with its progress.';
    emptyNote.hidden = order.length > 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering

// The progress, or the error, of the video's streaming job (not of its poster, storyboard or preview).
function jobPart(v) {
  const job = mainJob(v);
  if (!job) return [];
  if (job.state === 'queued' || job.state === 'running') {
    const percent = job.state === 'running' && job.progress ? Math.round(job.progress.percent || 0) : 0;
    let stats;
    if (job.state === 'running') stats = formatJobStats(job.progress);
    else if (job.next_attempt) stats = `Retrying at ${formatDate(job.next_attempt)} (attempt ${job.attempts + 1} of ${job.max_attempts})`;
    else stats = 'Waiting in the queue…';
    return [
      el('div', { class: 'job' },
        el('progress', { class: 'job-progress', max: '100', value: String(percent), 'aria-label': `Transcoding ${videoTitle(v)}` }),
        el('span', { class: 'job-stats', text: stats })),
    ];
  }
  if (job.state === 'failed') {
    const message = (job.error && job.error.message) || 'The transcode failed (no reason given).';
    return [el('p', { class: 'job-error', text: message })];
  }
  return [];
}

function renderItem(v) {
  const title = videoTitle(v);
  const playable = isPlayable(v);
  const job = mainJob(v);
  const href = `#/videos/${encodeURIComponent(v.id)}`;

  // The poster job's picture once it has one; a drawn placeholder before (and if the picture fails).
  const placeholder = () => el('div', { class: 'poster-placeholder', 'aria-hidden': 'true' }, icon(v.media && !v.media.video ? 'audio' : 'play'));
  const poster = posterUrl(v);
  const thumb = poster
    ? el('img', { class: 'poster', src: poster, alt: '', loading: 'lazy', decoding: 'async', on: { error: (e) => e.target.replaceWith(placeholder()) } })
    : placeholder();

  const resolution = videoResolution(v);
  const meta = el('p', { class: 'meta' },
    el('span', { class: 'duration', title: 'Duration', text: formatDuration(v.duration) }),
    resolution ? el('span', { class: 'resolution', title: 'Source picture', text: resolution }) : null,
    el('span', { class: 'size', text: formatBytes(v.size) }),
    el('time', { class: 'created', datetime: v.created, text: formatDate(v.created) }));

  const actions = el('div', { class: 'actions' },
    playable ? el('a', { class: 'play button primary', href, 'aria-label': `Play ${title}`, text: v.state === 'processing' ? 'Watch live' : 'Play' }) : null,
    v.state === 'failed' || v.state === 'canceled'
      ? el('button', { type: 'button', class: 'retry', text: 'Retry', 'aria-label': `Retry ${title}`, on: { click: () => retry(v.id) } })
      : null,
    job && (job.state === 'queued' || job.state === 'running')
      ? el('button', { type: 'button', class: 'cancel-job', text: 'Cancel job', 'aria-label': `Cancel the job of ${title}`, on: { click: () => cancelJob(v.id, job.id) } })
      : null,
    el('button', { type: 'button', class: 'delete danger', text: 'Delete', 'aria-label': `Delete ${title}`, on: { click: () => remove(v.id) } }));

  return el('li', { class: 'video', dataset: { videoId: v.id, state: v.state } },
    playable ? el('a', { class: 'thumb', href, tabindex: '-1', 'aria-hidden': 'true' }, thumb) : el('div', { class: 'thumb' }, thumb),
    el('div', { class: 'info' },
      el('div', { class: 'headline' },
        el('h3', { class: 'title', title: v.filename ? `File: ${v.filename}` : null, text: title }),
        el('span', { class: 'state badge', dataset: { state: v.state }, text: v.state })),
      meta,
      ...jobPart(v)),
    actions);
}

/** Puts a video's item in place, keeping keyboard focus on the same control if it had it. */
function place(v) {
  const fresh = renderItem(v);
  const old = items.get(v.id);
  items.set(v.id, fresh);
  if (old && old.isConnected) {
    const focused = old.contains(document.activeElement) ? document.activeElement : null;
    old.replaceWith(fresh);
    if (focused) {
      const key = ['play', 'retry', 'cancel-job', 'delete'].find((c) => focused.classList.contains(c));
      const target = (key && fresh.querySelector(`.${key}`)) || fresh.querySelector('.actions a, .actions button');
      if (target) target.focus();
    }
  } else {
    const index = order.indexOf(v.id);
    const next = order.slice(index + 1).map((id) => items.get(id)).find((node) => node && node.isConnected);
    list.insertBefore(fresh, next || null);
  }
}

function renderAll() {
  items.clear();
  list.replaceChildren(...order.map((id) => {
    const node = renderItem(videos.get(id));
    items.set(id, node);
    return node;
  }));
  updateEmpty();
}

// ---------------------------------------------------------------------------------------------
// The model

/** Adds a video or updates it (from an upload's answer, a GET or an event). */
export function upsert(v) {
  if (!v || !v.id || deleted.has(v.id)) return;
  if (!loaded) return; // the list being read includes it
  if (!videos.has(v.id)) {
    // Newest first: before the first video created earlier (ties: the one we learn of later is newer).
    const created = v.created || '';
    let index = order.findIndex((id) => (videos.get(id).created || '') < created);
    if (index < 0) index = order.length;
    order.splice(index, 0, v.id);
  }
  videos.set(v.id, v);
  place(v);
  updateEmpty();
}

function forget(id) {
  deleted.add(id);
  videos.delete(id);
  order = order.filter((x) => x !== id);
  const node = items.get(id);
  items.delete(id);
  if (node) node.remove();
  updateEmpty();
}

/** Reads one video again; an answer overtaken by a newer request for the same video is dropped. */
export async function refreshVideo(id) {
  if (touchedWhileLoading) touchedWhileLoading.add(id);
  const seq = (fetchSeq.get(id) || 0) + 1;
  fetchSeq.set(id, seq);
  try {
    const v = await api(`/api/v1/videos/${encodeURIComponent(id)}`);
    if (fetchSeq.get(id) === seq) upsert(v);
  } catch (e) {
    if (e.status === 404) forget(id);
    else if (fetchSeq.get(id) === seq) showError(`Could not read video ${id}: ${e.message}`);
  }
}

export async function loadLibrary() {
  const seq = ++loadSeq;
  touchedWhileLoading = new Set();
  try {
    const body = await api('/api/v1/videos');
    if (seq !== loadSeq) return;
    if (!body || !Array.isArray(body.videos)) throw new Error('The server sent a video list without "videos".');
    videos.clear();
    order = [];
    for (const v of body.videos) {
      if (!v || !v.id || deleted.has(v.id)) continue;
      videos.set(v.id, v);
      order.push(v.id);
    }
    loaded = true;
    showError('');
    renderAll();
    // Events that arrived while the list was on its way may be newer than it.
    const touched = touchedWhileLoading;
    touchedWhileLoading = null;
    for (const id of touched) refreshVideo(id);
  } catch (e) {
    if (seq !== loadSeq) return;
    touchedWhileLoading = null;
    showError(el('span', {},
      `Could not load the library: ${e.message} `,
      el('button', { type: 'button', class: 'link-button', text: 'Try again', on: { click: () => loadLibrary() } })));
    if (!loaded) {
      emptyNote.hidden = true;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Actions

const pending = new Set(); // "id action" of requests under way: a second click waits for the first

// The button is marked busy rather than disabled: disabling it would take the keyboard focus away.
async function busy(id, action, what, work) {
  const key = `${id} ${action}`;
  if (pending.has(key)) return;
  pending.add(key);
  const button = () => items.get(id) && items.get(id).querySelector(`.${action}`);
  if (button()) button().setAttribute('aria-disabled', 'true');
  try {
    await work();
    showError('');
  } catch (e) {
    showError(`Could not ${what}: ${e.message}`);
  } finally {
    pending.delete(key);
    if (button()) button().removeAttribute('aria-disabled');
  }
}

function remove(id) {
  const v = videos.get(id);
  if (!v) return;
  if (!window.confirm(`Delete "${videoTitle(v)}"? Its upload, everything made from it (packages, poster, storyboard, preview) and its jobs are removed for good.`)) return;
  busy(id, 'delete', `delete "${videoTitle(v)}"`, async () => {
    const node = items.get(id);
    const hadFocus = node && node.contains(document.activeElement);
    const next = node && (node.nextElementSibling || node.previousElementSibling);
    await api(`/api/v1/videos/${encodeURIComponent(id)}`, { method: 'DELETE' });
    forget(id);
    if (hadFocus) {
      const target = next && next.isConnected ? next.querySelector('.delete') : null;
      (target || document.getElementById('library-heading')).focus();
    }
  });
}

function retry(id) {
  busy(id, 'retry', `retry "${videoTitle(videos.get(id) || { id })}"`, async () => {
    // Run the failed job again as it was asked for: same pipeline, encoder, ladder and parameters.
    const last = mainJob(videos.get(id) || {});
    const body = last ? { pipeline: last.pipeline, encoder: last.encoder, ladder: last.ladder, params: last.params || {} } : {};
    const job = await api(`/api/v1/videos/${encodeURIComponent(id)}/jobs`, { method: 'POST', body });
    if (job) applyJob(job);
  });
}

function cancelJob(id, jobId) {
  busy(id, 'cancel-job', `cancel the job of "${videoTitle(videos.get(id) || { id })}"`, async () => {
    const job = await api(`/api/v1/jobs/${encodeURIComponent(jobId)}`, { method: 'DELETE' });
    if (job) applyJob(job);
  });
}

// ---------------------------------------------------------------------------------------------
// Events

// What the server's video JSON will say about playback after this streaming job's event (docs/api.md:
// an hls package's master playlist while the job runs, live, and once it succeeded; a cmaf package's
// master playlist and DASH manifest once it succeeded), so that the item's state and its Play link
// change together; the GET that follows confirms it.
function updatePlayback(v, job) {
  const kind = outputOf(job);
  if (!job.pipeline || (kind !== 'hls' && kind !== 'cmaf')) return;
  const playback = { ...(v.playback || {}) };
  const base = `/videos/${encodeURIComponent(v.id)}/${encodeURIComponent(job.pipeline)}/`;
  const urls = { hls: `${base}master.m3u8`, dash: kind === 'cmaf' ? `${base}manifest.mpd` : null };
  if (job.state === 'succeeded' || (job.state === 'running' && kind === 'hls')) {
    playback.hls = urls.hls;
    if (urls.dash) playback.dash = urls.dash;
    playback.live = job.state === 'running';
  } else {
    playback.live = false;
    const earlier = (v.jobs || []).some((j) => j.id !== job.id && j.pipeline === job.pipeline && j.state === 'succeeded');
    if (!earlier) {
      for (const role of ['hls', 'dash']) if (playback[role] === urls[role]) delete playback[role];
    }
  }
  v.playback = playback;
}

function applyJob(job) {
  const v = videos.get(job.video_id);
  if (touchedWhileLoading) touchedWhileLoading.add(job.video_id);
  if (!v) {
    if (loaded && !deleted.has(job.video_id)) refreshSoon(job.video_id);
    return;
  }
  const jobs = Array.isArray(v.jobs) ? v.jobs : (v.jobs = []);
  const index = jobs.findIndex((j) => j.id === job.id);
  if (index >= 0) jobs[index] = { ...jobs[index], ...job, progress: job.progress || jobs[index].progress };
  else jobs.unshift(job);
  if (mainJob(v) === jobs[index >= 0 ? index : 0]) {
    v.state = JOB_TO_VIDEO_STATE[job.state] || v.state;
    updatePlayback(v, job);
  }
  place(v);
  // The playback URLs (a live playlist appears when the job starts) and the poster, storyboard and
  // preview (when their jobs succeed) come with the video: read it again, a moment later, so that a
  // burst of events (or a deletion: its job is canceled first) makes one request or none.
  refreshSoon(v.id);
}

const refreshTimers = new Map();
function refreshSoon(id) {
  clearTimeout(refreshTimers.get(id));
  refreshTimers.set(id, setTimeout(() => {
    refreshTimers.delete(id);
    if (!deleted.has(id) && !pending.has(`${id} delete`)) refreshVideo(id);
  }, 250));
}

function applyProgress(p) {
  const v = videos.get(p.video);
  if (!v || !Array.isArray(v.jobs)) return;
  const job = v.jobs.find((j) => j.id === p.job);
  if (!job) return;
  job.progress = { percent: p.percent, position: p.position, duration: p.duration, fps: p.fps, speed: p.speed, eta: p.eta };
  const node = items.get(v.id);
  const bar = node && node.querySelector('.job-progress');
  const stats = node && node.querySelector('.job-stats');
  if (!bar || !stats || mainJob(v) !== job) return;
  bar.value = Math.round(p.percent || 0);
  stats.textContent = formatJobStats(job.progress);
}

export function initLibrary() {
  updateEmpty();
  // Which pipelines make posters and the like rather than something to stream: the built-in ones are
  // known by name; a list that names others redraws the items.
  loadPipelines().then(() => { if (loaded) renderAll(); }, () => {});
  on('job', applyJob);
  on('progress', applyProgress);
  on('video', (e) => {
    if (e.action === 'deleted') forget(e.id);
    else if ((e.action === 'created' || e.action === 'playable') && loaded) refreshVideo(e.id);
  });
  // Read the list once the event stream is open, so that no change falls between the two; without a
  // stream (a proxy that buffers it, a server that is down) read it anyway, and say what went wrong.
  on('open', ({ resync }) => {
    if (resync) loadLibrary();
  });
  setTimeout(() => {
    if (loadSeq === 0) loadLibrary();
  }, 1500);
}
