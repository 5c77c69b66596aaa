#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Resumable uploads (tus 1.0.0, /api/v1/uploads) over raw sockets: malformed, duplicate and missing headers are
refused with their status and a JSON error and leave nothing behind (no file in the data folder, no catalog row);
two PATCHes at once on one upload; a PATCH cut mid-body; PATCHes over one kept connection; partial uploads, each
recorded complete when it is answered, joined by a final one; kill -9 while an upload arrives, or after parts whose
final has not come, then a restart."""

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (MEDIA, Server, ServerTestCase, files_under, main, need_binary,  # noqa: E402
                           need_ffmpeg, read_http_response, wait_until)

MiB = 1024 * 1024
UPLOADS = '/api/v1/uploads'
OCTETS = 'application/offset+octet-stream'
ID_RE = re.compile(r'^/api/v1/uploads/([0-9a-f]{16})$')


def b64(s):
    return base64.b64encode(s.encode('utf-8') if isinstance(s, str) else s).decode('ascii')


def padded_media(name, size):
    """A clip of MEDIA followed by one top-level MP4 `free` box of random bytes, `size` bytes in all: a real video
    (demuxers skip `free`) whose every byte has to arrive in its place."""
    head = MEDIA.bytes(name)
    pad = size - len(head)
    assert pad > 8, 'the clip is larger than %d bytes' % size
    return head + pad.to_bytes(4, 'big') + b'free' + os.urandom(pad - 8)


class TusCase(ServerTestCase):
    # max-size is Tus-Max-Size: small, so that "over the maximum" is a small number.
    CONFIG = {'jobs': {'concurrent': 1}, 'uploads': {'max-size': '64M'}}

    # -- raw requests --

    def head_bytes(self, srv, method, path, headers, body_len=None, tus=True):
        lines = ['%s %s HTTP/1.1' % (method, path), 'Host: 127.0.0.1:%d' % srv.port]
        if srv.api_key:
            lines.append('Authorization: Bearer ' + srv.api_key)
        if tus:
            lines.append('Tus-Resumable: 1.0.0')
        lines += ['%s: %s' % kv for kv in headers]
        if body_len is not None:
            lines.append('Content-Length: %d' % body_len)
        lines.append('Connection: close')
        return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')

    def raw(self, method, path, headers=(), body=None, tus=True, srv=None, timeout=60):
        """One request on its own connection, headers exactly as given (duplicates kept, none added but Host,
        Authorization, Tus-Resumable unless tus=False, Content-Length when there is a body, Connection)."""
        srv = srv or self.server
        if body is None and method in ('POST', 'PATCH'):
            body = b''
        data = self.head_bytes(srv, method, path, headers, None if body is None else len(body), tus) + (body or b'')
        with srv.raw_socket(timeout) as s:
            s.sendall(data)
            r = read_http_response(s, method, timeout)
        self.assertIsNotNone(r, '%s %s: the server closed the connection without an answer' % (method, path))
        r.path = path
        return r

    def create(self, length=1000, headers=(), srv=None):
        r = self.raw('POST', UPLOADS, [('Upload-Length', str(length))] + list(headers), srv=srv)
        self.assertEqual(r.status, 201, r.describe())
        m = ID_RE.match((r.header('Location') or '').split('?')[0])
        self.assertTrue(m, 'Location %r: %s' % (r.header('Location'), r.describe()))
        path = UPLOADS + '/' + m.group(1)
        self.addCleanup(self.forget, path, srv or self.server)
        return path

    def forget(self, path, srv):
        if srv.alive():
            self.raw('DELETE', path, srv=srv)

    def patch(self, path, offset, body, headers=(), srv=None):
        return self.raw('PATCH', path, [('Content-Type', OCTETS), ('Upload-Offset', str(offset))] + list(headers),
                        body, srv=srv)

    def offset(self, path, srv=None):
        r = self.raw('HEAD', path, srv=srv)
        self.assertEqual(r.status, 200, r.describe())
        return int(r.header('Upload-Offset'))

    # -- what the server keeps --

    def state(self, srv=None):
        """(every file of the data folder with its size, the catalog aside; the rows of the uploads table)."""
        srv = srv or self.server
        # A HEAD of each upload first (it changes nothing: a PATCH's offset is recorded before its answer); the
        # snapshot is of what is recorded.
        for row in self.upload_rows(srv):
            try:
                self.offset('%s/%s' % (UPLOADS, row[0]), srv)
            except (AssertionError, OSError):
                pass
        files = {}
        for rel in files_under(srv.data_dir):
            if re.match(r'sluice\.db', rel):
                continue
            try:
                files[rel] = os.path.getsize(os.path.join(srv.data_dir, rel))
            except OSError:
                pass
        return files, self.upload_rows(srv)

    def upload_rows(self, srv=None):
        """The rows of the catalog's uploads table (read-only; the catalog is SQLite in WAL mode)."""
        srv = srv or self.server
        con = sqlite3.connect('file:%s?mode=ro' % os.path.join(srv.data_dir, 'sluice.db'), uri=True, timeout=5)
        try:
            return sorted(con.execute('SELECT * FROM uploads').fetchall())
        finally:
            con.close()

    def stable_offset(self, path, timeout=15, srv=None):
        """Polls HEAD until two answers in a row give the same offset (a cut request finished); returns it."""
        seen = []

        def settled():
            seen.append(self.offset(path, srv))
            return len(seen) > 1 and seen[-1] == seen[-2]

        wait_until(settled, timeout, 0.3, 'the offset of %s to settle' % path)
        return seen[-1]

    def assert_source(self, vid, data, srv=None):
        """Video vid's stored source is byte-identical to data."""
        srv = srv or self.server
        video = srv.video(vid)
        self.assertEqual(video['size'], len(data), video)
        folder = os.path.join(srv.data_dir, 'videos', vid)
        sources = [n for n in os.listdir(folder) if n.startswith('source.')]
        self.assertEqual(len(sources), 1, os.listdir(folder))
        with open(os.path.join(folder, sources[0]), 'rb') as f:
            got = hashlib.sha256(f.read()).hexdigest()
        self.assertEqual(got, hashlib.sha256(data).hexdigest(), 'the stored source differs from the upload')

    def assert_refused(self, r, status, code=None, field=None, before=None, srv=None):
        """r has this status (or one of these), Tus-Resumable, a JSON error (a HEAD: no body), and the data folder
        and the uploads table are as they were before."""
        statuses = status if isinstance(status, (tuple, list)) else (status,)
        self.assertIn(r.status, statuses, r.describe())
        self.assertEqual(r.header('Tus-Resumable'), '1.0.0', 'no Tus-Resumable: ' + r.describe())
        if r.method == 'HEAD':
            self.assertEqual(r.body, b'', r.describe())
        else:
            self.assert_error(r, r.status, code, field)
        self.assertIsNone(r.header('Location'), 'a refused request got a Location: ' + r.describe())
        if before is not None:
            time.sleep(0.1)
            self.assertEqual(self.state(srv), before, 'a refused %s kept something: %s' % (r.method, r.describe()))


