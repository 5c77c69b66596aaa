// The Streams view (#/streams): a form that makes a live stream (POST /api/v1/streams), the answer's ingest
// URLs and key shown once with ffmpeg and OBS hints, and the list of streams with their state and input
// figures, kept up to date by the page's one event stream (`stream` events; no polling).

import { api, on } from './api.js';
import { copyText, el, formatDate } from './util.js';

const form = document.getElementById('stream-form');
const titleInput = document.getElementById('stream-title');
const pipelineSelect = document.getElementById('stream-pipeline');
const ladderInput = document.getElementById('stream-ladder');
const sourceInput = document.getElementById('stream-source');
const recordInput = document.getElementById('stream-record');
const createButton = document.getElementById('stream-create');
const formError = document.getElementById('stream-form-error');
const createdCard = document.getElementById('stream-created');
const list = document.getElementById('streams');
const emptyNote = document.getElementById('streams-empty');
const countEl = document.getElementById('streams-count');
const errorBox = document.getElementById('streams-error');

const streams = new Map(); // id → stream JSON, as GET gives it (never with its key)
const items = new Map(); // id → its <li>
const deleted = new Set(); // ids seen deleted: a late answer must not bring them back
let loaded = false;
let started = false; // the view was shown once: the list is read and kept from then on
let loadSeq = 0;
let touchedWhileLoading = null; // ids named by events while the list was being read

export const STATE_WORDS = {
  idle: 'Waiting for a publisher: nothing to watch yet.',
  connecting: 'Connecting to the input…',
  live: 'Live.',
  reconnecting: 'The input was lost; waiting for it to come back…',
  ended: 'This stream has ended.',
};

export function streamTitle(s) {
  return s.title || `Stream ${s.id}`;
}

const number = (x) => typeof x === 'number' && Number.isFinite(x);

/** A stream's input figures as [name, text, key] rows: kbps, fps, dropped frames, latency. */
export function inputFigures(input) {
  const i = input || {};
  return [
    ['Input', number(i.kbps) && i.kbps > 0 ? `${Math.round(i.kbps).toLocaleString('en-US')} kbit/s` : '–', 'kbps'],
    ['Frame rate', number(i.fps) && i.fps > 0 ? `${Math.round(i.fps * 10) / 10} fps` : '–', 'fps'],
    ['Dropped frames', number(i.dropped_frames) ? String(i.dropped_frames) : '–', 'dropped'],
    ['Latency', number(i.latency) ? `${i.latency.toFixed(1)} s` : '–', 'latency'],
  ];
}

/** Applies a `stream` event ({id, state, reason?, input_kbps, fps, dropped_frames, latency?}) to a stream's JSON. */
export function applyStreamEvent(s, e) {
  s.state = e.state;
  if (e.reason) s.reason = e.reason;
  else delete s.reason;
  s.input = {
    kbps: number(e.input_kbps) ? e.input_kbps : 0,
    fps: number(e.fps) ? e.fps : 0,
    dropped_frames: number(e.dropped_frames) ? e.dropped_frames : 0,
    latency: number(e.latency) ? e.latency : null,
  };
  return s;
}

function showError(message) {
  errorBox.replaceChildren();
  if (message) errorBox.append(message);
  errorBox.hidden = !message;
}

function updateEmpty() {
  const n = items.size;
  countEl.textContent = loaded && n > 0 ? String(n) : '';
  emptyNote.textContent = loaded ? 'No streams yet. Make one above, then publish to it or let sluice pull it.' : 'Loading the streams…';
  emptyNote.hidden = loaded && n > 0;
}

// ---------------------------------------------------------------------------------------------
// The list

function sourceText(s) {
  return s.source ? `pulls ${s.source}` : 'published (RTSP or SRT)';
}

