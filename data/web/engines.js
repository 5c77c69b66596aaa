// The two players behind the page's one <video>: hls.js for HLS and dash.js for DASH, both from npm
// (data/web/node_modules), behind one small interface so that the quality menu and the readouts do not
// care which one plays:
//
//   const engine = await createEngine('hls' | 'dash', video, url, options)
//   engine.levels          [{width, height, bitrate}], the menu's entries (index = the menu's value)
//   engine.auto            true while the player picks the level itself
//   engine.currentLevel    the index of the level playing, -1 before one is known
//   engine.setLevel(i)     -1: automatic; an index: that level only
//   engine.destroy()       stops loading, detaches from the video, drops every listener
//   engine.library         "hls.js 1.7.4", what plays the video
//   engine.latency()       seconds behind the live edge (a live stream; null when not known)
//   engine.targetLatency() how far behind the edge the player means to play (hls.js; null when not known)
//   engine.goLive()        jumps to the live edge (a live stream)
//
// options: startTime (seconds, or undefined for the player's default), autoplay, live (a growing EVENT
// playlist, played from its start), stream (a live stream, HLS only: played near its live edge), and the
// callbacks onLevels(), onLevel(index), onBandwidth(bitsPerSecond), onError(message, fatal),
// onRecovered().

const DASH_SCRIPT = '/web/node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js';

let dashLoading = null;

// dash.js is loaded when a DASH manifest is first played, not with the page: most pages never need it.
function loadDash() {
  if (window.dashjs) return Promise.resolve(window.dashjs);
  if (!dashLoading) {
    dashLoading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = DASH_SCRIPT;
      script.async = true;
      script.onload = () => (window.dashjs ? resolve(window.dashjs) : reject(new Error('dash.js did not load')));
      script.onerror = () => reject(new Error('dash.js is missing'));
      document.head.append(script);
    }).catch((e) => {
      dashLoading = null;
      throw e;
    });
  }
  return dashLoading;
}

function play(video) {
  video.play().catch(() => {}); // autoplay may be refused; the controls are there
}

// ---------------------------------------------------------------------------------------------
// HLS: hls.js where Media Source Extensions exist, else the browser's own HLS (Safari)

// A live stream: start and stay three segments behind the live edge, catch up by playing up to 1.5× as fast
// when within a segment of that (further back, after a pause or a seek, hls.js counts it as watching the past
// and leaves the speed alone), and keep a minute already played. A playlist or segment that answers 404 for a
// moment (being written, or a publisher starting again) is tried again rather than given up.
const retry404 = (config, count, timeout, response, retry) => retry || (Boolean(response) && response.code === 404 && count < config.maxNumRetry);
const livePolicy = (maxLoadTimeMs, timeouts, errors) => ({
  default: {
    maxTimeToFirstByteMs: 10000,
    maxLoadTimeMs,
    timeoutRetry: { maxNumRetry: timeouts, retryDelayMs: 0, maxRetryDelayMs: 0 },
    errorRetry: { maxNumRetry: errors, retryDelayMs: 1000, maxRetryDelayMs: 4000, shouldRetry: retry404 },
  },
});
const streamConfig = () => ({
  startPosition: -1,
  // Two segments behind the live edge: live streams cut 2 s segments and list each as soon as it ends.
  liveSyncDurationCount: 2,
  maxLiveSyncPlaybackRate: 1.5,
  backBufferLength: 60,
  manifestLoadPolicy: livePolicy(20000, 2, 6),
  playlistLoadPolicy: livePolicy(20000, 2, 6),
  fragLoadPolicy: livePolicy(120000, 4, 6),
});