@need_binary
class Malformed(TusCase):
    """Every refusal: its status, a JSON error, and nothing kept."""

    def test_accepted_creation_is_a_row_and_a_file(self):
        # What the refusals below must not leave: an upload accepted leaves exactly this (so that their check of the
        # data folder and the uploads table is not vacuous), and DELETE takes it away.
        files, rows = self.state()
        path = self.create(1000)
        self.assertEqual(self.patch(path, 0, b'z' * 10).status, 204)
        files2, rows2 = self.state()
        self.assertEqual(len(rows2), len(rows) + 1, rows2)
        new = {f: n for f, n in files2.items() if f not in files}
        self.assertEqual(list(new.values()), [10], 'one new file of the 10 bytes received: %r' % new)
        self.assertEqual(self.raw('DELETE', path).status, 204)
        self.assertEqual(self.state(), (files, rows))

    def test_upload_length_malformed(self):
        for value in ('-1', 'abc', '12abc', '1e3', '0x10', '+5', '1.5', '', '10 20'):
            with self.subTest(value=value):
                before = self.state()
                r = self.raw('POST', UPLOADS, [('Upload-Length', value)])
                self.assert_refused(r, 400, 'bad_request', before=before)

    def test_upload_length_over_max_size(self):
        r = self.raw('OPTIONS', UPLOADS, tus=False)
        self.assertEqual(r.status, 204, r.describe())
        self.assertEqual(r.header('Tus-Max-Size'), str(64 * MiB), r.describe())
        for value in (str(64 * MiB + 1), str(2 ** 53), str(10 ** 18), str(2 ** 63 - 1)):
            with self.subTest(value=value):
                before = self.state()
                r = self.raw('POST', UPLOADS, [('Upload-Length', value)])
                self.assert_refused(r, 413, 'too_large', before=before)
        # Past 64 bits: not a number a server can hold (400), or over the maximum (413).
        before = self.state()
        r = self.raw('POST', UPLOADS, [('Upload-Length', '9' * 30)])
        self.assert_refused(r, (400, 413), before=before)
        # Exactly the maximum is accepted.
        self.create(64 * MiB)

    def test_defer_length_and_length_together_or_neither(self):
        cases = [
            ('neither', []),
            ('both', [('Upload-Length', '100'), ('Upload-Defer-Length', '1')]),
            ('Upload-Defer-Length: 0', [('Upload-Defer-Length', '0')]),
            ('Upload-Defer-Length: 2', [('Upload-Defer-Length', '2')]),
            ('Upload-Defer-Length: yes', [('Upload-Defer-Length', 'yes')]),
        ]
        for name, headers in cases:
            with self.subTest(name):
                before = self.state()
                self.assert_refused(self.raw('POST', UPLOADS, headers), 400, 'bad_request', before=before)

    def test_duplicate_upload_length(self):
        for values in (('100', '100'), ('100', '200')):
            with self.subTest(values=values):
                before = self.state()
                r = self.raw('POST', UPLOADS, [('Upload-Length', v) for v in values])
                self.assert_refused(r, 400, 'bad_request', before=before)

    def test_metadata_not_tus_form_or_not_base64(self):
        cases = [
            'title ***not-base64***',
            'title dGl0bGU=,title b3RoZXI=',      # a key twice
            'title dGl0bGU= extra',              # three parts
            'title ' + b64('x') + ',,',           # an empty pair
            'title\tdGl0bGU=',                   # not a space
        ]
        for value in cases:
            with self.subTest(metadata=value):
                before = self.state()
                r = self.raw('POST', UPLOADS, [('Upload-Length', '100'), ('Upload-Metadata', value)])
                self.assert_refused(r, 400, 'bad_request', before=before)

    def metadata_refused(self, field, value, status, code):
        before = self.state()
        r = self.raw('POST', UPLOADS, [('Upload-Length', '100'),
                                       ('Upload-Metadata', 'filename %s,%s %s' % (b64('a.mp4'), field, b64(value)))])
        self.assert_refused(r, status, code, field=field, before=before)
        named = r.json()['error'].get('field') or ''
        self.assertTrue(named == field or named.startswith(field + '.') or (field == 'params' and named),
                        'the error names no field %r: %s' % (field, r.describe()))
        return r

    def test_metadata_values_refused_with_their_field(self):
        # What the server does not accept: 422 invalid_parameter naming the field, before any byte.
        cases = [
            ('pipeline', 'no-such-pipeline'),
            ('encoder', 'no-such-encoder'),
            ('ladder', 'bogus'),
            ('priority', '5000'),                             # outside -1000..1000
            ('playback_policy', 'weird'),
            ('params', json.dumps({'segment_seconds': '99'})),  # hls allows 1..20
        ]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                self.metadata_refused(field, value, 422, 'invalid_parameter')

    def test_metadata_values_of_the_wrong_type(self):
        # A value of the wrong type: the rest of the API answers 400 invalid_field for it (docs/api.md: a type is
        # 400, a value out of range 422), the tus contract says 422 for "a bad priority": either, naming the field.
        for field, value in (('priority', 'high'), ('priority', '1e99'), ('params', 'not json'),
                             ('params', '[1, 2]')):
            with self.subTest(field=field, value=value):
                r = self.metadata_refused(field, value, (400, 422), ('invalid_field', 'invalid_parameter'))
                print('  %s=%r -> %d %s' % (field, value, r.status, r.json()['error']['code']))

    def test_missing_or_wrong_tus_resumable(self):
        path = self.create()
        before = self.state()
        requests = [
            ('POST', UPLOADS, [('Upload-Length', '100')], None),
            ('HEAD', path, [], None),
            ('PATCH', path, [('Content-Type', OCTETS), ('Upload-Offset', '0')], b'x' * 10),
            ('DELETE', path, [], None),
            ('GET', path, [], None),
        ]
        for version in (None, '0.2.2', '1.0.1'):
            for method, p, headers, body in requests:
                with self.subTest(method=method, version=version):
                    h = list(headers) + ([('Tus-Resumable', version)] if version else [])
                    r = self.raw(method, p, h, body, tus=False)
                    if method == 'GET' and r.status == 200:
                        continue  # GET /api/v1/uploads/ID is sluice's JSON view, not a tus request
                    self.assert_refused(r, 412, 'tus_version', before=before)
                    self.assertEqual(r.header('Tus-Version'), '1.0.0', r.describe())
        self.assertEqual(self.offset(path), 0)

    def test_patch_wrong_content_type(self):
        path = self.create()
        before = self.state()
        for ctype in ('application/json', 'application/octet-stream', 'text/plain', None):
            with self.subTest(content_type=ctype):
                headers = [('Upload-Offset', '0')] + ([('Content-Type', ctype)] if ctype else [])
                r = self.raw('PATCH', path, headers, b'0123456789')
                self.assert_refused(r, 415, 'unsupported_media_type', before=before)
        self.assertEqual(self.offset(path), 0)

    def test_patch_upload_offset_malformed(self):
        path = self.create()
        self.assertEqual(self.patch(path, 0, b'a' * 10).status, 204)
        before = self.state()
        for value in ('-1', 'abc', '10abc', '1e1', '', '0x0a'):
            with self.subTest(value=value):
                r = self.patch(path, value, b'b' * 10)
                # A malformed Upload-Offset is a bad request; an Upload-Offset that is not the server's is 409.
                self.assert_refused(r, (400, 409), before=before)
                print('  Upload-Offset: %r -> %d %s' % (value, r.status, r.json()['error']['code']))
        self.assertEqual(self.offset(path), 10)

    def test_patch_duplicate_upload_offset(self):
        path = self.create()
        self.assertEqual(self.patch(path, 0, b'a' * 10).status, 204)
        before = self.state()
        for values in (('10', '10'), ('10', '0'), ('0', '10')):
            with self.subTest(values=values):
                r = self.raw('PATCH', path, [('Content-Type', OCTETS)] + [('Upload-Offset', v) for v in values],
                             b'b' * 10)
                self.assert_refused(r, (400, 409), before=before)
                print('  Upload-Offset twice %r -> %d %s' % (values, r.status, r.json()['error']['code']))
        self.assertEqual(self.offset(path), 10)

    def test_patch_missing_upload_offset(self):
        path = self.create()
        before = self.state()
        r = self.raw('PATCH', path, [('Content-Type', OCTETS)], b'b' * 10)
        self.assert_refused(r, (400, 409), before=before)
        self.assertEqual(self.offset(path), 0)

    def test_patch_past_upload_length(self):
        path = self.create(100)
        before = self.state()
        r = self.patch(path, 0, b'c' * 101)
        self.assert_refused(r, 413, 'too_large', before=before)
        self.assertEqual(self.offset(path), 0)

    def test_unknown_upload(self):
        before = self.state()
        for p in (UPLOADS + '/0123456789abcdef', UPLOADS + '/ZZZZ', UPLOADS + '/0123456789abcdef0'):
            for method in ('HEAD', 'PATCH', 'DELETE', 'GET'):
                with self.subTest(path=p, method=method):
                    headers = [('Content-Type', OCTETS), ('Upload-Offset', '0')] if method == 'PATCH' else []
                    r = self.raw(method, p, headers, b'x' * 10 if method == 'PATCH' else None)
                    self.assert_refused(r, 404, None if method == 'HEAD' else 'not_found', before=before)


