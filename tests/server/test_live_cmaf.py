#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live CMAF: ffmpeg publishes a small test pattern with a tone over RTSP to a `live-cmaf` stream. Its rungs and its
audio are written as CMAF (an init segment per publisher session and one .m4s per segment, each starting with a
keyframe), listed by sliding HLS v7 playlists (EXT-X-MAP, the audio as an EXT-X-MEDIA group) and by a dynamic MPD
(one Period per session, SegmentTemplate + SegmentTimeline over the same files). Every listed segment decodes with
its init segment; segments that left the window are deleted; once the publisher has gone for the idle timeout the
playlists end and the MPD turns static. With `record`, the event becomes a video."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_case import LiveCase  # noqa: E402
from sluice_server import FFPROBE, EventStream, main, need_binary, need_ffmpeg, wait_until  # noqa: E402

WINDOW = 6          # [live] window: seconds of a playlist (3 segments of 2 s)
IDLE_TIMEOUT = 2    # [live] idle-timeout
SEGMENT = 2.0
SEGMENTS_LISTED = 3
KEEP_EXTRA = 2      # segments the engine keeps on disk after they left the playlist
PUBLISH_SECONDS = 16
FPS = 25
MPD_NS = '{urn:mpeg:dash:schema:mpd:2011}'


def parse_media_playlist(text):
    """(media sequence, [(map, uri, duration)], ended, discontinuities)"""
    seq = int(re.search(r'^#EXT-X-MEDIA-SEQUENCE:(\d+)$', text, re.M).group(1))
    segments, current_map = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'#EXT-X-MAP:URI="([^"]+)"', line)
        if m:
            current_map = m.group(1)
        m = re.match(r'#EXTINF:([0-9.]+),', line)
        if m:
            segments.append((current_map, lines[i + 1], float(m.group(1))))
    return seq, segments, '#EXT-X-ENDLIST' in text, text.count('#EXT-X-DISCONTINUITY\n')


def parse_duration(text):
    m = re.fullmatch(r'PT(?:(\d+)H)?(?:(\d+)M)?([0-9.]+)S', text)
    assert m, text
    return int(m.group(1) or 0) * 3600 + int(m.group(2) or 0) * 60 + float(m.group(3))


