#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Pulled sources: a stream created with an srt:// source is read by the engine itself (ffmpeg listens, sluice
calls). It goes live; when the source stops for 5 s the stream is `reconnecting` (with the reason) and the engine
rebuilds its input, then it is `live` again with EXT-X-DISCONTINUITY in its playlists; deleting the stream stops
pulling (the listener sees its caller leave) and its folder goes. The same with an rtsp:// source: a second sluice
restreams a stream ffmpeg publishes to it (video and audio), and is stopped for 5 s and started again on its port;
and with an http:// source: an MPEG-TS sent at its own pace by an HTTP server of the test's, stopped for 5 s."""

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_case import LiveCase, publisher_command  # noqa: E402
from sluice_server import FFMPEG, Server, main, need_binary, need_ffmpeg, wait_until  # noqa: E402


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@need_binary
@need_ffmpeg
class LivePull(LiveCase):
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

    def follow(self, sid):
        """The states of a stream seen from now on (and their reasons), polled in the background until the test
        ends."""
        seen, reasons, done = [], [], threading.Event()

        def poll():
            while not done.is_set():
                try:
                    s = self.stream(sid)
                except Exception:  # noqa: BLE001 - the server is checked by the test
                    s = {'state': '?'}
                if not seen or seen[-1] != s['state']:
                    seen.append(s['state'])
                    reasons.append(s.get('reason', ''))
                time.sleep(0.2)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        self.addCleanup(poller.join, 5)
        self.addCleanup(done.set)
        return seen, reasons

    def wait_back(self, sid, seen, reasons, media):
        """The stream went `reconnecting` (with a reason) and is `live` again, its playlist has a discontinuity."""
        try:
            wait_until(lambda: 'reconnecting' in seen and seen[-1] == 'live', 60, 0.2,
                       'the stream to reconnect and be live again')
        except AssertionError as e:
            raise AssertionError('%s (states %s)\nserver log:\n%s' % (e, seen, self.server.log_tail(30)))
        i = seen.index('reconnecting')
        self.assertIn('live', seen[i:], seen)
        self.assertTrue(reasons[i], 'reconnecting without a reason: %s' % list(zip(seen, reasons)))
        self.assertTrue(self.server.alive())
        # The new input's segments follow a discontinuity in the playlists.
        wait_until(lambda: '#EXT-X-DISCONTINUITY\n' in self.server.get(media).text(), 20, 0.3,
                   'a discontinuity in %s' % media)

    def first_media_playlist(self, sid):
        r = self.server.get('/streams/%s/master.m3u8' % sid)
        self.assertEqual(r.status, 200, r.describe())
        playlists = re.findall(r'^#EXT-X-STREAM-INF:.*\n(\S+)$', r.text(), re.M)
        self.assertTrue(playlists, r.text())
        media = '/streams/%s/%s' % (sid, playlists[0])
        self.assertNotIn('#EXT-X-DISCONTINUITY\n', self.server.get(media).text())
        return media

    def delete(self, sid):
        r = self.server.request('DELETE', '/api/v1/streams/' + sid)
        self.assertIn(r.status, (200, 204), r.describe())

    def test_pull_reconnect_delete(self):
        port = free_udp_port()
        source = self.listen(port)
        self.addCleanup(self.stopped, source)
        r = self.server.post_json('/api/v1/streams', {'title': 'pulled', 'source': 'srt://127.0.0.1:%d' % port})
        self.assertEqual(r.status, 201, r.describe())
        sid = r.json()['id']
        folder = os.path.join(self.server.data_dir, 'streams', sid)

        self.wait_state(sid, 'live', 40)
        media = self.first_media_playlist(sid)

        seen, reasons = self.follow(sid)
        # The source goes away for 5 s, then comes back on the same port.
        self.stopped(source)
        time.sleep(5)
        source = self.listen(port)
        self.addCleanup(self.stopped, source)
        self.wait_back(sid, seen, reasons, media)

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


    def publish(self, url, seconds=120):
        """ffmpeg publishes a small 25 fps test pattern and a tone over RTSP (a session of its own: stopped())."""
        return subprocess.Popen(publisher_command(url, seconds), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)

    def test_pull_rtsp_source_restarts(self):
        # The camera: a second sluice, which restreams a stream ffmpeg publishes to it on rtsp://.../live/ID.
        folder = os.path.join(self.tmp, 'camera')
        os.makedirs(folder)
        port = free_tcp_port()
        camera = Server(os.path.join(folder, 'data'), {'rtsp': {'listen': '127.0.0.1:%d' % port},
                                                       'srt': {'listen': 'off'}, 'live': {'idle-timeout': 30}})
        camera.start()
        self.addCleanup(lambda: camera.alive() and camera.stop())
        r = camera.post_json('/api/v1/streams', {'title': 'camera'})
        self.assertEqual(r.status, 201, r.describe())
        cam = r.json()
        self.assertEqual(cam['playback']['rtsp'], 'rtsp://127.0.0.1:%d/live/%s' % (port, cam['id']))
        publisher = self.publish(cam['ingest']['rtsp'])
        self.addCleanup(self.stopped, publisher)
        wait_until(lambda: camera.get_json('/api/v1/streams/' + cam['id'])['state'] in ('connecting', 'live'), 20,
                   0.2, 'the camera to have its publisher')

        r = self.server.post_json('/api/v1/streams', {'title': 'pulled over RTSP', 'source': cam['playback']['rtsp']})
        self.assertEqual(r.status, 201, r.describe())
        sid = r.json()['id']
        self.wait_state(sid, 'live', 40)
        media = self.first_media_playlist(sid)
        # Its audio came along (the restream carries it).
        master = self.server.get('/streams/%s/master.m3u8' % sid).text()
        self.assertIn('mp4a.40.2', master)

        seen, reasons = self.follow(sid)
        # The camera goes away for 5 s (the server and its publisher), then comes back on the same port.
        self.stopped(publisher)
        self.assertEqual(camera.stop(), 0)
        time.sleep(5)
        camera = Server(camera.data_dir, config_path=camera.config_path, log_path=camera.log_path)
        camera.start()
        self.addCleanup(lambda: camera.alive() and camera.stop())
        publisher = self.publish(cam['ingest']['rtsp'])
        self.addCleanup(self.stopped, publisher)
        self.wait_back(sid, seen, reasons, media)
        self.delete(sid)


    def test_pull_http_source_restarts(self):
        # An MPEG-TS over HTTP, sent at its own pace (a live HTTP source), from a server of the test's.
        ts = os.path.join(self.tmp, 'source.ts')
        r = subprocess.run([FFMPEG, '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25',
                            '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '40', '-c:v', 'libx264',
                            '-preset', 'ultrafast', '-g', '50', '-threads', '1', '-c:a', 'aac', '-b:a', '64k',
                            '-f', 'mpegts', ts], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(ts, 'rb') as f:
            data = f.read()
        port = free_tcp_port()
        source = PacedHttp(port, data, 40)
        self.addCleanup(lambda: source.stop())
        r = self.server.post_json('/api/v1/streams', {'title': 'pulled over HTTP',
                                                      'source': 'http://127.0.0.1:%d/live.ts' % port})
        self.assertEqual(r.status, 201, r.describe())
        sid = r.json()['id']
        self.wait_state(sid, 'live', 40)
        media = self.first_media_playlist(sid)
        self.assertIn('mp4a.40.2', self.server.get('/streams/%s/master.m3u8' % sid).text())
        seen, reasons = self.follow(sid)
        source.stop()
        time.sleep(5)
        source = PacedHttp(port, data, 40)
        self.wait_back(sid, seen, reasons, media)
        self.delete(sid)


class PacedHttp:
    """An HTTP server on 127.0.0.1:port that sends `data` to every GET at len(data)/seconds bytes per second."""

    def __init__(self, port, data, seconds):
        stopping = self.stopping = threading.Event()
        rate = len(data) / seconds

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header('Content-Type', 'video/mp2t')
                self.end_headers()
                start, sent = time.monotonic(), 0
                try:
                    while sent < len(data) and not stopping.is_set():
                        # A second ahead of the clock, in chunks of 7 TS packets.
                        due = min(len(data), int((time.monotonic() - start + 1) * rate))
                        while sent < due:
                            n = min(due - sent, 188 * 7)
                            self.wfile.write(data[sent:sent + n])
                            sent += n
                        time.sleep(0.05)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


if __name__ == '__main__':
    main()