function renderItem(s) {
  const title = streamTitle(s);
  const meta = el('p', { class: 'meta' },
    el('span', { class: 'pipeline', text: s.pipeline }),
    el('span', { class: 'ladder', title: 'Ladder', text: s.ladder || 'default ladder' }),
    s.record ? el('span', { class: 'record', text: 'recorded' }) : null,
    el('span', { class: 'source', text: sourceText(s) }),
    el('time', { class: 'created', datetime: s.created, text: formatDate(s.created) }));
  const figures = el('dl', { class: 'figures' }, inputFigures(s.input).map(([name, value, key]) =>
    el('div', {}, el('dt', { text: name }), el('dd', { dataset: { figure: key }, text: value }))));
  const href = `#/streams/${encodeURIComponent(s.id)}`;
  return el('li', { class: 'stream', dataset: { streamId: s.id, state: s.state } },
    el('div', { class: 'info' },
      el('div', { class: 'headline' },
        el('h3', { class: 'title', text: title }),
        el('span', { class: 'state badge', dataset: { state: s.state }, text: s.state })),
      meta,
      figures,
      el('p', { class: 'reason', hidden: !s.reason, text: s.reason || '' })),
    el('div', { class: 'actions' },
      el('a', { class: 'watch button primary', href, 'aria-label': `Watch ${title}`, text: s.state === 'live' ? 'Watch live' : 'Watch' }),
      el('button', { type: 'button', class: 'delete danger', text: 'Delete', 'aria-label': `Delete ${title}`, on: { click: () => remove(s.id) } })));
}

// Updates an item where it is (state, figures, reason): the keyboard focus stays where it was.
function refreshItem(s) {
  const li = items.get(s.id);
  if (!li) return;
  li.dataset.state = s.state;
  const badge = li.querySelector('.state');
  badge.dataset.state = s.state;
  badge.textContent = s.state;
  for (const [, value, key] of inputFigures(s.input)) li.querySelector(`[data-figure="${key}"]`).textContent = value;
  const reason = li.querySelector('.reason');
  reason.textContent = s.reason || '';
  reason.hidden = !s.reason;
  li.querySelector('.watch').textContent = s.state === 'live' ? 'Watch live' : 'Watch';
}


function upsert(s) {
  if (!s || !s.id || deleted.has(s.id) || !loaded) return;
  const known = streams.has(s.id);
  streams.set(s.id, s);
  if (known) {
    refreshItem(s);
    return;
  }
  const node = renderItem(s);
  // Newest first: before the first one made at the same time or earlier (of two made in the same second, the
  // one we learn of later is the newer).
  const created = s.created || '';
  const next = [...list.children].find((li) => ((streams.get(li.dataset.streamId) || {}).created || '') <= created);
  items.set(s.id, node);
  list.insertBefore(node, next || null);
  updateEmpty();
}

function forget(id) {
  deleted.add(id);
  streams.delete(id);
  const node = items.get(id);
  items.delete(id);
  if (node) node.remove();
  updateEmpty();
}

async function refreshStream(id) {
  try {
    upsert(await api(`/api/v1/streams/${encodeURIComponent(id)}`));
  } catch (e) {
    if (e.status === 404) forget(id);
    else showError(`Could not read stream ${id}: ${e.message}`);
  }
}

async function loadStreams() {
  const seq = ++loadSeq;
  touchedWhileLoading = new Set();
  try {
    const body = await api('/api/v1/streams');
    if (seq !== loadSeq) return;
    if (!body || !Array.isArray(body.streams)) throw new Error('The server sent a stream list without "streams".');
    streams.clear();
    items.clear();
    // The server lists them oldest first.
    const fresh = body.streams.filter((s) => s && s.id && !deleted.has(s.id)).reverse();
    for (const s of fresh) {
      streams.set(s.id, s);
      items.set(s.id, renderItem(s));
    }
    list.replaceChildren(...items.values());
    loaded = true;
    showError('');
    updateEmpty();
    const touched = touchedWhileLoading;
    touchedWhileLoading = null;
    for (const id of touched) if (!deleted.has(id)) refreshStream(id);
  } catch (e) {
    if (seq !== loadSeq) return;
    touchedWhileLoading = null;
    showError(el('span', {}, `Could not load the streams: ${e.message} `,
      el('button', { type: 'button', class: 'link-button', text: 'Try again', on: { click: () => loadStreams() } })));
    if (!loaded) emptyNote.hidden = true;
  }
}

