#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Pulled sources: a stream created with an srt:// source is read by the engine itself (ffmpeg listens, sluice
calls). It goes live; when the source stops for 5 s the stream is `reconnecting` (with the reason) and the engine
rebuilds its input, then it is `live` again with EXT-X-DISCONTINUITY in its playlists; deleting the stream stops
pulling (the listener sees its caller leave) and its folder goes."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import FFMPEG, ServerTestCase, main, need_binary, need_ffmpeg, wait_until  # noqa: E402


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@need_binary
@need_ffmpeg
class LivePull(ServerTestCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'live': {'window': 8, 'idle-timeout': 30}}

    def listen(self, port, seconds=120):
        """ffmpeg serves a small 25 fps test pattern as MPEG-TS over SRT, in listener mode (one caller)."""
        cmd = ['timeout', '-k', '2', str(seconds), FFMPEG, '-hide_banner', '-loglevel', 'error', '-re',
               '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25', '-c:v', 'libx264', '-preset', 'ultrafast',
               '-tune', 'zerolatency', '-g', '50', '-threads', '1', '-f', 'mpegts',
               'srt://127.0.0.1:%d?mode=listener' % port]
        # A session of its own: the whole group (timeout and ffmpeg) is stopped together.
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)

    def stopped(self, proc):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.communicate(timeout=5)

    def state(self, sid):
        return self.server.get_json('/api/v1/streams/' + sid)

    def wait_state(self, sid, state, timeout):
        try:
            wait_until(lambda: self.state(sid)['state'] == state, timeout, 0.2, 'stream %s to be %s' % (sid, state))
        except AssertionError as e:
            raise AssertionError('%s\nserver log:\n%s' % (e, self.server.log_tail(30)))

    def test_pull_reconnect_delete(self):
        port = free_udp_port()
        source = self.listen(port)
        self.addCleanup(self.stopped, source)
        r = self.server.post_json('/api/v1/streams', {'title': 'pulled', 'source': 'srt://127.0.0.1:%d' % port})
        self.assertEqual(r.status, 201, r.describe())
        sid = r.json()['id']
        folder = os.path.join(self.server.data_dir, 'streams', sid)

        self.wait_state(sid, 'live', 40)
        r = self.server.get('/streams/%s/master.m3u8' % sid)
        self.assertEqual(r.status, 200, r.describe())
        playlists = re.findall(r'^#EXT-X-STREAM-INF:.*\n(\S+)$', r.text(), re.M)
        self.assertTrue(playlists, r.text())
        media = '/streams/%s/%s' % (sid, playlists[0])
        self.assertNotIn('#EXT-X-DISCONTINUITY\n', self.server.get(media).text())

        # The states seen from now on, polled in the background.
        seen, reasons, done = [], [], threading.Event()

        def poll():
            while not done.is_set():
                try:
                    s = self.state(sid)
                except Exception:  # noqa: BLE001 - the server is checked below
                    s = {'state': '?'}
                if not seen or seen[-1] != s['state']:
                    seen.append(s['state'])
                    reasons.append(s.get('reason', ''))
                time.sleep(0.2)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        self.addCleanup(done.set)

        # The source goes away for 5 s, then comes back on the same port.
        self.stopped(source)
        time.sleep(5)
        source = self.listen(port)
        self.addCleanup(self.stopped, source)
        try:
            wait_until(lambda: 'reconnecting' in seen and seen[-1] == 'live', 60, 0.2,
                       'the stream to reconnect and be live again')
        except AssertionError as e:
            raise AssertionError('%s (states %s)\nserver log:\n%s' % (e, seen, self.server.log_tail(30)))
        done.set()
        poller.join(5)
        i = seen.index('reconnecting')
        self.assertIn('live', seen[i:], seen)
        self.assertTrue(reasons[i], 'reconnecting without a reason: %s' % list(zip(seen, reasons)))
        self.assertTrue(self.server.alive())
        # The new input's segments follow a discontinuity in the playlists.
        wait_until(lambda: '#EXT-X-DISCONTINUITY\n' in self.server.get(media).text(), 20, 0.3,
                   'a discontinuity in %s' % media)

        # Deleting the stream stops pulling: the listener's caller leaves (ffmpeg ends), the folder goes.
        r = self.server.request('DELETE', '/api/v1/streams/' + sid)
        self.assertIn(r.status, (200, 204), r.describe())
        try:
            source.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.fail('the SRT listener still has its caller 20 s after the stream was deleted')
        wait_until(lambda: not os.path.exists(folder), 10, 0.2, 'the stream folder to go')
        time.sleep(3)
        self.assertFalse(os.path.exists(folder), 'a segment was written after the stream was deleted')
        self.assertTrue(self.server.alive())
        self.assertEqual(self.server.get('/api/v1/streams/' + sid).status, 404)


if __name__ == '__main__':
    main()
