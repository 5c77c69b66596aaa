#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile connections against `sluice serve`, kept so that what was fixed stays fixed: connections
closed by their clients (whose descriptors libsoup 3.2 kept forever), slow and silent clients (header,
body and idle timeouts), one client holding too many connections, and request smuggling shapes."""

import http.client
import os
import resource
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (EventStream, Server, ServerTestCase, _rmtree, main, need_binary,  # noqa: E402
                           wait_until)

UNKNOWN_ID = '0123456789abcdef'


def open_fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def recv_until_closed(sock, timeout):
    """Everything the peer sends until it closes the connection; AssertionError if it stays open."""
    deadline = time.monotonic() + timeout
    data = b''
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError('the server did not close the connection within %.0f s (got %r)'
                                 % (timeout, data[:300]))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def parse_responses(data):
    """[(status, {lower-case header: value}, body)] of the HTTP/1.1 responses in data."""
    out = []
    while data:
        head, sep, rest = data.partition(b'\r\n\r\n')
        if not sep:
            raise AssertionError('incomplete response: %r' % data[:300])
        lines = head.decode('latin-1').split('\r\n')
        status = int(lines[0].split(' ')[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(':')
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get('content-length', '0'))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


class ConnectionTestCase(ServerTestCase):
    def fds(self, srv=None):
        return open_fds((srv or self.server).proc.pid)

    def raw(self, srv=None, source=None, timeout=10):
        srv = srv or self.server
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect(('127.0.0.1', srv.port))
        return s

    def get_health(self, sock, close=False):
        sock.sendall(b'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n' % (b'Connection: close\r\n' if close else b''))
        resp = http.client.HTTPResponse(sock, method='GET')
        resp.begin()
        body = resp.read()
        self.assertEqual(resp.status, 200, body)
        return resp

    def assert_closed_within(self, sock, low, high, what):
        start = time.monotonic()
        recv_until_closed(sock, high + 2)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, low, '%s: closed too early (%.1f s)' % (what, elapsed))
        return elapsed

    def assert_fds_back(self, baseline, srv=None, slack=5, timeout=10):
        try:
            wait_until(lambda: self.fds(srv) <= baseline + slack, timeout, 0.2, 'descriptors to be released')
        except AssertionError:
            self.fail('the server holds %d descriptors, %d before' % (self.fds(srv), baseline))


@need_binary
class ClosedConnections(ConnectionTestCase):
    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'concurrent': 1}}

    def test_closed_connections_release_their_descriptors(self):
        # libsoup 3.2.3 never closed a keep-alive connection its client closed after a request: 100
        # `curl .../health` left 100 sockets open in the server.
        s = self.raw()
        self.get_health(s)
        s.close()
        time.sleep(0.3)
        baseline = self.fds()
        for i in range(2000):
            s = self.raw()
            kind = i % 5
            if kind == 0:      # keep-alive request, then the client leaves
                self.get_health(s)
            elif kind == 1:    # Connection: close
                self.get_health(s, close=True)
            elif kind == 2:    # two requests on one connection
                self.get_health(s)
                self.get_health(s)
            elif kind == 3:    # no request at all
                pass
            else:              # half a request
                s.sendall(b'GET /health HTTP/1.1\r\nHo')
            s.close()
        self.assert_fds_back(baseline)
        self.assertEqual(self.server.get('/health').status, 200)

    def test_keep_alive_still_serves_many_requests_on_one_connection(self):
        conn = self.server.connection()
        try:
            conn.request('GET', '/health')
            r = conn.getresponse()
            r.read()
            local = conn.sock.getsockname()
            for _ in range(20):
                conn.request('GET', '/api/v1/videos')
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                self.assertNotEqual((r.getheader('Connection') or '').lower(), 'close')
                self.assertEqual(conn.sock.getsockname(), local, 'the server closed a keep-alive connection')
        finally:
            conn.close()

    def test_keeps_answering_under_a_low_descriptor_limit(self):
        # Under `ulimit -n 256` the server stopped answering after about 245 requests.
        tmp = tempfile.mkdtemp(prefix='sluice-e2e-nofile-')
        self.addCleanup(_rmtree, tmp)
        srv = Server(os.path.join(tmp, 'data'), {'jobs': {'concurrent': 1}}).start()
        self.addCleanup(srv.stop)
        resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (128, 128))
        self.assertLess(self.fds(srv), 64)
        for i in range(1000):
            s = self.raw(srv)
            try:
                self.get_health(s, close=(i % 4 == 0))
            except (OSError, http.client.HTTPException, AssertionError) as e:
                self.fail('request %d failed (%r); the server holds %d descriptors' % (i, e, self.fds(srv)))
            finally:
                s.close()
        self.assertEqual(srv.stop(), 0)


@need_binary
class Timeouts(ConnectionTestCase):
    CONFIG = {'server': {'header-timeout': 2, 'idle-timeout': 2, 'body-timeout': 2},
              'events': {'keep-alive': 1}, 'uploads': {'auto-transcode': False}, 'jobs': {'concurrent': 1}}
    BIG = 16 << 20

    @classmethod
    def setUpClass(cls):
        # A web folder of our own, with a file large enough to outlast every socket buffer.
        cls.web = tempfile.mkdtemp(prefix='sluice-e2e-web-')
        cls.addClassCleanup(_rmtree, cls.web)
        with open(os.path.join(cls.web, 'big.bin'), 'wb') as f:
            f.write(os.urandom(cls.BIG))
        old = os.environ.get('SLUICE_WEB_DIR')
        os.environ['SLUICE_WEB_DIR'] = cls.web
        try:
            super().setUpClass()
        finally:
            if old is None:
                del os.environ['SLUICE_WEB_DIR']
            else:
                os.environ['SLUICE_WEB_DIR'] = old

    def test_slowloris_headers_are_cut_at_the_header_timeout(self):
        s = self.raw()
        s.sendall(b'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n')
        start = time.monotonic()
        closed = None
        for i in range(20):
            try:
                s.sendall(b'X-Slow-%d: 1\r\n' % i)
                s.settimeout(0.4)
                if s.recv(1024) == b'':
                    closed = time.monotonic() - start
                    break
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = time.monotonic() - start
                break
        s.close()
        self.assertIsNotNone(closed, 'a client trickling headers kept its connection for 8 s')
        self.assertGreaterEqual(closed, 1.5)
        self.assertLess(closed, 5)

    def test_silent_connection_is_cut_at_the_header_timeout(self):
        baseline = self.fds()
        s = self.raw()
        self.assert_closed_within(s, 1.5, 5, 'a connection that sent nothing')
        s.close()
        self.assert_fds_back(baseline)

    def test_idle_keep_alive_connection_is_closed(self):
        baseline = self.fds()
        s = self.raw()
        self.get_health(s)
        answered = time.monotonic()
        # Open a while (not closed as soon as the answer is out), then closed at the idle timeout.
        s.settimeout(1.2)
        with self.assertRaises(socket.timeout):
            s.recv(1)
        recv_until_closed(s, 6)
        self.assertGreaterEqual(time.monotonic() - answered, 1.5)
        s.close()
        # Many of them: every descriptor goes.
        socks = [self.raw() for _ in range(20)]
        for s in socks:
            self.get_health(s)
        for s in socks:
            recv_until_closed(s, 6)
            s.close()
        self.assert_fds_back(baseline)

    def test_stalled_upload_is_cut_and_its_temporary_file_removed(self):
        s = self.raw()
        s.sendall(b'POST /api/v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\n'
                  b'X-Filename: stalled.mp4\r\nContent-Length: 100000000\r\n\r\n' + b'\0' * 65536)
        wait_until(lambda: self.uploads_left(), 5, 0.05, 'the temporary upload file')
        self.assert_closed_within(s, 1, 5, 'an upload that stopped sending')
        s.close()
        self.assert_no_uploads_left()

    def test_slow_but_steady_upload_is_not_cut(self):
        body = os.urandom(6 * 32768)
        s = self.raw(timeout=30)
        s.sendall(b'POST /api/v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\n'
                  b'X-Filename: slow.mp4\r\nContent-Length: %d\r\n\r\n' % len(body))
        start = time.monotonic()
        for i in range(0, len(body), 32768):     # a piece every second: 6 s in all, 3 body timeouts
            time.sleep(1)
            s.sendall(body[i:i + 32768])
        resp = http.client.HTTPResponse(s, method='POST')
        resp.begin()
        data = resp.read()
        s.close()
        self.assertGreater(time.monotonic() - start, 5)
        self.assertEqual(resp.status, 415, data)     # random bytes: answered, not cut
        self.assertIn(b'not_media', data)

    def test_event_stream_outlives_the_idle_timeout(self):
        with EventStream(self.server) as es:
            start = time.monotonic()
            time.sleep(5)
            self.assertFalse(es.closed, 'the event stream was closed after %.1f s: %r' % (
                time.monotonic() - start, es.error))
            self.assertTrue([t for c, t in es.comments if c == 'keep-alive' and t - start > 4], es.comments)

    def test_slow_reader_of_a_large_response_is_not_cut(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.settimeout(30)
        s.connect(('127.0.0.1', self.server.port))
        s.sendall(b'GET /web/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        start = time.monotonic()
        resp = http.client.HTTPResponse(s, method='GET')
        resp.begin()
        self.assertEqual(resp.status, 200)
        got = 0
        while True:               # about 2.5 MB/s: more than 6 s, three idle timeouts
            chunk = resp.read(65536)
            if not chunk:
                break
            got += len(chunk)
            time.sleep(0.025)
        s.close()
        self.assertEqual(got, self.BIG)
        self.assertGreater(time.monotonic() - start, 4)


@need_binary
class PerClientCap(ConnectionTestCase):
    CONFIG = {'server': {'max-connections-per-client': 4, 'header-timeout': 30, 'idle-timeout': 30},
              'uploads': {'auto-transcode': False}, 'jobs': {'concurrent': 1}}

    def test_connections_beyond_the_cap_get_503(self):
        held = [self.raw() for _ in range(4)]
        for s in held:
            self.get_health(s)
        extra = self.raw()
        responses = parse_responses(recv_until_closed(extra, 5))
        extra.close()
        self.assertEqual(len(responses), 1, responses)
        status, headers, body = responses[0]
        self.assertEqual(status, 503, responses)
        self.assertTrue(headers.get('content-type', '').startswith('application/json'), headers)
        self.assertIn(b'"too_many_connections"', body)
        # The connections held keep working, and so does another client.
        for s in held:
            self.get_health(s)
        try:
            other = self.raw(source='127.0.0.2')
        except OSError as e:
            other = None
            sys.stderr.write('(no second loopback address here: %s)\n' % e)
        if other:
            self.get_health(other)
            other.close()
        # A connection closed makes room for a new one.
        held.pop().close()
        wait_until(lambda: self.server.get('/health').status == 200, 5, 0.1, 'a connection to be accepted again')
        for s in held:
            s.close()
        wait_until(lambda: all(self.server.get('/health').status == 200 for _ in range(4)), 5, 0.1,
                   'the connections to be released')

    def test_connections_closed_by_the_client_do_not_count(self):
        # A client that closes each connection and opens the next at once is never refused, even when
        # the server has not yet read the ends of the ones it closed.
        for i in range(200):
            s = self.raw()
            try:
                self.get_health(s)
            except (OSError, http.client.HTTPException, AssertionError) as e:
                self.fail('connection %d refused: %r' % (i, e))
            finally:
                s.close()


@need_binary
class Smuggling(ConnectionTestCase):
    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'concurrent': 1}}
    PATH = '/api/v1/videos/%s/jobs' % UNKNOWN_ID

    def exchange(self, headers, body=b''):
        """Sends one request (and a second one right behind it); returns the responses until the close."""
        s = self.raw()
        s.sendall(b'POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s\r\n%s'
                  b'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
                  % (self.PATH.encode(), b''.join(h + b'\r\n' for h in headers), body))
        try:
            return parse_responses(recv_until_closed(s, 5))
        finally:
            s.close()

    def assert_refused(self, headers, body=b'', statuses=(400,)):
        responses = self.exchange(headers, body)
        # One answer, and the connection closed: nothing sent after the headers is read as a request.
        self.assertEqual(len(responses), 1, responses)
        status, h, data = responses[0]
        self.assertIn(status, statuses, responses)
        if status == 400:
            self.assertTrue(h.get('content-type', '').startswith('application/json'), responses)
            self.assertIn(b'"bad_request"', data)
            self.assertEqual(h.get('connection', '').lower(), 'close', h)

    def test_two_different_content_lengths(self):
        self.assert_refused([b'Content-Length: 5', b'Content-Length: 6'], b'hello')
        self.assert_refused([b'Content-Length: 6', b'Content-Length: 5'], b'hello!')

    def test_content_length_with_chunked(self):
        self.assert_refused([b'Content-Length: 5', b'Transfer-Encoding: chunked'], b'0\r\n\r\n')
        self.assert_refused([b'Transfer-Encoding: chunked', b'Content-Length: 5'], b'0\r\n\r\n')

    def test_transfer_encodings_other_than_chunked(self):
        self.assert_refused([b'Transfer-Encoding: identity', b'Content-Length: 2'], b'{}')
        self.assert_refused([b'Transfer-Encoding: identity'])
        self.assert_refused([b'Transfer-Encoding: chunked', b'Transfer-Encoding: chunked'], b'0\r\n\r\n')
        # libsoup refuses codings it does not know (501) before any handler: closed as well.
        self.assert_refused([b'Transfer-Encoding: gzip, chunked'], b'0\r\n\r\n', statuses=(400, 501))

    def test_unambiguous_framing_is_served_on_a_kept_connection(self):
        for headers, body in (([b'Transfer-Encoding: chunked'], b'2\r\n{}\r\n0\r\n\r\n'),
                              ([b'Content-Length: 2', b'Content-Length: 2'], b'{}'),
                              ([b'Content-Length: 2'], b'{}')):
            s = self.raw()
            s.sendall(b'POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s\r\n%s'
                      % (self.PATH.encode(), b''.join(h + b'\r\n' for h in headers), body))
            resp = http.client.HTTPResponse(s, method='POST')
            resp.begin()
            data = resp.read()
            self.assertEqual(resp.status, 404, (headers, data))
            self.get_health(s)      # the same connection goes on
            s.close()


if __name__ == '__main__':
    main()
