// Storyboards for seek previews: the WebVTT file of the storyboard job, one cue per tile, whose text is
// the sprite sheet's URL (relative to the VTT file) with a media fragment "#xywh=x,y,w,h" naming the
// tile's rectangle on the sheet.

// "hh:mm:ss.ttt" or "mm:ss.ttt" (WebVTT timestamps) in seconds; NaN when it is neither.
function parseTimestamp(text) {
  const m = /^(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})$/.exec(text);
  if (!m) return NaN;
  return Number(m[1] || 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
}

/**
 * Parses a storyboard's WebVTT text. baseUrl: the VTT file's absolute URL, against which the sheets'
 * URLs are resolved. Returns the tiles sorted by time: [{start, end, url, x, y, w, h}], where w and h
 * are 0 for a cue without (pixel) #xywh= (the whole picture is the tile). Cues it cannot read are left
 * out.
 */
export function parseStoryboard(text, baseUrl) {
  const tiles = [];
  const blocks = String(text).replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n').split(/\n[ \t]*\n/);
  for (const block of blocks) {
    const lines = block.split('\n');
    const at = lines.findIndex((line) => line.includes('-->'));
    if (at < 0) continue;
    const times = /^\s*(\S+)\s+-->\s+(\S+)/.exec(lines[at]);
    const payload = lines.slice(at + 1).map((line) => line.trim()).find(Boolean);
    if (!times || !payload) continue;
    const start = parseTimestamp(times[1]);
    const end = parseTimestamp(times[2]);
    if (!(start >= 0) || !(end > start)) continue;
    const hash = payload.indexOf('#');
    const ref = hash >= 0 ? payload.slice(0, hash) : payload;
    const fragment = hash >= 0 ? payload.slice(hash + 1) : '';
    let url;
    try {
      url = new URL(ref, baseUrl).href;
    } catch {
      continue;
    }
    const rect = /(?:^|&)xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)(?:&|$)/.exec(fragment);
    const [x, y, w, h] = rect ? rect.slice(1, 5).map(Number) : [0, 0, 0, 0];
    tiles.push({ start, end, url, x, y, w, h });
  }
  tiles.sort((a, b) => a.start - b.start);
  return tiles;
}

/** The tile shown at time t (seconds): the last one that starts at or before t, if t is before its end
 * (the last tile also covers what is left of the video after its end); null in a gap or before the
 * first. */
export function tileAt(tiles, t) {
  let lo = 0;
  let hi = tiles.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (tiles[mid].start <= t) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (found < 0) return null;
  const tile = tiles[found];
  return t < tile.end || found === tiles.length - 1 ? tile : null;
}

/** Fetches and parses a storyboard; rejects with an Error in words. */
export async function loadStoryboard(url) {
  const absolute = new URL(url, window.location.href).href;
  let res;
  try {
    res = await fetch(absolute, { headers: { Accept: 'text/vtt' } });
  } catch {
    throw new Error('the server cannot be reached');
  }
  if (!res.ok) throw new Error(`the server answered ${res.status}`);
  return parseStoryboard(await res.text(), absolute);
}
