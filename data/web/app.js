// sluice's web page: upload and library at #/, the player at #/videos/ID. No build step: plain ES
// modules; hls.js, dash.js and tus-js-client come from npm (data/web/node_modules): hls.js and tus-js-client
// loaded by index.html before this module, dash.js by engines.js when a DASH manifest is first played.

import { connectEvents } from './api.js';
import { initLibrary, refreshVideo } from './library.js';
import { hidePlayer, initPlayer, showPlayer } from './player.js';
import { initUpload } from './upload.js';

const homeView = document.getElementById('home-view');

function route() {
  const hash = window.location.hash.replace(/^#/, '');
  const match = /^\/videos\/([^/?#]+)\/?$/.exec(hash);
  if (match) {
    let id;
    try {
      id = decodeURIComponent(match[1]);
    } catch {
      id = match[1];
    }
    homeView.hidden = true;
    showPlayer(id);
    document.getElementById('video-title').focus({ preventScroll: true });
    window.scrollTo(0, 0);
  } else {
    const wasPlayer = !document.getElementById('player-view').hidden;
    hidePlayer();
    homeView.hidden = false;
    document.title = 'sluice';
    if (wasPlayer) document.getElementById('library-heading').focus({ preventScroll: true });
  }
}

initLibrary();
initPlayer();
// Read again in the library's order of requests: the upload's job may already have sent its events.
initUpload({ onUploaded: (video) => refreshVideo(video.id) });
connectEvents();
window.addEventListener('hashchange', route);
route();
