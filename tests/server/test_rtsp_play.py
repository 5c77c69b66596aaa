#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""RTSP playback from sluice's RTSP server: a ready video plays on rtsp://HOST:PORT/videos/ID (its source remuxed,
over TCP and UDP, seeks land on a keyframe), unknown videos are 404, signed videos need their token (401 without,
403 with a wrong one); a live stream is restreamed on rtsp://HOST:PORT/live/ID to several viewers at once while
its publisher sends (its video and its AAC audio, as sent), 404 before, and the viewers' stream ends when the
publisher stops."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_case import LiveCase  # noqa: E402
from sluice_server import FFMPEG, FFPROBE, encode_multipart, main, need_binary, need_ffmpeg, wait_until  # noqa: E402

KEY = 'k1:0123456789abcdef-rtsp-secret'
FPS = 25
GOP = 25
SECONDS = 8
WIDTH, HEIGHT = 320, 240


def make_clip(path):
    r = subprocess.run([FFMPEG, '-v', 'error', '-y',
                        '-f', 'lavfi', '-i', 'testsrc2=size=%dx%d:rate=%d' % (WIDTH, HEIGHT, FPS),
                        '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', str(SECONDS),
                        '-c:v', 'libx264', '-preset', 'ultrafast', '-g', str(GOP), '-pix_fmt', 'yuv420p',
                        '-threads', '1', '-c:a', 'aac', '-shortest', path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError('ffmpeg could not make the clip: %s' % r.stderr)
    return path


def run(cmd, timeout):
    """Runs cmd under `timeout -k` (an RTSP client may ignore SIGTERM): (rc, stderr)."""
    r = subprocess.run(['timeout', '-k', '2', str(timeout)] + cmd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    return r.returncode, r.stderr


def probe(url, transport='tcp'):
    return run([FFPROBE, '-hide_banner', '-rtsp_transport', transport, '-show_entries',
                'stream=codec_name,width,height', '-of', 'compact', url], 30)


def decode(url, transport='tcp', seek=None, seconds=None, timeout=60):
    """ffmpeg plays the video of url to its end (or for `seconds`): (rc, frames, first pts, stderr)."""
    cmd = [FFMPEG, '-nostdin', '-hide_banner', '-loglevel', 'error', '-stats', '-copyts']
    if seek is not None:
        cmd += ['-ss', str(seek)]
    cmd += ['-rtsp_transport', transport, '-i', url, '-map', '0:v:0']
    if seconds is not None:
        cmd += ['-t', str(seconds)]
    cmd += ['-f', 'null', '-']
    rc, err = run(cmd, timeout)
    frames = re.findall(r'frame=\s*(\d+)', err)
    return rc, (int(frames[-1]) if frames else 0), err


@need_binary
@need_ffmpeg
class RtspPlay(LiveCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'rtsp': {'listen': '127.0.0.1:0'}, 'srt': {'listen': 'off'},
              'playback': {'keys': KEY}, 'live': {'idle-timeout': 3}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.rtsp_port is None:
            raise AssertionError('the server did not print its RTSP address:\n' + cls.server.log_tail(50))
        cls.rtsp = 'rtsp://127.0.0.1:%d' % cls.rtsp_port
        cls.work = tempfile.mkdtemp(prefix='sluice-rtsp-play-')
        cls.addClassCleanup(shutil.rmtree, cls.work, True)
        clip = make_clip(os.path.join(cls.work, 'clip.mp4'))
        with open(clip, 'rb') as f:
            data = f.read()
        ids = []
        for policy in ('public', 'signed'):
            ctype, body = encode_multipart([('ladder', '240p'), ('playback_policy', policy)],
                                           [('file', 'clip.mp4', 'video/mp4', data)])
            r = cls.server.request('POST', '/api/v1/videos', body=body, headers={'Content-Type': ctype})
            if r.status != 201:
                raise AssertionError('upload: %s' % r.describe())
            up = r.json()
            ids.append(up['video']['id'])
            for j in up['jobs']:
                cls.server.wait_succeeded(j['id'], timeout=120)
        cls.public_id, cls.signed_id = ids

    def url(self, path):
        return self.rtsp + path

    # -- VOD --

    def test_vod_probe_tcp_and_udp(self):
        for transport in ('tcp', 'udp'):
            with self.subTest(transport=transport):
                rc, err = probe(self.url('/videos/' + self.public_id), transport)
                self.assertEqual(rc, 0, err)
                self.assertIn('h264', err)

    def test_vod_streams_and_size(self):
        r = subprocess.run(['timeout', '-k', '2', '30', FFPROBE, '-v', 'error', '-rtsp_transport', 'tcp',
                            '-show_entries', 'stream=codec_name,width,height', '-of', 'csv=p=0',
                            self.url('/videos/' + self.public_id)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = sorted(ln.strip().rstrip(',') for ln in r.stdout.splitlines() if ln.strip())
        self.assertEqual(lines, ['aac', 'h264,%d,%d' % (WIDTH, HEIGHT)], r.stdout)

    def test_vod_plays_to_the_end_tcp(self):
        rc, frames, err = decode(self.url('/videos/' + self.public_id))
        self.assertEqual(rc, 0, err)
        self.assertGreaterEqual(frames, SECONDS * FPS - 5, err)
        self.assertLessEqual(frames, SECONDS * FPS + 2, err)

    def test_vod_plays_with_gstreamer(self):
        gst = shutil.which('gst-launch-1.0')
        if not gst:
            self.skipTest('gst-launch-1.0 is not installed')
        # GStreamer 1.22's rtspsrc at times takes the server's RTCP BYE on every stream (the end: its log says
        # "received BYE", "setting stream to EOS", then "sending EOS on all streams") and playbin still never
        # finishes. Such a run counts when its video sink got every frame to the last one; a run that misses frames
        # or the end fails, whether or not it exits.
        r = subprocess.run(['timeout', '-k', '2', '30', gst, '-v', 'playbin',
                            'uri=' + self.url('/videos/' + self.public_id).replace('rtsp:', 'rtspt:'),
                            'video-sink=fakesink name=vs silent=false sync=false', 'audio-sink=fakesink sync=false'],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        pts = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in
               re.findall(r'vs: last-message = chain .*?pts: (\d+):(\d+):([\d.]+)', r.stdout)]
        tail = r.stderr[-2000:]
        self.assertIn(r.returncode, (0, 124), tail)
        self.assertGreaterEqual(len(pts), SECONDS * FPS - 5, tail)
        self.assertLessEqual(len(pts), SECONDS * FPS + 2, tail)
        self.assertGreaterEqual(max(pts), SECONDS - 2.0 / FPS, sorted(pts)[-5:])

    def test_vod_seek_lands_on_a_keyframe(self):
        # ffmpeg's PAUSE + PLAY Range at times misreads the interleaved data that follows: a few tries.
        want = (SECONDS - 4) * FPS
        got = []
        for _ in range(3):
            rc, frames, err = decode(self.url('/videos/' + self.public_id), seek=4)
            got.append((rc, frames))
            if rc == 0 and want - 3 <= frames <= want + GOP + 3:
                return
        self.fail('a seek to 4 s did not play from within one GOP of it (%d frames wanted): %s\n%s' % (want, got, err))

    def test_unknown_and_malformed_ids_are_404(self):
        for path in ('/videos/0123456789abcdef', '/videos/nope', '/videos/', '/nothing'):
            with self.subTest(path=path):
                rc, err = probe(self.url(path))
                self.assertNotEqual(rc, 0, err)
                self.assertIn('404', err)

    def test_signed_video_needs_its_token(self):
        url = self.url('/videos/' + self.signed_id)
        rc, err = probe(url)
        self.assertNotEqual(rc, 0, err)
        self.assertIn('401', err)
        rc, err = probe(url + '?token=bogus')
        self.assertNotEqual(rc, 0, err)
        self.assertIn('403', err)
        # A token of another video is refused too.
        r = self.server.post_json('/api/v1/videos/%s/playback-tokens' % self.public_id, {})
        self.assertEqual(r.status, 200, r.describe())
        rc, err = probe(url + '?token=' + r.json()['token'])
        self.assertIn('403', err)
        r = self.server.post_json('/api/v1/videos/%s/playback-tokens' % self.signed_id, {})
        self.assertEqual(r.status, 200, r.describe())
        rc, frames, err = decode(url + '?token=' + r.json()['token'])
        self.assertEqual(rc, 0, err)
        self.assertGreaterEqual(frames, SECONDS * FPS - 5, err)

    # -- live restream --

    def test_live_restream(self):
        r = self.server.post_json('/api/v1/streams', {'title': 'restreamed'})
        self.assertEqual(r.status, 201, r.describe())
        s = r.json()
        url = self.url('/live/' + s['id'])
        self.assertEqual(s['playback'].get('rtsp'), url)
        rc, err = probe(url)
        self.assertNotEqual(rc, 0, err)
        self.assertIn('404', err)
        # The viewers' path takes no publisher.
        rc, err = run([FFMPEG, '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120',
                       '-t', '1', '-c:v', 'libx264', '-f', 'rtsp', '-rtsp_transport', 'tcp', url], 30)
        self.assertNotEqual(rc, 0, err)
        self.assertIn('404', err)

        pub = self.publish(s['ingest']['rtsp'], 14, video='testsrc2=size=%dx%d:rate=%d' % (WIDTH, HEIGHT, FPS),
                           gop=GOP, audio_kbps=128)
        try:
            wait_until(lambda: self.state(s['id']) in ('connecting', 'live'),
                       20, 0.2, 'the publisher to be taken')
            time.sleep(1.5)
            # Two viewers at once, for 3 s each.
            results = [None, None]

            def view(i):
                results[i] = decode(url, seconds=3, timeout=30)

            threads = [threading.Thread(target=view, args=(i,)) for i in range(2)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for rc, frames, err in results:
                self.assertEqual(rc, 0, err)
                self.assertGreaterEqual(frames, FPS, err)
            self.assertLess(time.monotonic() - started, 15)
            rc, err = probe(url)
            self.assertEqual(rc, 0, err)
            self.assertIn('h264', err)
            # The publisher's audio too, as it was sent (AAC, not re-encoded), and it plays.
            self.assertRegex(err, r'Audio: aac')
            rc, err = run([FFMPEG, '-nostdin', '-hide_banner', '-loglevel', 'error', '-stats', '-rtsp_transport', 'tcp',
                           '-i', url, '-map', '0:a:0', '-t', '2', '-f', 'null', '-'], 30)
            self.assertEqual(rc, 0, err)
            self.assertRegex(err, r'time=00:00:0[12]\.', 'the restream\'s audio did not play for 2 s')
            # A viewer without an end: its stream ends when the publisher's does.
            rc, frames, err = decode(url, timeout=40)
            end = time.monotonic()
        finally:
            _, perr = pub.communicate(timeout=60)
        self.assertEqual(pub.returncode, 0, perr)
        self.assertGreater(frames, 2 * FPS, err)
        self.assertLess(end - started, 35, 'the restream did not end with its publisher')


if __name__ == '__main__':
    main()
