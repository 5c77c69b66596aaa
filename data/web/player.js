// The player page (#/videos/ID): hls.js on the video's master playlist or, for a package that has a
// DASH manifest too (cmaf), dash.js on that, as the reader chooses; a quality menu over the levels, what
// plays now and the bandwidth estimate; a seek bar with storyboard previews; the video's facts and its
// playlist and manifest URLs.

import { api, on } from './api.js';
import { createEngine } from './engines.js';
import { extraJobs, mainJob } from './jobs.js';
import { posterUrl, videoResolution, videoTitle } from './library.js';
import { createSeekBar } from './seekbar.js';
import { el, formatBytes, formatDate, formatDuration, formatRate, formatSize, rungName } from './util.js';

const view = document.getElementById('player-view');
const video = document.getElementById('player');
const stage = video.parentElement;
const titleEl = document.getElementById('video-title');
const facts = document.getElementById('video-facts');
const liveNote = document.getElementById('live-note');
const playerError = document.getElementById('player-error');
const waitingNote = document.getElementById('player-waiting');
const formatField = document.getElementById('format-field');
const formatSelect = document.getElementById('format-select');
const qualitySelect = document.getElementById('quality-select');
const currentFormatEl = document.getElementById('current-format');
const currentLevelEl = document.getElementById('current-level');
const bandwidthEl = document.getElementById('bandwidth-estimate');
const urlInput = document.getElementById('playlist-url');
const copyButton = document.getElementById('copy-url');
const copyStatus = document.getElementById('copy-status');
const manifestField = document.getElementById('manifest-field');
const manifestInput = document.getElementById('manifest-url');
const copyManifestButton = document.getElementById('copy-manifest');
const copyManifestStatus = document.getElementById('copy-manifest-status');

const FORMAT_NAMES = { hls: 'HLS', dash: 'DASH' };

const seekBar = createSeekBar(video);

let currentId = null; // the video shown, null when the page is elsewhere
let engine = null; // what plays now (engines.js)
let attached = null; // {format, url} being played (or being started)
let attachSeq = 0;
let loadSeq = 0;
let mainJobId = null; // the streaming job whose progress the live note shows
let sources = { hls: null, dash: null }; // what the video offers
let preferred = 'hls'; // the reader's choice of format, kept from video to video
let jobProblem = ''; // what the streaming job says went wrong
let playbackProblem = ''; // what the player says went wrong

function showError(message) {
  playerError.textContent = message || '';
  playerError.hidden = !message;
}

// The job's failure first (it explains everything else), else the player's.
function showProblems() {
  showError(jobProblem || playbackProblem);
}

function setPlaybackProblem(message) {
  playbackProblem = message || '';
  showProblems();
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
  currentFormatEl.textContent = '–';
  currentFormatEl.dataset.format = '';
  currentLevelEl.textContent = '–';
  currentLevelEl.dataset.level = '-1';
  bandwidthEl.textContent = '–';
}

