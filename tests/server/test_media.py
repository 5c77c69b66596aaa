#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: the served HLS played by real clients (ffmpeg, GStreamer playbin), HTTP
semantics of /videos/ (Range, ETag, HEAD, CORS, caching), refusal of anything outside a video's
outputs, and the EVENT playlist of a running job."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (FFMPEG, GST_LAUNCH, IMMUTABLE, PLAYLIST_TYPE, TERMINAL, EventStream,  # noqa: E402
                           ServerTestCase, ffprobe_duration, main, need_binary, need_ffmpeg, need_gst_launch)


def playlist_uris(text):
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith('#')]


class MediaCase(ServerTestCase):
    CONFIG = {'server': {'cors-origins': 'https://example.com;http://localhost:3000'},
              'uploads': {'auto-transcode': False},
              'jobs': {'concurrent': 1}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        srv = cls.server
        v = srv.upload_ok('short', title='media')['video']
        cls.vid = v['id']
        r = srv.post_job(cls.vid, ladder='240p', params={'segment_seconds': 1, 'preset': 'ultrafast'})
        if r.status != 202:
            raise AssertionError('POST jobs: %s' % r.describe())
        cls.job = srv.wait_succeeded(r.json()['id'])
        cls.hls = os.path.join(cls.data, 'videos', cls.vid, 'hls')
        cls.master = '/videos/%s/hls/master.m3u8' % cls.vid
        cls.segment = '/videos/%s/hls/240p_00000.ts' % cls.vid
        with open(os.path.join(cls.hls, '240p_00000.ts'), 'rb') as f:
            cls.segment_bytes = f.read()


@need_binary
@need_ffmpeg
class Playback(MediaCase):
    def test_ffmpeg_reads_the_whole_package(self):
        url = self.server.url(self.master)
        r = subprocess.run([FFMPEG, '-v', 'error', '-i', url, '-f', 'null', '-'], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), '', 'ffmpeg reported errors')
        self.assertAlmostEqual(ffprobe_duration(url), 3.0, delta=0.5)
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, 'copy.ts')
            r = subprocess.run([FFMPEG, '-v', 'error', '-i', url, '-map', '0', '-c', 'copy', out],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = subprocess.run(['ffprobe', '-v', 'error', '-show_entries', 'stream=codec_name,width,height',
                                '-of', 'json', out], capture_output=True, text=True, timeout=60)
            streams = json.loads(r.stdout)['streams']
            codecs = sorted(s['codec_name'] for s in streams)
            self.assertEqual(codecs, ['aac', 'h264'], streams)
            video = [s for s in streams if s['codec_name'] == 'h264'][0]
            self.assertEqual((video['width'], video['height']), (320, 240))

    @need_gst_launch
    def test_gstreamer_playbin_reaches_eos(self):
        url = self.server.url(self.master)
        cmd = [GST_LAUNCH, '-v', 'playbin', 'uri=' + url,
               'video-sink=fakesink name=vsink sync=false silent=false',
               'audio-sink=fakesink name=asink sync=false silent=false']
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired as e:
            self.fail('gst-launch-1.0 playbin did not finish within 90 s: %s' % (e.stdout or b'')[-2000:])
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out[-3000:])
        self.assertIn('Got EOS from element "playbin', out, out[-3000:])
        frames = len(re.findall(r'\(vsink:sink\)', out))
        audio = len(re.findall(r'\(asink:sink\)', out))
        self.assertGreaterEqual(frames, 60, 'playbin rendered %d of 75 frames' % frames)
        self.assertGreater(audio, 0, 'no audio buffer reached the sink')

    def test_audio_only_package(self):
        srv = self.server
        vid = srv.upload_ok('audio', filename='tone.m4a', content_type='audio/mp4')['video']['id']
        v = srv.video(vid)
        self.assertFalse(v['media'].get('video'), v['media'])
        r = srv.post_job(vid, params={'segment_seconds': 1})
        self.assertEqual(r.status, 202, r.describe())
        job = srv.wait_succeeded(r.json()['id'])
        self.assertEqual([x['name'] for x in job['result']['renditions']], ['audio'], job['result'])
        master = srv.get('/videos/%s/hls/master.m3u8' % vid)
        self.assertEqual(master.status, 200, master.describe())
        self.assertIn('audio.m3u8', master.text())
        p = srv.get('/videos/%s/hls/audio.m3u8' % vid)
        self.assertEqual(p.status, 200, p.describe())
        self.assertIn('#EXT-X-ENDLIST', p.text())
        for seg in playlist_uris(p.text()):
            s = srv.get('/videos/%s/hls/%s' % (vid, seg))
            self.assertEqual(s.status, 200, s.describe())
            self.assertEqual(s.header('Content-Type'), 'video/mp2t')
        self.assertAlmostEqual(ffprobe_duration(srv.url('/videos/%s/hls/master.m3u8' % vid)), 3.0, delta=0.5)
        self.assertEqual(srv.request('DELETE', '/api/v1/videos/' + vid).status, 204)