@need_binary
@need_ffmpeg
class Receiving(TusCase):
    """Concurrent and cut PATCHes."""

    def start_patch(self, path, offset, total, first, srv=None):
        """Opens a PATCH that announces `total` bytes and sends `first` of them; returns the open socket."""
        srv = srv or self.server
        s = srv.raw_socket(60)
        s.sendall(self.head_bytes(srv, 'PATCH', path, [('Content-Type', OCTETS), ('Upload-Offset', str(offset))],
                                  total))
        s.sendall(first)
        return s

    def test_patches_share_one_connection(self):
        # A client that keeps its connection (HTTP/1.1, no Connection: close; tus-js-client in Node, whose parallel
        # uploads' final POST and every PATCH after the first of a chunked upload go out on a connection a PATCH used)
        # sends every PATCH of an upload over one connection: each 204 keeps it open. libsoup 3.2 closed it after
        # each 204 (it took a 204 without Content-Length for an answer that ends with the connection), and the
        # server said Connection: close, so that such a client opened a connection for each PATCH.
        srv = self.server
        path = self.create(1000)   # not complete after them (its last byte would start ingest)
        s = srv.raw_socket(30)
        local = s.getsockname()
        try:
            for i in range(3):
                h = self.head_bytes(srv, 'PATCH', path, [('Content-Type', OCTETS), ('Upload-Offset', str(100 * i))],
                                    100)
                s.sendall(h.replace(b'Connection: close\r\n', b'') + bytes([65 + i]) * 100)
                r = read_http_response(s, 'PATCH', 30)
                self.assertIsNotNone(r, 'PATCH %d on the kept connection: the server closed it without an answer' % i)
                self.assertEqual(r.status, 204, r.describe())
                self.assertNotEqual((r.header('Connection') or '').lower(), 'close',
                                    'PATCH %d: a 204 that closes the connection: %s' % (i, r.describe()))
                self.assertIsNone(r.header('Content-Length'), 'a 204 has no Content-Length: ' + r.describe())
                self.assertEqual(r.header('Upload-Offset'), str(100 * (i + 1)), r.describe())
            s.sendall(self.head_bytes(srv, 'HEAD', path, []).replace(b'Connection: close\r\n', b''))
            head = read_http_response(s, 'HEAD', 30)
            self.assertIsNotNone(head, 'the server closed the connection after the last 204')
            self.assertEqual(head.status, 200, head.describe())
            self.assertEqual(head.header('Upload-Offset'), '300', head.describe())
            # A termination's 204 keeps it too; the upload is gone for the next request on it.
            s.sendall(self.head_bytes(srv, 'DELETE', path, []).replace(b'Connection: close\r\n', b''))
            gone = read_http_response(s, 'DELETE', 30)
            self.assertIsNotNone(gone, 'no answer to the DELETE on the kept connection')
            self.assertEqual(gone.status, 204, gone.describe())
            self.assertNotEqual((gone.header('Connection') or '').lower(), 'close', gone.describe())
            s.sendall(self.head_bytes(srv, 'HEAD', path, []).replace(b'Connection: close\r\n', b''))
            after = read_http_response(s, 'HEAD', 30)
            self.assertIsNotNone(after, 'the server closed the connection after the DELETE\'s 204')
            self.assertEqual(after.status, 404, after.describe())
            self.assertEqual(s.getsockname(), local)
        finally:
            s.close()

    def test_connection_close_is_kept_after_a_patch(self):
        # A client that asks for Connection: close gets it after a 204: the server closes the connection.
        srv = self.server
        path = self.create(1000)
        with srv.raw_socket(30) as s:
            s.sendall(self.head_bytes(srv, 'PATCH', path, [('Content-Type', OCTETS), ('Upload-Offset', '0')], 100) +
                      b'x' * 100)
            r = read_http_response(s, 'PATCH', 30)
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 204, r.describe())
            s.settimeout(10)
            self.assertEqual(s.recv(100), b'', 'the connection stayed open after Connection: close')

    def test_two_patches_at_once(self):
        path = self.create(4 * MiB)
        body = os.urandom(2 * MiB)
        s = self.start_patch(path, 0, len(body), body[:256 * 1024])
        try:
            time.sleep(0.5)   # the first PATCH is being received
            second = self.patch(path, 0, os.urandom(1000))
            self.assertIn(second.status, (423, 409), second.describe())
            self.assert_error(second, second.status, 'locked' if second.status == 423 else 'offset_mismatch')
            print('  the second PATCH: %d %s' % (second.status, second.json()['error']['code']))
            s.sendall(body[256 * 1024:])
            first = read_http_response(s, 'PATCH', 60)
        finally:
            s.close()
        self.assertIsNotNone(first, 'no answer to the first PATCH')
        self.assertEqual(first.status, 204, first.describe())
        self.assertEqual(first.header('Upload-Offset'), str(len(body)), first.describe())
        self.assertEqual(self.offset(path), len(body), 'the offset is not the first PATCH\'s')

    def test_patch_cut_mid_body_keeps_what_arrived_then_completes(self):
        data = MEDIA.bytes('long')
        path = self.create(len(data), [('Upload-Metadata', 'filename %s,title %s' % (b64('long.mp4'), b64('cut')))])
        half = len(data) // 2
        s = self.start_patch(path, 0, len(data), data[:half])
        time.sleep(0.5)
        s.shutdown(socket.SHUT_RDWR)
        s.close()
        kept = self.stable_offset(path)
        print('  sent %d of %d bytes, then cut: HEAD says %d' % (half, len(data), kept))
        self.assertGreater(kept, 0, 'nothing was kept of the cut PATCH')
        self.assertLess(kept, len(data))
        self.assertLessEqual(kept, half)
        r = self.patch(path, kept, data[kept:])
        self.assertEqual(r.status, 204, r.describe())
        vid = r.header('Sluice-Video-Id')
        self.assertTrue(vid, 'the last PATCH has no Sluice-Video-Id: ' + r.describe())
        self.assert_source(vid, data)


