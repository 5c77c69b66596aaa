// The player page (#/videos/ID): hls.js on the video's master playlist or, for a package that has a
// DASH manifest too (cmaf), dash.js on that, as the reader chooses; a quality menu over the levels, what
// plays now and the bandwidth estimate; a seek bar with storyboard previews; the video's facts and its
// playlist and manifest URLs. The same page watches a live stream (#/streams/ID): hls.js near the live edge,
// a LIVE badge, how far behind the edge it plays and "Go live"; a stream that is not live yet starts playing
// when its `stream` event says it is.

import { api, on } from './api.js';
import { createEngine } from './engines.js';
import { extraJobs, mainJob } from './jobs.js';
import { posterUrl, videoResolution, videoTitle } from './library.js';
import { createSeekBar } from './seekbar.js';
import { STATE_WORDS, applyStreamEvent, inputFigures, streamTitle } from './streams.js';
import { copyText, el, formatBytes, formatDate, formatDuration, formatRate, formatSize, rungName } from './util.js';

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
const backLink = document.getElementById('back-link');
const liveBar = document.getElementById('live-bar');
const liveBadge = document.getElementById('live-badge');
const latencyEl = document.getElementById('live-latency');
const goLiveButton = document.getElementById('go-live');

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
let currentStream = null; // the live stream shown (#/streams/ID), null when the page is elsewhere
let stream = null; // its JSON, kept up to date by its `stream` events
let streamRetry = 0; // timer: start the player again after it gave up on a stream that is live
let liveTimer = 0; // timer: the latency readout, while a stream is shown

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
  updateLiveBar();
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