function createHls(video, url, opts) {
  const Hls = window.Hls;
  if (!(Hls && Hls.isSupported())) {
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      // The browser picks the level itself and has no menu to offer.
      video.src = url;
      if (opts.startTime > 0) video.addEventListener('loadedmetadata', () => { video.currentTime = opts.startTime; }, { once: true });
      if (opts.autoplay) play(video);
      return {
        library: 'the browser',
        native: true,
        levels: [],
        auto: true,
        currentLevel: -1,
        setLevel() {},
        destroy() {},
        // The browser's live edge is the end of what it may seek to.
        latency() {
          const s = video.seekable;
          return s.length > 0 ? Math.max(0, s.end(s.length - 1) - video.currentTime) : null;
        },
        targetLatency() {
          return null;
        },
        goLive() {
          const s = video.seekable;
          if (s.length > 0) video.currentTime = Math.max(s.start(s.length - 1), s.end(s.length - 1) - 6);
          play(video);
        },
      };
    }
    throw new Error(Hls
      ? 'This browser can play neither HLS nor Media Source Extensions. The playlist URL below works in VLC, mpv or ffplay.'
      : 'The player library (hls.js) is missing: run "npm ci" in data/web on the server.');
  }

  // A playlist that still grows starts at its beginning, not at its live edge; a live stream at its edge.
  const start = opts.startTime > 0 ? opts.startTime : opts.live ? 0 : -1;
  const hls = new Hls(opts.stream ? streamConfig() : { startPosition: start });
  let recoveries = 0;
  let destroyed = false;
  const engine = {
    library: `hls.js ${Hls.version || ''}`.trim(),
    instance: hls,
    levels: [],
    get auto() { return hls.autoLevelEnabled; },
    get currentLevel() { return hls.currentLevel; },
    setLevel(index) {
      // -1 is hls.js's own choice; any other value fixes that level (and flushes what was buffered).
      hls.currentLevel = index;
    },
    destroy() {
      destroyed = true;
      hls.destroy();
    },
    // hls.js's own figure: the live edge (the playlist's end, aged since it was loaded) minus the position.
    latency() {
      return hls.latestLevelDetails && hls.latestLevelDetails.live && video.readyState > 0 ? Math.max(0, hls.latency) : null;
    },
    targetLatency() {
      return hls.targetLatency;
    },
    goLive() {
      const edge = hls.liveSyncPosition;
      if (Number.isFinite(edge) && edge > video.currentTime) video.currentTime = edge;
      play(video);
    },
  };

  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    engine.levels = hls.levels.map((l) => ({ width: l.width || 0, height: l.height || 0, bitrate: l.bitrate || 0 }));
    opts.onLevels();
    if (opts.autoplay) play(video);
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => opts.onLevel(data.level));
  hls.on(Hls.Events.FRAG_LOADED, () => {
    if (Number.isFinite(hls.bandwidthEstimate)) opts.onBandwidth(hls.bandwidthEstimate);
    if (recoveries > 0) {
      recoveries = 0;
      opts.onRecovered();
    }
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (!data.fatal || destroyed) return; // hls.js retries those itself
    const { ErrorTypes } = Hls;
    // A live stream whose master playlist cannot be had: the caller starts again later (startLoad would not
    // ask for the master playlist again).
    const manifest = data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR || data.details === Hls.ErrorDetails.MANIFEST_LOAD_TIMEOUT;
    if (data.type === ErrorTypes.NETWORK_ERROR && recoveries < 5 && !(opts.stream && manifest)) {
      recoveries += 1;
      opts.onError(`A network error stopped the loading (${data.details}); trying again…`, false);
      setTimeout(() => { if (!destroyed) hls.startLoad(); }, 1000 * recoveries);
      return;
    }
    if (data.type === ErrorTypes.MEDIA_ERROR && recoveries < 3) {
      recoveries += 1;
      opts.onError(`The browser could not decode the video (${data.details}); recovering…`, false);
      hls.recoverMediaError();
      return;
    }
    opts.onError(`Playback stopped: ${data.details}${data.reason ? ` (${data.reason})` : ''}. Reload the page to try again.`, true);
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  return engine;
}

// ---------------------------------------------------------------------------------------------
// DASH: dash.js (its MediaPlayer build: no DRM, no Smooth Streaming, no offline)

async function createDash(video, url, opts) {
  let dashjs;
  try {
    dashjs = await loadDash();
  } catch {
    throw new Error('The player library (dash.js) is missing: run "npm ci" in data/web on the server.');
  }
  if (typeof dashjs.supportsMediaSource === 'function' && !dashjs.supportsMediaSource()) {
    throw new Error('This browser has no Media Source Extensions: DASH cannot play here. The manifest URL below works in VLC, mpv or ffplay.');
  }
  if (opts.cancelled()) return null;

  const E = dashjs.MediaPlayer.events;
  const player = dashjs.MediaPlayer().create();
  player.updateSettings({
    debug: { logLevel: dashjs.Debug ? dashjs.Debug.LOG_LEVEL_WARNING : 3 },
    streaming: { abr: { autoSwitchBitrate: { video: true, audio: true } } },
  });
  let destroyed = false;
  let reps = []; // dash.js's representations, in the order of engine.levels
  let type = 'video';
  let current = -1;

  const engine = {
    library: `dash.js ${typeof player.getVersion === 'function' ? player.getVersion() : ''}`.trim(),
    instance: player,
    levels: [],
    auto: true,
    get currentLevel() { return current; },
    setLevel(index) {
      const rep = reps[index];
      engine.auto = !rep;
      player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { [type]: engine.auto } } } });
      // Replacing what is buffered, as hls.js does, so that the choice shows at once.
      if (rep) player.setRepresentationForTypeById(type, rep.id, true);
    },
    destroy() {
      destroyed = true;
      player.destroy();
    },
  };

  player.on(E.STREAM_INITIALIZED, () => {
    if (destroyed) return;
    type = player.getRepresentationsByType('video').length > 0 ? 'video' : 'audio';
    reps = player.getRepresentationsByType(type).slice().sort((a, b) => a.bandwidth - b.bandwidth);
    engine.levels = reps.map((r) => ({ width: r.width || 0, height: r.height || 0, bitrate: r.bandwidth || 0 }));
    opts.onLevels();
    const now = player.getCurrentRepresentationForType(type);
    const index = now ? reps.findIndex((r) => r.id === now.id) : -1;
    if (index >= 0) {
      current = index;
      opts.onLevel(index);
    }
  });
  player.on(E.QUALITY_CHANGE_RENDERED, (e) => {
    if (destroyed || e.mediaType !== type || !e.newRepresentation) return;
    const index = reps.findIndex((r) => r.id === e.newRepresentation.id);
    if (index >= 0) {
      current = index;
      opts.onLevel(index);
    }
  });
  player.on(E.FRAGMENT_LOADING_COMPLETED, () => {
    if (destroyed) return;
    const kbps = player.getAverageThroughput(type);
    if (Number.isFinite(kbps) && kbps > 0) opts.onBandwidth(kbps * 1000);
  });
  player.on(E.ERROR, (e) => {
    if (destroyed) return;
    const err = e && e.error;
    const message = (err && (err.message || (typeof err === 'string' ? err : ''))) || 'an unknown error';
    opts.onError(`DASH playback failed: ${message}${err && err.code ? ` (code ${err.code})` : ''}.`, true);
  });
  player.on(E.PLAYBACK_ERROR, (e) => {
    if (destroyed) return;
    const err = e && e.error;
    opts.onError(`The browser could not play the DASH stream${err && err.message ? ` (${err.message})` : ''}.`, true);
  });
  // An absolute URL: dash.js resolves the segments against it, and its request reporting wants one.
  const absolute = new URL(url, window.location.href).href;
  player.initialize(video, absolute, Boolean(opts.autoplay), opts.startTime > 0 ? opts.startTime : NaN);
  return engine;
}

/** Starts playing url on video with the given format; resolves with the engine (null if opts.cancelled()
 * turned true while dash.js was loading), rejects with an Error whose message is for people. */
export async function createEngine(format, video, url, opts) {
  const options = { cancelled: () => false, ...opts };
  return format === 'dash' ? createDash(video, url, options) : createHls(video, url, options);
}
