#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The live engine: ffmpeg publishes over RTSP and over SRT with a stream's key; the stream goes live, its ladder's
sliding HLS playlists advance and every listed segment decodes, old segments are deleted, and once the publisher has
gone for the idle timeout the playlists end and the stream is `ended`. A wrong key is refused at the door (RTSP 404,
SRT rejected at the handshake) and starts nothing; a second publisher of a live stream is refused."""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_case import LiveCase, startup_lines  # noqa: E402
from sluice_server import BINARY, FFMPEG, FFPROBE, EventStream, main, need_binary, need_ffmpeg, wait_until  # noqa: E402

WINDOW = 8          # [live] window: seconds of a playlist (4 segments of 2 s)
IDLE_TIMEOUT = 3    # [live] idle-timeout
SEGMENTS_LISTED = 4
KEEP_EXTRA = 2      # segments the engine keeps on disk after they left the playlist
PUBLISH_SECONDS = 30


def has_drawtext():
    if not FFMPEG:
        return False
    r = subprocess.run([FFMPEG, '-hide_banner', '-filters'], capture_output=True, text=True, timeout=30)
    return ' drawtext ' in r.stdout


def parse_media_playlist(text):
    """(media sequence, [(uri, duration)], ended, discontinuities, program dates)"""
    m = re.search(r'^#EXT-X-MEDIA-SEQUENCE:(\d+)$', text, re.M)
    seq = int(m.group(1)) if m else None
    segments = re.findall(r'^#EXTINF:([0-9.]+),\n(\S+)$', text, re.M)
    return (seq, [(uri, float(d)) for d, uri in segments], '#EXT-X-ENDLIST' in text,
            text.count('#EXT-X-DISCONTINUITY\n'), re.findall(r'^#EXT-X-PROGRAM-DATE-TIME:(\S+)$', text, re.M))


@need_binary
@need_ffmpeg
class Live(LiveCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'rtsp': {'listen': '127.0.0.1:0'}, 'srt': {'listen': '127.0.0.1:0'},
              'live': {'window': WINDOW, 'idle-timeout': IDLE_TIMEOUT}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.rtsp_port is None or cls.srt_port is None:
            raise AssertionError('the server did not print its RTSP and SRT addresses:\n' + cls.server.log_tail(50))
        cls.drawtext = has_drawtext()
        cls.work = tempfile.mkdtemp(prefix='sluice-live-')
        cls.addClassCleanup(shutil.rmtree, cls.work, True)

    # -- helpers --

    def create(self, **fields):
        r = self.server.post_json('/api/v1/streams', fields)
        self.assertEqual(r.status, 201, r.describe())
        s = r.json()
        # The ingest URLs name the ports really taken (the configuration asked for any free one).
        self.assertEqual(s['ingest']['rtsp'], 'rtsp://127.0.0.1:%d/live/%s' % (self.rtsp_port, s['key']))
        self.assertEqual(s['ingest']['srt'], 'srt://127.0.0.1:%d?streamid=%s' % (self.srt_port, s['key']))
        return s

    def publish(self, url, seconds=PUBLISH_SECONDS):
        """ffmpeg publishes a 640x360 25 fps test pattern (with the wall clock burned in) and a tone to url."""
        video = 'testsrc2=size=640x360:rate=25'
        if self.drawtext:
            video += (",drawtext=text='%{localtime\\:%T.%3N}':fontsize=32:fontcolor=white:box=1:boxcolor=black"
                      ":x=10:y=10")
        return super().publish(url, seconds, video=video, audio_kbps=96)

    def text(self, path):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r.describe())
        return r.text()

    def fast_path_requests(self):
        r = self.server.get('/metrics')
        self.assertEqual(r.status, 200, r.describe())
        m = re.search(r'^sluice_http_fast_path_requests_total (\S+)$', r.text(), re.M)
        self.assertTrue(m, 'no fast path counter in /metrics')
        return float(m.group(1))

    def media_playlists(self, sid):
        master = self.text('/streams/%s/master.m3u8' % sid)
        variants = re.findall(r'^#EXT-X-STREAM-INF:(.*)\n(\S+)$', master, re.M)
        self.assertTrue(variants, master)
        return master, variants

    def check_segments_decode(self, sid, uri_prefix=''):
        """Every segment listed now by every media playlist decodes: H.264 of the rung's size and AAC."""
        fast_before = self.fast_path_requests()
        _, variants = self.media_playlists(sid)
        fetched = []
        for attrs, playlist in variants:
            width, height = map(int, re.search(r'RESOLUTION=(\d+)x(\d+)', attrs).groups())
            _, segments, _, _, _ = parse_media_playlist(self.text('/streams/%s/%s' % (sid, playlist)))
            self.assertTrue(segments, playlist)
            # Fetched first, all of them: the window moves on while they are probed.
            for uri, duration in segments:
                r = self.server.get('/streams/%s/%s' % (sid, uri))
                self.assertEqual(r.status, 200, r.describe())
                path = os.path.join(self.work, '%s-%s' % (sid, uri))
                with open(path, 'wb') as f:
                    f.write(r.body)
                fetched.append((path, width, height, duration))
        # The master, each media playlist and each segment of a stream this process runs: all on the fast path.
        self.assertGreaterEqual(self.fast_path_requests() - fast_before, 1 + len(variants) + len(fetched))
        for path, width, height, duration in fetched:
            with self.subTest(segment=os.path.basename(path)):
                r = subprocess.run([FFPROBE, '-v', 'error', '-count_frames', '-show_entries',
                                    'stream=codec_type,codec_name,width,height,nb_read_frames', '-of', 'json', path],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr.strip(), '', 'decoding %s: %s' % (path, r.stderr))
                streams = json.loads(r.stdout)['streams']
                video = [s for s in streams if s['codec_type'] == 'video']
                audio = [s for s in streams if s['codec_type'] == 'audio']
                self.assertEqual(len(video), 1, streams)
                self.assertEqual(len(audio), 1, streams)
                self.assertEqual((video[0]['codec_name'], video[0]['width'], video[0]['height']),
                                 ('h264', width, height))
                self.assertEqual(audio[0]['codec_name'], 'aac')
                # As many frames as the segment lasts, at 25 fps.
                self.assertAlmostEqual(int(video[0]['nb_read_frames']), duration * 25, delta=2)
            os.unlink(path)
        return len(fetched)

    def listing_delays(self, sid, count=4, timeout=20):
        """Polls 360p.m3u8 every 0.1 s and, for each of `count` new segments, measures how far the end of the segment
        (its PROGRAM-DATE-TIME + EXTINF) was behind the wall clock when it was first listed."""
        seen, delays = None, []
        deadline = time.time() + timeout
        while len(delays) < count and time.time() < deadline:
            text = self.text('/streams/%s/360p.m3u8' % sid)
            now = time.time()
            entries = re.findall(r'^#EXT-X-PROGRAM-DATE-TIME:(\S+)\n#EXTINF:([0-9.]+),\n(\S+)$', text, re.M)
            uris = {uri for _, _, uri in entries}
            if seen is not None:
                for date, duration, uri in entries:
                    if uri not in seen:
                        start = datetime.datetime.strptime(date, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
                            tzinfo=datetime.timezone.utc).timestamp()
                        delays.append(now - (start + float(duration)))
            seen = uris if seen is None else seen | uris
            time.sleep(0.1)
        sys.stderr.write('listing delays of 360p (s): %s\n' % ', '.join('%.2f' % d for d in delays))
        return delays

    def go_live(self, sid, proc, events):
        """Waits until the stream is live (its GET and its `stream` event), then checks the master playlist."""
        try:
            events.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == sid
                            and e.json.get('state') == 'live', 45, what='stream %s live' % sid)
        except AssertionError:
            if proc.poll() is not None:
                self.fail('the publisher ended (%s): %s' % (proc.returncode, proc.stderr.read().decode()))
            raise
        self.assertEqual(self.state(sid), 'live')
        master, variants = self.media_playlists(sid)
        # The default ladder planned from a 640x360 input: its rungs up to 360p, never upscaled.
        sizes = sorted(re.search(r'RESOLUTION=(\d+x\d+)', a).group(1) for a, _ in variants)
        self.assertEqual(sizes, ['426x240', '640x360'], master)
        self.assertEqual(sorted(uri for _, uri in variants), ['240p.m3u8', '360p.m3u8'])
        for attrs, _ in variants:
            self.assertRegex(attrs, r'BANDWIDTH=\d+')
            self.assertRegex(attrs, r'CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"')
            self.assertIn('FRAME-RATE=25.000', attrs)
        return variants

    def run_live(self, kind):
        """Publishes over `kind` (rtsp or srt) for PUBLISH_SECONDS and follows the stream to its end."""
        with EventStream(self.server, '') as events:
            s = self.create(title='live over ' + kind)
            sid = s['id']
            folder = os.path.join(self.server.data_dir, 'streams', sid)
            proc = self.publish(s['ingest'][kind])
            try:
                self.go_live(sid, proc, events)
                if kind == 'rtsp':
                    self.second_publishers_are_refused(s)
                # The window slides: the media sequence numbers advance.
                first_seq, first, _, _, dates = parse_media_playlist(self.text('/streams/%s/360p.m3u8' % sid))
                self.assertLessEqual(len(first), SEGMENTS_LISTED)
                self.assertEqual(len(dates), len(first), 'a PROGRAM-DATE-TIME per segment')
                self.check_segments_decode(sid)
                # A segment is listed as soon as it ends (its next keyframe is encoded), not one GOP later: its end
                # is behind the wall clock by the encoder's delay and the poll, well under a second.
                delays = self.listing_delays(sid)
                self.assertGreaterEqual(len(delays), 3, delays)
                self.assertLess(sorted(delays)[len(delays) // 2], 1.2, delays)
                wait_until(lambda: parse_media_playlist(self.text('/streams/%s/360p.m3u8' % sid))[0] >= first_seq + 2,
                           20, 0.5, 'the media sequence of 360p.m3u8 to advance')
                later = parse_media_playlist(self.text('/streams/%s/240p.m3u8' % sid))
                self.assertGreater(later[0], 0)
                self.assertLessEqual(len(later[1]), SEGMENTS_LISTED)
                for _, duration in later[1]:
                    self.assertAlmostEqual(duration, 2.0, delta=0.1)
                self.check_segments_decode(sid)
                # While live, the figures of the input come with the events.
                figures = events.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == sid
                                          and e.json.get('state') == 'live' and e.json.get('input_kbps', 0) > 0
                                          and e.json.get('latency') is not None,
                                          10, what='figures of stream %s with the latency' % sid).json
                self.assertAlmostEqual(figures['fps'], 25, delta=3)
                got = self.server.get_json('/api/v1/streams/' + sid)
                self.assertGreater(got['input']['kbps'], 100)
                # The live edge (the end of the newest listed segment) is behind the present by less than a
                # segment and the time to list it, plus the 2 s between two reports.
                self.assertIsInstance(figures.get('latency'), float, figures)
                self.assertGreater(figures['latency'], 0)
                self.assertLess(figures['latency'], 2 * 2.0 + 4, figures)
            finally:
                rc, err = self.finished(proc, PUBLISH_SECONDS + 40)
            self.assertEqual(rc, 0, 'the publisher failed: ' + err)
            # Gone for the idle timeout: every media playlist ends, the stream is ended.
            events.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == sid
                            and e.json.get('state') == 'ended', IDLE_TIMEOUT + 15, what='stream %s ended' % sid)
            self.assertEqual(self.state(sid), 'ended')
            for name in ('240p', '360p'):
                seq, segments, ended, _, _ = parse_media_playlist(self.text('/streams/%s/%s.m3u8' % (sid, name)))
                self.assertTrue(ended, '%s.m3u8 has no ENDLIST' % name)
                # ~20 s of 2 s segments went by: the early ones left the window and their files are deleted.
                self.assertGreaterEqual(seq, 5, name)
                on_disk = sorted(f for f in os.listdir(folder) if f.startswith(name + '-') and f.endswith('.ts'))
                self.assertLessEqual(len(on_disk), SEGMENTS_LISTED + KEEP_EXTRA, on_disk)
                self.assertNotIn(name + '-1-00000.ts', on_disk)
                listed = [uri for uri, _ in segments]
                self.assertTrue(set(listed) <= set(on_disk), (listed, on_disk))
            self.check_segments_decode(sid)
        return s

    def second_publishers_are_refused(self, s):
        # While the stream is live, another publisher of its key is refused, over RTSP (455) and over SRT.
        proc = self.publish(s['ingest']['rtsp'], 3)
        rc, err = self.finished(proc, 30)
        self.assertNotEqual(rc, 0)
        self.assertIn('455', err)
        proc = self.publish(s['ingest']['srt'], 3)
        rc, err = self.finished(proc, 30)
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(self.state(s['id']), 'live')

    # -- tests --

    def test_rtsp_publisher_goes_live_slides_and_ends(self):
        self.run_live('rtsp')

    def test_srt_publisher_goes_live_slides_and_ends_and_comes_back(self):
        s = self.run_live('srt')
        sid = s['id']
        seq_before = parse_media_playlist(self.text('/streams/%s/360p.m3u8' % sid))[0]
        # A new publish later (over RTSP this time) starts it again: the playlists go on after a discontinuity.
        proc = self.publish(s['ingest']['rtsp'], 8)
        try:
            self.wait_state(sid, 'live', 45)
            def second_session():
                t = self.text('/streams/%s/360p.m3u8' % sid)
                return t if '360p-2-' in t else None

            text = wait_until(second_session, 20, 0.5, 'a segment of the second publisher')
            seq, _, ended, discontinuities, _ = parse_media_playlist(text)
            self.assertFalse(ended)
            self.assertGreaterEqual(seq, seq_before)
            self.assertEqual(discontinuities, 1, text)
        finally:
            rc, err = self.finished(proc, 60)
        self.assertEqual(rc, 0, err)
        self.wait_state(sid, 'ended', IDLE_TIMEOUT + 15)

    def test_listen_options(self):
        # --rtsp-listen / --srt-listen over the configuration: port 0 prints the port taken, off prints nothing.
        data = os.path.join(self.work, 'options-data')
        proc = subprocess.Popen([BINARY, 'serve', '--listen', '127.0.0.1:0', '--data', data,
                                 '--rtsp-listen', '127.0.0.1:0', '--srt-listen', 'off'],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            text = startup_lines(proc)
            m = re.search(r'^sluice: RTSP on rtsp://127\.0\.0\.1:(\d+)/$', text, re.M)
            self.assertTrue(m, text)
            self.assertNotEqual(int(m.group(1)), 0)
            self.assertNotIn('SRT on', text)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, err)

    def test_wrong_keys_are_refused_and_start_nothing(self):
        s = self.create(title='nobody publishes')
        wrong = 'lk_' + 'A' * 43
        for url in ('rtsp://127.0.0.1:%d/live/%s' % (self.rtsp_port, wrong),
                    'rtsp://127.0.0.1:%d/live/%s' % (self.rtsp_port, s['id']),
                    'srt://127.0.0.1:%d?streamid=%s' % (self.srt_port, wrong),
                    'srt://127.0.0.1:%d' % self.srt_port):
            with self.subTest(url=url):
                started = time.monotonic()
                proc = self.publish(url, 5)
                rc, err = self.finished(proc, 30)
                self.assertNotEqual(rc, 0, err)
                # Refused at the door, not after sending for a while.
                self.assertLess(time.monotonic() - started, 4)
                if url.startswith('rtsp'):
                    self.assertIn('404', err)
        self.assertEqual(self.state(s['id']), 'idle')
        self.assertFalse(os.path.exists(os.path.join(self.server.data_dir, 'streams', s['id'])))
        # The right key still works afterwards (the SRT listener took the next caller).
        proc = self.publish(s['ingest']['srt'], 6)
        try:
            wait_until(lambda: self.state(s['id']) in ('connecting', 'live'), 20, 0.2, 'the right key to be taken')
        finally:
            rc, err = self.finished(proc, 60)
        self.assertEqual(rc, 0, err)


if __name__ == '__main__':
    main()