@need_binary
@need_ffmpeg
class Concatenation(TusCase):
    """Partial uploads joined by a final one: a part's bytes go to disk once, in the joined file."""

    def partials(self, data, cuts, srv=None):
        """Partial uploads of data cut at `cuts`, each sent whole in one PATCH; returns their paths."""
        paths = []
        bounds = [0] + list(cuts) + [len(data)]
        for a, b in zip(bounds, bounds[1:]):
            path = self.create(b - a, [('Upload-Concat', 'partial')], srv=srv)
            r = self.patch(path, 0, data[a:b], srv=srv)
            self.assertEqual(r.status, 204, r.describe())
            self.assertEqual(r.header('Upload-Offset'), str(b - a), r.describe())
            paths.append(path)
        return paths

    def recorded(self, path, srv=None):
        """(offset, state) of an upload as the catalog has it (read without a HEAD, which would sync it)."""
        con = sqlite3.connect('file:%s?mode=ro' % os.path.join((srv or self.server).data_dir, 'sluice.db'), uri=True,
                              timeout=5)
        try:
            row = con.execute('SELECT received, state FROM uploads WHERE id = ?', (path.rsplit('/', 1)[1],)).fetchone()
        finally:
            con.close()
        self.assertIsNotNone(row, '%s has no row' % path)
        return row

    def final(self, paths, metadata, srv=None):
        return self.raw('POST', UPLOADS, [('Upload-Concat', 'final;' + ' '.join(paths)), ('Upload-Metadata', metadata)],
                        srv=srv)

    def test_parts_recorded_when_answered_then_joined(self):
        # tus-js-client's parallelUploads: the parts, then at once the final. Each part's answer comes once its bytes
        # are synced and its offset recorded (an offset the server claims is one it keeps through a crash); the joined
        # file is synced before ingest, and the source is byte-identical.
        data = padded_media('long', 6 * MiB)
        cuts = [2 * MiB + 123, 4 * MiB]   # a part that is not a whole number of blocks, then one that is
        paths = self.partials(data, cuts)
        for path, length in zip(paths, (cuts[0], cuts[1] - cuts[0], len(data) - cuts[1])):
            self.assertEqual(self.recorded(path), (length, 'completed'), 'a part answered before it was recorded')
        r = self.final(paths, 'filename %s' % b64('joined.mp4'))
        self.assertEqual(r.status, 201, r.describe())
        vid = r.header('Sluice-Video-Id')
        self.assertTrue(vid, r.describe())
        self.assert_source(vid, data)
        for path in paths:
            self.assertEqual(self.raw('HEAD', path).status, 404, 'a part outlived its final')
        self.assertEqual(os.listdir(os.path.join(self.server.data_dir, 'resumable')), [])

    def test_patch_recorded_when_answered(self):
        # Whole uploads too: the offset a PATCH answers is the catalog's, read without a HEAD.
        data = os.urandom(3 * MiB)
        path = self.create(len(data) + 1)
        r = self.patch(path, 0, data)
        self.assertEqual(r.status, 204, r.describe())
        self.assertEqual(r.header('Upload-Offset'), str(len(data)))
        self.assertEqual(self.recorded(path), (len(data), 'receiving'))


