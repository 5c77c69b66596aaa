// Talking to the sluice API (docs/api.md): JSON requests whose failures read as sentences, the API key,
// and the live events. Uploads go with tus (upload.js).

export class ApiError extends Error {
  constructor(message, { status = 0, code = '', field = '' } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field; // the request's field the server names as wrong, if any
  }
}

// ---------------------------------------------------------------------------------------------
// Access: a server with [auth] answers 401 without a key. The page then asks for one, keeps it in
// sessionStorage only (gone when the tab closes) and sends it as a Bearer token; the event stream, which
// cannot send headers, takes it as ?access_token=. A 403 (a key without the scope) asks for another key too.
// Listeners of "key" (see on()) hear of every key given.

const KEY_ITEM = 'sluice-api-key';
let askingForKey = null;

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM) || '';
  } catch {
    return '';
  }
}

export function authHeaders(headers) {
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** Shows a small form asking for an API key; resolves true when one was given. */
export function askForKey(reason) {
  if (askingForKey) return askingForKey;
  const dialog = document.createElement('dialog');
  dialog.className = 'card key-dialog';
  dialog.innerHTML = `<form method="dialog">
      <h2>This server needs an API key</h2>
      <p class="hint"></p>
      <label>API key <input name="key" type="password" autocomplete="off" required placeholder="sk_…"></label>
      <p class="hint">Kept in this tab only (sessionStorage). Create one with <code>sluice keys create</code>.</p>
      <button value="ok">Use this key</button> <button value="cancel" formnovalidate>Cancel</button>
    </form>`;
  dialog.querySelector('.hint').textContent = reason;
  document.body.append(dialog);
  askingForKey = new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const key = dialog.querySelector('input').value.trim();
      const ok = dialog.returnValue === 'ok' && key !== '';
      if (ok) {
        try {
          sessionStorage.setItem(KEY_ITEM, key);
        } catch {
          // no storage: the key is not kept
        }
        if (source) connectEvents();
      }
      dialog.remove();
      askingForKey = null;
      if (ok) emit('key', {});
      resolve(ok);
    });
  });
  dialog.showModal();
  return askingForKey;
}

// The server's error body is {"error": {"code", "message", "field"}}: its message is meant for people.
export function errorFromBody(status, statusText, text) {
  try {
    const body = JSON.parse(text);
    if (body && body.error && typeof body.error.message === 'string' && body.error.message) {
      const words = status === 401 ? 'Not signed in: this server needs an API key. '
        : status === 403 && body.error.code === 'forbidden' ? 'Not allowed with this API key. ' : '';
      return new ApiError(words + body.error.message, { status, code: body.error.code || '', field: typeof body.error.field === 'string' ? body.error.field : '' });
    }
  } catch {
    // not JSON: described below
  }
  const reason = statusText ? `${status} ${statusText}` : String(status);
  return new ApiError(`The server answered ${reason} without an explanation.`, { status });
}

/** A JSON request. Resolves with the parsed body (null for 204); rejects with an ApiError in words. */
export async function api(path, { method = 'GET', body } = {}, retried = false) {
  const init = { method, headers: authHeaders({ Accept: 'application/json' }) };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError('The server cannot be reached: check that sluice is running and the network is up.');
  }
  const text = await res.text().catch(() => '');
  if (res.status === 401 && !retried) {
    const why = apiKey() ? 'The key given is not accepted (unknown, revoked or mistyped).' : '';
    if (await askForKey(why)) return api(path, { method, body }, true);
  }
  if (!res.ok) {
    const error = errorFromBody(res.status, res.statusText, text);
    if (error.code === 'forbidden' && !retried && await askForKey(`${error.message} Give a key that may, or cancel.`))
      return api(path, { method, body }, true);
    throw error;
  }
  if (res.status === 204 || text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(`The server's answer to ${method} ${path} is not valid JSON.`, { status: res.status });
  }
}

// ---------------------------------------------------------------------------------------------
// Live events: one EventSource on /api/v1/events for the whole page. It reconnects by itself (the
// server sends "retry:" and resumes from Last-Event-ID); listeners get "open" with {resync: true} when
// the page must read the state again because events may have been missed (the first connection, or
// any connection after an error).

const listeners = new Map();
const statusEl = document.getElementById('connection-status');

let source = null;
let needResync = true;
let restartTimer = 0;

export function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}

function emit(type, data) {
  for (const fn of listeners.get(type) || []) {
    try {
      fn(data);
    } catch (e) {
      // One broken listener must not stop the others.
      console.warn(`sluice: a "${type}" listener failed`, e);
    }
  }
}

function setStatus(open) {
  statusEl.dataset.state = open ? 'open' : 'closed';
  statusEl.textContent = open ? 'connected' : 'reconnecting…';
  statusEl.title = open ? 'Live updates from the server are on' : 'The live connection to the server is lost; retrying';
}

export function isConnected() {
  return source !== null && source.readyState === EventSource.OPEN;
}

export function connectEvents() {
  clearTimeout(restartTimer);
  if (source) source.close();
  const key = apiKey();
  source = new EventSource(key ? `/api/v1/events?access_token=${encodeURIComponent(key)}` : '/api/v1/events');
  source.addEventListener('open', () => {
    setStatus(true);
    const resync = needResync;
    needResync = false;
    emit('open', { resync });
  });
  source.addEventListener('error', () => {
    needResync = true;
    setStatus(false);
    // CONNECTING: the browser retries by itself. CLOSED: it gave up (an answer that was not an event
    // stream, e.g. a proxy's error page): start a new one a little later.
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      restartTimer = setTimeout(connectEvents, 3000);
    }
  });
  for (const type of ['job', 'progress', 'video', 'stream']) {
    source.addEventListener(type, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        console.warn(`sluice: ignored a "${type}" event that is not JSON`);
        return;
      }
      if (data && typeof data === 'object') emit(type, data);
    });
  }
}
