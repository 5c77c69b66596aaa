# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the end-to-end tests of `sluice serve`: a real server process on an ephemeral port,
plain HTTP over sockets, an SSE reader, multipart encoding, media generated with ffmpeg, and the
checks every test ends with (no leftovers in the data folder).

Standard library only. The server binary comes from $SLUICE_BINARY (set by meson's test env).
"""

import atexit
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

from contract import contract as api_contract

BINARY = os.environ.get('SLUICE_BINARY', '')
FFMPEG = shutil.which('ffmpeg')
FFPROBE = shutil.which('ffprobe')
GST_LAUNCH = shutil.which('gst-launch-1.0')
CURL = shutil.which('curl')
KEEP = os.environ.get('SLUICE_TEST_KEEP') == '1'   # keep temp folders for a post-mortem
# SLUICE_TEST_AUTH=keys (the `keys` suite): every server the harness starts runs with [auth] mode=keys, and the
# harness sends an admin key, made with `sluice keys create` before the server starts, on every request it makes.
# A test that sets [auth] itself, or that opts out (Server(harness_auth=False), HARNESS_AUTH = False on a
# ServerTestCase), keeps its own configuration.
TEST_AUTH = os.environ.get('SLUICE_TEST_AUTH', 'none')
if TEST_AUTH not in ('none', 'keys'):
    raise SystemExit('SLUICE_TEST_AUTH must be none or keys, not %r' % TEST_AUTH)
_HARNESS_KEYS = {}   # real path of a data folder -> the admin key the harness made in its catalog

PORT_RE = re.compile(r'http://127\.0\.0\.1:(\d+)/')
TERMINAL = ('succeeded', 'failed', 'canceled')
PLAYLIST_TYPE = 'application/vnd.apple.mpegurl'
IMMUTABLE = 'public, max-age=31536000, immutable'

need_binary = unittest.skipUnless(BINARY and os.access(BINARY, os.X_OK),
                                  'SLUICE_BINARY is not set or not executable (run through meson test)')
need_ffmpeg = unittest.skipUnless(FFMPEG and FFPROBE, 'ffmpeg/ffprobe not found: they generate the test media')
need_gst_launch = unittest.skipUnless(GST_LAUNCH, 'gst-launch-1.0 not found')
need_curl = unittest.skipUnless(CURL, 'curl not found')


def _rmtree(path):
    if not KEEP:
        shutil.rmtree(path, ignore_errors=True)


def test_failed(case):
    """Whether the test `case` (a unittest.TestCase, asked in its tearDown) has failed or raised so far."""
    result = getattr(case._outcome, 'result', None)
    return any(t is case for t, _ in getattr(result, 'errors', []) + getattr(result, 'failures', []))


def wait_until(fn, timeout=10.0, interval=0.1, message='condition'):
    """Calls fn until it returns something truthy; returns it, or raises AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %.1f s waiting for %s (last: %r)' % (timeout, message, last))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------
# Media

class Media:
    """Clips generated once per test process with ffmpeg, in a temp folder removed at exit."""

    SPECS = {
        # name: (file name, ffmpeg args)
        'short': ('short.mp4', ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
                                '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
                                '-t', '3', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25',
                                '-c:a', 'aac', '-shortest']),
        # ~10 s at 640x360: a default-parameter job takes about a second (a few progress events)
        'medium': ('medium.mp4', ['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
                                  '-f', 'lavfi', '-i', 'sine=frequency=330:sample_rate=48000',
                                  '-t', '10', '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '35',
                                  '-g', '25', '-c:a', 'aac', '-shortest']),
        # ~20 s at 640x360: with preset=veryslow a job runs for several seconds
        'long': ('long.mp4', ['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
                              '-f', 'lavfi', '-i', 'sine=frequency=550:sample_rate=48000',
                              '-t', '20', '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '35',
                              '-g', '25', '-c:a', 'aac', '-shortest']),
        'audio': ('audio.m4a', ['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
                                '-t', '3', '-c:a', 'aac']),
    }

    def __init__(self):
        self._dir = None
        self._lock = threading.Lock()
        self._paths = {}

    def dir(self):
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix='sluice-media-')
            atexit.register(_rmtree, self._dir)
        return self._dir

    def path(self, name):
        with self._lock:
            if name in self._paths:
                return self._paths[name]
            if name == 'text':
                p = os.path.join(self.dir(), 'notes.txt')
                with open(p, 'w') as f:
                    f.write('These are my notes, not a video.\n' * 200)
                self._paths[name] = p
                return p
            filename, args = self.SPECS[name]
            p = os.path.join(self.dir(), filename)
            if not FFMPEG:
                raise unittest.SkipTest('ffmpeg not found')
            r = subprocess.run([FFMPEG, '-v', 'error', '-y'] + args + [p], capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                raise RuntimeError('ffmpeg could not make %s: %s' % (name, r.stderr))
            self._paths[name] = p
            return p

    def bytes(self, name):
        with open(self.path(name), 'rb') as f:
            return f.read()


MEDIA = Media()


def ffprobe_duration(url_or_path, timeout=60):
    r = subprocess.run([FFPROBE, '-v', 'error', '-show_entries', 'format=duration', '-of', 'json', url_or_path],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError('ffprobe %s failed: %s' % (url_or_path, r.stderr))
    return float(json.loads(r.stdout)['format']['duration'])


# ---------------------------------------------------------------------------------------------------
# HTTP

class Response:
    def __init__(self, status, reason, headers, body, method='GET', path=''):
        self.status = status
        self.reason = reason
        self.headers = headers      # http.client.HTTPMessage (case-insensitive get)
        self.body = body
        self.method = method
        self.path = path
        self._json = None

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.body.decode('utf-8'))
            except (ValueError, UnicodeDecodeError) as e:
                raise AssertionError('%s %s -> %d: body is not JSON (%s): %r'
                                     % (self.method, self.path, self.status, e, self.body[:300]))
        return self._json

    def text(self):
        return self.body.decode('utf-8', 'replace')

    def describe(self):
        hdrs = '; '.join('%s: %s' % (k, v) for k, v in self.headers.items())
        return '%s %s -> %d %s [%s] %r' % (self.method, self.path, self.status, self.reason, hdrs, self.body[:400])

    def __repr__(self):
        return '<Response %s>' % self.describe()


def encode_multipart(fields=(), files=(), boundary=None):
    """fields: [(name, value)], files: [(name, filename, content_type, bytes)] -> (content_type, body)."""
    boundary = boundary or ('sluiceTestBoundary' + uuid.uuid4().hex)
    out = []
    for name, value in fields:
        out.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n' % (boundary, name)).encode())
        out.append(value.encode('utf-8') if isinstance(value, str) else value)
        out.append(b'\r\n')
    for name, filename, ctype, data in files:
        out.append(('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
                    'Content-Type: %s\r\n\r\n' % (boundary, name, filename, ctype)).encode())
        out.append(data)
        out.append(b'\r\n')
    out.append(('--%s--\r\n' % boundary).encode())
    return 'multipart/form-data; boundary=%s' % boundary, b''.join(out)


def read_http_response(sock, method='GET', timeout=30):
    """Reads one HTTP response from a raw socket (None when the peer closed without answering)."""
    sock.settimeout(timeout)
    resp = http.client.HTTPResponse(sock, method=method)
    try:
        resp.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return None
    body = b'' if method == 'HEAD' else resp.read()
    return Response(resp.status, resp.reason, resp.headers, body, method)


def install_unwritable_pipeline():
    """Points this process's servers at a private descriptions folder: the real ones plus `unwritable`, an hls
    whose sink writes where nobody can, so that every run of it fails inside GStreamer (a resource error, which
    may be transient in real life). Call before the servers start; the folder is removed at exit."""
    source = os.environ.get('SLUICE_PIPELINES_DIR', '')
    if not (source and os.path.isdir(source)):
        return
    folder = tempfile.mkdtemp(prefix='sluice-e2e-pipelines-')
    atexit.register(_rmtree, folder)
    for name in os.listdir(source):
        if name.endswith('.json'):
            shutil.copy(os.path.join(source, name), folder)
    with open(os.path.join(source, 'hls.json')) as f:
        broken = json.load(f)
    broken['name'] = 'unwritable'
    broken['summary'] = 'test only: writes its segments where it cannot'
    broken['fragments']['sink'] = broken['fragments']['sink'].replace('{out}/', '/proc/sluice-unwritable/')
    with open(os.path.join(folder, 'unwritable.json'), 'w') as f:
        json.dump(broken, f)
    os.environ['SLUICE_PIPELINES_DIR'] = folder
    # When hlssink2 cannot open its fragment, GStreamer 1.22's mpegtsmux can emit a critical on its own
    # error path (data flow before the segment event): not fatal here, where the failure is the point.
    os.environ['G_DEBUG'] = ''


# ---------------------------------------------------------------------------------------------------
# The server process

@contextlib.contextmanager
def environment(values):
    """Sets the environment variables of values (None unsets one) for the block, then puts them back as they were:
    for a server started in the block, which inherits them."""
    def put(pairs):
        for k, v in pairs.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    saved = {k: os.environ.get(k) for k in values}
    try:
        put(values)
        yield
    finally:
        put(saved)


def write_config(path, config):
    """config: {section: {key: value}} -> a GKeyFile."""
    with open(path, 'w') as f:
        for section, keys in config.items():
            f.write('[%s]\n' % section)
            for k, v in keys.items():
                if isinstance(v, bool):
                    v = 'true' if v else 'false'
                f.write('%s=%s\n' % (k, v))
            f.write('\n')


def create_key(data_dir, name, scope):
    """`sluice keys create` on a data folder (made when missing); returns the key."""
    r = subprocess.run([BINARY, 'keys', 'create', '--data', data_dir, '--name', name, '--scope', scope],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError('sluice keys create failed (%d): %s' % (r.returncode, r.stderr))
    return r.stdout.strip()


def harness_key(data_dir):
    """The admin key of the harness in this data folder's catalog, made on first use (SLUICE_TEST_AUTH=keys)."""
    where = os.path.realpath(data_dir)
    if where not in _HARNESS_KEYS:
        _HARNESS_KEYS[where] = create_key(data_dir, 'test-harness', 'admin')
    return _HARNESS_KEYS[where]


class Server:
    """One `sluice serve` process. Several Server objects may share a data folder (restarts)."""

    def __init__(self, data_dir, config=None, config_path=None, log_path=None, api_key=None, harness_auth=True):
        self.data_dir = data_dir
        self.api_key = api_key      # sent as Authorization: Bearer on every request that has none
        self.config_path = config_path
        # SLUICE_TEST_AUTH=keys: [auth] mode=keys and a key of the harness (also for a restart on the same folder).
        self.harness_auth = harness_auth and TEST_AUTH == 'keys'
        if config_path is None:
            # The default job profile (poster, storyboard, preview after every upload) is left out
            # unless a test asks for it: most tests follow one job per upload.
            config = {k: dict(v) for k, v in (config or {}).items()}
            config.setdefault('jobs', {}).setdefault('extras', '')
            # The live ports on free ones: several servers (and other runs) on one machine never collide.
            config.setdefault('rtsp', {}).setdefault('listen', '127.0.0.1:0')
            config.setdefault('srt', {}).setdefault('listen', '127.0.0.1:0')
            if self.harness_auth and 'auth' not in config:
                config['auth'] = {'mode': 'keys'}
            elif 'auth' in config:
                self.harness_auth = False   # the test's own [auth]
            parent = os.path.dirname(data_dir.rstrip('/'))
            if not os.path.isdir(parent):
                # Not created here: some tests check that the server creates missing folders.
                parent = tempfile.mkdtemp(prefix='sluice-conf-')
            self.config_path = os.path.join(parent, 'sluice-test.conf')
            write_config(self.config_path, config)
        elif os.path.realpath(data_dir) not in _HARNESS_KEYS:
            self.harness_auth = False       # a configuration of the test's own, not a restart of a harness server
        self.log_path = log_path or os.path.join(os.path.dirname(data_dir.rstrip('/')), 'server.log')
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.proc = None
        self.port = None
        self.returncode = None
        self._lines = []
        self._lock = threading.Lock()
        self._threads = []

    # -- lifetime --

    def start(self, timeout=30):
        if self.harness_auth and self.api_key is None:
            self.api_key = harness_key(self.data_dir)
        cmd = [BINARY, 'serve', '--listen', '127.0.0.1:0', '--data', self.data_dir]
        if self.config_path:
            cmd += ['--config', self.config_path]
        self._log('### started: %s' % ' '.join(cmd))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        port_found = threading.Event()

        def reader(stream, tag):
            for raw in iter(stream.readline, b''):
                line = raw.decode('utf-8', 'replace').rstrip('\n')
                self._log('%s %s' % (tag, line))
                if tag == 'out' and self.port is None:
                    m = PORT_RE.search(line)
                    if m:
                        self.port = int(m.group(1))
                # Its last start-up line: the RTSP, SRT and metrics lines, printed before it, are in the log.
                if tag == 'out' and self.port is not None and line.startswith('sluice: data in'):
                    port_found.set()
            stream.close()

        for stream, tag in ((self.proc.stdout, 'out'), (self.proc.stderr, 'err')):
            t = threading.Thread(target=reader, args=(stream, tag), daemon=True)
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + timeout
        while not port_found.wait(0.1):
            if self.proc.poll() is not None:
                self._join_readers()
                raise AssertionError('sluice serve exited with %s before listening:\n%s'
                                     % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError('sluice serve did not print its address within %d s:\n%s'
                                     % (timeout, self.log_tail()))
        _LIVE.add(self)
        if self.harness_auth:
            # The keys suite must not pass by running open: the API refuses a request without the key.
            conn = self.connection(10)
            try:
                conn.request('GET', '/api/v1/jobs')
                status = conn.getresponse().status
            finally:
                conn.close()
            if status != 401:
                raise AssertionError('SLUICE_TEST_AUTH=keys, yet GET /api/v1/jobs without the key answers %d' % status)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Sends sig and waits; returns the exit status (negative: killed by a signal)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._log('### did not exit within %d s of signal %d: killed' % (timeout, sig))
                self.proc.kill()
                self.proc.wait()
                self._join_readers()
                self.returncode = self.proc.returncode
                _LIVE.discard(self)
                raise AssertionError('sluice serve did not exit within %d s of signal %d' % (timeout, sig))
        self._join_readers()
        self.returncode = self.proc.returncode
        self._log('### exited: %s' % self.returncode)
        _LIVE.discard(self)
        return self.returncode

    def kill(self):
        """kill -9."""
        return self.stop(signal.SIGKILL, timeout=10)

    def _join_readers(self):
        for t in self._threads:
            t.join(5)

    def _log(self, line):
        with self._lock:
            self._lines.append(line)
            with open(self.log_path, 'a') as f:
                f.write(line + '\n')

    def log_tail(self, n=60):
        with self._lock:
            return '\n'.join(self._lines[-n:])

    # -- HTTP --

    @property
    def base(self):
        return 'http://127.0.0.1:%d' % self.port

    def url(self, path):
        return self.base + path

    def connection(self, timeout=30):
        return http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)

    def auth_headers(self, headers=None):
        """headers with the server's api_key added (unless they have an Authorization of their own)."""
        h = dict(headers or {})
        if self.api_key and not any(k.lower() == 'authorization' for k in h):
            h['Authorization'] = 'Bearer ' + self.api_key
        return h

    def auth_header_line(self):
        """The Authorization header line (with its CRLF) of a request written by hand; '' without a key."""
        return 'Authorization: Bearer %s\r\n' % self.api_key if self.api_key else ''

    def curl_auth(self):
        """curl arguments that send the key ([] without one)."""
        return ['-H', 'Authorization: Bearer ' + self.api_key] if self.api_key else []

    def create_key(self, name, scope):
        """`sluice keys create` on this server's data folder; returns the key."""
        return create_key(self.data_dir, name, scope)

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=self.auth_headers(headers))
            r = conn.getresponse()
            data = r.read()
            # Every answer must be one docs/openapi.json describes (tests/server/contract.py).
            api_contract().check(method, path, r.status, r.headers.get('Content-Type'), data)
            return Response(r.status, r.reason, r.headers, data, method, path)
        finally:
            conn.close()

    def get(self, path, headers=None, **kw):
        return self.request('GET', path, headers=headers, **kw)

    def get_json(self, path, status=200):
        r = self.get(path)
        if r.status != status:
            raise AssertionError('expected %d: %s' % (status, r.describe()))
        return r.json()

    def post_json(self, path, obj, headers=None):
        body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        h = {'Content-Type': 'application/json'}
        h.update(headers or {})
        return self.request('POST', path, body=body, headers=h)

    def raw_socket(self, timeout=30):
        s = socket.create_connection(('127.0.0.1', self.port), timeout=timeout)
        return s

    # -- API shortcuts --

    def upload(self, name='short', filename=None, title=None, fields=None, content_type='video/mp4', data=None):
        """Multipart upload of a clip of MEDIA (or of data)."""
        if data is None:
            data = MEDIA.bytes(name)
            filename = filename or os.path.basename(MEDIA.path(name))
        f = []
        if title is not None:
            f.append(('title', title))
        for k, v in (fields or {}).items():
            f.append((k, str(v)))
        ctype, body = encode_multipart(f, [('file', filename or 'clip.mp4', content_type, data)])
        return self.request('POST', '/api/v1/videos', body=body, headers={'Content-Type': ctype})

    def upload_ok(self, *a, **kw):
        r = self.upload(*a, **kw)
        if r.status != 201:
            raise AssertionError('upload: expected 201: %s' % r.describe())
        return r.json()

    def job(self, job_id):
        return self.get_json('/api/v1/jobs/' + job_id)

    def video(self, video_id):
        return self.get_json('/api/v1/videos/' + video_id)

    def wait_job(self, job_id, states=TERMINAL, timeout=60, interval=0.1):
        holder = {}

        def check():
            j = self.job(job_id)
            holder['job'] = j
            return j if j['state'] in states else None

        try:
            return wait_until(check, timeout, interval, 'job %s to be %s' % (job_id, '/'.join(states)))
        except AssertionError as e:
            raise AssertionError('%s\njob: %s\nserver log:\n%s' % (e, holder.get('job'), self.log_tail(30)))

    def wait_succeeded(self, job_id, timeout=90):
        j = self.wait_job(job_id, TERMINAL, timeout)
        if j['state'] != 'succeeded':
            raise AssertionError('job %s ended %s: %s\nserver log:\n%s' % (job_id, j['state'], j, self.log_tail(30)))
        return j

    def post_job(self, video_id, **fields):
        return self.post_json('/api/v1/videos/%s/jobs' % video_id, fields)

    def running_job(self, video_id, timeout=30, **fields):
        """Posts a job (202) and waits until it runs; returns it."""
        r = self.post_job(video_id, **fields)
        if r.status != 202:
            raise AssertionError('POST jobs: expected 202: %s' % r.describe())
        job = r.json()
        job = job.get('job', job)
        return self.wait_job(job['id'], ('running',) + TERMINAL, timeout, 0.05)


_LIVE = set()


@atexit.register
def _kill_leftover_servers():
    for s in list(_LIVE):
        try:
            s.kill()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------------
# Server-Sent Events

class Event:
    def __init__(self, id, event, data, received):
        self.id = id
        self.event = event
        self.data = data
        self.received = received
        try:
            self.json = json.loads(data) if data else None
        except ValueError:
            self.json = None

    def video_id(self):
        if not isinstance(self.json, dict):
            return None
        if self.event == 'job':
            return self.json.get('video_id')
        if self.event == 'progress':
            return self.json.get('video')
        if self.event == 'video':
            return self.json.get('id')
        return None

    def job_id(self):
        if not isinstance(self.json, dict):
            return None
        if self.event == 'job':
            return self.json.get('id')
        if self.event == 'progress':
            return self.json.get('job')
        return None

    def __repr__(self):
        return '<Event id=%s %s %s>' % (self.id, self.event, self.data[:200])


class EventStream:
    """GET /api/v1/events on its own connection, read by a thread into a list of Events."""

    def __init__(self, server, query='', last_event_id=None, timeout=10):
        self.server = server
        self.path = '/api/v1/events' + query
        self.conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=timeout)
        headers = server.auth_headers({'Accept': 'text/event-stream'})
        if last_event_id is not None:
            headers['Last-Event-ID'] = str(last_event_id)
        self.conn.request('GET', self.path, headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers
        self.events = []
        self.comments = []           # (text, monotonic time)
        self.raw_lines = []
        self.closed = False
        self.error = None
        self.contract_error = None   # the first event docs/openapi.json does not describe
        self.cond = threading.Condition()
        if self.status != 200:
            body = self.response.read()
            self.conn.close()
            raise AssertionError('GET %s -> %d %r' % (self.path, self.status, body[:300]))
        self.conn.sock.settimeout(None)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b''
        ev = {'id': None, 'event': None, 'data': []}
        last_id = None
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    m = re.search(b'\r\n|\n|\r', buf)
                    if not m:
                        break
                    # a lone \r at the end of the buffer may be the first half of \r\n
                    if m.group() == b'\r' and m.end() == len(buf):
                        break
                    line = buf[:m.start()].decode('utf-8', 'replace')
                    buf = buf[m.end():]
                    now = time.monotonic()
                    with self.cond:
                        self.raw_lines.append(line)
                        if line == '':
                            if ev['data'] or ev['event']:
                                if ev['id'] is not None:
                                    last_id = ev['id']
                                e = Event(ev['id'] if ev['id'] is not None else last_id, ev['event'] or 'message',
                                          '\n'.join(ev['data']), now)
                                try:
                                    api_contract().check_event(e.event, e.json)
                                except AssertionError as bad:
                                    self.contract_error = self.contract_error or bad
                                self.events.append(e)
                            ev = {'id': None, 'event': None, 'data': []}
                            self.cond.notify_all()
                            continue
                        if line.startswith(':'):
                            self.comments.append((line[1:].strip(), now))
                            self.cond.notify_all()
                            continue
                        field, _, value = line.partition(':')
                        if value.startswith(' '):
                            value = value[1:]
                        if field == 'data':
                            ev['data'].append(value)
                        elif field == 'event':
                            ev['event'] = value
                        elif field == 'id':
                            ev['id'] = value
        except Exception as e:  # closed under our feet, reset...
            self.error = e
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass
        try:
            self.conn.close()
        except Exception:
            pass
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        if self.contract_error and exc[0] is None:
            raise self.contract_error

    def snapshot(self):
        with self.cond:
            return list(self.events)

    def wait_for(self, pred, timeout=60, start=0, what='event'):
        """The first event at index >= start matching pred; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                if self.contract_error:
                    raise self.contract_error
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError('%s: no %s within %.0f s (closed=%s, error=%r); got %d events: %r\n'
                                         'server log:\n%s' % (self.path, what, timeout, self.closed, self.error,
                                                              len(self.events), self.events[-15:],
                                                              self.server.log_tail(25)))
                self.cond.wait(min(left, 0.5))

    def wait_job_state(self, job_id, states, timeout=60, start=0):
        if isinstance(states, str):
            states = (states,)
        return self.wait_for(lambda e: e.event == 'job' and e.json and e.json.get('id') == job_id
                             and e.json.get('state') in states, timeout, start,
                             'job event %s for %s' % ('/'.join(states), job_id))

    def wait_comment(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for c, t in self.comments:
                    if c == text:
                        return t
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError('%s: no ": %s" comment within %.0f s; lines: %r'
                                         % (self.path, text, timeout, self.raw_lines[-10:]))
                self.cond.wait(min(left, 0.5))


# ---------------------------------------------------------------------------------------------------
# Test cases

def files_under(path):
    out = []
    for root, dirs, files in os.walk(path):
        for n in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            out.append(os.path.relpath(os.path.join(root, n), path))
    return sorted(out)


class ServerTestCase(unittest.TestCase):
    """A server per test class (started in setUpClass with CONFIG); every test ends with check_clean()."""

    CONFIG = {'jobs': {'concurrent': 1}}
    # Scopes of an API key made before the server starts and sent with every request (CONFIG then sets
    # [auth] mode=keys); None: no key.
    API_KEY_SCOPES = None
    # False: the class server stays as CONFIG says even with SLUICE_TEST_AUTH=keys (a test of the open mode).
    HARNESS_AUTH = True
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        if not (BINARY and os.access(BINARY, os.X_OK)):
            raise unittest.SkipTest('SLUICE_BINARY is not set or not executable (run through meson test)')
        cls.tmp = tempfile.mkdtemp(prefix='sluice-e2e-%s-' % cls.__name__)
        cls.addClassCleanup(_rmtree, cls.tmp)
        cls.data = os.path.join(cls.tmp, 'data')
        os.makedirs(cls.data)
        cls.server = Server(cls.data, cls.CONFIG, harness_auth=cls.HARNESS_AUTH)
        if cls.API_KEY_SCOPES:
            cls.server.api_key = cls.server.create_key('test-%s' % cls.__name__.lower(), cls.API_KEY_SCOPES)
        cls.server.start()
        cls.addClassCleanup(cls._stop_class_server)

    @classmethod
    def _stop_class_server(cls):
        s = cls.server
        if s.proc is not None and s.returncode is None:
            rc = s.stop(signal.SIGTERM, timeout=20)
            if rc != 0:
                raise AssertionError('sluice serve exited with %s on SIGTERM (expected 0):\n%s' % (rc, s.log_tail()))

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            srv = getattr(self, 'server', None)
            if srv is not None:
                sys.stderr.write('\n--- server log (%s) ---\n%s\n--- end ---\n' % (self.id(), srv.log_tail(40)))
        return out

    def tearDown(self):
        if getattr(self, 'skip_clean_check', False):
            return
        srv = self.server
        if srv.alive():
            self.check_clean(srv)
        elif srv.returncode is None:
            self.fail('sluice serve died during the test (status %s):\n%s' % (srv.proc.poll(), srv.log_tail()))

    # -- shared assertions --

    def assert_error(self, r, status, code=None, field=None):
        """r is a JSON error {"error": {"code", "message"}} with this status (or one of these statuses)."""
        statuses = status if isinstance(status, (tuple, list, set)) else (status,)
        self.assertIn(r.status, statuses, r.describe())
        ctype = r.header('Content-Type', '')
        self.assertTrue(ctype.startswith('application/json'), 'error Content-Type %r: %s' % (ctype, r.describe()))
        body = r.json()
        self.assertIsInstance(body, dict, r.describe())
        self.assertIn('error', body, r.describe())
        err = body['error']
        self.assertIsInstance(err.get('code'), str, r.describe())
        self.assertIsInstance(err.get('message'), str, r.describe())
        self.assertTrue(err['message'], 'empty message: ' + r.describe())
        if code is not None:
            codes = code if isinstance(code, (tuple, list, set)) else (code,)
            self.assertIn(err['code'], codes, r.describe())
        if field is not None:
            self.assertTrue(err.get('field') == field or field in err['message'],
                            'error does not name %r: %s' % (field, r.describe()))
        return err

    def uploads_left(self, srv=None):
        srv = srv or self.server
        return files_under(os.path.join(srv.data_dir, 'uploads'))

    def video_dirs(self, srv=None):
        srv = srv or self.server
        d = os.path.join(srv.data_dir, 'videos')
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def assert_no_uploads_left(self, srv=None, timeout=5):
        try:
            wait_until(lambda: not self.uploads_left(srv), timeout, 0.1, 'DATADIR/uploads to be empty')
        except AssertionError:
            self.fail('temporary uploads left behind: %r' % self.uploads_left(srv))

    def check_clean(self, srv=None):
        """No temporary uploads; no .partial output of a video without a queued/running job; every job's
        video exists; every video folder belongs to a listed video and vice versa."""
        srv = srv or self.server
        self.assert_no_uploads_left(srv)
        videos = srv.get_json('/api/v1/videos')['videos']
        ids = {v['id'] for v in videos}
        jobs = srv.get_json('/api/v1/jobs')['jobs']
        for j in jobs:
            self.assertIn(j['video_id'], ids, 'orphan job %s' % j)
        active = {j['video_id'] for j in jobs if j['state'] in ('queued', 'running')}
        vroot = os.path.join(srv.data_dir, 'videos')
        for vid in self.video_dirs(srv):
            self.assertIn(vid, ids, 'folder videos/%s belongs to no listed video' % vid)
            if vid not in active:
                partial = [f for f in os.listdir(os.path.join(vroot, vid)) if f.endswith('.partial')]
                self.assertEqual(partial, [], 'partial output left for video %s (jobs all finished)' % vid)
        for vid in ids:
            self.assertTrue(os.path.isdir(os.path.join(vroot, vid)), 'listed video %s has no folder' % vid)

    def assert_no_outputs(self, video_id, srv=None, timeout=5):
        srv = srv or self.server
        d = os.path.join(srv.data_dir, 'videos', video_id)

        def outputs():
            return [f for f in (os.listdir(d) if os.path.isdir(d) else []) if f.startswith('hls')]

        try:
            wait_until(lambda: not outputs(), timeout, 0.1, 'no hls output')
        except AssertionError:
            self.fail('output left for video %s: %r' % (video_id, outputs()))


def main():
    """unittest.main with meson's exit status protocol: 0 pass, 1 fail, 77 everything skipped."""
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    if not r.wasSuccessful():
        sys.exit(1)
    if r.testsRun and len(r.skipped) == r.testsRun:
        sys.exit(77)
    sys.exit(0)
