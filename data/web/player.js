// The player page (#/videos/ID): hls.js on the video's master playlist, a quality menu over its
// levels, what plays now and the bandwidth estimate, the video's facts and its playlist URL.

import { api, on } from './api.js';
import { videoResolution, videoTitle } from './library.js';
import { el, formatBytes, formatDate, formatDuration, formatRate, formatSize, rungName } from './util.js';

const view = document.getElementById('player-view');
const video = document.getElementById('player');
const stage = video.parentElement;
const titleEl = document.getElementById('video-title');
const facts = document.getElementById('video-facts');
const liveNote = document.getElementById('live-note');
const playerError = document.getElementById('player-error');
const waitingNote = document.getElementById('player-waiting');
const qualitySelect = document.getElementById('quality-select');
const currentLevelEl = document.getElementById('current-level');
const bandwidthEl = document.getElementById('bandwidth-estimate');
const urlInput = document.getElementById('playlist-url');
const copyButton = document.getElementById('copy-url');
const copyStatus = document.getElementById('copy-status');

let currentId = null; // the video shown, null when the page is elsewhere
let hls = null;
let attachedUrl = null;
let loadSeq = 0;
let recoveries = 0;

function showError(message) {
  playerError.textContent = message || '';
  playerError.hidden = !message;
}

function levelLabel(level) {
  if (!level) return '–';
  const rate = formatRate(level.bitrate);
  if (!level.width || !level.height) return `Audio · ${rate}`;
  return `${rungName(level.width, level.height)} · ${formatSize(level.width, level.height)} · ${rate}`;
}

function resetControls() {
  qualitySelect.replaceChildren(el('option', { value: '-1', text: 'Auto' }));
  qualitySelect.value = '-1';
  qualitySelect.disabled = true;
  currentLevelEl.textContent = '–';
  currentLevelEl.dataset.level = '-1';
  bandwidthEl.textContent = '–';
}

function destroyPlayer() {
  if (hls) {
    hls.destroy();
    hls = null;
  }
  window.sluicePlayer = null;
  attachedUrl = null;
  recoveries = 0;
  if (video.getAttribute('src') !== null) {
    video.removeAttribute('src');
    video.load();
  }
  resetControls();
}

// ---------------------------------------------------------------------------------------------
// The facts about the video

function renderMeta(v) {
  titleEl.textContent = videoTitle(v);
  document.title = `${videoTitle(v)} · sluice`;
  const m = v.media || {};
  const pic = m.video;
  const sound = m.audio;
  stage.classList.toggle('audio-only', !pic && Boolean(sound));
  const rows = [['Duration', formatDuration(v.duration)]];
  if (pic) {
    const fps = typeof pic.fps === 'number' && pic.fps > 0 ? `${Math.round(pic.fps * 100) / 100} fps` : '';
    rows.push(['Source video', [videoResolution(v), pic.codec, fps].filter(Boolean).join(' · ')]);
  }
  if (sound) {
    const channels = sound.channels ? `${sound.channels} ch` : '';
    const rate = sound.sample_rate ? `${sound.sample_rate / 1000} kHz` : '';
    rows.push(['Source audio', [sound.codec, channels, rate].filter(Boolean).join(' · ')]);
  }
  rows.push(['File', [v.filename, formatBytes(v.size)].filter(Boolean).join(' · ')]);
  rows.push(['Uploaded', formatDate(v.created)]);
  const done = (v.jobs || []).find((j) => j.state === 'succeeded' && j.result && Array.isArray(j.result.renditions));
  if (done) {
    rows.push(['Renditions', done.result.renditions.map((r) => r.name || formatSize(r.width, r.height)).join(', ')]);
  }
  facts.replaceChildren(...rows.map(([name, value]) => el('div', {}, el('dt', { text: name }), el('dd', { text: value || '–' }))),
    el('div', {}, el('dt', { text: 'State' }), el('dd', {}, el('span', { class: 'state badge', dataset: { state: v.state }, text: v.state }))));

  const job = v.jobs && v.jobs[0];
  if (v.state === 'failed' && job && job.error) showError(`The transcode failed: ${job.error.message}`);
  else if (v.state === 'canceled') showError('The transcode was canceled: nothing new to play. Retry it from the library.');
  else showError('');
}

function renderLive(v, percent) {
  const live = Boolean(v.playback && v.playback.hls && v.playback.live);
  liveNote.hidden = !live;
  const done = typeof percent === 'number' ? ` (${Math.round(percent)}% done)` : '';
  liveNote.textContent = live
    ? `Still processing${done}: this plays the live (EVENT) playlist, which grows as segments are encoded. ` +
      'When the job is done it becomes the complete video.'
    : '';
}

// ---------------------------------------------------------------------------------------------
// Playback

function fillLevels() {
  const options = [el('option', { value: '-1', text: 'Auto' })];
  hls.levels.forEach((level, index) => options.push(el('option', { value: String(index), text: levelLabel(level) })));
  qualitySelect.replaceChildren(...options);
  qualitySelect.value = hls.autoLevelEnabled ? '-1' : String(hls.currentLevel);
  qualitySelect.disabled = hls.levels.length === 0;
}

function showLevel(index) {
  const level = hls && hls.levels[index];
  if (!level) return;
  currentLevelEl.dataset.level = String(index);
  currentLevelEl.textContent = level.width && level.height
    ? `${rungName(level.width, level.height)} (${formatSize(level.width, level.height)})`
    : `audio (${formatRate(level.bitrate)})`;
}

function showBandwidth() {
  if (hls && Number.isFinite(hls.bandwidthEstimate)) bandwidthEl.textContent = formatRate(hls.bandwidthEstimate);
}

