// Talking to the sluice API (docs/api.md): JSON requests whose failures read as sentences, the
// streamed upload with progress, and the live events.

export class ApiError extends Error {
  constructor(message, { status = 0, code = '' } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

// The server's error body is {"error": {"code", "message", "field"}}: its message is meant for people.
function errorFromBody(status, statusText, text) {
  try {
    const body = JSON.parse(text);
    if (body && body.error && typeof body.error.message === 'string' && body.error.message) {
      return new ApiError(body.error.message, { status, code: body.error.code || '' });
    }
  } catch {
    // not JSON: described below
  }
  const reason = statusText ? `${status} ${statusText}` : String(status);
  return new ApiError(`The server answered ${reason} without an explanation.`, { status });
}

/** A JSON request. Resolves with the parsed body (null for 204); rejects with an ApiError in words. */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, headers: { Accept: 'application/json' } };
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
  if (!res.ok) throw errorFromBody(res.status, res.statusText, text);
  if (res.status === 204 || text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(`The server's answer to ${method} ${path} is not valid JSON.`, { status: res.status });
  }
}

/**
 * Uploads a file as multipart/form-data (fields first, then the file) with XMLHttpRequest, so that the
 * browser streams it and reports the bytes sent. Returns {promise, abort}; the promise resolves with the
 * 201 body ({video, job}) and rejects with an ApiError (code "aborted" after abort()).
 */
export function uploadFile(file, fields, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) {
      if (value !== undefined && value !== null && value !== '') form.append(name, value);
    }
    form.append('file', file, file.name);

    xhr.open('POST', '/api/v1/videos');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError('The upload was accepted, but the server answered with something that is not JSON.',
            { status: xhr.status }));
        }
      } else {
        reject(errorFromBody(xhr.status, xhr.statusText, xhr.responseText));
      }
    };
    xhr.onerror = () => reject(new ApiError(
      'The upload failed: the connection to the server was lost. Check that sluice is running and try again.'));
    xhr.ontimeout = () => reject(new ApiError('The upload timed out.'));
    xhr.onabort = () => reject(new ApiError('Canceled', { code: 'aborted' }));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
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
  source = new EventSource('/api/v1/events');
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
  for (const type of ['job', 'progress', 'video']) {
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
