#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: the fast path of media files ([server] media-fast-path), which answers a finished
local package's GET and HEAD itself on keep-alive connections, against the same package served by libsoup alone
(media-fast-path=false): the same status, headers and bytes for whole files, ranges, conditionals and errors; keep-alive
connections that go on after a request handed to libsoup, pipelined requests, a head sent in two pieces,
Connection: close, HTTP/1.0, request ids, the access log, the metrics and the idle timeout."""

import email.utils
import hashlib
import http.client
import io
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (IMMUTABLE, PLAYLIST_TYPE, Response, Server, ServerTestCase, _rmtree, environment,  # noqa: E402
                           main, need_binary, need_ffmpeg, wait_until)

# Headers whose values must be the same from both lanes. The packages' files are hard links of the same files, so
# that their inode-based ETags are the same too. Not their folders: a media playlist is rewritten with the version of
# its package's folder (its inode and time) in its segment URLs, so its bytes, length and ETag differ by that version.
SAME_VALUES = ('Content-Type', 'Content-Length', 'Content-Range', 'Cache-Control', 'Accept-Ranges', 'ETag',
               'Last-Modified', 'Server', 'Connection')
REQUEST_ID_RE = re.compile(r'^[0-9a-f]{16}$')
VERSION_RE = re.compile(rb'\?v=[0-9a-z]+')
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
MEDIA_ROUTE = '/videos/{id}/*'
FAST_METRIC = 'sluice_http_fast_path_requests_total'


def playlist_uris(text):
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith('#')]


def copy_data(src, dst):
    """A copy of a running server's data folder for another server: the catalog through SQLite's backup (a consistent
    snapshot while the first server runs), the videos as hard links (the same inodes and times, so the same ETags)."""
    def link_or_copy(s, d):
        if os.path.relpath(s, src).split(os.sep)[0] == 'videos':
            os.link(s, d)
        else:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns('sluice.db', 'sluice.db-*'))
    source = sqlite3.connect('file:%s?mode=ro' % os.path.join(src, 'sluice.db'), uri=True)
    target = sqlite3.connect(os.path.join(dst, 'sluice.db'))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def metric(text, name, **labels):
    """The sum of the samples of name in a text exposition whose labels include labels (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        m = SAMPLE_RE.match(line)
        if m and m.group(1) == name:
            have = dict(LABEL_RE.findall(m.group(2) or ''))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
    return total


class Connection:
    """One client connection written by hand. Its answers are read in order from one buffer, so that answers that
    arrive together (pipelining) are not lost between two reads, and a byte too many (a HEAD's body, a length
    that lies) shows as a malformed next answer or as bytes left over. (The harness's read_http_response reads
    through a buffered file of its own per answer, which may swallow the start of the next one.)"""

    def __init__(self, srv, timeout=30, sock=None):
        self.srv = srv
        self.sock = sock or srv.raw_socket(timeout)
        self.buf = b''

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request_bytes(self, method, path, headers=None, version='HTTP/1.1'):
        lines = ['%s %s %s' % (method, path, version)]
        if 'Host' not in (headers or {}):
            lines.append('Host: 127.0.0.1:%d' % self.srv.port)
        lines += ['%s: %s' % kv for kv in (headers or {}).items()]
        return ('\r\n'.join(lines) + '\r\n\r\n').encode()

    def send(self, data):
        self.sock.sendall(data)

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError('the server closed the connection (%d bytes unread: %r)' % (len(self.buf), self.buf[:200]))
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self):
        while b'\r\n' not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b'\r\n')
        return line

    def read(self, method='GET', path=''):
        """The next answer on the connection, as the harness's Response."""
        while b'\r\n\r\n' not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b'\r\n\r\n')
        status_line, _, fields = head.partition(b'\r\n')
        m = re.match(rb'^HTTP/1\.[01] (\d{3}) ?(.*)$', status_line)
        if not m:
            raise AssertionError('not a status line: %r (answer to %s %s)' % (status_line, method, path))
        status = int(m.group(1))
        headers = http.client.parse_headers(io.BytesIO(fields + b'\r\n\r\n'))
        if method == 'HEAD' or status in (204, 304) or status < 200:
            body = b''
        elif 'chunked' in headers.get('Transfer-Encoding', '').lower():
            parts = []
            while True:
                size = int(self._line().split(b';')[0], 16)
                if size == 0:
                    while self._line():     # trailers, up to the empty line
                        pass
                    break
                parts.append(self._take(size))
                self._take(2)
            body = b''.join(parts)
        elif headers.get('Content-Length') is not None:
            body = self._take(int(headers['Content-Length']))
        else:
            try:
                while True:
                    self._more()
            except EOFError:
                pass
            body, self.buf = self.buf, b''
        return Response(status, m.group(2).decode('latin-1'), headers, body, method, path)

    def get(self, path, headers=None, method='GET'):
        """One request and its answer."""
        self.send(self.request_bytes(method, path, headers))
        return self.read(method, path)

    def assert_nothing_left(self, wait=0.2):
        """No byte came after the last answer read (within wait seconds), and the connection is still open."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError('the server closed a keep-alive connection (%d bytes unread)' % len(self.buf))
        except socket.timeout:
            chunk = b''
        finally:
            self.sock.settimeout(30)
        if self.buf or chunk:
            raise AssertionError('bytes after the last answer: %r' % (self.buf + chunk)[:300])

    def wait_closed(self, timeout):
        """Seconds until the server closes the connection; AssertionError when it does not within timeout or when it
        sends anything more."""
        start = time.monotonic()
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError('the connection is still open after %.1f s' % timeout)
        if chunk or self.buf:
            raise AssertionError('bytes instead of the end of the connection: %r' % (self.buf + chunk)[:300])
        return time.monotonic() - start


@need_binary
@need_ffmpeg
class FastPath(ServerTestCase):
    """The class server with the fast path (its default), and `plain`: the same package (a copy of the data folder
    made once the job succeeded) served with media-fast-path=false, where libsoup answers everything."""

    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'concurrent': 1}}

    @classmethod
    def setUpClass(cls):
        # The access log (sluice-http, level 4) of every server of the class, without colours.
        with environment({'GST_DEBUG': 'sluice-http:4', 'GST_DEBUG_NO_COLOR': '1'}):
            super().setUpClass()
            srv = cls.server
            cls.vid = srv.upload_ok('short', title='direct')['video']['id']
            r = srv.post_job(cls.vid, ladder='240p', params={'segment_seconds': 1, 'preset': 'ultrafast'})
            if r.status != 202:
                raise AssertionError('POST jobs: %s' % r.describe())
            srv.wait_succeeded(r.json()['id'])
            cls.plain = cls.copy_server('plain', {'media-fast-path': 'false'})
        cls.hls = os.path.join(cls.data, 'videos', cls.vid, 'hls')
        cls.base = '/videos/%s/hls/' % cls.vid
        cls.master = cls.base + 'master.m3u8'
        cls.playlist = cls.base + '240p.m3u8'
        cls.segments = sorted(n for n in os.listdir(cls.hls) if re.match(r'^240p_\d{5}\.ts$', n))
        if len(cls.segments) < 3:
            raise AssertionError('expected 3 segments of 1 s: %r' % cls.segments)
        cls.segment = cls.base + cls.segments[0]

    @classmethod
    def copy_server(cls, name, server_config):
        """A server started on a copy of the class server's data, with [server] server_config; stopped (exit 0
        expected) and its folder removed at the end of the class."""
        data = os.path.join(cls.tmp, name, 'data')
        copy_data(cls.data, data)
        config = {k: dict(v) for k, v in cls.CONFIG.items()}
        config.setdefault('server', {}).update(server_config)
        # The copied catalog has the class server's keys (SLUICE_TEST_AUTH=keys): its harness key is sent.
        srv = Server(data, config, api_key=cls.server.api_key)
        cls.addClassCleanup(cls._stop_server, srv)
        return srv.start()

    @staticmethod
    def _stop_server(srv):
        if srv.proc is not None and srv.returncode is None:
            rc = srv.stop(signal.SIGTERM, timeout=20)
            if rc != 0:
                raise AssertionError('sluice serve exited with %s on SIGTERM (expected 0):\n%s' % (rc, srv.log_tail()))

    def tearDown(self):
        super().tearDown()
        if self.plain.alive():
            self.check_clean(self.plain)

    # -- helpers

    def file_bytes(self, name):
        with open(os.path.join(self.hls, name), 'rb') as f:
            return f.read()

    def rewritten(self, path):
        """Whether path is a media playlist, served with the package's version in its URLs."""
        return path.split('?')[0] == self.playlist

    def versioned_segment(self, srv):
        """The first segment's URL as srv's media playlist names it (with the package's version)."""
        p = srv.get(self.playlist)
        self.assertEqual(p.status, 200, p.describe())
        uris = playlist_uris(p.text())
        self.assertTrue(uris and all(re.match(r'^240p_\d{5}\.ts\?v=[0-9a-z]+$', u) for u in uris), uris)
        self.assertEqual(uris[0].split('?')[0], self.segments[0], uris)
        return self.base + uris[0]

    def assert_each_alike(self, fn):
        """fn's answers on each server (on_each), alike one by one."""
        direct, plain = self.on_each(fn)
        self.assertEqual(len(direct), len(plain))
        for d, p in zip(direct, plain):
            self.assert_alike(d, p, d.path)

    def assert_alike(self, direct, plain, what=''):
        """Two answers to the same request, from the fast path and from libsoup: the same status, header names,
        values (but Date's and X-Request-Id's) and bytes; a media playlist's (the answer to self.playlist) but for
        its package's version."""
        rewritten = self.rewritten(direct.path)
        what = '%s\n direct: %s\n plain: %s' % (what, direct.describe(), plain.describe())
        self.assertEqual(direct.status, plain.status, what)
        self.assertEqual(sorted(k.lower() for k in direct.headers.keys()),
                         sorted(k.lower() for k in plain.headers.keys()), what)
        for name in SAME_VALUES:
            if rewritten and name in ('ETag', 'Content-Length', 'Content-Range'):
                # The version's length (from a folder's inode) may differ between the copies, and the text's with it.
                self.assertEqual(direct.header(name) is None, plain.header(name) is None, '%s: %s' % (name, what))
                if name == 'Content-Range' and direct.header(name):
                    self.assertEqual(direct.header(name).split('/')[0], plain.header(name).split('/')[0], what)
                continue
            self.assertEqual(direct.header(name), plain.header(name), '%s: %s' % (name, what))
        if rewritten:
            self.assertEqual(VERSION_RE.sub(b'?v=V', direct.body), VERSION_RE.sub(b'?v=V', plain.body),
                             'bodies differ (but for the version): ' + what)
            # The ETag of a text the server serves instead of a file: "b" and the first half of its SHA-256.
            for r in (direct, plain):
                if r.status == 200 and r.method == 'GET':
                    self.assertEqual(r.header('ETag'), '"b%s"' % hashlib.sha256(r.body).hexdigest()[:32], what)
        else:
            self.assertEqual(direct.body, plain.body, 'bodies differ: ' + what)
        for r in (direct, plain):
            self.assertIsNotNone(email.utils.parsedate_to_datetime(r.header('Date', '')), what)
            self.assertTrue(r.header('X-Request-Id'), what)
            if r.header('Content-Length') is not None and r.status != 304 and r.method != 'HEAD':
                self.assertEqual(int(r.header('Content-Length')), len(r.body), what)
            if r.method == 'HEAD' or r.status == 304:
                self.assertEqual(r.body, b'', what)

    def both(self, method, path, headers=None):
        """The same request to both servers, each on a connection of its own (path: one, or one per server); the
        two answers, checked alike; the direct server's."""
        direct_path, plain_path = (path, path) if isinstance(path, str) else path
        direct = self.server.request(method, direct_path, headers=headers)
        plain = self.plain.request(method, plain_path, headers=headers)
        self.assert_alike(direct, plain, '%s %r %r' % (method, path, headers))
        return direct

    def on_each(self, fn):
        """fn(server) on the direct server, then on plain: what each returns, as (direct, plain)."""
        out = []
        for srv, name in ((self.server, 'direct'), (self.plain, 'plain')):
            try:
                out.append(fn(srv))
            except AssertionError as e:
                raise AssertionError('on the %s server: %s' % (name, e)) from e
        return out

    # -- whole files

    def test_files_and_heads_answer_alike(self):
        seg = self.file_bytes(self.segments[0])
        # A segment's versioned URL, as each server's playlist names it: the versions differ (the folders' inodes).
        direct_versioned, plain_versioned = self.on_each(self.versioned_segment)
        for path, ctype, cache in ((self.master, PLAYLIST_TYPE, 'no-cache'),
                                   (self.playlist, PLAYLIST_TYPE, 'no-cache'),
                                   ((direct_versioned, plain_versioned), 'video/mp2t', IMMUTABLE),
                                   (self.segment, 'video/mp2t', 'no-cache')):
            with self.subTest(path=path):
                got = self.both('GET', path)
                self.assertEqual(got.status, 200, got.describe())
                self.assertEqual(got.header('Content-Type', '').split(';')[0], ctype, got.describe())
                self.assertEqual(got.header('Cache-Control'), cache, got.describe())
                self.assertEqual(got.header('Accept-Ranges'), 'bytes', got.describe())
                self.assertTrue(re.match(r'^(W/)?"[^"]+"$', got.header('ETag', '')), got.describe())
                if path != self.playlist:   # a rewritten playlist is a text of the server's, not the file
                    self.assertIsNotNone(email.utils.parsedate_to_datetime(got.header('Last-Modified', '')))
                if ctype == 'video/mp2t':
                    self.assertEqual(got.body, seg)
                head = self.both('HEAD', path)
                self.assertEqual(head.status, 200, head.describe())
                self.assertEqual(head.header('Content-Length'), str(len(got.body)), head.describe())
                self.assertEqual(head.header('ETag'), got.header('ETag'), head.describe())

    # -- ranges and conditionals

    def test_ranges_answer_alike(self):
        data = self.file_bytes(self.segments[0])
        n = len(data)
        self.assertGreater(n, 200)
        for asked, part, content_range in (('bytes=0-99', data[:100], 'bytes 0-99/%d' % n),
                                           ('bytes=-100', data[-100:], 'bytes %d-%d/%d' % (n - 100, n - 1, n)),
                                           ('bytes=100-', data[100:], 'bytes 100-%d/%d' % (n - 1, n))):
            with self.subTest(range=asked):
                r = self.both('GET', self.segment, {'Range': asked})
                self.assertEqual(r.status, 206, r.describe())
                self.assertEqual(r.body, part)
                self.assertEqual(r.header('Content-Range'), content_range, r.describe())
                self.assertEqual(r.header('Content-Length'), str(len(part)), r.describe())
        r = self.both('GET', self.master, {'Range': 'bytes=0-6'})
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.body, b'#EXTM3U')
        r = self.both('GET', self.segment, {'Range': 'bytes=%d-' % (n + 100)})
        self.assert_error(r, 416, 'range_not_satisfiable')
        self.assertEqual(r.header('Content-Range'), 'bytes */%d' % n, r.describe())

    def test_conditionals_answer_alike(self):
        for path in (self.segment, self.master, self.playlist):
            with self.subTest(path=path):
                def conditionals(srv):
                    full = srv.get(path)
                    self.assertEqual(full.status, 200, full.describe())
                    etag = full.header('ETag')
                    self.assertTrue(etag, full.describe())
                    r304 = srv.get(path, {'If-None-Match': etag})
                    self.assertEqual(r304.status, 304, r304.describe())
                    self.assertEqual(r304.body, b'')
                    self.assertEqual(r304.header('ETag'), etag, r304.describe())
                    self.assertEqual(r304.header('Content-Length'), full.header('Content-Length'), r304.describe())
                    same = srv.get(path, {'Range': 'bytes=0-6', 'If-Range': etag})
                    self.assertEqual(same.status, 206, same.describe())
                    self.assertEqual(same.body, full.body[:7])
                    other = srv.get(path, {'Range': 'bytes=0-6', 'If-Range': '"not-this-one"'})
                    self.assertEqual(other.status, 200, other.describe())
                    self.assertEqual(other.body, full.body)
                    return full, r304, same, other

                direct, plain = self.on_each(conditionals)
                for d, p in zip(direct, plain):
                    self.assert_alike(d, p, path)

    # -- errors, handed to libsoup

    def test_errors_answer_alike(self):
        for path in (self.base + '240p_99999.ts', self.base + 'nope.m3u8',
                     self.base + '%2e%2e/source.mp4', self.base + '%2e%2e/%2e%2e/%2e%2e/sluice.db'):
            with self.subTest(path=path):
                r = self.both('GET', path)
                self.assert_error(r, 404, 'not_found')
                self.assertNotIn(b'SQLite', r.body)

    # -- request ids

    def test_request_ids(self):
        for srv in (self.server, self.plain):
            with self.subTest(server=srv.port):
                for path in (self.segment, self.master):
                    r = srv.get(path, {'X-Request-Id': 'abc-123'})
                    self.assertEqual(r.status, 200, r.describe())
                    self.assertEqual(r.header('X-Request-Id'), 'abc-123', r.describe())
                    made = [srv.request(method, path).header('X-Request-Id') for method in ('GET', 'HEAD', 'GET')]
                    for x in made:
                        self.assertRegex(x or '', REQUEST_ID_RE)
                    self.assertEqual(len(set(made)), 3, made)
                    # Not a sane token (a space): a fresh one instead.
                    r = srv.get(path, {'X-Request-Id': 'abc 123'})
                    self.assertRegex(r.header('X-Request-Id', ''), REQUEST_ID_RE)

    # -- connections

    def keep_alive_sequence(self, srv):
        """Three segments, the video's JSON (another route: libsoup's from then on), a segment, a 404, a HEAD and a
        range, on one connection."""
        with Connection(srv) as c:
            out = [c.get(self.base + name) for name in self.segments[:3]]
            api = c.get('/api/v1/videos/' + self.vid, srv.auth_headers())
            self.assertEqual(api.status, 200, api.describe())
            self.assertEqual(api.json()['id'], self.vid)
            out.append(c.get(self.base + self.segments[1]))
            out.append(c.get(self.base + '240p_99999.ts'))
            out.append(c.get(self.segment, method='HEAD'))
            out.append(c.get(self.segment, {'Range': 'bytes=-100'}))
            c.assert_nothing_left()
        for r in out:
            self.assertNotEqual(r.header('Connection', '').lower(), 'close', r.describe())
        for r, name in zip(out, self.segments[:3] + [self.segments[1]]):
            self.assertEqual(r.status, 200, r.describe())
            self.assertEqual(r.body, self.file_bytes(name), r.describe())
        self.assert_error(out[4], 404, 'not_found')
        self.assertEqual(out[5].header('Content-Length'), str(len(self.file_bytes(self.segments[0]))))
        self.assertEqual(out[6].status, 206, out[6].describe())
        self.assertEqual(out[6].body, self.file_bytes(self.segments[0])[-100:])
        return out

    def test_keep_alive_goes_on_after_a_request_handed_over(self):
        self.assert_each_alike(self.keep_alive_sequence)

    def pipelined(self, srv):
        """Two GETs of two files, and then a HEAD, sent at once."""
        with Connection(srv) as c:
            c.send(c.request_bytes('GET', self.base + self.segments[1]) + c.request_bytes('GET', self.master)
                   + c.request_bytes('HEAD', self.base + self.segments[2]))
            out = [c.read('GET', self.base + self.segments[1]), c.read('GET', self.master),
                   c.read('HEAD', self.base + self.segments[2])]
            c.assert_nothing_left()
        self.assertEqual([r.status for r in out], [200, 200, 200], out)
        self.assertEqual(out[0].body, self.file_bytes(self.segments[1]))
        self.assertEqual(out[1].body, self.file_bytes('master.m3u8'))
        self.assertEqual(out[2].header('Content-Length'), str(len(self.file_bytes(self.segments[2]))))
        return out

    def test_pipelined_requests_answered_in_order(self):
        self.assert_each_alike(self.pipelined)

    def head_in_two_pieces(self, srv):
        with Connection(srv) as c:
            raw = c.request_bytes('GET', self.segment)
            c.send(raw[:len(raw) // 2])
            time.sleep(0.3)     # the point: the first piece waits alone, an incomplete head
            c.send(raw[len(raw) // 2:])
            r = c.read('GET', self.segment)
            # and the connection goes on
            again = c.get(self.base + self.segments[1])
            c.assert_nothing_left()
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.body, self.file_bytes(self.segments[0]))
        self.assertEqual(again.status, 200, again.describe())
        self.assertEqual(again.body, self.file_bytes(self.segments[1]))
        return [r, again]

    def test_head_in_two_pieces(self):
        self.assert_each_alike(self.head_in_two_pieces)

    def connection_close(self, srv):
        with Connection(srv) as c:
            r = c.get(self.segment, {'Connection': 'close'})
            c.wait_closed(10)
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.body, self.file_bytes(self.segments[0]))
        return r

    def test_connection_close(self):
        direct, plain = self.on_each(self.connection_close)
        self.assert_alike(direct, plain, 'Connection: close')

    def http_1_0(self, srv):
        """A request of HTTP/1.0 (without keep-alive): answered, then the connection closed."""
        with Connection(srv) as c:
            c.send(c.request_bytes('GET', self.segment, version='HTTP/1.0'))
            r = c.read('GET', self.segment)
            c.wait_closed(10)
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.body, self.file_bytes(self.segments[0]))
        return r

    def test_http_1_0(self):
        direct, plain = self.on_each(self.http_1_0)
        self.assert_alike(direct, plain, 'HTTP/1.0')

    # -- what is counted

    def test_metrics_count_direct_requests(self):
        n = 3

        def moved(srv):
            before = srv.get('/metrics')
            self.assertEqual(before.status, 200, before.describe())
            with Connection(srv) as c:
                for name in self.segments[:n]:
                    r = c.get(self.base + name)
                    self.assertEqual(r.status, 200, r.describe())
            after = srv.get('/metrics')
            return [metric(after.text(), name, **labels) - metric(before.text(), name, **labels)
                    for name, labels in (('sluice_http_requests_total',
                                          {'method': 'GET', 'route': MEDIA_ROUTE, 'status': '200'}),
                                         ('sluice_http_request_duration_seconds_count', {'route': MEDIA_ROUTE}),
                                         ('sluice_http_response_bytes_total', {'route': MEDIA_ROUTE}),
                                         (FAST_METRIC, {}))]

        direct, plain = self.on_each(moved)
        self.assertEqual(direct[0], n, direct)
        self.assertEqual(direct[1], n, direct)
        self.assertGreaterEqual(direct[2], sum(len(self.file_bytes(x)) for x in self.segments[:n]), direct)
        self.assertEqual(direct[:3], plain[:3])
        self.assertEqual(direct[3], n, 'the fast path answered them')
        self.assertEqual(plain[3], 0, 'media-fast-path=false: libsoup answered them')

    def test_which_requests_the_fast_path_takes(self):
        """Each request alone on a connection, and whether the fast path answered it (its counter): a finished
        package's files, whole, in part, HEAD or 304, yes; anything the chain or media() must see, no."""
        seg_etag = self.server.get(self.segment).header('ETag')
        cases = [
            ('segment', 'GET', self.segment, {}, 200, True),
            ('versioned segment', 'GET', self.versioned_segment(self.server), {}, 200, True),
            ('HEAD', 'HEAD', self.segment, {}, 200, True),
            ('range', 'GET', self.segment, {'Range': 'bytes=0-99'}, 206, True),
            ('304', 'GET', self.segment, {'If-None-Match': seg_etag}, 304, True),
            ('master', 'GET', self.master, {}, 200, True),
            ('media playlist', 'GET', self.playlist, {}, 200, True),
            ('bearer key (media is open)', 'GET', self.segment, {'Authorization': 'Bearer whatever'}, 200, True),
            ('missing file', 'GET', self.base + 'nope.ts', {}, 404, False),
            ('unsatisfiable range', 'GET', self.segment, {'Range': 'bytes=99999999-'}, 416, False),
            ('Origin (CORS)', 'GET', self.segment, {'Origin': 'http://localhost:3000'}, 200, False),
            ('a token', 'GET', self.segment + '?token=x', {}, 200, False),
            ('encoded path', 'GET', self.base + '240p%5f00000.ts', {}, 200, False),
            ('the API', 'GET', '/api/v1/videos/' + self.vid, {}, 200, False),
            ('the web page', 'GET', '/', {}, 200, False),
            ('foreign Host', 'GET', self.segment, {'Host': 'evil.example'}, 403, False),
        ]
        for what, method, path, headers, status, fast in cases:
            with self.subTest(what):
                before = metric(self.server.get('/metrics').text(), FAST_METRIC)
                with Connection(self.server) as c:
                    r = c.get(path, headers, method)
                self.assertEqual(r.status, status, r.describe())
                moved = metric(self.server.get('/metrics').text(), FAST_METRIC) - before
                self.assertEqual(moved, 1 if fast else 0, '%s: answered on the fast path: %s' % (what, moved))

    def test_access_log_line(self):
        for srv, rid in ((self.server, 'direct-log-1'), (self.plain, 'plain-log-1')):
            with self.subTest(request_id=rid):
                with Connection(srv) as c:
                    r = c.get(self.segment, {'X-Request-Id': rid})
                self.assertEqual(r.status, 200, r.describe())
                self.assertEqual(r.header('X-Request-Id'), rid, r.describe())
                line = re.compile(r'\b%s GET %s -> 200\b' % (re.escape(rid), re.escape(self.segment)))
                wait_until(lambda: line.search(srv.log_tail(400)), 10, 0.1, 'the access log line of %s' % rid)

    def test_heads_only_libsoup_reads(self):
        """Heads that readers could end or read differently (bare LF or CR line ends, a request hidden behind one, no
        Host, two Hosts, absolute-form) are left to libsoup whole: the same answers as with the fast path off, and
        none of them from the fast path."""
        seg, seg2 = self.segment, self.base + self.segments[1]
        heads = {
            'bare LF': b'GET %s HTTP/1.1\nHost: 127.0.0.1\n\n' % seg.encode(),
            'bare CR': b'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\rX: y\r\n\r\n' % seg.encode(),
            'a request behind a bare LF blank line': b'GET %s HTTP/1.1\r\nHost: 127.0.0.1\n\nGET %s HTTP/1.1\r\n'
                                                     b'Host: 127.0.0.1\r\n\r\n' % (seg.encode(), seg2.encode()),
            'no Host': b'GET %s HTTP/1.1\r\n\r\n' % seg.encode(),
            'two Hosts': b'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n' % seg.encode(),
            'absolute-form': b'GET http://127.0.0.1%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' % seg.encode(),
        }

        def answers(srv, raw):
            statuses = []
            with Connection(srv) as c:
                c.send(raw)
                c.sock.settimeout(1.0)
                try:
                    while True:
                        statuses.append(c.read('GET', seg).status)
                except (socket.timeout, EOFError, ConnectionError):
                    pass
            return statuses

        for what, raw in heads.items():
            with self.subTest(what):
                before = metric(self.server.get('/metrics').text(), FAST_METRIC)
                fast = answers(self.server, raw)
                moved = metric(self.server.get('/metrics').text(), FAST_METRIC) - before
                self.assertEqual(fast, answers(self.plain, raw), what)
                self.assertEqual(moved, 0, '%s: answered on the fast path' % what)

    def test_an_empty_line_before_the_request(self):
        """An empty line before a request line is skipped (RFC 9112 2.2) by the fast path as by libsoup: the same
        answer, and the connection goes on."""
        def answer(srv):
            with Connection(srv) as c:
                c.send(b'\r\n' + c.request_bytes('GET', self.segment))
                first = c.read('GET', self.segment)
                second = c.get(self.master)
                c.assert_nothing_left()
            return first, second

        (fast, fast_next), (plain, plain_next) = self.on_each(answer)
        self.assert_alike(fast, plain, 'after an empty line')
        self.assert_alike(fast_next, plain_next, 'the next request')
        self.assertEqual(fast.body, self.file_bytes(self.segments[0]))

    def test_a_slow_reader_gets_the_whole_file(self):
        """A client with a small receive window that reads nothing for a second: the fast path writes the file as the
        client reads it (waiting for the socket, not blocking), serves others meanwhile, and the bytes are whole."""
        # Larger than the socket buffers can take at once (the kernel's send buffer grows to 4 MiB): a file of the
        # package's folder, added for this test.
        name = 'large_00000.ts'
        data = os.urandom(12 << 20)
        path = os.path.join(self.hls, name)
        with open(path, 'wb') as f:
            f.write(data)
        self.addCleanup(os.remove, path)
        before = metric(self.server.get('/metrics').text(), FAST_METRIC)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: the window it announces
        sock.settimeout(30)
        sock.connect(('127.0.0.1', self.server.port))
        with Connection(self.server, sock=sock) as c:
            c.send(c.request_bytes('GET', self.base + name))
            time.sleep(1.0)
            t0 = time.monotonic()
            h = self.server.get('/health')
            self.assertEqual(h.status, 200, h.describe())
            self.assertLess(time.monotonic() - t0, 1.0, 'the server answers others while it waits for the reader')
            r = c.read('GET', self.base + name)
            self.assertEqual(r.status, 200, r.describe())
            self.assertEqual(r.body, data)
            # The connection goes on: the next request on it is answered too.
            r = c.get(self.segment)
            self.assertEqual(r.body, self.file_bytes(self.segments[0]))
        moved = metric(self.server.get('/metrics').text(), FAST_METRIC) - before
        self.assertEqual(moved, 2, 'both answered on the fast path')

    def test_idle_timeout_closes_a_direct_connection(self):
        srv = self.copy_server('idle', {'idle-timeout': '1'})
        with Connection(srv) as c:
            r = c.get(self.segment)
            self.assertEqual(r.status, 200, r.describe())
            self.assertEqual(r.body, self.file_bytes(self.segments[0]))
            took = c.wait_closed(10)
        self.assertLess(took, 5, 'closed %.1f s after the answer, with [server] idle-timeout=1' % took)
        self.assertEqual(srv.get('/health').status, 200)
        self.assertEqual(srv.stop(), 0, srv.log_tail())
        _rmtree(os.path.dirname(srv.data_dir))


if __name__ == '__main__':
    main()
