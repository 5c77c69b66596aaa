// The seek bar under the video: a slider (role="slider", keyboard operable) with the position and the
// duration, that seeks on click and drag, and shows the time under the pointer with the storyboard's
// tile for that time (the video's native controls cannot show such previews).

import { loadStoryboard, tileAt } from './storyboard.js';
import { formatPosition } from './util.js';

const ARROW_STEP = 5; // seconds per arrow key
const SEEK_INTERVAL_MS = 150; // at most one seek this often while dragging
const KEYBOARD_PREVIEW_MS = 1500; // how long a keyboard seek shows its preview

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

export function createSeekBar(video) {
  const root = document.getElementById('seek');
  const bar = document.getElementById('seek-bar');
  const area = bar.parentElement;
  const played = document.getElementById('seek-played');
  const buffered = document.getElementById('seek-buffered');
  const handle = document.getElementById('seek-handle');
  const timeEl = document.getElementById('seek-time');
  const preview = document.getElementById('seek-preview');
  const thumb = document.getElementById('seek-thumb');
  const previewTime = document.getElementById('seek-preview-time');

  let enabled = false;
  let fallbackDuration = 0; // the video's duration from the API, until the media element knows it
  let dragging = null; // pointerId of a drag under way
  let pending = 0; // the position shown while dragging
  let lastSeek = 0;
  let hovering = false;
  let keyboardTimer = 0;
  let tiles = [];
  let storyboardUrl = null;
  let storyboardSeq = 0;
  let sheetsLoaded = false;
  let frame = 0;

  function duration() {
    if (Number.isFinite(video.duration) && video.duration > 0) return video.duration;
    return fallbackDuration > 0 ? fallbackDuration : 0;
  }

  function setAttr(name, value) {
    if (bar.getAttribute(name) !== value) bar.setAttribute(name, value);
  }

  function render() {
    frame = 0;
    const d = duration();
    const t = dragging !== null ? pending : video.currentTime || 0;
    const pct = d > 0 ? clamp(t / d, 0, 1) * 100 : 0;
    played.style.width = `${pct}%`;
    handle.style.left = `${pct}%`;
    let end = 0;
    const ranges = video.buffered;
    for (let i = 0; i < ranges.length; i++) {
      if (ranges.start(i) <= t + 0.5) end = Math.max(end, ranges.end(i));
    }
    buffered.style.width = `${d > 0 ? clamp(end / d, 0, 1) * 100 : 0}%`;
    const text = `${formatPosition(t)} / ${d > 0 ? formatPosition(d) : '–'}`;
    if (timeEl.textContent !== text) timeEl.textContent = text;
    setAttr('aria-valuemax', String(Math.round(d)));
    setAttr('aria-valuenow', String(Math.round(clamp(t, 0, d))));
    setAttr('aria-valuetext', `${formatPosition(t)} of ${d > 0 ? formatPosition(d) : 'an unknown duration'}`);
  }

  function renderSoon() {
    if (!frame) frame = requestAnimationFrame(render);
  }

  function seek(t) {
    const d = duration();
    if (!enabled || !(d > 0)) return;
    lastSeek = performance.now();
    video.currentTime = clamp(t, 0, d);
    render();
  }

  function timeAt(clientX) {
    const rect = bar.getBoundingClientRect();
    return rect.width > 0 ? clamp((clientX - rect.left) / rect.width, 0, 1) * duration() : 0;
  }

  // ------------------------------------------------------------------------------------------
  // The preview: the time under the pointer (or of a keyboard seek) and the storyboard's tile for it

  function loadSheets() {
    // The sheets are fetched once the bar is first pointed at or focused, not with the page.
    if (sheetsLoaded || tiles.length === 0) return;
    sheetsLoaded = true;
    for (const url of new Set(tiles.map((tile) => tile.url))) new Image().src = url;
  }

  function showPreview(t, clientX) {
    if (!enabled || !(duration() > 0)) return;
    loadSheets();
    previewTime.textContent = formatPosition(t);
    const tile = tileAt(tiles, t);
    thumb.hidden = !tile;
    if (tile) {
      thumb.style.backgroundImage = `url("${tile.url}")`;
      if (tile.w > 0 && tile.h > 0) {
        thumb.style.width = `${tile.w}px`;
        thumb.style.height = `${tile.h}px`;
        thumb.style.backgroundPosition = `${-tile.x}px ${-tile.y}px`;
        thumb.style.backgroundSize = 'auto';
      } else {
        // A cue without #xywh=: the whole picture, fitted into the usual tile size.
        thumb.style.width = '160px';
        thumb.style.height = '90px';
        thumb.style.backgroundPosition = 'center';
        thumb.style.backgroundSize = 'contain';
      }
      thumb.dataset.start = String(tile.start);
    }
    preview.hidden = false;
    const box = area.getBoundingClientRect();
    const width = preview.offsetWidth;
    const left = clamp(clientX - box.left - width / 2, 0, Math.max(0, box.width - width));
    preview.style.left = `${left}px`;
  }

  function hidePreview() {
    preview.hidden = true;
  }

  function showPreviewAtPosition() {
    const rect = bar.getBoundingClientRect();
    const d = duration();
    const t = video.currentTime || 0;
    showPreview(t, rect.left + (d > 0 ? clamp(t / d, 0, 1) : 0) * rect.width);
    clearTimeout(keyboardTimer);
    keyboardTimer = setTimeout(() => { if (!hovering && dragging === null) hidePreview(); }, KEYBOARD_PREVIEW_MS);
  }

  // ------------------------------------------------------------------------------------------
  // Input

  bar.addEventListener('keydown', (e) => {
    if (!enabled || e.altKey || e.ctrlKey || e.metaKey) return;
    const d = duration();
    const t = video.currentTime || 0;
    const page = Math.max(10, d / 10);
    const targets = {
      ArrowLeft: t - ARROW_STEP,
      ArrowDown: t - ARROW_STEP,
      ArrowRight: t + ARROW_STEP,
      ArrowUp: t + ARROW_STEP,
      PageDown: t - page,
      PageUp: t + page,
      Home: 0,
      End: d,
    };
    if (!(e.key in targets)) return;
    e.preventDefault();
    seek(targets[e.key]);
    showPreviewAtPosition();
  });

  bar.addEventListener('pointerdown', (e) => {
    if (!enabled || e.button !== 0 || !(duration() > 0)) return;
    e.preventDefault(); // no text selection while dragging; the focus is given below
    bar.focus({ preventScroll: true });
    dragging = e.pointerId;
    bar.setPointerCapture(e.pointerId);
    root.classList.add('dragging');
    pending = timeAt(e.clientX);
    showPreview(pending, e.clientX);
    seek(pending);
  });

  bar.addEventListener('pointermove', (e) => {
    if (!enabled) return;
    const t = timeAt(e.clientX);
    if (dragging === e.pointerId) {
      pending = t;
      renderSoon();
      if (performance.now() - lastSeek >= SEEK_INTERVAL_MS) seek(t);
    }
    if (e.pointerType !== 'touch' || dragging === e.pointerId) showPreview(t, e.clientX);
  });

  const endDrag = (e, commit) => {
    if (dragging !== e.pointerId) return;
    dragging = null;
    root.classList.remove('dragging');
    if (commit) seek(timeAt(e.clientX));
    if (!hovering || e.pointerType === 'touch') hidePreview();
    render();
  };
  bar.addEventListener('pointerup', (e) => endDrag(e, true));
  bar.addEventListener('pointercancel', (e) => endDrag(e, false));
  bar.addEventListener('lostpointercapture', (e) => endDrag(e, false));
  bar.addEventListener('pointerenter', () => { hovering = true; });
  bar.addEventListener('pointerleave', () => {
    hovering = false;
    if (dragging === null) hidePreview();
  });
  bar.addEventListener('focus', loadSheets);
  bar.addEventListener('blur', () => { if (!hovering) hidePreview(); });

  for (const type of ['timeupdate', 'durationchange', 'progress', 'seeking', 'seeked', 'loadedmetadata', 'emptied']) {
    video.addEventListener(type, renderSoon);
  }

  return {
    /** Shows the bar (for a video with something to play) or hides it. */
    setEnabled(on) {
      enabled = Boolean(on);
      root.hidden = !enabled;
      if (!enabled) {
        dragging = null;
        root.classList.remove('dragging');
        hidePreview();
      }
      render();
    },

    /** The duration to show until the media element knows its own (the API's, in seconds). */
    setFallbackDuration(seconds) {
      fallbackDuration = typeof seconds === 'number' && seconds > 0 ? seconds : 0;
      render();
    },

    /** The storyboard's WebVTT URL, or null: without one the preview shows the time only. */
    setStoryboard(url) {
      if (url === storyboardUrl) return;
      storyboardUrl = url || null;
      tiles = [];
      sheetsLoaded = false;
      const seq = ++storyboardSeq;
      root.dataset.storyboard = storyboardUrl ? 'loading' : 'none';
      if (!storyboardUrl) return;
      loadStoryboard(storyboardUrl).then((parsed) => {
        if (seq !== storyboardSeq) return;
        tiles = parsed;
        root.dataset.storyboard = parsed.length ? 'ready' : 'empty';
        if (hovering || document.activeElement === bar) loadSheets();
      }, (e) => {
        if (seq !== storyboardSeq) return;
        root.dataset.storyboard = 'failed';
        console.warn(`sluice: no seek previews: the storyboard could not be read (${e.message})`);
      });
    },

    reset() {
      this.setStoryboard(null);
      this.setFallbackDuration(0);
      this.setEnabled(false);
    },
  };
}
