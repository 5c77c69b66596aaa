#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Recording a live stream: ffmpeg publishes ~12 s over RTSP into a `record: true` stream whose live window is
shorter than that; once the publisher has gone for the idle timeout and the playlists end, the whole event (not
only the window) becomes a video in the library that gets ready, its source as long as the event within one
segment, and the stream's JSON and `stream` events name that video. A stream without `record` makes no video."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_case import LiveCase  # noqa: E402
from sluice_server import FFPROBE, EventStream, main, need_binary, need_ffmpeg, wait_until  # noqa: E402

WINDOW = 4          # [live] window: seconds of a playlist (the engine lists 3 segments at least)
IDLE_TIMEOUT = 2    # [live] idle-timeout
PUBLISH_SECONDS = 12
SEGMENT = 2.0


@need_binary
@need_ffmpeg
class LiveRecord(LiveCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'rtsp': {'listen': '127.0.0.1:0'}, 'srt': {'listen': '127.0.0.1:0'},
              'live': {'window': WINDOW, 'idle-timeout': IDLE_TIMEOUT}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.rtsp_port is None:
            raise AssertionError('the server did not print its RTSP address:\n' + cls.server.log_tail(50))

    def test_recorded_event_becomes_a_video(self):
        before = {v['id'] for v in self.server.get_json('/api/v1/videos')['videos']}
        with EventStream(self.server, '') as events:
            r = self.server.post_json('/api/v1/streams', {'title': 'recorded talk', 'record': True})
            self.assertEqual(r.status, 201, r.describe())
            s = r.json()
            sid = s['id']
            self.assertTrue(s['record'])
            self.assertEqual(s['recording'], {'state': 'recording', 'video_id': None})
            plain = self.server.post_json('/api/v1/streams', {'title': 'not recorded'}).json()
            self.assertIsNone(plain['recording'])

            proc = self.publish(s['ingest']['rtsp'], PUBLISH_SECONDS)
            try:
                self.wait_state(sid, 'live', 45)
                # The live window slides as before: segments that left it are deleted from the stream's folder.
                folder = os.path.join(self.server.data_dir, 'streams', sid)
                wait_until(lambda: proc.poll() is not None, PUBLISH_SECONDS + 30, 0.5, 'the publisher to end')
                self.assertEqual(proc.returncode, 0, proc.stderr.read().decode('utf-8', 'replace'))
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                proc.stderr.close()
            self.wait_state(sid, 'ended', 30)
            playlist = self.server.get('/streams/%s/360p.m3u8' % sid)
            if playlist.status != 200:  # the top rung of a 320x180 input is its own size
                master = self.server.get('/streams/%s/master.m3u8' % sid).text()
                top = re.findall(r'^(\S+\.m3u8)$', master, re.M)[0]
                playlist = self.server.get('/streams/%s/%s' % (sid, top))
            text = playlist.text()
            self.assertIn('#EXT-X-ENDLIST', text)
            listed = re.findall(r'^#EXTINF:([0-9.]+),', text, re.M)
            self.assertLess(sum(map(float, listed)), PUBLISH_SECONDS - SEGMENT,
                            'the window is shorter than the event:\n' + text)
            on_disk = [n for n in os.listdir(folder) if n.endswith('.ts')]
            self.assertLess(len(on_disk), 2 * (PUBLISH_SECONDS / SEGMENT), on_disk)

            # The recording is saved: the stream names its video, in its JSON and in a `stream` event.
            def saved():
                rec = self.stream(sid)['recording']
                if rec['state'] == 'failed':
                    raise AssertionError('the recording failed: %s\n%s' % (rec, self.server.log_tail(30)))
                return rec if rec['state'] == 'saved' else None
            rec = wait_until(saved, 60, 0.3, 'the recording to be saved')
            vid = rec['video_id']
            self.assertTrue(vid)
            self.assertNotIn(vid, before)
            ev = events.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == sid
                                 and (e.json.get('recording') or {}).get('state') == 'saved', 10,
                                 what='the stream event of the saved recording')
            self.assertEqual(ev.json['recording']['video_id'], vid)
        # Nothing of the recording is left beside the stream's folder.
        self.assertFalse(os.path.exists(os.path.join(self.server.data_dir, 'streams', sid + '.rec')))
        self.assertEqual(self.stream(plain['id'])['recording'], None)

        video = self.server.video(vid)
        self.assertEqual(video['title'], 'recorded talk')
        ids = {v['id'] for v in self.server.get_json('/api/v1/videos')['videos']}
        self.assertEqual(ids - before, {vid}, 'one video: the recorded stream, not the plain one')
        # Its source is the whole event: as long as what was published, within one segment.
        src = os.path.join(self.server.data_dir, 'videos', vid)
        sources = [n for n in os.listdir(src) if n.startswith('source.')]
        self.assertEqual(sources, ['source.ts'])
        r = subprocess.run([FFPROBE, '-v', 'error', '-show_entries', 'format=duration:stream=codec_type,codec_name',
                            '-of', 'json', os.path.join(src, 'source.ts')], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        probe = json.loads(r.stdout)
        self.assertAlmostEqual(float(probe['format']['duration']), PUBLISH_SECONDS, delta=SEGMENT)
        self.assertEqual(sorted((st['codec_type'], st['codec_name']) for st in probe['streams']),
                         [('audio', 'aac'), ('video', 'h264')])
        # It goes through the default job profile like any upload and becomes ready.
        wait_until(lambda: self.server.video(vid)['state'] in ('ready', 'failed'), 120, 0.5,
                   'the recorded video to be processed')
        self.assertEqual(self.server.video(vid)['state'], 'ready', self.server.video(vid))


if __name__ == '__main__':
    main()