function remove(id) {
  const s = streams.get(id);
  if (!s) return;
  const title = streamTitle(s);
  if (!window.confirm(`Delete the stream "${title}"? It stops, and its live files go. Its key stops working.`)) return;
  const button = items.get(id) && items.get(id).querySelector('.delete');
  if (!button || button.getAttribute('aria-disabled') === 'true') return;
  button.setAttribute('aria-disabled', 'true');
  (async () => {
    const node = items.get(id);
    const hadFocus = node && node.contains(document.activeElement);
    const next = node && (node.nextElementSibling || node.previousElementSibling);
    try {
      await api(`/api/v1/streams/${encodeURIComponent(id)}`, { method: 'DELETE' });
      forget(id);
      showError('');
      if (createdCard.dataset.streamId === id) closeCreated();
      if (hadFocus) ((next && next.isConnected && next.querySelector('.delete')) || document.getElementById('streams-list-heading')).focus();
    } catch (e) {
      if (e.status === 404) forget(id);
      else showError(`Could not delete "${title}": ${e.message}`);
    } finally {
      button.removeAttribute('aria-disabled');
    }
  })();
}

// ---------------------------------------------------------------------------------------------
// Creating one, and what its answer shows once

const FFMPEG = 'ffmpeg -re -i INPUT -c:v libx264 -preset veryfast -tune zerolatency -g 60 -c:a aac';

/** The ffmpeg commands that publish INPUT to a stream's ingest URLs. */
export function publishCommands(ingest) {
  const out = {};
  if (ingest && ingest.rtsp) out.rtsp = `${FFMPEG} -f rtsp -rtsp_transport tcp ${ingest.rtsp}`;
  if (ingest && ingest.srt) out.srt = `${FFMPEG} -f mpegts "${ingest.srt}"`;
  return out;
}

let copySeq = 0;

// A labelled value with a Copy button: an input for a URL or the key, a code block for a command.
function copyRow(label, value, { key, code = false } = {}) {
  const id = `created-${key}-${++copySeq}`;
  const status = el('span', { class: 'hint copy-status', 'aria-live': 'polite' });
  const box = code
    ? el('pre', { class: 'command', id, dataset: { copy: key }, tabindex: '0', 'aria-label': label }, el('code', { text: value }))
    : el('input', { id, type: 'text', readonly: true, spellcheck: 'false', value, dataset: { copy: key } });
  const button = el('button', { type: 'button', class: 'copy', 'aria-label': `Copy the ${label.toLowerCase()}`, text: 'Copy',
    on: { click: () => copyText(box, status) } });
  return el('div', { class: `field url-field${code ? ' command-field' : ''}` },
    code ? el('span', { class: 'label', text: label }) : el('label', { for: id, text: label }),
    el('div', { class: 'url-row' }, box, button),
    status);
}

function closeCreated() {
  // The key goes from the page with the panel: it is not kept anywhere.
  createdCard.replaceChildren();
  createdCard.hidden = true;
  delete createdCard.dataset.streamId;
}