function destroyPlayer() {
  attachSeq += 1; // a dash.js still loading is not started any more
  if (engine) {
    engine.destroy();
    engine = null;
  }
  window.sluicePlayer = null;
  attached = null;
  playbackProblem = '';
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
  const job = mainJob(v);
  const done = (v.jobs || []).find((j) => j.state === 'succeeded' && j.result && Array.isArray(j.result.renditions) && j.result.renditions.length > 0);
  if (done) {
    const names = done.result.renditions.map((r) => r.name || formatSize(r.width, r.height)).join(', ');
    rows.push(['Renditions', `${names} (${done.pipeline})`]);
  }
  const extras = [...extraJobs(v)].map(([kind, j]) => `${kind} ${j.state === 'succeeded' ? 'ready' : j.state}`);
  if (extras.length) rows.push(['Extras', extras.join(' · ')]);
  facts.replaceChildren(...rows.map(([name, value]) => el('div', {}, el('dt', { text: name }), el('dd', { text: value || '–' }))),
    el('div', {}, el('dt', { text: 'State' }), el('dd', {}, el('span', { class: 'state badge', dataset: { state: v.state }, text: v.state }))));

  if (v.state === 'failed' && job && job.error) jobProblem = `The transcode failed: ${job.error.message}`;
  else if (v.state === 'canceled') jobProblem = 'The transcode was canceled: nothing new to play. Retry it from the library.';
  else jobProblem = '';
  showProblems();
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

function renderUrls() {
  const abs = (url) => (url ? new URL(url, window.location.href).href : '');
  urlInput.value = abs(sources.hls);
  copyButton.disabled = !sources.hls;
  manifestField.hidden = !sources.dash;
  manifestInput.value = abs(sources.dash);
}

// ---------------------------------------------------------------------------------------------
// Playback

function fillLevels() {
  const options = [el('option', { value: '-1', text: 'Auto' })];
  engine.levels.forEach((level, index) => options.push(el('option', { value: String(index), text: levelLabel(level) })));
  qualitySelect.replaceChildren(...options);
  qualitySelect.value = engine.auto ? '-1' : String(engine.currentLevel);
  qualitySelect.disabled = engine.levels.length === 0;
}

function showLevel(index) {
  const level = engine && engine.levels[index];
  if (!level) return;
  currentLevelEl.dataset.level = String(index);
  currentLevelEl.textContent = level.width && level.height
    ? `${rungName(level.width, level.height)} (${formatSize(level.width, level.height)})`
    : `audio (${formatRate(level.bitrate)})`;
}

/** Which formats the video offers, in the menu; the reader's choice where it can be had. */
function chooseFormat() {
  const offered = Object.keys(FORMAT_NAMES).filter((f) => sources[f]);
  formatField.hidden = offered.length < 2;
  for (const option of formatSelect.options) option.disabled = !sources[option.value];
  const format = offered.includes(preferred) ? preferred : offered[0] || null;
  if (format) formatSelect.value = format;
  return format;
}

async function attach(format, url, { live = false, startTime, autoplay = true } = {}) {
  if (attached && attached.format === format && attached.url === url) return;
  destroyPlayer();
  attached = { format, url };
  const seq = attachSeq;
  currentFormatEl.dataset.format = format;
  currentFormatEl.textContent = `${FORMAT_NAMES[format]} (starting…)`;
  const mine = () => seq === attachSeq;
  let started;
  try {
    started = await createEngine(format, video, url, {
      live,
      startTime,
      autoplay,
      cancelled: () => !mine(),
      onLevels: () => { if (mine()) fillLevels(); },
      onLevel: (index) => { if (mine()) showLevel(index); },
      onBandwidth: (bps) => { if (mine()) bandwidthEl.textContent = formatRate(bps); },
      onRecovered: () => { if (mine()) setPlaybackProblem(''); },
      onError: (message, fatal) => {
        if (!mine()) return;
        if (fatal && format === 'hls') {
          // hls.js gave up: stop it. (dash.js goes on retrying by itself.)
          destroyPlayer();
          attached = { format, url }; // not again for the same URL until the page is reloaded
          currentFormatEl.dataset.format = format;
          currentFormatEl.textContent = `${FORMAT_NAMES[format]} (stopped)`;
        }
        setPlaybackProblem(message);
      },
    });
  } catch (e) {
    if (!mine()) return;
    setPlaybackProblem(e.message);
    currentFormatEl.textContent = `${FORMAT_NAMES[format]} (cannot play here)`;
    return;
  }
  if (!mine() || !started) {
    if (started) started.destroy();
    return;
  }
  engine = started;
  window.sluicePlayer = engine.instance || null;
  currentFormatEl.textContent = `${FORMAT_NAMES[format]} · ${engine.library}`;
  if (engine.native) currentLevelEl.textContent = 'chosen by the browser';
}

function switchFormat(format) {
  preferred = format;
  const url = sources[format];
  if (!url || !currentId) return;
  // Go on from the same position, paused if it was.
  const startTime = video.currentTime > 0 && !video.ended ? video.currentTime : undefined;
  attach(format, url, { startTime, autoplay: !video.paused || video.ended || !attached });
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
      destroyPlayer();
      seekBar.reset();
      jobProblem = 'This video does not exist (any more). It may have been deleted.';
      showProblems();
    } else {
      showError(`Could not read the video: ${e.message}`);
    }
    return;
  }
  if (seq !== loadSeq || currentId !== id) return;
  const job = mainJob(v);
  mainJobId = job ? job.id : null;
  const playback = v.playback || {};
  const live = Boolean(playback.live);
  // The server lists a running job's playlist (playback.hls) once every rendition has a first segment,
  // and says so with a "playable" video event, which reloads this page's state.
  renderMeta(v);
  renderLive(v, job && job.progress ? job.progress.percent : undefined);
  sources = { hls: playback.hls || null, dash: playback.dash || null };
  renderUrls();
  const poster = posterUrl(v);
  if (poster) {
    if (video.getAttribute('poster') !== poster) video.poster = poster;
  } else {
    video.removeAttribute('poster');
  }
  seekBar.setFallbackDuration(v.duration);
  seekBar.setStoryboard(typeof v.storyboard === 'string' && v.storyboard.startsWith('/') ? v.storyboard : null);
  const format = chooseFormat();
  const playable = Boolean(format);
  waitingNote.hidden = playable || v.state === 'failed' || v.state === 'canceled';
  if (!playable) waitingNote.textContent = `Nothing to play yet: the video is ${v.state}. Playback starts by itself once the first segments are ready.`;
  seekBar.setEnabled(playable);
  if (playable) {
    attach(format, sources[format], { live: live && format === 'hls' });
  } else if (attached) {
    // A failed or canceled job leaves nothing behind: stop playing what is gone.
    destroyPlayer();
  }
}