@need_binary
@need_ffmpeg
class KilledWhileReceiving(TusCase):
    """kill -9 while a PATCH is being received; the next server on the same folder still has the upload."""

    @classmethod
    def setUpClass(cls):
        pass   # servers of its own

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sluice-e2e-tus-kill-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.data = os.path.join(self.tmp, 'data')
        os.makedirs(self.data)
        self.server = Server(self.data, self.CONFIG)
        self.server.start()
        self.addCleanup(lambda: self.server.alive() and self.server.kill())

    def test_kill_9_while_receiving_then_restart(self):
        srv = self.server
        data = padded_media('long', 24 * MiB)
        path = self.create(len(data), [('Upload-Metadata', 'filename %s' % b64('killed.mp4'))], srv=srv)
        first = 2 * MiB
        r = self.patch(path, 0, data[:first], srv=srv)
        self.assertEqual(r.status, 204, r.describe())
        # A second PATCH announces the rest and sends 18 MiB of it (past a 16 MiB fsync point), then the server dies.
        sent = first + 18 * MiB
        s = srv.raw_socket(60)
        s.sendall(self.head_bytes(srv, 'PATCH', path, [('Content-Type', OCTETS), ('Upload-Offset', str(first))],
                                  len(data) - first))
        s.sendall(data[first:sent])
        time.sleep(1.0)
        during = self.raw('HEAD', path, srv=srv)
        print('  HEAD while the PATCH is open: %d, Upload-Offset %s' % (during.status, during.header('Upload-Offset')))
        reported = int(during.header('Upload-Offset')) if during.status == 200 else first
        self.assertGreaterEqual(reported, first)
        srv.kill()
        s.close()
        files, rows = self.state(srv)
        print('  after kill -9: %s; rows %s' % (files, rows))

        self.server = Server(self.data, config_path=srv.config_path)
        self.server.start()
        h = self.raw('HEAD', path)
        self.assertEqual(h.status, 200, 'the upload did not survive kill -9: ' + h.describe())
        after = int(h.header('Upload-Offset'))
        print('  after the restart: Upload-Offset %d (acknowledged %d, reported %d, sent %d)'
              % (after, first, reported, sent))
        self.assertEqual(h.header('Upload-Length'), str(len(data)), h.describe())
        self.assertGreaterEqual(after, reported, 'the restart lost bytes a HEAD had reported')
        self.assertLessEqual(after, sent)
        r = self.patch(path, after, data[after:])
        self.assertEqual(r.status, 204, r.describe())
        vid = r.header('Sluice-Video-Id')
        self.assertTrue(vid, r.describe())
        self.assert_source(vid, data)

    def test_kill_9_after_parts_before_their_final(self):
        # Parts answered before kill -9: their offsets were recorded before their answers, so after a restart a HEAD
        # reports every byte of them, and the final joins them into a byte-identical source.
        srv = self.server
        data = padded_media('long', 4 * MiB)
        cut = 2 * MiB + 4096
        paths = []
        for a, b in ((0, cut), (cut, len(data))):
            path = self.create(b - a, [('Upload-Concat', 'partial')], srv=srv)
            r = self.patch(path, 0, data[a:b], srv=srv)
            self.assertEqual(r.status, 204, r.describe())
            paths.append((path, a, b))
        srv.kill()
        self.server = Server(self.data, config_path=srv.config_path)
        self.server.start()
        for path, a, b in paths:
            h = self.raw('HEAD', path)
            self.assertEqual(h.status, 200, 'a part did not survive kill -9: ' + h.describe())
            after = int(h.header('Upload-Offset'))
            print('  %s after the restart: Upload-Offset %d of %d' % (path, after, b - a))
            self.assertEqual(after, b - a, 'kill -9 lost bytes whose offset was answered')
        r = self.raw('POST', UPLOADS, [('Upload-Concat', 'final;' + ' '.join(p for p, _, _ in paths)),
                                       ('Upload-Metadata', 'filename %s' % b64('joined.mp4'))])
        self.assertEqual(r.status, 201, r.describe())
        self.assert_source(r.header('Sluice-Video-Id'), data)

    def tearDown(self):
        if self.server.alive():
            self.check_clean(self.server)
            self.server.stop()


if __name__ == '__main__':
    main()