function showCreated(s) {
  const title = streamTitle(s);
  const ingest = s.ingest || {};
  const commands = publishCommands(ingest);
  const rows = [
    el('h2', { id: 'stream-created-heading', text: `Stream created: ${title}` }),
    el('p', { class: 'warning', role: 'note' },
      el('strong', { text: 'Copy the key and the ingest URLs now: they are not shown again. ' }),
      'The server keeps only a hash of the key; a lost key means deleting the stream and making a new one.'),
    copyRow('Stream key', s.key || '', { key: 'key' }),
  ];
  if (s.source) {
    rows.push(el('p', { class: 'hint' }, 'sluice pulls this stream from ', el('code', { text: s.source }), ': there is nothing to publish.'));
  } else if (!ingest.rtsp && !ingest.srt) {
    rows.push(el('p', { class: 'hint', text: 'This server listens for neither RTSP nor SRT publishers ([rtsp] and [srt] listen are off).' }));
  }
  if (ingest.rtsp) rows.push(copyRow('RTSP ingest URL', ingest.rtsp, { key: 'rtsp' }));
  if (ingest.srt) rows.push(copyRow('SRT ingest URL', ingest.srt, { key: 'srt' }));
  if (commands.rtsp) rows.push(copyRow('Publish with ffmpeg over RTSP (replace INPUT: a file, a camera)', commands.rtsp, { key: 'ffmpeg-rtsp', code: true }));
  if (commands.srt) rows.push(copyRow('Publish with ffmpeg over SRT', commands.srt, { key: 'ffmpeg-srt', code: true }));
  if (ingest.srt) {
    rows.push(el('p', { class: 'hint obs-hint' },
      el('strong', { text: 'OBS: ' }),
      'Settings → Stream → Service: Custom…; Server: the SRT ingest URL above (key included); Stream Key: empty. ',
      'In Output, a keyframe interval of 2 s.'));
  }
  rows.push(el('div', { class: 'actions' },
    el('a', { class: 'watch button primary', href: `#/streams/${encodeURIComponent(s.id)}`, text: 'Watch it' }),
    el('button', { type: 'button', class: 'close-created', text: 'Done: I have copied them', on: { click: () => {
      closeCreated();
      document.getElementById('streams-list-heading').focus();
    } } })));
  createdCard.replaceChildren(...rows);
  createdCard.dataset.streamId = s.id;
  createdCard.hidden = false;
  createdCard.focus();
}

let creating = false;

async function create(event) {
  event.preventDefault();
  if (creating) return;
  const body = { title: titleInput.value.trim(), pipeline: pipelineSelect.value, ladder: ladderInput.value.trim(), record: recordInput.checked };
  const source = sourceInput.value.trim();
  body.source = source || null;
  creating = true;
  createButton.setAttribute('aria-disabled', 'true');
  formError.hidden = true;
  try {
    const s = await api('/api/v1/streams', { method: 'POST', body });
    if (!s || !s.id) throw new Error('The server made the stream but did not say which.');
    showCreated(s);
    form.reset();
    // The list shows it without its key, as GET does.
    const shown = { ...s };
    delete shown.key;
    delete shown.ingest;
    upsert(shown);
  } catch (e) {
    formError.textContent = `Could not create the stream: ${e.message}`;
    formError.hidden = false;
    const field = { title: titleInput, pipeline: pipelineSelect, ladder: ladderInput, source: sourceInput, record: recordInput }[e.field];
    if (field) field.focus();
  } finally {
    creating = false;
    createButton.removeAttribute('aria-disabled');
  }
}

// ---------------------------------------------------------------------------------------------

/** Shows the view: the list is read the first time, then kept up to date by the events. */
export function showStreams() {
  if (!started) {
    started = true;
    updateEmpty();
    loadStreams();
  }
}

export function initStreams() {
  form.addEventListener('submit', create);
  on('stream', (e) => {
    if (!e || typeof e.id !== 'string') return;
    if (touchedWhileLoading) touchedWhileLoading.add(e.id);
    if (e.action === 'deleted') {
      forget(e.id);
      if (createdCard.dataset.streamId === e.id) closeCreated();
      return;
    }
    if (!loaded) return;
    const s = streams.get(e.id);
    if (s) upsert(applyStreamEvent({ ...s }, e));
    else if (!deleted.has(e.id)) refreshStream(e.id); // made elsewhere: its title and the rest come with GET
  });
  // Events may have been missed (a lost connection): read the list again.
  on('open', ({ resync }) => {
    if (resync && started) loadStreams();
  });
}