// dash: the DASH manifest to show (a live-cmaf stream's, which the page itself does not play).
function renderUrls(dash = sources.dash) {
  const abs = (url) => (url ? new URL(url, window.location.href).href : '');
  urlInput.value = abs(sources.hls);
  copyButton.disabled = !sources.hls;
  manifestField.hidden = !dash;
  manifestInput.value = abs(dash);
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

async function attach(format, url, { live = false, stream: isStream = false, startTime, autoplay = true } = {}) {
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
      stream: isStream,
      startTime,
      autoplay,
      cancelled: () => !mine(),
      onLevels: () => { if (mine()) fillLevels(); },
      onLevel: (index) => { if (mine()) showLevel(index); },
      onBandwidth: (bps) => { if (mine()) bandwidthEl.textContent = formatRate(bps); },
      onRecovered: () => { if (mine()) setPlaybackProblem(''); },
      onError: (message, fatal) => {
        if (!mine()) return;
        if (fatal && isStream) {
          // A live stream: start again a little later while it is live (its playlist may not be written yet).
          destroyPlayer();
          setPlaybackProblem(`${message.replace(/ Reload the page to try again\.$/, '')} Trying again in a few seconds while the stream is live.`);
          clearTimeout(streamRetry);
          streamRetry = setTimeout(startStream, 5000);
          renderStreamNote();
          return;
        }
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
  if (isStream) {
    renderStreamNote();
    updateLiveBar();
  }
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

// ---------------------------------------------------------------------------------------------
// A live stream

function renderStream() {
  const s = stream;
  titleEl.textContent = streamTitle(s);
  document.title = `${streamTitle(s)} · sluice`;
  const rows = inputFigures(s.input);
  rows.push(['Pipeline', s.pipeline], ['Ladder', s.ladder || 'the default'], ['Recorded', s.record ? 'yes' : 'no'],
    ['Input from', s.source || 'a publisher (RTSP or SRT)'], ['Created', formatDate(s.created)]);
  if (s.playback && s.playback.rtsp) rows.push(['RTSP playback', s.playback.rtsp]);
  facts.replaceChildren(
    el('div', {}, el('dt', { text: 'State' }), el('dd', {}, el('span', { class: 'state badge', dataset: { state: s.state }, text: s.state }))),
    ...rows.map(([name, value, key]) => el('div', {}, el('dt', { text: name }), el('dd', { dataset: key ? { figure: key } : null, text: value || '–' }))));
  renderStreamNote();
}

// What the stream is doing when the player does not show it: not live yet, lost, ended.
function renderStreamNote() {
  const s = stream;
  if (!s) return;
  const reason = s.reason ? ` Reason: ${s.reason}.` : '';
  if (s.state === 'live') {
    waitingNote.hidden = Boolean(attached);
    waitingNote.textContent = 'The stream is live: starting the player…';
  } else {
    waitingNote.hidden = false;
    waitingNote.textContent = `${STATE_WORDS[s.state] || s.state}${reason} ` +
      (attached ? 'What was received plays on.' : 'The stream starts playing here by itself as soon as it is live.');
  }
}

function startStream() {
  clearTimeout(streamRetry);
  const s = stream;
  const url = s && s.playback && s.playback.hls;
  if (!currentStream || !s || s.state !== 'live' || !url || attached) return;
  setPlaybackProblem('');
  attach('hls', url, { stream: true });
}

function updateStream(s) {
  const before = stream ? stream.state : null;
  stream = s;
  // Live again after a pause of its input (a publisher that came back): its playlist starts anew.
  if (s.state === 'live' && before !== null && before !== 'live' && attached) destroyPlayer();
  renderStream();
  startStream();
  updateLiveBar();
}

function streamGone(message) {
  clearTimeout(streamRetry);
  destroyPlayer();
  stream = null;
  waitingNote.hidden = true;
  liveBar.hidden = true;
  jobProblem = message;
  showProblems();
}

async function loadStream(id) {
  const seq = ++loadSeq;
  let s;
  try {
    s = await api(`/api/v1/streams/${encodeURIComponent(id)}`);
  } catch (e) {
    if (seq !== loadSeq || currentStream !== id) return;
    if (e.status === 404) {
      titleEl.textContent = 'No such stream';
      facts.replaceChildren();
      streamGone('This stream does not exist (any more). It may have been deleted.');
    } else {
      showError(`Could not read the stream: ${e.message}`);
    }
    return;
  }
  if (seq !== loadSeq || currentStream !== id) return;
  const playback = s.playback || {};
  sources = { hls: playback.hls || null, dash: null };
  renderUrls(playback.dash || null);
  formatField.hidden = true;
  updateStream(s);
}

// The LIVE badge (lit at the live edge, dimmed behind it), the latency behind the edge and "Go live".
function updateLiveBar() {
  if (!currentStream) return;
  const playing = Boolean(engine) && Boolean(stream);
  liveBar.hidden = !playing;
  goLiveButton.disabled = !playing;
  if (!playing) return;
  const latency = engine.latency ? engine.latency() : null;
  const target = engine.targetLatency ? engine.targetLatency() : null;
  const known = typeof latency === 'number' && Number.isFinite(latency);
  latencyEl.dataset.seconds = known ? latency.toFixed(2) : '';
  latencyEl.textContent = known ? `${latency.toFixed(1)} s behind live` : 'finding the live edge…';
  const atEdge = known && latency <= (target || 6) + 3 && !video.paused;
  liveBadge.dataset.edge = String(atEdge);
  liveBadge.dataset.state = stream.state;
  liveBadge.title = stream.state !== 'live' ? `The stream is ${stream.state}`
    : atEdge ? 'Playing at the live edge' : 'Behind the live edge: Go live jumps to it';
}

// The page as it is before anything is known of what it shows.
function resetView() {
  currentId = null;
  currentStream = null;
  stream = null;
  loadSeq += 1;
  clearTimeout(streamRetry);
  clearInterval(liveTimer);
  liveTimer = 0;
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
  liveBar.hidden = true;
}

export function showPlayer(id) {
  view.hidden = false;
  if (currentId === id) return;
  resetView();
  currentId = id;
  backLink.textContent = '← Library';
  backLink.href = '#/';
  load(id);
}

export function showStream(id) {
  view.hidden = false;
  if (currentStream === id) return;
  resetView();
  currentStream = id;
  backLink.textContent = '← Streams';
  backLink.href = '#/streams';
  liveTimer = setInterval(updateLiveBar, 500);
  loadStream(id);
}

export function hidePlayer() {
  view.hidden = true;
  resetView();
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
  goLiveButton.addEventListener('click', () => {
    if (engine && engine.goLive) engine.goLive();
    updateLiveBar();
  });
  on('stream', (e) => {
    if (!currentStream || !e || e.id !== currentStream) return;
    if (e.action === 'deleted') {
      streamGone('This stream was deleted.');
      return;
    }
    if (!stream) return; // its GET is on its way
    updateStream(applyStreamEvent({ ...stream }, e));
  });
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
    if (resync && currentStream) loadStream(currentStream);
  });
}