async function copyText(input, statusEl) {
  const text = input.value;
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
    statusEl.textContent = 'Copied';
  } catch {
    input.focus();
    input.select();
    statusEl.textContent = 'Selected: press Ctrl+C (⌘C) to copy';
  }
  clearTimeout(statusEl.clearTimer);
  statusEl.clearTimer = setTimeout(() => { statusEl.textContent = ''; }, 4000);
}

export function showPlayer(id) {
  view.hidden = false;
  if (currentId === id) return;
  currentId = id;
  destroyPlayer();
  seekBar.reset();
  mainJobId = null;
  sources = { hls: null, dash: null };
  stage.classList.remove('audio-only');
  video.removeAttribute('poster');
  jobProblem = '';
  playbackProblem = '';
  showError('');
  titleEl.textContent = 'Loading…';
  document.title = 'sluice';
  facts.replaceChildren();
  liveNote.hidden = true;
  waitingNote.hidden = true;
  formatField.hidden = true;
  renderUrls();
  copyStatus.textContent = '';
  copyManifestStatus.textContent = '';
  load(id);
}

export function hidePlayer() {
  view.hidden = true;
  currentId = null;
  loadSeq += 1;
  destroyPlayer();
  seekBar.reset();
}

export function initPlayer() {
  resetControls();
  seekBar.reset();
  formatSelect.addEventListener('change', () => switchFormat(formatSelect.value));
  qualitySelect.addEventListener('change', () => {
    if (engine) engine.setLevel(Number(qualitySelect.value));
  });
  copyButton.addEventListener('click', () => copyText(urlInput, copyStatus));
  copyManifestButton.addEventListener('click', () => copyText(manifestInput, copyManifestStatus));
  on('job', (job) => {
    // Any job of the video: the streaming job's state, or a poster or storyboard that is now there.
    if (currentId && job.video_id === currentId) load(currentId);
  });
  on('video', (e) => {
    if (currentId && e.id === currentId && (e.action === 'deleted' || e.action === 'playable')) load(currentId);
  });
  on('progress', (p) => {
    if (!currentId || p.video !== currentId || (mainJobId && p.job !== mainJobId)) return;
    if (!liveNote.hidden) {
      liveNote.textContent = liveNote.textContent.replace(/^Still processing( \(\d+% done\))?/, `Still processing (${Math.round(p.percent || 0)}% done)`);
    }
  });
  on('open', ({ resync }) => {
    if (resync && currentId) load(currentId);
  });
}
