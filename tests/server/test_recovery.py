#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: what survives a kill -9 and a SIGTERM: uploads answered 201, running jobs
(requeued, then completed without leftovers), interrupted uploads (removed)."""

import os
import re
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (BINARY, EventStream, Server, ServerTestCase, _rmtree, main, need_binary,  # noqa: E402
                           need_ffmpeg, wait_until)

SLOW = {'segment_seconds': 1, 'preset': 'veryslow'}


def playlist_uris(text):
    # Segment names, without the package version a finished playlist adds (name.ts?v=...).
    return [ln.strip().split('?')[0] for ln in text.splitlines() if ln.strip() and not ln.startswith('#')]


@need_binary
@need_ffmpeg
class Recovery(ServerTestCase):
    """A server (and data folder) per test, restarted by the test itself."""
    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'concurrent': 1, 'retry-delay': 1}}

    @classmethod
    def setUpClass(cls):
        if not (BINARY and os.access(BINARY, os.X_OK)):
            raise unittest.SkipTest('SLUICE_BINARY is not set or not executable (run through meson test)')
        cls.tmp = tempfile.mkdtemp(prefix='sluice-e2e-recovery-')
        cls.addClassCleanup(_rmtree, cls.tmp)

    def setUp(self):
        self.data = os.path.join(tempfile.mkdtemp(dir=self.tmp), 'data')
        os.makedirs(self.data)
        self.server = Server(self.data, self.CONFIG).start()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            if self.server.alive():
                rc = self.server.stop(signal.SIGTERM, timeout=20)
                self.assertEqual(rc, 0, 'SIGTERM must exit 0:\n' + self.server.log_tail())

    def restart(self):
        old = self.server
        self.server = Server(self.data, config_path=old.config_path, log_path=old.log_path).start()
        return self.server

    def start_slow_job(self):
        srv = self.server
        vid = srv.upload_ok('medium', title='recovery')['video']['id']
        job = srv.running_job(vid, ladder='360p', params=SLOW)
        self.assertEqual(job['state'], 'running', job)
        wait_until(lambda: srv.job(job['id']).get('progress'), 30, 0.05, 'progress of the running job')
        partial = os.path.join(self.data, 'videos', vid, 'hls.partial')
        wait_until(lambda: os.path.isdir(partial), 10, 0.05, 'hls.partial/ while the job runs')
        return vid, job['id']

    def assert_completed_cleanly(self, vid, jid):
        srv = self.server
        j = srv.wait_succeeded(jid, timeout=120)
        vdir = os.path.join(self.data, 'videos', vid)
        self.assertEqual(sorted(f for f in os.listdir(vdir) if f.startswith('hls')), ['hls'], os.listdir(vdir))
        text = srv.get('/videos/%s/hls/360p.m3u8' % vid).text()
        self.assertIn('#EXT-X-ENDLIST', text)
        total = sum(float(x) for x in re.findall(r'#EXTINF:([0-9.]+)', text))
        self.assertAlmostEqual(total, 10.0, delta=0.6, msg='the package is not one whole run: ' + text)
        segs = playlist_uris(text)
        self.assertEqual(len(segs), len(set(segs)))
        on_disk = sorted(f for f in os.listdir(os.path.join(vdir, 'hls')) if f.endswith('.ts'))
        self.assertEqual(on_disk, sorted(segs), 'segments on disk that the playlist does not list')
        for s in segs:
            self.assertEqual(srv.get('/videos/%s/hls/%s' % (vid, s)).status, 200)
        self.assertEqual(srv.video(vid)['state'], 'ready')
        return j

    # 12. kill -9
    def test_kill9_while_running_then_restart(self):
        srv = self.server
        vid, jid = self.start_slow_job()
        late = srv.upload_ok('short', title='answered just before the crash')['video']['id']
        srv.kill()
        self.assertEqual(srv.returncode, -signal.SIGKILL)
        srv = self.restart()
        j = srv.job(jid)
        self.assertIn(j['state'], ('queued', 'running', 'succeeded'), 'not requeued after a crash: %s' % j)
        listed = [v['id'] for v in srv.get_json('/api/v1/videos')['videos']]
        self.assertIn(vid, listed)
        self.assertIn(late, listed, 'a video answered 201 was lost by kill -9')
        self.assertTrue(os.path.isfile(os.path.join(self.data, 'videos', late, 'source.mp4')))
        final = self.assert_completed_cleanly(vid, jid)
        self.assertGreaterEqual(final['attempts'], 2, 'the crashed run is not counted: %s' % final)
        self.assertLessEqual(final['attempts'], final['max_attempts'], final)

    def test_kill9_during_upload_leaves_no_temporary_file(self):
        srv = self.server
        s = srv.raw_socket()
        try:
            s.sendall(('POST /api/v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\n%s'
                       'Content-Length: %d\r\nX-Filename: crash.mp4\r\n\r\n'
                       % (srv.auth_header_line(), 5 * 1024 * 1024)).encode())
            s.sendall(b'\0' * (1024 * 1024))
            wait_until(lambda: self.uploads_left(srv), 10, 0.05, 'a temporary upload in DATADIR/uploads')
            srv.kill()
        finally:
            s.close()
        srv = self.restart()
        self.assertEqual(srv.get('/health').status, 200)
        self.assert_no_uploads_left(srv, timeout=5)
        self.assertEqual(srv.get_json('/api/v1/videos')['videos'], [])

    # 12. SIGTERM
    def test_sigterm_while_running_then_restart(self):
        srv = self.server
        vid, jid = self.start_slow_job()
        events = EventStream(srv)     # an open event stream must not hold the shutdown
        try:
            t0 = time.monotonic()
            rc = srv.stop(signal.SIGTERM, timeout=20)
            took = time.monotonic() - t0
        finally:
            events.close()
        self.assertEqual(rc, 0, 'SIGTERM while a job runs must exit 0:\n' + srv.log_tail())
        self.assertLess(took, 10, 'shutdown took %.1f s' % took)
        srv = self.restart()
        j = srv.job(jid)
        self.assertIn(j['state'], ('queued', 'running', 'succeeded'), 'not requeued after SIGTERM: %s' % j)
        self.assert_completed_cleanly(vid, jid)


if __name__ == '__main__':
    main()
