// Small helpers: numbers for people (durations, sizes, rates, dates) and building DOM without HTML strings.

/** Seconds as m:ss, or h:mm:ss from one hour on; "–" when unknown. */
export function formatDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '–';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** A playback position as m:ss or h:mm:ss, rounded down (a clock shows 0:04 until 0:05 is reached). */
export function formatPosition(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '–';
  return formatDuration(Math.floor(Math.max(0, seconds)));
}

/** Bytes in decimal units: 512 B, 746.7 kB, 12.3 MB, 1.25 GB. */
export function formatBytes(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) return '–';
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

/** Bytes always in MB with one decimal, so that "x of y" reads as one unit. */
export function formatMB(bytes) {
  return `${(Math.max(0, bytes) / 1e6).toFixed(1)} MB`;
}

/** Bits per second as Mbit/s: "2.9 Mbit/s", "0.66 Mbit/s", "412 Mbit/s". */
export function formatRate(bitsPerSecond) {
  if (typeof bitsPerSecond !== 'number' || !Number.isFinite(bitsPerSecond) || bitsPerSecond <= 0) return '–';
  const mbit = bitsPerSecond / 1e6;
  const digits = mbit >= 100 ? 0 : mbit >= 1 ? 1 : 2;
  return `${mbit.toFixed(digits)} Mbit/s`;
}

/** A picture size with a real multiplication sign: "1280×720". */
export function formatSize(width, height) {
  return width > 0 && height > 0 ? `${width}×${height}` : '';
}

/** The rung name of a picture: its short side, as the server names renditions ("720p"). */
export function rungName(width, height) {
  return width > 0 && height > 0 ? `${Math.min(width, height)}p` : '';
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** An ISO time from the API in the reader's local time; the input itself when it cannot be read. */
export function formatDate(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateFormat.format(d);
}

/** A job's progress line: "42% · 95 fps · 3.2× · ETA 0:11". */
export function formatJobStats(p) {
  if (!p) return 'Starting…';
  const parts = [];
  if (typeof p.percent === 'number') parts.push(`${Math.round(p.percent)}%`);
  if (typeof p.fps === 'number' && p.fps > 0) parts.push(`${Math.round(p.fps)} fps`);
  if (typeof p.speed === 'number' && p.speed > 0) parts.push(`${p.speed.toFixed(1)}×`);
  if (typeof p.eta === 'number' && Number.isFinite(p.eta)) parts.push(`ETA ${formatDuration(p.eta)}`);
  return parts.length ? parts.join(' · ') : 'Starting…';
}

/**
 * Creates an element. attrs: "class", "text" (textContent), "dataset" (object), "on" (event → handler),
 * booleans (set when true), anything else as an attribute. Children: nodes or strings (as text).
 * Server data only ever goes in as text or attribute values, never as markup.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'on') for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const ICONS = {
  play: { fill: 'M8 5.5v13l10.5-6.5z' },
  audio: { stroke: 'M9 18V6l11-2v12M9 18a3 3 0 1 1-6 0 3 3 0 0 1 6 0zm11-2a3 3 0 1 1-6 0 3 3 0 0 1 6 0z' },
};

/** A small decorative SVG icon (hidden from screen readers). */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', `icon icon-${name}`);
  const path = document.createElementNS(ns, 'path');
  const spec = ICONS[name];
  path.setAttribute('d', spec.fill || spec.stroke);
  if (spec.fill) {
    path.setAttribute('fill', 'currentColor');
  } else {
    path.setAttribute('fill', 'none');
    path.setAttribute('stroke', 'currentColor');
    path.setAttribute('stroke-width', '1.8');
    path.setAttribute('stroke-linecap', 'round');
    path.setAttribute('stroke-linejoin', 'round');
  }
  svg.append(path);
  return svg;
}

/**
 * Copies the text of an input (its value) or of any other element (its textContent) to the clipboard and says so
 * in statusEl; where the clipboard is refused (no permission, not a secure context) it selects the text instead.
 */
export async function copyText(source, statusEl) {
  const text = 'value' in source ? source.value : source.textContent;
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
    statusEl.textContent = 'Copied';
  } catch {
    if (typeof source.select === 'function') {
      source.focus();
      source.select();
    } else {
      window.getSelection().selectAllChildren(source);
    }
    statusEl.textContent = 'Selected: press Ctrl+C (⌘C) to copy';
  }
  clearTimeout(statusEl.clearTimer);
  statusEl.clearTimer = setTimeout(() => { statusEl.textContent = ''; }, 4000);
}