@need_binary
@need_ffmpeg
class HttpSemantics(MediaCase):
    def test_ranges(self):
        srv, data, n = self.server, self.segment_bytes, len(self.segment_bytes)
        self.assertGreater(n, 1000)
        r = srv.get(self.segment, {'Range': 'bytes=0-99'})
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.body, data[:100])
        self.assertEqual(r.header('Content-Range'), 'bytes 0-99/%d' % n)
        self.assertEqual(r.header('Content-Length'), '100')
        self.assertEqual(r.header('Content-Type'), 'video/mp2t')
        r = srv.get(self.segment, {'Range': 'bytes=-100'})
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.body, data[-100:])
        self.assertEqual(r.header('Content-Range'), 'bytes %d-%d/%d' % (n - 100, n - 1, n))
        r = srv.get(self.segment, {'Range': 'bytes=1000-'})
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.body, data[1000:])
        self.assertEqual(r.header('Content-Range'), 'bytes 1000-%d/%d' % (n - 1, n))
        r = srv.get(self.segment, {'Range': 'bytes=%d-%d' % (n - 10, n + 500)})   # clamped to the end
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.body, data[-10:])
        for beyond in ('bytes=%d-%d' % (n, n + 10), 'bytes=%d-' % (n + 1000)):
            with self.subTest(range=beyond):
                r = srv.get(self.segment, {'Range': beyond})
                self.assertEqual(r.status, 416, r.describe())
                self.assertEqual(r.header('Content-Range'), 'bytes */%d' % n, r.describe())
                self.assert_error(r, 416, 'range_not_satisfiable')
        r = srv.get(self.segment)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, data)
        self.assertEqual(r.header('Accept-Ranges'), 'bytes', r.describe())
        # playlists too
        r = srv.get(self.master, {'Range': 'bytes=0-6'})
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.body, b'#EXTM3U')

    def test_conditional_requests(self):
        srv = self.server
        for path in (self.segment, self.master):
            with self.subTest(path=path):
                r = srv.get(path)
                etag = r.header('ETag')
                self.assertTrue(etag, r.describe())
                self.assertTrue(r.header('Last-Modified'), r.describe())
                r2 = srv.get(path, {'If-None-Match': etag})
                self.assertEqual(r2.status, 304, r2.describe())
                self.assertEqual(r2.body, b'')
                self.assertEqual(r2.header('ETag'), etag)
                r3 = srv.get(path, {'If-None-Match': '"something-else"'})
                self.assertEqual(r3.status, 200, r3.describe())
                self.assertEqual(r3.body, r.body)
                r4 = srv.get(path, {'If-None-Match': '"x", %s' % etag})
                self.assertEqual(r4.status, 304, r4.describe())

    def test_head_has_length_and_no_body(self):
        s = self.server.raw_socket()
        try:
            s.sendall(('HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' % self.segment).encode())
            raw = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
        finally:
            s.close()
        head, sep, rest = raw.partition(b'\r\n\r\n')
        self.assertTrue(sep, raw[:500])
        self.assertTrue(head.startswith(b'HTTP/1.1 200'), head)
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (ln.partition(':') for ln in head.decode().split('\r\n')[1:])}
        self.assertEqual(headers.get('content-length'), str(len(self.segment_bytes)), head)
        self.assertEqual(headers.get('content-type'), 'video/mp2t', head)
        self.assertEqual(rest, b'', 'HEAD answered with a body')
        r = self.server.request('HEAD', self.master)
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('Content-Type', '').split(';')[0], PLAYLIST_TYPE)

    def test_cache_control_and_types(self):
        srv = self.server
        m = srv.get(self.master)
        self.assertEqual(m.header('Cache-Control'), 'no-cache')
        self.assertEqual(m.header('Content-Type', '').split(';')[0], PLAYLIST_TYPE)
        p = srv.get('/videos/%s/hls/240p.m3u8' % self.vid)
        self.assertEqual(p.header('Cache-Control'), 'no-cache')
        self.assertEqual(p.header('Content-Type', '').split(';')[0], PLAYLIST_TYPE)
        # Segment URLs in the playlist carry the package's version and are immutable; without it they
        # are revalidated, since a later job replaces the package under the same names.
        uris = playlist_uris(p.text())
        self.assertTrue(all(re.match(r'^240p_\d{5}\.ts\?v=[0-9a-f]+$', u) for u in uris), uris)
        s = srv.get('/videos/%s/hls/%s' % (self.vid, uris[0]))
        self.assertEqual(s.header('Cache-Control'), IMMUTABLE)
        self.assertEqual(s.body, self.segment_bytes)
        s = srv.get(self.segment)
        self.assertEqual(s.header('Cache-Control'), 'no-cache')

    def test_cors_preflight(self):
        r = self.server.request('OPTIONS', self.segment, headers={'Origin': 'https://example.com',
                                                                  'Access-Control-Request-Method': 'GET',
                                                                  'Access-Control-Request-Headers': 'range'})
        self.assertIn(r.status, (200, 204), r.describe())
        self.assertEqual(r.header('Access-Control-Allow-Origin'), 'https://example.com', r.describe())
        self.assertIn('GET', r.header('Access-Control-Allow-Methods', ''), r.describe())
        self.assertIn('range', r.header('Access-Control-Allow-Headers', '').lower(), r.describe())
        r = self.server.request('OPTIONS', self.segment, headers={'Origin': 'https://evil.example',
                                                                  'Access-Control-Request-Method': 'GET'})
        self.assertIsNone(r.header('Access-Control-Allow-Origin'), r.describe())

    def test_cors(self):
        srv = self.server
        for origin in ('https://example.com', 'http://localhost:3000'):
            with self.subTest(origin=origin):
                for path in (self.master, self.segment):
                    r = srv.get(path, {'Origin': origin})
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.header('Access-Control-Allow-Origin'), origin, r.describe())
        for origin in ('https://evil.example', 'https://example.com.evil.example', 'http://example.com'):
            with self.subTest(origin=origin):
                r = srv.get(self.master, {'Origin': origin})
                self.assertEqual(r.status, 200)
                self.assertIsNone(r.header('Access-Control-Allow-Origin'), r.describe())
        r = srv.get(self.master)
        self.assertIsNone(r.header('Access-Control-Allow-Origin'), r.describe())

    def test_missing_files_and_no_listing(self):
        v = self.vid
        for path in ('/videos/%s/hls/' % v, '/videos/%s/hls' % v, '/videos/%s/' % v, '/videos/%s' % v,
                     '/videos/%s/hls/240p_99999.ts' % v, '/videos/%s/hls/nope.m3u8' % v,
                     '/videos/%s/source.mp4' % v, '/videos/%s/source' % v, '/videos/%s/hls.partial/240p.m3u8' % v,
                     '/videos/%s/hls/master.m3u8/' % v):
            with self.subTest(path=path):
                r = self.server.get(path)
                self.assert_error(r, 404, 'not_found')

    def assert_all_404(self, paths):
        for path in paths:
            with self.subTest(path=path):
                r = self.server.get(path)
                self.assert_error(r, 404, 'not_found')
                self.assertNotIn(b'root:', r.body)
                self.assertNotIn(b'SQLite', r.body)

    def test_traversal_is_404(self):
        v = self.vid
        self.assert_all_404(['/videos/%s/../../sluice.db' % v,
                             '/videos/%s/hls/../../../sluice.db' % v,
                             '/videos/%s/hls/../source.mp4' % v,
                             '/videos/%s/hls/%%2e%%2e/source.mp4' % v,
                             '/videos/%s/hls/%%2e%%2e/%%2e%%2e/%%2e%%2e/sluice.db' % v,
                             '/videos/%s/hls/%%2E%%2E/%%2E%%2E/%%2E%%2E/sluice.db' % v,
                             '/videos/%s/hls/.%%2e/.%%2e/.%%2e/sluice.db' % v,
                             '/videos/%s/hls/..%%5c..%%5c..%%5csluice.db' % v,
                             '/videos/%s/hls/%%2fetc%%2fpasswd' % v,
                             '/videos/%s/hls//etc/passwd' % v,
                             '/videos/%s/hls/%%2F%%2Fetc%%2Fpasswd' % v,
                             '/videos//etc/passwd',
                             '/videos/%2e%2e/sluice.db',
                             '/videos/%s/hls/%%252e%%252e/%%252e%%252e/%%252e%%252e/sluice.db' % v,
                             '/videos/%s/hls/..%%252f..%%252f..%%252fsluice.db' % v,
                             '/videos/%s/hls/%%252fetc%%252fpasswd' % v])

    def test_encoded_slash_traversal_and_nul_are_404(self):
        """Paths whose decoding holds "/../" or a NUL: refused, as 404 JSON like every other traversal.
        (libsoup itself answers these with an empty 400 before any handler runs.)"""
        v = self.vid
        self.assert_all_404(['/videos/%s/hls/..%%2f..%%2f..%%2fsluice.db' % v,
                             '/videos/%s/hls/%%2e%%2e%%2f%%2e%%2e%%2f%%2e%%2e%%2fsluice.db' % v,
                             '/videos/%s/hls/%%2e%%2e%%2fsource.mp4' % v,
                             '/videos/..%2fsluice.db',
                             '/videos/%2e%2e%2fsluice.db/hls/x',
                             '/videos/%s%%2f..%%2f..%%2fsluice.db/hls/master.m3u8' % v,
                             '/videos/%s/hls/master.m3u8%%00.ts' % v,
                             '/videos/%s/hls/%%00' % v])

    def test_symlinks_out_of_the_outputs_are_404(self):
        data = self.data
        planted = {'passwd.m3u8': '/etc/passwd',
                   'passwd.ts': '/etc/passwd',
                   'db.ts': os.path.join(data, 'sluice.db'),
                   'src.ts': os.path.join('..', 'source.mp4'),
                   'etc': '/etc',
                   'up': '..'}
        try:
            for name, target in planted.items():
                os.symlink(target, os.path.join(self.hls, name))
            for path in ('passwd.m3u8', 'passwd.ts', 'db.ts', 'src.ts', 'etc/passwd', 'up/source.mp4'):
                with self.subTest(path=path):
                    r = self.server.get('/videos/%s/hls/%s' % (self.vid, path))
                    self.assert_error(r, 404, 'not_found')
                    self.assertNotIn(b'root:', r.body)
            # the real files are still served
            self.assertEqual(self.server.get(self.master).status, 200)
        finally:
            for name in planted:
                try:
                    os.unlink(os.path.join(self.hls, name))
                except FileNotFoundError:
                    pass


