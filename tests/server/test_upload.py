#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: uploads (multipart, raw, curl, slow, aborted, parallel, refused, too large),
the job each one starts, the events it sends and the HLS package it serves."""

import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (CURL, IMMUTABLE, MEDIA, PLAYLIST_TYPE, TERMINAL, EventStream,  # noqa: E402
                           ServerTestCase, encode_multipart, files_under, main, need_binary, need_curl,
                           need_ffmpeg, read_http_response)

ID_RE = re.compile(r'^[0-9a-f]{16}$')


def playlist_uris(text):
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith('#')]


def extinf_total(text):
    return sum(float(m.group(1)) for m in re.finditer(r'#EXTINF:([0-9.]+)', text))


class UploadCase(ServerTestCase):
    def count_videos(self):
        return len(self.server.get_json('/api/v1/videos')['videos'])

    def assert_refused_without_trace(self, r, status, code, before_videos, before_dirs):
        err = self.assert_error(r, status, code)
        self.assert_no_uploads_left()
        self.assertEqual(self.count_videos(), before_videos, 'a refused upload was kept as a video')
        self.assertEqual(self.video_dirs(), before_dirs, 'a refused upload left a folder in videos/')
        return err

    def raw_upload(self, data, content_type='video/mp4', query='', headers=None):
        h = {'Content-Type': content_type}
        h.update(headers or {})
        return self.server.request('POST', '/api/v1/videos' + query, body=data, headers=h)

    def send_head(self, sock, content_type, length=None, chunked=False, extra=''):
        head = 'POST /api/v1/videos HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n%s' % (
            self.server.port, content_type, self.server.auth_header_line())
        if length is not None:
            head += 'Content-Length: %d\r\n' % length
        if chunked:
            head += 'Transfer-Encoding: chunked\r\n'
        head += extra + '\r\n'
        sock.sendall(head.encode())


@need_binary
@need_ffmpeg
class Uploads(UploadCase):
    CONFIG = {'jobs': {'concurrent': 2}, 'uploads': {'auto-transcode': True}}

    # 1. multipart upload -> job -> events -> a VOD HLS package served with the right headers
    def test_multipart_upload_events_and_vod_package(self):
        srv = self.server
        path = MEDIA.path('medium')
        with EventStream(srv) as everything:
            r = srv.upload('medium', title='Lecture 1', fields={'pipeline': 'hls', 'ladder': '240p,360p'})
            self.assertEqual(r.status, 201, r.describe())
            body = r.json()
            video, job = body['video'], body['job']
            vid = video['id']
            self.assertRegex(vid, ID_RE)
            self.assertEqual(video['title'], 'Lecture 1')
            self.assertEqual(video['filename'], 'medium.mp4')
            self.assertEqual(video['size'], os.path.getsize(path))
            self.assertAlmostEqual(video['duration'], 10.0, delta=0.5)
            self.assertAlmostEqual(video['media']['duration'], 10.0, delta=0.5)
            self.assertEqual(video['media']['video']['width'], 640)
            self.assertEqual(video['media']['video']['height'], 360)
            self.assertTrue(video['media'].get('audio'), video['media'])
            self.assertIn(video['state'], ('queued', 'processing'), video)
            self.assertRegex(job['id'], ID_RE)
            self.assertEqual(job['video_id'], vid)
            self.assertEqual(job['pipeline'], 'hls')
            self.assertEqual(job['ladder'], '240p,360p')
            self.assertIn(job['state'], ('queued', 'running'), job)
            self.assertEqual(job['max_attempts'], 3)
            self.assertTrue(os.path.isfile(os.path.join(self.data, 'videos', vid, 'source.mp4')),
                            files_under(os.path.join(self.data, 'videos', vid)))

            # the video's own stream, resumed after its "created" event: it misses nothing that followed
            created = everything.wait_for(lambda e: e.event == 'video' and e.json == {'id': vid, 'action': 'created'},
                                          10, what='video created event')
            with EventStream(srv, '?video=' + vid, last_event_id=created.id) as mine:
                done = mine.wait_job_state(job['id'], TERMINAL, 90)
                self.assertEqual(done.json['state'], 'succeeded', done.json)
                everything.wait_job_state(job['id'], TERMINAL, 10)
                for e in mine.snapshot():
                    self.assertEqual(e.video_id(), vid, 'event for another video on ?video=%s: %r' % (vid, e))

            events = [e for e in everything.snapshot() if e.video_id() == vid]
            ids = [int(e.id) for e in everything.snapshot()]
            self.assertEqual(ids, sorted(set(ids)), 'event ids must increase')
            states = [e.json['state'] for e in events if e.event == 'job']
            self.assertIn('running', states)
            self.assertEqual(states[-1], 'succeeded', states)
            self.assertLess(states.index('running'), states.index('succeeded'), states)
            progress = [e.json for e in events if e.event == 'progress']
            percents = [p['percent'] for p in progress]
            self.assertGreaterEqual(len(percents), 2, 'progress events of a 10 s job: %s' % events)
            self.assertEqual(percents, sorted(percents), 'progress percent must not go back: %s' % percents)
            self.assertTrue(all(0 <= p <= 100 for p in percents), percents)
            self.assertGreater(percents[-1], percents[0], percents)
            for p in progress:
                self.assertEqual(p['job'], job['id'])
                for k in ('position', 'duration', 'fps', 'speed', 'eta'):
                    self.assertIn(k, p)

        v = srv.video(vid)
        self.assertEqual(v['state'], 'ready', v)
        self.assertEqual(v['playback']['hls'], '/videos/%s/hls/master.m3u8' % vid, v)
        self.assertFalse(v['playback'].get('live'), v)
        final = srv.job(job['id'])
        self.assertEqual(final['state'], 'succeeded')
        self.assertEqual(final['attempts'], 1, final)
        self.assertIsNone(final['error'], final)
        if final.get('progress'):
            self.assertEqual(final['progress']['percent'], 100, final)
        renditions = {r['name']: r for r in final['result']['renditions']}
        self.assertEqual(sorted(renditions), ['240p', '360p'], final['result'])
        for name, r in renditions.items():
            self.assertEqual(r['height'], int(name[:-1]), r)
            self.assertAlmostEqual(r['width'] / r['height'], 16 / 9, delta=0.02, msg=str(r))
            self.assertIn('avc1.', r['codecs'], r)
            self.assertIn('mp4a.40.2', r['codecs'], r)
            self.assertGreater(r['bandwidth'], 0, r)
            self.assertAlmostEqual(r['duration'], 10.0, delta=0.5, msg=str(r))
        self.check_package(vid, expected_duration=10.0, renditions=('240p', '360p'))

    def check_package(self, vid, expected_duration, renditions):
        srv = self.server
        hls_dir = os.path.join(self.data, 'videos', vid, 'hls')
        self.assertTrue(os.path.isdir(hls_dir))
        self.assertFalse(os.path.exists(hls_dir + '.partial'))
        master_path = '/videos/%s/hls/master.m3u8' % vid
        m = srv.get(master_path)
        self.assertEqual(m.status, 200, m.describe())
        self.assertEqual(m.header('Content-Type', '').split(';')[0], PLAYLIST_TYPE, m.describe())
        self.assertEqual(m.header('Cache-Control'), 'no-cache', m.describe())
        self.assertTrue(m.text().startswith('#EXTM3U'), m.text())
        media = playlist_uris(m.text())
        self.assertEqual(sorted(media), sorted('%s.m3u8' % r for r in renditions), m.text())
        self.assertEqual(m.text().count('#EXT-X-STREAM-INF'), len(renditions))
        for uri in media:
            ppath = urllib.parse.urljoin(master_path, uri)
            p = srv.get(ppath)
            self.assertEqual(p.status, 200, p.describe())
            self.assertEqual(p.header('Content-Type', '').split(';')[0], PLAYLIST_TYPE, p.describe())
            self.assertEqual(p.header('Cache-Control'), 'no-cache', p.describe())
            text = p.text()
            self.assertIn('#EXT-X-PLAYLIST-TYPE:VOD', text)
            self.assertIn('#EXT-X-ENDLIST', text)
            self.assertAlmostEqual(extinf_total(text), expected_duration, delta=0.6)
            segs = playlist_uris(text)
            self.assertTrue(segs, text)
            for s in segs:
                spath = urllib.parse.urljoin(ppath, s)
                sr = srv.get(spath)
                self.assertEqual(sr.status, 200, sr.describe())
                self.assertEqual(sr.header('Content-Type'), 'video/mp2t', sr.describe())
                self.assertEqual(sr.header('Cache-Control'), IMMUTABLE, sr.describe())
                self.assertTrue(sr.header('ETag'), sr.describe())
                # Segments of a finished package are listed with its version (name.ts?v=...).
                self.assertRegex(s, r'^240p_\d{5}\.ts\?v=[0-9a-f]+$|^\d+p_\d{5}\.ts\?v=[0-9a-f]+$')
                with open(os.path.join(hls_dir, os.path.basename(spath).split('?')[0]), 'rb') as f:
                    self.assertEqual(sr.body, f.read(), spath)
                self.assertEqual(sr.body[:1], b'\x47', 'not MPEG-TS: ' + spath)

    # 2. raw body uploads
    def test_raw_upload_with_x_filename_header(self):
        data = MEDIA.bytes('short')
        r = self.raw_upload(data, 'video/mp4', '?ladder=240p', {'X-Filename': 'clip.mp4'})
        self.assertEqual(r.status, 201, r.describe())
        body = r.json()
        v = body['video']
        self.assertEqual(v['filename'], 'clip.mp4')
        self.assertEqual(v['size'], len(data))
        self.assertAlmostEqual(v['media']['duration'], 3.0, delta=0.3)
        self.assertEqual(v['media']['video']['width'], 320)
        self.assertEqual(body['job']['ladder'], '240p')
        self.assertTrue(os.path.isfile(os.path.join(self.data, 'videos', v['id'], 'source.mp4')))
        self.server.wait_succeeded(body['job']['id'])

    def test_raw_upload_with_filename_query(self):
        r = self.raw_upload(MEDIA.bytes('short'), 'video/mp4',
                            '?filename=my%20clip.mp4&title=My%20clip&ladder=240p&description=d%C3%A9j%C3%A0'
                            '&priority=3&encoder=x264')
        self.assertEqual(r.status, 201, r.describe())
        body = r.json()
        self.assertEqual(body['video']['filename'], 'my clip.mp4')
        self.assertEqual(body['video']['title'], 'My clip')
        self.assertEqual(body['video']['description'], 'd\u00e9j\u00e0')
        self.assertEqual(body['job']['priority'], 3, body['job'])
        self.assertEqual(body['job']['encoder'], 'x264', body['job'])
        self.server.wait_succeeded(body['job']['id'])

    def test_raw_upload_octet_stream(self):
        r = self.raw_upload(MEDIA.bytes('short'), 'application/octet-stream', '?ladder=240p',
                            {'X-Filename': 'other.mp4'})
        self.assertEqual(r.status, 201, r.describe())
        self.server.wait_succeeded(r.json()['job']['id'])

    def test_hostile_filename_is_only_displayed(self):
        name = '../../../../sluice-hostile-%d.mp4' % os.getpid()
        r = self.raw_upload(MEDIA.bytes('short'), 'video/mp4', '?ladder=240p', {'X-Filename': name})
        self.assertEqual(r.status, 201, r.describe())
        v = r.json()['video']
        self.server.wait_succeeded(r.json()['job']['id'])
        for root in (self.tmp, '/', '/tmp'):
            self.assertFalse(os.path.exists(os.path.join(root, os.path.basename(name))))
        for f in files_under(self.data):
            self.assertNotIn('hostile', f)
        top = os.listdir(os.path.join(self.data, 'videos', v['id']))
        self.assertTrue(all(f.startswith('source') or f.startswith('hls') for f in top), top)

    @need_curl
    def test_curl_uploads(self):
        url = self.server.url('/api/v1/videos')
        r = subprocess.run([CURL, '-sS', '-o', '-', '-w', '\n%{http_code}', '-F', 'file=@' + MEDIA.path('short'),
                            '-F', 'title=My clip', '-F', 'ladder=240p', url] + self.server.curl_auth(),
                           capture_output=True, text=True, timeout=60)
        out, code = r.stdout.rsplit('\n', 1)
        self.assertEqual(code, '201', r.stdout + r.stderr)
        j1 = json.loads(out)['job']['id']
        # 2 MB: curl sends "Expect: 100-continue"
        r = subprocess.run([CURL, '-sS', '-o', '-', '-w', '\n%{http_code}', '-H', 'Content-Type: video/mp4',
                            '--data-binary', '@' + MEDIA.path('long'), url + '?filename=clip.mp4&ladder=240p']
                           + self.server.curl_auth(),
                           capture_output=True, text=True, timeout=60)
        out, code = r.stdout.rsplit('\n', 1)
        self.assertEqual(code, '201', r.stdout + r.stderr)
        body = json.loads(out)
        self.assertEqual(body['video']['size'], os.path.getsize(MEDIA.path('long')))
        self.server.wait_succeeded(j1)
        self.server.wait_succeeded(body['job']['id'], timeout=120)

    # 9. slow and aborted uploads
    def test_slow_upload_is_streamed_to_disk(self):
        data = MEDIA.bytes('short')
        s = self.server.raw_socket()
        try:
            self.send_head(s, 'video/mp4', len(data), extra='X-Filename: slow.mp4\r\n')
            piece = 16 * 1024
            half = len(data) // 2
            for off in range(0, half, piece):
                s.sendall(data[off:min(off + piece, half)])
                time.sleep(0.03)
            time.sleep(1.5)
            # half-way: the body is being written under DATADIR/uploads, nothing else exists yet
            left = self.uploads_left()
            self.assertEqual(len(left), 1, 'expected one temporary upload while it streams: %r' % left)
            for off in range(half, len(data), piece):
                s.sendall(data[off:min(off + piece, len(data))])
                time.sleep(0.03)
            r = read_http_response(s, 'POST', timeout=30)
        finally:
            s.close()
        self.assertIsNotNone(r, 'no answer to a slow upload')
        self.assertEqual(r.status, 201, r.describe())
        self.assertEqual(r.json()['video']['filename'], 'slow.mp4')
        self.server.wait_succeeded(r.json()['job']['id'])

    def abort_upload(self, content_type, head_extra, body, total, rst=False):
        s = self.server.raw_socket()
        self.send_head(s, content_type, total, extra=head_extra)
        s.sendall(body)
        time.sleep(0.3)
        if rst:
            import struct
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        s.close()

    def test_aborted_uploads_leave_nothing(self):
        before, dirs = self.count_videos(), self.video_dirs()
        long_data = MEDIA.bytes('long')
        megabyte = (long_data * 2)[:1024 * 1024]
        self.abort_upload('video/mp4', 'X-Filename: big.mp4\r\n', megabyte, 5 * 1024 * 1024)
        h = self.server.get('/health')
        self.assertEqual(h.status, 200, h.describe())
        self.assert_no_uploads_left(timeout=5)
        # the same, ended by a reset
        self.abort_upload('application/octet-stream', '', megabyte, 5 * 1024 * 1024, rst=True)
        self.assertEqual(self.server.get('/health').status, 200)
        self.assert_no_uploads_left(timeout=5)
        # a multipart body cut inside the file part
        ctype, body = encode_multipart([('title', 'cut')], [('file', 'cut.mp4', 'video/mp4', long_data)])
        self.abort_upload(ctype, '', body[:len(body) // 2], len(body))
        self.assertEqual(self.server.get('/health').status, 200)
        self.assert_no_uploads_left(timeout=5)
        self.assertEqual(self.count_videos(), before)
        self.assertEqual(self.video_dirs(), dirs)

    # 8. refused uploads: JSON errors, nothing kept
    def test_text_file_is_not_media(self):
        before, dirs = self.count_videos(), self.video_dirs()
        text = MEDIA.bytes('text')
        r = self.server.upload(data=text, filename='notes.txt', content_type='text/plain')
        err = self.assert_refused_without_trace(r, 415, 'not_media', before, dirs)
        self.assertGreater(len(err['message']), 5, err)
        r = self.raw_upload(text, 'application/octet-stream', '?filename=notes.mp4')
        self.assert_refused_without_trace(r, 415, 'not_media', before, dirs)
        r = self.raw_upload(text, 'video/mp4', '', {'X-Filename': 'notes.mp4'})
        self.assert_refused_without_trace(r, 415, 'not_media', before, dirs)
        # the first half of an mp4 whose index is at its end
        half = MEDIA.bytes('short')[:len(MEDIA.bytes('short')) // 2]
        r = self.raw_upload(half, 'video/mp4', '', {'X-Filename': 'half.mp4'})
        self.assert_refused_without_trace(r, 415, 'not_media', before, dirs)

    def test_unsupported_content_types(self):
        before, dirs = self.count_videos(), self.video_dirs()
        for ctype in ('text/plain', 'application/json', 'image/png', 'application/x-www-form-urlencoded'):
            with self.subTest(ctype=ctype):
                r = self.raw_upload(MEDIA.bytes('short'), ctype, '?filename=clip.mp4')
                self.assert_refused_without_trace(r, 415, 'not_media', before, dirs)
        r = self.server.request('POST', '/api/v1/videos', body=MEDIA.bytes('short'))  # no Content-Type at all
        self.assert_refused_without_trace(r, (400, 415), ('bad_request', 'not_media'), before, dirs)

    def test_empty_bodies(self):
        before, dirs = self.count_videos(), self.video_dirs()
        r = self.raw_upload(b'', 'video/mp4', '?filename=empty.mp4')
        self.assert_refused_without_trace(r, (400, 415), ('bad_request', 'not_media'), before, dirs)
        r = self.raw_upload(b'', 'multipart/form-data; boundary=xyzzy')
        self.assert_refused_without_trace(r, 400, 'bad_request', before, dirs)
        ctype, body = encode_multipart([], [('file', 'empty.mp4', 'video/mp4', b'')])
        r = self.raw_upload(body, ctype)
        self.assert_refused_without_trace(r, (400, 415), ('bad_request', 'not_media'), before, dirs)

    def test_malformed_multipart(self):
        before, dirs = self.count_videos(), self.video_dirs()
        data = MEDIA.bytes('short')
        ctype, body = encode_multipart([('title', 't')], [('file', 'clip.mp4', 'video/mp4', data)])
        cases = {
            'no boundary parameter': ('multipart/form-data', body),
            'another boundary': ('multipart/form-data; boundary=notTheOneUsed', body),
            'truncated (no closing boundary)': (ctype, body[:-40]),
            'cut in the part headers': (ctype, body[:60]),
            'garbage': (ctype, b'this is not multipart at all\r\n' * 20),
        }
        for what, (ct, b) in cases.items():
            with self.subTest(what=what):
                r = self.raw_upload(b, ct)
                self.assert_refused_without_trace(r, 400, 'bad_request', before, dirs)

    def test_multipart_without_file_part(self):
        before, dirs = self.count_videos(), self.video_dirs()
        ctype, body = encode_multipart([('title', 'no file'), ('ladder', '240p')])
        self.assert_refused_without_trace(self.raw_upload(body, ctype), 400, 'bad_request', before, dirs)
        ctype, body = encode_multipart([('title', 'wrong name')],
                                       [('upload', 'clip.mp4', 'video/mp4', MEDIA.bytes('short'))])
        self.assert_refused_without_trace(self.raw_upload(body, ctype), 400, 'bad_request', before, dirs)

    def test_upload_with_invalid_job_fields(self):
        before, dirs = self.count_videos(), self.video_dirs()
        for fields, name in (({'pipeline': 'nope'}, 'nope'), ({'encoder': 'nope'}, 'nope'),
                             ({'ladder': 'banana'}, 'banana'),
                             ({'ladder': '240p ! filesink location=/tmp/x'}, None)):
            with self.subTest(fields=fields):
                r = self.server.upload('short', fields=fields)
                err = self.assert_refused_without_trace(r, 422, 'invalid_parameter', before, dirs)
                if name:
                    self.assertIn(name, err['message'] + str(err.get('field')), err)
        r = self.server.upload('short', fields={'priority': 'high'})
        self.assert_refused_without_trace(r, 400, 'invalid_field', before, dirs)

    # 10. parallel uploads, two jobs at a time
    def test_parallel_uploads_all_succeed(self):
        results = [None] * 3
        clips = ['short', 'short', 'medium']

        def up(i):
            results[i] = self.server.upload(clips[i], title='parallel %d' % i, fields={'ladder': '240p'})

        threads = [threading.Thread(target=up, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for r in results:
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 201, r.describe())
        jobs = [r.json()['job']['id'] for r in results]
        vids = [r.json()['video']['id'] for r in results]
        self.assertEqual(len(set(vids)), 3)
        most = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = self.server.get_json('/api/v1/jobs?state=running')['jobs']
            most = max(most, len(running))
            health = self.server.get_json('/health')
            self.assertLessEqual(health['jobs']['running'], 2, health)
            states = [self.server.job(j)['state'] for j in jobs]
            if all(s in TERMINAL for s in states):
                break
            time.sleep(0.1)
        self.assertEqual(states, ['succeeded'] * 3)
        self.assertLessEqual(most, 2, 'concurrent=2, yet %d jobs ran at once' % most)
        listed = [v['id'] for v in self.server.get_json('/api/v1/videos')['videos']]
        for vid in vids:
            self.assertIn(vid, listed)
        for a, b in zip(listed, listed[1:]):
            va = self.server.video(a)
            vb = self.server.video(b)
            self.assertGreaterEqual(va['created'], vb['created'], 'videos are not newest first')


@need_binary
@need_ffmpeg
class UploadLimits(UploadCase):
    CONFIG = {'uploads': {'max-size': '1M', 'auto-transcode': False}}

    def answer_without_body(self, content_type, length, extra=''):
        """Sends only the headers: the 413 must come before any byte of the body."""
        s = self.server.raw_socket()
        try:
            self.send_head(s, content_type, length, extra=extra)
            ready, _, _ = select.select([s], [], [], 10)
            self.assertTrue(ready, 'no answer within 10 s to Content-Length %d (the server waits for the body)'
                            % length)
            r = read_http_response(s, 'POST', timeout=10)
        finally:
            s.close()
        self.assertIsNotNone(r, 'connection closed without an answer')
        return r

    def send_chunked(self, content_type, data, piece=64 * 1024):
        """Sends data chunked, stopping when an answer arrives; returns it."""
        s = self.server.raw_socket()
        try:
            self.send_head(s, content_type, chunked=True)
            try:
                for off in range(0, len(data), piece):
                    chunk = data[off:off + piece]
                    s.sendall(b'%x\r\n' % len(chunk) + chunk + b'\r\n')
                    if select.select([s], [], [], 0)[0]:
                        break
                else:
                    s.sendall(b'0\r\n\r\n')
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = read_http_response(s, 'POST', timeout=30)
        finally:
            s.close()
        self.assertIsNotNone(r, 'connection closed without an answer')
        return r

    def test_content_length_over_limit_with_expect_100_continue(self):
        before, dirs = self.count_videos(), self.video_dirs()
        for ctype in ('video/mp4', 'multipart/form-data; boundary=abc'):
            with self.subTest(ctype=ctype):
                r = self.answer_without_body(ctype, 2 * 1024 * 1024, 'Expect: 100-continue\r\n')
                self.assert_refused_without_trace(r, 413, 'too_large', before, dirs)

    def test_content_length_over_limit_whole_body_sent(self):
        before, dirs = self.count_videos(), self.video_dirs()
        data = (MEDIA.bytes('long') * 2)[:2 * 1024 * 1024]
        s = self.server.raw_socket()
        try:
            self.send_head(s, 'video/mp4', len(data))
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = read_http_response(s, 'POST', timeout=30)
        finally:
            s.close()
        self.assertIsNotNone(r, 'connection closed without an answer')
        self.assert_refused_without_trace(r, 413, 'too_large', before, dirs)

    def test_chunked_over_limit_is_413(self):
        before, dirs = self.count_videos(), self.video_dirs()
        data = (MEDIA.bytes('long') * 2)[:3 * 1024 * 1024]
        r = self.send_chunked('video/mp4', data)
        self.assert_refused_without_trace(r, 413, 'too_large', before, dirs)
        ctype, body = encode_multipart([('title', 'big')], [('file', 'big.mp4', 'video/mp4', data)])
        r = self.send_chunked(ctype, body)
        self.assert_refused_without_trace(r, 413, 'too_large', before, dirs)

    def test_under_limit_is_accepted_chunked_or_not(self):
        data = MEDIA.bytes('short')
        self.assertLess(len(data), 1024 * 1024)
        r = self.send_chunked('video/mp4', data, piece=10000)
        self.assertEqual(r.status, 201, r.describe())
        self.assertEqual(r.json()['video']['size'], len(data))
        self.assertFalse(r.json().get('job'), 'auto-transcode=false, yet a job: %s' % r.json())
        r = self.server.upload('short')
        self.assertEqual(r.status, 201, r.describe())
        self.assertEqual(r.json()['video']['state'], 'uploaded')


if __name__ == '__main__':
    main()