function onHlsError(data) {
  if (!data.fatal) return; // hls.js retries those itself
  const { ErrorTypes } = window.Hls;
  if (data.type === ErrorTypes.NETWORK_ERROR && recoveries < 5) {
    recoveries += 1;
    showError(`A network error stopped the loading (${data.details}); trying again…`);
    setTimeout(() => { if (hls) hls.startLoad(); }, 1000 * recoveries);
    return;
  }
  if (data.type === ErrorTypes.MEDIA_ERROR && recoveries < 3) {
    recoveries += 1;
    showError(`The browser could not decode the video (${data.details}); recovering…`);
    hls.recoverMediaError();
    return;
  }
  showError(`Playback stopped: ${data.details}${data.reason ? ` (${data.reason})` : ''}. Reload the page to try again.`);
  destroyPlayer();
}

function attach(url, live) {
  if (attachedUrl === url) return;
  destroyPlayer();
  attachedUrl = url;
  const Hls = window.Hls;
  if (Hls && Hls.isSupported()) {
    // A playlist that still grows starts at its beginning, not at its live edge.
    hls = new Hls({ startPosition: live ? 0 : -1 });
    window.sluicePlayer = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      fillLevels();
      video.play().catch(() => {}); // autoplay may be refused; the controls are there
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => showLevel(data.level));
    hls.on(Hls.Events.FRAG_LOADED, () => {
      showBandwidth();
      if (recoveries > 0) {
        recoveries = 0;
        showError('');
      }
    });
    hls.on(Hls.Events.ERROR, (_, data) => onHlsError(data));
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    // Safari and others with HLS built in: the browser picks the level itself.
    video.src = url;
    currentLevelEl.textContent = 'chosen by the browser';
    video.play().catch(() => {});
  } else if (!Hls) {
    showError('The player library (hls.js) is missing: run "npm ci" in data/web on the server.');
  } else {
    showError('This browser can play neither HLS nor Media Source Extensions. The playlist URL below works in VLC, mpv or ffplay.');
  }
}

async function load(id) {
  const seq = ++loadSeq;
  let v;
  try {
    v = await api(`/api/v1/videos/${encodeURIComponent(id)}`);
  } catch (e) {
    if (seq !== loadSeq || currentId !== id) return;
    if (e.status === 404) {
      titleEl.textContent = 'No such video';
      facts.replaceChildren();
      waitingNote.hidden = true;
      liveNote.hidden = true;
      showError('This video does not exist (any more). It may have been deleted.');
      destroyPlayer();
    } else {
      showError(`Could not read the video: ${e.message}`);
    }
    return;
  }
  if (seq !== loadSeq || currentId !== id) return;
  const job = v.jobs && v.jobs[0];
  const live = Boolean(v.playback && v.playback.live);
  // The server lists a running job's playlist (playback.hls) once every rendition has a first segment,
  // and says so with a "playable" video event, which reloads this page's state.
  renderMeta(v);
  renderLive(v, job && job.progress ? job.progress.percent : undefined);
  const url = v.playback && v.playback.hls;
  waitingNote.hidden = Boolean(url) || v.state === 'failed' || v.state === 'canceled';
  if (!url) waitingNote.textContent = `Nothing to play yet: the video is ${v.state}. Playback starts by itself once the first segments are ready.`;
  if (url) {
    const absolute = new URL(url, window.location.href).href;
    urlInput.value = absolute;
    copyButton.disabled = false;
    attach(url, live);
  } else {
    // A failed or canceled job leaves nothing behind: stop playing what is gone.
    if (attachedUrl) destroyPlayer();
    urlInput.value = '';
    copyButton.disabled = true;
  }
}

async function copyUrl() {
  const text = urlInput.value;
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
    copyStatus.textContent = 'Copied';
  } catch {
    urlInput.focus();
    urlInput.select();
    copyStatus.textContent = 'Selected: press Ctrl+C (⌘C) to copy';
  }
  clearTimeout(copyUrl.timer);
  copyUrl.timer = setTimeout(() => { copyStatus.textContent = ''; }, 4000);
}

export function showPlayer(id) {
  view.hidden = false;
  if (currentId === id) return;
  currentId = id;
  destroyPlayer();
  stage.classList.remove('audio-only');
  showError('');
  titleEl.textContent = 'Loading…';
  document.title = 'sluice';
  facts.replaceChildren();
  liveNote.hidden = true;
  waitingNote.hidden = true;
  urlInput.value = '';
  copyButton.disabled = true;
  copyStatus.textContent = '';
  load(id);
}

export function hidePlayer() {
  view.hidden = true;
  currentId = null;
  loadSeq += 1;
  destroyPlayer();
}

export function initPlayer() {
  resetControls();
  qualitySelect.addEventListener('change', () => {
    if (!hls) return;
    // -1 is automatic choice by hls.js; any other value fixes that level.
    hls.currentLevel = Number(qualitySelect.value);
  });
  copyButton.addEventListener('click', copyUrl);
  on('job', (job) => {
    if (currentId && job.video_id === currentId) load(currentId);
  });
  on('video', (e) => {
    if (currentId && e.id === currentId && (e.action === 'deleted' || e.action === 'playable')) load(currentId);
  });
  on('progress', (p) => {
    if (!currentId || p.video !== currentId) return;
    if (!liveNote.hidden) {
      liveNote.textContent = liveNote.textContent.replace(/^Still processing( \(\d+% done\))?/, `Still processing (${Math.round(p.percent || 0)}% done)`);
    }
  });
  on('open', ({ resync }) => {
    if (resync && currentId) load(currentId);
  });
}