@need_binary
@need_ffmpeg
class EventPlaylist(MediaCase):
    """5. While a job runs its playlists are EVENT playlists that grow; what they list is complete."""

    def test_event_playlist_while_running(self):
        srv = self.server
        for attempt, ladder in enumerate(('360p', '240p,360p')):
            vid = srv.upload_ok('long', title='event %d' % attempt)['video']['id']
            outcome = self.try_event_playlist(vid, ladder)
            srv.request('DELETE', '/api/v1/videos/' + vid)
            if outcome == 'ok':
                return
        self.fail('the job always finished before two segments were listed: cannot observe an EVENT playlist')

    def try_event_playlist(self, vid, ladder):
        srv = self.server
        base = '/videos/%s/hls/' % vid
        with EventStream(srv, '?video=' + vid) as events:
            r = srv.post_job(vid, ladder=ladder, params={'segment_seconds': 1, 'preset': 'veryslow'})
            self.assertEqual(r.status, 202, r.describe())
            job_id = r.json()['id']
            events.wait_for(lambda e: e.event == 'progress' and e.json.get('job') == job_id, 60,
                            what='a progress event')
            seen = {}
            state = 'running'

            def listed():
                p = srv.get(base + '360p.m3u8')
                if p.status == 200 and len(playlist_uris(p.text())) >= 2:
                    return p
                return None

            deadline = time.monotonic() + 60
            p = None
            while time.monotonic() < deadline:
                p = listed()
                state = srv.job(job_id)['state']
                if p is not None or state != 'running':
                    break
                time.sleep(0.05)
            if p is None or ('EVENT' not in p.text() and state != 'running'):
                srv.wait_job(job_id, TERMINAL, 60)
                return 'too fast'
            text = p.text()
            self.assertEqual(p.header('Cache-Control'), 'no-cache', p.describe())
            self.assertEqual(p.header('Content-Type', '').split(';')[0], PLAYLIST_TYPE, p.describe())
            self.assertIn('#EXT-X-PLAYLIST-TYPE:EVENT', text)
            self.assertNotIn('#EXT-X-ENDLIST', text)
            segs = playlist_uris(text)
            for s in segs:
                sr = srv.get(base + s)
                self.assertEqual(sr.status, 200, sr.describe())
                self.assertEqual(sr.header('Content-Type'), 'video/mp2t')
                self.assertEqual(sr.body[:1], b'\x47')
                seen[s] = sr
            # a segment served is a segment listed: whatever the server gives is in the playlist read after it
            last = int(re.search(r'_(\d+)\.ts$', segs[-1]).group(1))
            for k in range(last + 1, last + 4):
                name = '360p_%05d.ts' % k
                sr = srv.get(base + name)
                if sr.status == 200:
                    after = srv.get(base + '360p.m3u8')
                    self.assertIn(name, playlist_uris(after.text()),
                                  'served %s before listing it: %s' % (name, after.text()))
                else:
                    self.assert_error(sr, 404, 'not_found')
            m = srv.get(base + 'master.m3u8')
            v = srv.video(vid)
            still_running = srv.job(job_id)['state'] == 'running'
            self.assertEqual(m.status, 200, m.describe())
            self.assertEqual(m.header('Cache-Control'), 'no-cache', m.describe())
            self.assertIn('360p.m3u8', m.text())
            # A master that exists lists only playlists that exist: a player never meets a 404.
            for uri in playlist_uris(m.text()):
                vr = srv.get(base + uri)
                self.assertEqual(vr.status, 200, vr.describe())
            if still_running:
                for s, sr in seen.items():
                    self.assertEqual(sr.header('Cache-Control'), 'no-cache', 'segment %s of a running job: %s'
                                     % (s, sr.describe()))
                if v['state'] == 'processing':
                    self.assertEqual(v['playback']['hls'], base + 'master.m3u8', v)
                    self.assertIs(v['playback'].get('live'), True, v)
            # a growing playlist is never answered 304 with the tag of an older version
            etag = p.header('ETag')
            if etag:
                grown = None
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and srv.job(job_id)['state'] == 'running':
                    q = srv.get(base + '360p.m3u8', {'If-None-Match': etag})
                    if q.status == 200 and q.text() != text:
                        grown = q
                        break
                    self.assertIn(q.status, (200, 304), q.describe())
                    if q.status == 304:
                        now = srv.get(base + '360p.m3u8')
                        if now.text() != text and srv.job(job_id)['state'] == 'running':
                            self.fail('304 for an EVENT playlist that has grown since its ETag %s:\n%s'
                                      % (etag, now.text()))
                    time.sleep(0.2)
                if grown is not None:
                    self.assertNotEqual(grown.header('ETag'), etag, grown.describe())
            events.wait_job_state(job_id, 'succeeded', 90)
        # the finished package: VOD, and every segment listed while it ran is unchanged
        final = srv.get(base + '360p.m3u8')
        if p.header('ETag'):
            again = srv.get(base + '360p.m3u8', {'If-None-Match': p.header('ETag')})
            self.assertEqual(again.status, 200, 'the VOD playlist answered 304 to the ETag of the EVENT one')
        self.assertIn('#EXT-X-PLAYLIST-TYPE:VOD', final.text())
        self.assertIn('#EXT-X-ENDLIST', final.text())
        final_uris = playlist_uris(final.text())
        # The finished package lists its segments with its version: versioned URLs are immutable.
        final_segs = [u.split('?')[0] for u in final_uris]
        self.assertEqual(final_segs[:len(segs)], segs, 'the EVENT playlist is not a prefix of the VOD one')
        for s, sr in seen.items():
            again = srv.get(base + final_uris[final_segs.index(s)])
            self.assertEqual(again.status, 200)
            self.assertEqual(again.header('Cache-Control'), IMMUTABLE)
            self.assertEqual(again.body, sr.body, 'segment %s changed after it was listed' % s)
        v = srv.video(vid)
        self.assertEqual(v['state'], 'ready')
        self.assertFalse(v['playback'].get('live'), v)
        return 'ok'


if __name__ == '__main__':
    main()
