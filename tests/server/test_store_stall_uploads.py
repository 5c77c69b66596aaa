#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Uploads never freeze `sluice serve` while a PostgreSQL catalog stops answering (every process of its cluster
SIGSTOPped): a tus creation, a PATCH (its row read before the body, its offset recorded after it), a HEAD, a
termination, a final concatenation, a direct upload (its grant, and a creation with its token) and an upload's
Idempotency-Key each wait for the catalog while `/health` and a segment are answered in under 200 ms, then are
503 `unavailable` within the bound; a PATCH is never answered with an offset the catalog did not take; the sweep
of expired uploads waits too and removes them (rows, then files) once the catalog is back; and all of it works
again after SIGCONT."""

import base64
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import Media, main, need_binary, need_ffmpeg, read_http_response, wait_until  # noqa: E402
import test_store_stall as stall  # noqa: E402  (the module, not its class: its tests are not run again here)

TIMEOUT_S, timed = stall.TIMEOUT_S, stall.timed

UPLOADS = '/api/v1/uploads'
OCTETS = 'application/offset+octet-stream'


@need_binary
@need_ffmpeg
class UploadStall(unittest.TestCase):
    # The server, the catalog and the stall come from test_store_stall.py.
    setUpClass = classmethod(stall.StoreStall.setUpClass.__func__)
    ready_video = stall.StoreStall.ready_video
    stop_catalog = stall.StoreStall.stop_catalog
    assert_loop_answers = stall.StoreStall.assert_loop_answers
    waits_then_unavailable = stall.StoreStall.waits_then_unavailable

    def start_server(self, name, config=None):
        """StoreStall's server ([store] timeout, keys, an admin key), with `config` over its configuration."""
        server_class = stall.Server

        class Configured(server_class):
            def __init__(self, data_dir, base):
                merged = {k: dict(v) for k, v in base.items()}
                for section, values in (config or {}).items():
                    merged.setdefault(section, {}).update(values)
                super().__init__(data_dir, merged)

        saved = stall.Server
        stall.Server = Configured
        try:
            return stall.StoreStall.start_server(self, name)
        finally:
            stall.Server = saved

    # -- tus, by hand --

    def tus(self, srv, method, path, headers=None, body=None, timeout=60):
        h = {'Tus-Resumable': '1.0.0'}
        h.update(headers or {})
        if body is None and method in ('POST', 'PATCH'):
            body = b''
        return srv.request(method, path, body=body, headers=h, timeout=timeout)

    def create(self, srv, length, headers=None):
        h = {'Upload-Length': str(length)}
        h.update(headers or {})
        r = self.tus(srv, 'POST', UPLOADS, h)
        self.assertEqual(r.status, 201, r.describe())
        return r.header('Location').split('?')[0]

    def patch(self, srv, path, offset, body, headers=None):
        h = {'Content-Type': OCTETS, 'Upload-Offset': str(offset)}
        h.update(headers or {})
        return self.tus(srv, 'PATCH', path, h, body)

    def offset(self, srv, path):
        r = self.tus(srv, 'HEAD', path)
        self.assertEqual(r.status, 200, r.describe())
        return int(r.header('Upload-Offset'))

    def test_uploads_wait_for_the_catalog(self):
        srv = self.start_server('uploads')
        resume = lambda: None  # noqa: E731
        try:
            body, seg_path, expected = self.ready_video(srv, 'kept')
            clip = Media().bytes('short')
            half = len(clip) // 2
            # Before the stall: an upload with its first half, two complete partial uploads, a direct upload's token.
            path = self.create(srv, len(clip))
            self.assertEqual(self.patch(srv, path, 0, clip[:half]).status, 204)
            parts = []
            for piece in (clip[:half], clip[half:]):
                p = self.create(srv, len(piece), {'Upload-Concat': 'partial'})
                self.assertEqual(self.patch(srv, p, 0, piece).status, 204)
                parts.append(p)
            grant = srv.post_json('/api/v1/direct-uploads', {'max_size': len(clip) * 2})
            self.assertEqual(grant.status, 201, grant.describe())
            token = grant.json()['token']
            gone = self.create(srv, 1000)
            key = {'Idempotency-Key': 'stall-upload-1'}
            self.assertTrue(srv.get_json('/health')['ready'])

            resume = self.stop_catalog()
            meta = 'filename ' + base64.b64encode(b'stall.mp4').decode()
            nvenc = base64.b64encode(b'nvenc').decode()
            calls = [
                ('a tus creation', lambda: self.tus(srv, 'POST', UPLOADS, {'Upload-Length': str(len(clip)),
                                                                            'Upload-Metadata': meta})),
                ('a creation with its first bytes',
                 lambda: self.tus(srv, 'POST', UPLOADS, {'Upload-Length': str(len(clip)), 'Content-Type': OCTETS},
                                  clip[:1000])),
                ('a PATCH', lambda: self.patch(srv, path, half, clip[half:])),
                ('a HEAD', lambda: self.tus(srv, 'HEAD', path)),
                ('a GET of an upload', lambda: self.tus(srv, 'GET', path)),
                ('a termination', lambda: self.tus(srv, 'DELETE', gone)),
                ('a final concatenation',
                 lambda: self.tus(srv, 'POST', UPLOADS, {'Upload-Concat': 'final;' + ' '.join(parts)})),
                ('a direct upload grant', lambda: srv.post_json('/api/v1/direct-uploads', {'max_size': 1000})),
                # The job they ask for names an encoder only a worker elsewhere could run: the workers' rows are read.
                ('a tus creation for an encoder run elsewhere',
                 lambda: self.tus(srv, 'POST', UPLOADS, {'Upload-Length': str(len(clip)),
                                                         'Upload-Metadata': meta + ',encoder ' + nvenc})),
                ('a direct upload grant for an encoder run elsewhere',
                 lambda: srv.post_json('/api/v1/direct-uploads', {'max_size': 1000,
                                                                  'metadata': {'encoder': 'nvenc'}})),
                ('a creation with a direct upload token',
                 lambda: self.tus(srv, 'POST', UPLOADS + '?token=' + token, {'Upload-Length': str(len(clip)),
                                                                             'Authorization': 'Bearer none'})),
                ('an upload with an Idempotency-Key',
                 lambda: srv.request('POST', '/api/v1/videos', body=clip,
                                     headers=dict(key, **{'Content-Type': 'video/mp4'}))),
            ]
            for what, send in calls:
                self.waits_then_unavailable(srv, seg_path, expected, what, send)
            self.assertTrue(srv.alive())

            resume()
            wait_until(lambda: srv.request('GET', '/health').status == 200, timeout=20, message='ready again')
            # Nothing the stall refused was half done: the upload is where it was, the terminated one still there.
            self.assertEqual(self.offset(srv, path), half)
            self.assertEqual(self.offset(srv, gone), 0)
            # Each again, now answered.
            r = self.patch(srv, path, half, clip[half:])
            self.assertEqual(r.status, 204, r.describe())
            self.assertEqual(int(r.header('Upload-Offset')), len(clip))
            self.assertTrue(r.header('Sluice-Video-Id'), r.describe())
            self.assertEqual(srv.video(r.header('Sluice-Video-Id'))['id'], r.header('Sluice-Video-Id'))
            d = self.tus(srv, 'DELETE', gone)
            self.assertEqual(d.status, 204, d.describe())
            self.assertEqual(self.tus(srv, 'HEAD', gone).status, 404)
            self.assertFalse(os.path.exists(os.path.join(srv.data_dir, 'resumable', gone.rsplit('/', 1)[1])))
            f = self.tus(srv, 'POST', UPLOADS, {'Upload-Concat': 'final;' + ' '.join(parts)})
            self.assertEqual(f.status, 201, f.describe())
            self.assertTrue(f.header('Sluice-Video-Id'), f.describe())
            c = self.tus(srv, 'POST', UPLOADS + '?token=' + token, {'Upload-Length': str(len(clip)),
                                                                   'Authorization': 'Bearer none'})
            self.assertEqual(c.status, 201, c.describe())
            direct = c.header('Location')
            p = self.patch(srv, direct, 0, clip, {'Authorization': 'Bearer none'})
            self.assertEqual(p.status, 204, p.describe())
            self.assertTrue(p.header('Sluice-Video-Id'), p.describe())
            again = self.tus(srv, 'POST', UPLOADS + '?token=' + token, {'Upload-Length': '10',
                                                                       'Authorization': 'Bearer none'})
            self.assertEqual(again.status, 401, again.describe())
            # The upload's key was not spent by its 503: it makes the video, and a retry gets that answer again.
            u = srv.request('POST', '/api/v1/videos', body=clip, headers=dict(key, **{'Content-Type': 'video/mp4'}))
            self.assertEqual(u.status, 201, u.describe())
            u2 = srv.request('POST', '/api/v1/videos', body=clip, headers=dict(key, **{'Content-Type': 'video/mp4'}))
            self.assertEqual(u2.status, 201, u2.describe())
            self.assertEqual(u2.header('Idempotent-Replayed'), 'true')
            self.assertEqual(u2.json()['video']['id'], u.json()['video']['id'])
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())

    def test_patch_answers_only_a_recorded_offset(self):
        """A PATCH whose bytes arrived but whose offset the stopped catalog cannot record is not answered 204 with
        that offset: it waits, and is 503; after SIGCONT the upload resumes from what the catalog has."""
        srv = self.start_server('offset')
        resume = lambda: None  # noqa: E731
        try:
            body, seg_path, expected = self.ready_video(srv, 'kept')
            clip = Media().bytes('short')
            path = self.create(srv, len(clip))
            half = len(clip) // 2
            self.assertTrue(srv.get_json('/health')['ready'])  # the first probe is made (a later one answers at once)
            head = ('PATCH %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sTus-Resumable: 1.0.0\r\nContent-Type: %s\r\n'
                    'Upload-Offset: 0\r\nContent-Length: %d\r\nConnection: close\r\n\r\n'
                    % (path, srv.port, srv.auth_header_line(), OCTETS, len(clip))).encode('latin-1')
            with srv.raw_socket(60) as s:
                # The PATCH begins (its row read, the lock taken) with the catalog up, its first half arrives ...
                s.sendall(head + clip[:half])
                time.sleep(0.5)
                resume = self.stop_catalog()
                # ... and its last byte while the catalog is stopped: its offset is written on the executor.
                t0 = time.monotonic()
                s.sendall(clip[half:])
                time.sleep(0.3)
                self.assert_loop_answers(srv, seg_path, expected, 'a PATCH recording its offset')
                r = read_http_response(s, 'PATCH', 4 * TIMEOUT_S + 5)
                took = time.monotonic() - t0
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 503, r.describe())
            self.assertEqual(r.json()['error']['code'], 'unavailable', r.describe())
            self.assertIsNone(r.header('Upload-Offset'), r.describe())
            self.assertLess(took, 2 * TIMEOUT_S + 2)

            resume()
            wait_until(lambda: srv.request('GET', '/health').status == 200, timeout=20, message='ready again')
            # What the catalog has is what the upload has: all of it (the write landed after the connection was
            # dropped) or none; a resume from there completes it.
            at = self.offset(srv, path)
            self.assertIn(at, (0, len(clip)))
            if at < len(clip):
                done = self.patch(srv, path, at, clip[at:])
            else:
                done = self.patch(srv, path, at, b'')
            self.assertIn(done.status, (204, 409), done.describe())
            got = srv.get_json(path)
            wait_until(lambda: srv.get_json(path)['state'] in ('completed', 'processing', 'receiving'), timeout=30,
                       message='the upload settled')
            self.assertIn(got['state'], ('completed', 'processing', 'receiving'), got)
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())

    def test_sweep_waits_and_removes_rows_then_files(self):
        """The sweep (every second with a 2 s expiry) waits for the stopped catalog without stopping the loop, and
        once the catalog is back removes the expired upload: its row, then its file."""
        srv = self.start_server('sweep', {'uploads': {'resumable-expiry': '2'}})
        resume = lambda: None  # noqa: E731
        try:
            path = self.create(srv, 1000)
            self.assertEqual(self.patch(srv, path, 0, b'x' * 100).status, 204)
            name = os.path.join(srv.data_dir, 'resumable', path.rsplit('/', 1)[1])
            self.assertTrue(os.path.exists(name))
            self.assertTrue(srv.get_json('/health')['ready'])  # the first probe is made (a later one answers at once)
            resume = self.stop_catalog()
            # Expired meanwhile: the sweeps of the next seconds wait for the catalog; the loop does not.
            for _ in range(20):
                h, s = timed(lambda: srv.request('GET', '/health', timeout=10))
                self.assertLess(s, 0.2, 'GET /health took %.3f s while a sweep waited' % s)
                self.assertTrue(h.json()['live'])
                time.sleep(0.15)
            # Its file stays while its row does (the rows first).
            self.assertTrue(os.path.exists(name))
            resume()
            wait_until(lambda: self.tus(srv, 'HEAD', path).status == 404, timeout=20,
                       message='the expired upload swept after SIGCONT')
            wait_until(lambda: not os.path.exists(name), timeout=10, message='its file removed')
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())


if __name__ == '__main__':
    main()