@need_binary
@need_ffmpeg
class LiveCmaf(LiveCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'rtsp': {'listen': '127.0.0.1:0'}, 'srt': {'listen': 'off'},
              'live': {'window': WINDOW, 'idle-timeout': IDLE_TIMEOUT}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.rtsp_port is None:
            raise AssertionError('the server did not print its RTSP address:\n' + cls.server.log_tail(50))
        cls.work = tempfile.mkdtemp(prefix='sluice-live-cmaf-')
        cls.addClassCleanup(shutil.rmtree, cls.work, True)

    # -- helpers --

    def publish(self, url, seconds):
        """ffmpeg publishes a 320x180 test pattern and a tone to url over RTSP (TCP)."""
        return super().publish(url, seconds, video='testsrc2=size=320x180:rate=%d' % FPS, gop=2 * FPS)

    def get(self, sid, name, mime=None):
        r = self.server.get('/streams/%s/%s' % (sid, name))
        self.assertEqual(r.status, 200, r.describe())
        if mime:
            self.assertEqual(r.headers.get('Content-Type', '').split(';')[0], mime, name)
        return r

    def mpd(self, sid):
        r = self.get(sid, 'manifest.mpd', 'application/dash+xml')
        self.assertIn('no-cache', r.headers.get('Cache-Control', ''))
        return ET.fromstring(r.body)

    def mpd_segments(self, root):
        """{representation id: [(period, init uri, media uri, t, d)]}, checking every Period's timeline."""
        out = {}
        for period in root.findall(MPD_NS + 'Period'):
            for rep in period.iter(MPD_NS + 'Representation'):
                tpl = rep.find(MPD_NS + 'SegmentTemplate')
                self.assertIsNotNone(tpl, ET.tostring(rep))
                number = int(tpl.get('startNumber'))
                t = None
                for s in tpl.find(MPD_NS + 'SegmentTimeline').findall(MPD_NS + 'S'):
                    if s.get('t') is not None:
                        t = int(s.get('t'))
                    self.assertIsNotNone(t, 'the first S of a timeline has a t')
                    for _ in range(int(s.get('r', '0')) + 1):
                        d = int(s.get('d'))
                        media = re.sub(r'\$Number%05d\$', '%05d' % number, tpl.get('media'))
                        out.setdefault(rep.get('id'), []).append(
                            (period.get('id'), tpl.get('initialization'), media, t, d, int(tpl.get('timescale'))))
                        t += d
                        number += 1
        return out

    def probe(self, init, segment):
        """ffprobe of init + segment: (codec, width, height, frames, first frame a keyframe)."""
        path = os.path.join(self.work, 'probe.mp4')
        with open(path, 'wb') as f:
            f.write(init + segment)
        r = subprocess.run([FFPROBE, '-v', 'error', '-show_entries', 'stream=codec_name,width,height:frame=key_frame',
                            '-show_frames', '-of', 'json', path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), '', r.stderr)
        out = json.loads(r.stdout)
        s = out['streams'][0]
        frames = out.get('frames', [])
        return s['codec_name'], s.get('width'), s.get('height'), len(frames), bool(frames and frames[0]['key_frame'])

    def check_hls(self, sid):
        """The master (ffprobe reads it) and every segment its playlists list now: decodes with its init segment,
        video starting with a keyframe. Returns {playlist: media sequence}."""
        master = self.get(sid, 'master.m3u8', 'application/vnd.apple.mpegurl').text()
        self.assertIn('#EXT-X-VERSION:7', master)
        self.assertRegex(master, r'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio".*URI="audio\.m3u8"')
        variants = re.findall(r'^#EXT-X-STREAM-INF:(.*)\n(\S+)$', master, re.M)
        self.assertEqual([uri for _, uri in variants], ['180p.m3u8'], master)
        self.assertRegex(variants[0][0], r'CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"')
        self.assertIn('AUDIO="audio"', variants[0][0])
        self.assertIn('RESOLUTION=320x180', variants[0][0])
        sequences = {}
        fetched = []
        for name in ('180p.m3u8', 'audio.m3u8'):
            text = self.get(sid, name).text()
            self.assertIn('#EXT-X-VERSION:7', text)
            self.assertIn('#EXT-X-PROGRAM-DATE-TIME:', text)
            seq, segments, _, _ = parse_media_playlist(text)
            sequences[name] = seq
            self.assertTrue(segments, text)
            self.assertLessEqual(len(segments), SEGMENTS_LISTED, text)
            for init, uri, duration in segments:
                self.assertTrue(init, 'an EXT-X-MAP before %s' % uri)
                fetched.append((name, self.get(sid, init).body, self.get(sid, uri).body, duration))
        for name, init, segment, duration in fetched:
            codec, width, height, frames, key = self.probe(init, segment)
            if name == '180p.m3u8':
                self.assertEqual((codec, width, height), ('h264', 320, 180))
                self.assertTrue(key, 'a segment of %s starts with a keyframe' % name)
                self.assertAlmostEqual(frames, duration * FPS, delta=1)
            else:
                self.assertEqual(codec, 'aac')
                self.assertAlmostEqual(frames, duration * 48000 / 1024, delta=2)
        r = subprocess.run([FFPROBE, '-v', 'error', '-show_entries', 'stream=codec_type', '-of', 'json',
                            self.server.url('/streams/%s/master.m3u8' % sid)], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        types = sorted(s['codec_type'] for s in json.loads(r.stdout)['streams'])
        self.assertEqual(types, ['audio', 'video'], r.stdout)
        return sequences

    def check_mpd(self, sid, root, dynamic):
        """The MPD's Representations list files that exist, each segment's timeline duration is what its file
        holds (as the playlists say), and the Periods' segments follow one another."""
        self.assertEqual(root.get('type'), 'dynamic' if dynamic else 'static')
        if dynamic:
            for attr in ('availabilityStartTime', 'publishTime'):
                self.assertRegex(root.get(attr), r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
            self.assertAlmostEqual(parse_duration(root.get('timeShiftBufferDepth')), WINDOW, delta=0.01)
            # Half a segment, at least 1 s: a player learns of a segment only from the MPD.
            self.assertAlmostEqual(parse_duration(root.get('minimumUpdatePeriod')), min(SEGMENT, max(1.0, SEGMENT / 2)),
                                   delta=0.01)
            self.assertGreater(parse_duration(root.get('suggestedPresentationDelay')), 0)
            # Players take the server's clock from the Date header of the MPD itself (no time server needed).
            utc = root.find(MPD_NS + 'UTCTiming')
            self.assertEqual((utc.get('schemeIdUri'), utc.get('value')),
                             ('urn:mpeg:dash:utc:http-head:2014', '/streams/%s/manifest.mpd' % sid))
            head = self.server.request('HEAD', utc.get('value'))
            self.assertEqual(head.status, 200, head.describe())
            self.assertRegex(head.headers.get('Date', ''), r'GMT$')
        else:
            self.assertIsNone(root.get('minimumUpdatePeriod'))
            self.assertGreater(parse_duration(root.get('mediaPresentationDuration')), 0)
        reps = self.mpd_segments(root)
        self.assertEqual(sorted(reps), ['180p', 'audio'])
        folder = os.path.join(self.server.data_dir, 'streams', sid)
        playlists = {'180p': parse_media_playlist(self.get(sid, '180p.m3u8').text())[1],
                     'audio': parse_media_playlist(self.get(sid, 'audio.m3u8').text())[1]}
        for rid, segs in reps.items():
            self.assertLessEqual(len(segs), SEGMENTS_LISTED + 1, segs)
            durations = {uri: d for _, uri, d in playlists[rid]}
            for period, init, media, t, d, ts in segs:
                self.assertTrue(os.path.isfile(os.path.join(folder, init)), init)
                self.assertTrue(os.path.isfile(os.path.join(folder, media)), media)
                if media in durations:
                    self.assertAlmostEqual(d / ts, durations[media], delta=0.002, msg=media)
            # Within a Period, segment after segment: a timeline that sums to the time it spans.
            first, last = segs[0], segs[-1]
            if first[0] == last[0]:
                self.assertEqual(sum(s[4] for s in segs), last[3] + last[4] - first[3])
            if rid == '180p':
                for *_, d, ts in segs:
                    self.assertAlmostEqual(d / ts, SEGMENT, delta=0.05)
        return reps

    # -- tests --

    def test_live_cmaf_hls_and_dash(self):
        with EventStream(self.server, '') as events:
            r = self.server.post_json('/api/v1/streams', {'title': 'cmaf', 'pipeline': 'live-cmaf'})
            self.assertEqual(r.status, 201, r.describe())
            s = r.json()
            sid = s['id']
            self.assertEqual(s['playback']['dash'], '/streams/%s/manifest.mpd' % sid)
            folder = os.path.join(self.server.data_dir, 'streams', sid)
            proc = self.publish(s['ingest']['rtsp'], PUBLISH_SECONDS)
            try:
                events.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == sid
                                and e.json.get('state') == 'live', 45, what='stream %s live' % sid)
                first = self.check_hls(sid)
                self.check_mpd(sid, self.mpd(sid), True)
                # The window slides: the media sequences advance, the MPD's segments too.
                wait_until(lambda: parse_media_playlist(self.get(sid, '180p.m3u8').text())[0]
                           >= first['180p.m3u8'] + 2, 15, 0.5, 'the media sequence of 180p.m3u8 to advance')
                later = self.check_hls(sid)
                self.assertGreater(later['audio.m3u8'], first['audio.m3u8'])
                self.check_mpd(sid, self.mpd(sid), True)
                # Nothing but the output's files is served.
                for bad in ('..%2f..%2fsluice.db', '180p/..%2f..%2f..%2fsluice.db', '.hidden', '180p/nope.m4s'):
                    self.assertEqual(self.server.get('/streams/%s/%s' % (sid, bad)).status, 404, bad)
            finally:
                rc, err = self.finished(proc, PUBLISH_SECONDS + 40)
            self.assertEqual(rc, 0, 'the publisher failed: ' + err)
            self.wait_state(sid, 'ended', IDLE_TIMEOUT + 15)
        for name in ('180p.m3u8', 'audio.m3u8'):
            self.assertTrue(parse_media_playlist(self.get(sid, name).text())[2], '%s has no ENDLIST' % name)
        root = self.mpd(sid)
        reps = self.check_mpd(sid, root, False)
        # ~16 s of 2 s segments went by: only what the window holds is on disk (and the segments kept for players
        # that read the playlist just before), with the one init segment they play with.
        for rid in ('180p', 'audio'):
            files = os.listdir(os.path.join(folder, rid))
            segments = [f for f in files if f.endswith('.m4s')]
            self.assertLessEqual(len(segments), SEGMENTS_LISTED + KEEP_EXTRA, files)
            self.assertNotIn('1-00001.m4s', segments)
            self.assertEqual([f for f in files if f.endswith('.mp4')], ['init-1.mp4'], files)
            self.assertTrue({os.path.basename(m) for _, _, m, *_ in reps[rid]} <= set(segments))
        # Only the output's kinds of files are served from the stream's folder: not a hidden file, not another
        # extension, nothing deeper than NAME/FILE (these exist, and are still 404).
        for name in ('.secret.m3u8', 'notes.txt', '180p/deeper/x.m4s', '180p/notes.txt'):
            os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
            with open(os.path.join(folder, name), 'w') as f:
                f.write('not for players')
            self.assertEqual(self.server.get('/streams/%s/%s' % (sid, name)).status, 404, name)
        # The static MPD lasts what it lists: from its first segment to its last, of any track (one Period here).
        period = root.find(MPD_NS + 'Period')
        self.assertEqual(len(root.findall(MPD_NS + 'Period')), 1)
        self.assertEqual(parse_duration(period.get('start')), 0)
        start = min(segs[0][3] / segs[0][5] for segs in reps.values())
        end = max((segs[-1][3] + segs[-1][4]) / segs[-1][5] for segs in reps.values())
        self.assertAlmostEqual(parse_duration(root.get('mediaPresentationDuration')), end - start, delta=0.002)

    def test_second_session_is_a_new_period_and_map_and_recording(self):
        with EventStream(self.server, ''):
            r = self.server.post_json('/api/v1/streams', {'title': 'cmaf twice', 'pipeline': 'live-cmaf',
                                                          'record': True})
            self.assertEqual(r.status, 201, r.describe())
            s = r.json()
            sid = s['id']
            for session, seconds in ((1, 6), (2, 6)):
                proc = self.publish(s['ingest']['rtsp'], seconds)
                try:
                    wait_until(lambda: '%d-' % session in self.server.get('/streams/%s/180p.m3u8' % sid).text()
                               and self.server.get('/streams/%s/manifest.mpd' % sid).status == 200,
                               45, 0.3, 'a segment of session %d' % session)
                finally:
                    rc, err = self.finished(proc, seconds + 40)
                self.assertEqual(rc, 0, err)
                if session == 1:
                    # Back within the idle timeout: the same event goes on.
                    wait_until(lambda: self.stream(sid)['state'] in ('reconnecting', 'idle'), 20, 0.2,
                               'the first publisher to be gone')
            self.wait_state(sid, 'ended', IDLE_TIMEOUT + 20)
            text = self.get(sid, '180p.m3u8').text()
            _, segments, ended, discontinuities = parse_media_playlist(text)
            self.assertTrue(ended)
            maps = [m for m, _, _ in segments]
            if any(m.endswith('init-1.mp4') for m in maps):
                self.assertEqual(discontinuities, 1, text)
                self.assertEqual(text.count('#EXT-X-MAP:'), 2, text)
            self.assertTrue(maps[-1].endswith('init-2.mp4'), text)
            root = self.mpd(sid)
            periods = root.findall(MPD_NS + 'Period')
            self.assertEqual(periods[-1].get('id'), 's2')
            starts = [parse_duration(p.get('start')) for p in periods]
            self.assertEqual(starts, sorted(starts))
            self.check_mpd(sid, root, False)

            def saved():
                rec = self.stream(sid)['recording']
                if rec['state'] == 'failed':
                    raise AssertionError('the recording failed: %s\n%s' % (rec, self.server.log_tail(30)))
                return rec if rec['state'] == 'saved' else None
            vid = wait_until(saved, 60, 0.3, 'the recording to be saved')['video_id']
        src = os.path.join(self.server.data_dir, 'videos', vid)
        sources = [n for n in os.listdir(src) if n.startswith('source.')]
        self.assertEqual(sources, ['source.ts'])
        r = subprocess.run([FFPROBE, '-v', 'error', '-show_entries', 'format=duration:stream=codec_type,codec_name',
                            '-of', 'json', os.path.join(src, 'source.ts')], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        probe = json.loads(r.stdout)
        self.assertEqual(sorted((st['codec_type'], st['codec_name']) for st in probe['streams']),
                         [('audio', 'aac'), ('video', 'h264')])
        # Both publishers' sessions, one after the other (about 12 s; each loses up to a segment at its ends).
        self.assertGreater(float(probe['format']['duration']), 12 - 2 * 2 * SEGMENT)
        self.assertLess(float(probe['format']['duration']), 12 + SEGMENT)


if __name__ == '__main__':
    main()
