// sluice's web page: upload and library at #/, live streams at #/streams, the operator view at #/operator (admin
// keys), the player at #/videos/ID and #/streams/ID. No build step: plain ES modules; hls.js, dash.js, tus-js-client
// and uPlot come from npm (data/web/node_modules): hls.js and tus-js-client loaded by index.html before this module,
// dash.js by engines.js when a DASH manifest is first played, uPlot by operator.js when its view first shows.

import { connectEvents } from './api.js';
import { initLibrary, refreshVideo } from './library.js';
import { hideOperator, initOperator, showOperator } from './operator.js';
import { hidePlayer, initPlayer, showPlayer, showStream } from './player.js';
import { initStreams, showStreams } from './streams.js';
import { initUpload } from './upload.js';

const homeView = document.getElementById('home-view');
const streamsView = document.getElementById('streams-view');
const playerView = document.getElementById('player-view');
const operatorView = document.getElementById('operator-view');
const tabs = {
  library: document.getElementById('tab-library'),
  streams: document.getElementById('tab-streams'),
  operator: document.getElementById('tab-operator'),
};

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

// Which view shows, and which tab is current (a video belongs to the library, a stream to the streams).
function show(view, tab) {
  const wasPlayer = !playerView.hidden;
  if (view !== playerView) hidePlayer();
  homeView.hidden = view !== homeView;
  streamsView.hidden = view !== streamsView;
  operatorView.hidden = view !== operatorView;
  if (view !== operatorView) hideOperator();
  for (const [name, link] of Object.entries(tabs)) {
    if (name === tab) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  return wasPlayer;
}

function route() {
  const hash = window.location.hash.replace(/^#/, '');
  const video = /^\/videos\/([^/?#]+)\/?$/.exec(hash);
  const stream = /^\/streams\/([^/?#]+)\/?$/.exec(hash);
  if (video || stream) {
    show(playerView, video ? 'library' : 'streams');
    if (video) showPlayer(decode(video[1]));
    else showStream(decode(stream[1]));
    document.getElementById('video-title').focus({ preventScroll: true });
    window.scrollTo(0, 0);
  } else if (/^\/operator\/?$/.test(hash)) {
    show(operatorView, 'operator');
    document.title = 'Operator · sluice';
    showOperator();
    document.getElementById('operator-heading').focus({ preventScroll: true });
  } else if (/^\/streams\/?$/.test(hash)) {
    const wasPlayer = show(streamsView, 'streams');
    document.title = 'Streams · sluice';
    showStreams();
    if (wasPlayer) document.getElementById('streams-list-heading').focus({ preventScroll: true });
  } else {
    const wasPlayer = show(homeView, 'library');
    document.title = 'sluice';
    if (wasPlayer) document.getElementById('library-heading').focus({ preventScroll: true });
  }
}

initLibrary();
initPlayer();
initStreams();
initOperator();
// Read again in the library's order of requests: the upload's job may already have sent its events.
initUpload({ onUploaded: (video) => refreshVideo(video.id) });
connectEvents();
window.addEventListener('hashchange', route);
route();
