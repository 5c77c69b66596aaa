#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Media in object storage ([storage], s3rver) never freezes `sluice serve` while a PostgreSQL catalog stops
answering (every process of its cluster SIGSTOPped): a stored package's master and media playlists (named by the
catalog's jobs, read on the store's executor) wait for the catalog, GET and HEAD, while `/health` and a versioned
segment (named by its URL, no catalog) are answered in under 0.5 s; then they are 503 `unavailable` within the bound,
and served again after SIGCONT. A job the catalog says runs elsewhere whose end is written between the catalog's
answer and the bucket's (its live prefix gone) is served the finished package, not 404. Skipped, saying why, without PostgreSQL's programs or s3rver."""

import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import main, need_binary, need_ffmpeg, wait_until  # noqa: E402
import test_store_stall as stall  # noqa: E402  (the module, not its class: its tests are not run again here)
from test_storage_s3 import BUCKET, KEY_ID, PREFIX, Double, double_missing  # noqa: E402

TIMEOUT_S, timed = stall.TIMEOUT_S, stall.timed
FAST_S = 0.5


def uris(text):
    return [ln for ln in text.splitlines() if ln and not ln.startswith('#')]


@need_binary
@need_ffmpeg
class StorageStall(unittest.TestCase):
    stop_catalog = stall.StoreStall.stop_catalog

    @classmethod
    def setUpClass(cls):
        why = double_missing()
        if why:
            raise unittest.SkipTest(why)
        stall.StoreStall.setUpClass.__func__(cls)
        cls.s3dir = os.path.join(cls.tmp, 's3')
        os.makedirs(cls.s3dir)
        cls.double = Double(cls.s3dir)
        cls.addClassCleanup(cls.double.stop)

    def start_server(self, name):
        data = os.path.join(self.tmp, name)
        os.makedirs(data)
        srv = stall.Server(data, {
            'store': {'url': self.pg.url(), 'timeout': str(TIMEOUT_S)},
            'jobs': {'concurrent': 1, 'heartbeat': '1', 'extras': ''},
            'storage': {'url': 's3://%s/%s' % (BUCKET, PREFIX.rstrip('/')), 'endpoint': self.double.endpoint,
                        'region': 'eu-west-3', 'access-key': KEY_ID, 'secret-key': 'S3RVER-secret',
                        'serve': 'proxy', 'presign-ttl': 60},
            'rtsp': {'listen': 'off'}, 'srt': {'listen': 'off'}})
        srv.start()
        return srv

    def assert_loop_answers(self, srv, seg_path, expected, what):
        """/health and a versioned segment from the bucket, each answered in under FAST_S."""
        h, s = timed(lambda: srv.request('GET', '/health', timeout=10))
        self.assertLess(s, FAST_S, 'GET /health took %.3f s during %s' % (s, what))
        self.assertIn(h.status, (200, 503))
        self.assertTrue(h.json()['live'])
        seg, s = timed(lambda: srv.get(seg_path, timeout=10))
        self.assertLess(s, FAST_S, 'the versioned segment took %.3f s during %s' % (s, what))
        self.assertEqual(seg.status, 200, seg.describe())
        self.assertEqual(seg.body, expected)

    # The request, on a thread, waits for the stopped catalog while the loop answers; then 503 in bounded time.
    waits_then_unavailable = stall.StoreStall.waits_then_unavailable

    def asks_then_unavailable(self, srv, seg_path, expected, method, path):
        return self.waits_then_unavailable(srv, seg_path, expected, '%s %s' % (method, path),
                                           lambda: srv.request(method, path, timeout=60))

    def test_stored_media_waits_for_the_catalog_off_the_loop(self):
        srv = self.start_server('stored')
        resume = lambda: None  # noqa: E731
        try:
            body = srv.upload_ok('short', title='stored', fields={'ladder': '240p'})
            srv.wait_succeeded(body['job']['id'])
            vid = body['video']['id']
            media = '/videos/%s/hls/' % vid
            master = srv.get(media + 'master.m3u8')
            self.assertEqual(master.status, 200, master.describe())
            rendition = uris(master.text())[0]
            playlist = srv.get(media + rendition)
            self.assertEqual(playlist.status, 200, playlist.describe())
            segment = uris(playlist.text())[0]
            self.assertIn('v=v', segment)  # a versioned URL: its object is named without the catalog
            base = rendition.rsplit('/', 1)[0] + '/' if '/' in rendition else ''
            seg_path = media + base + segment
            expected = srv.get(seg_path)
            self.assertEqual(expected.status, 200, expected.describe())
            self.assertTrue(srv.get_json('/health')['ready'])  # the first probe is made (a later one answers at once)

            resume = self.stop_catalog()
            # What the catalog names (the package's current version) waits for it on the executor, not on the loop.
            self.asks_then_unavailable(srv, seg_path, expected.body, 'GET', media + 'master.m3u8')
            self.asks_then_unavailable(srv, seg_path, expected.body, 'HEAD', media + rendition)
            self.assertTrue(srv.alive())

            resume()
            wait_until(lambda: srv.request('GET', '/health').status == 200, timeout=20, message='ready again')
            again = srv.get(media + 'master.m3u8')
            self.assertEqual(again.status, 200, again.describe())
            self.assertEqual(again.body, master.body)
            head = srv.request('HEAD', media + rendition)
            self.assertEqual(head.status, 200, head.describe())
            self.assertEqual(srv.get(seg_path).body, expected.body)
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())

    def psql(self, sql):
        r = subprocess.run(self.pg.prefix + [os.path.join(self.pg.bindir, 'psql'), '-h', self.pg.dir, '-U', 'postgres',
                                             '-At', '-c', sql], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError('psql: %s' % r.stderr)
        return r.stdout.strip()

    def test_a_running_jobs_end_between_catalog_and_bucket(self):
        """A job that the catalog says runs elsewhere is served from its live prefix; a file not there is named once
        more from the catalog: the finished package's once the job's end is written in between (no 404 for a
        playlist just listed), else 404 after that one retry."""
        srv = self.start_server('ended')
        job_id = None
        try:
            body = srv.upload_ok('short', title='ended', fields={'ladder': '240p'})
            job_id = body['job']['id']
            srv.wait_succeeded(job_id)
            media = '/videos/%s/hls/' % body['video']['id']
            master = srv.get(media + 'master.m3u8')
            self.assertEqual(master.status, 200, master.describe())
            rendition = uris(master.text())[0]
            playlist = srv.get(media + rendition)
            self.assertEqual(playlist.status, 200, playlist.describe())
            self.assertIn('#EXT-X-ENDLIST', playlist.text())

            # As if another process ran it: its live prefix holds nothing (it was never uploaded), the catalog says
            # running all along: one retry, then 404.
            running = ("UPDATE jobs SET state = 'running', token = nextval('job_tokens'), "
                       "leased_until = 9000000000000000000 WHERE id = '%s'" % job_id)
            ended = "UPDATE jobs SET state = 'succeeded', leased_until = 0 WHERE id = '%s'" % job_id
            self.psql(running)
            for path in (media + 'master.m3u8', media + rendition):
                r = srv.get(path)
                self.assertEqual(r.status, 404, r.describe())
                self.assertEqual(r.json()['error']['message'], 'no such file')
                self.assertEqual(srv.request('HEAD', path).status, 404)

            # The job's end written (and its live prefix gone) after the catalog said running, before the bucket
            # answered: the bucket is stopped while the first catalog read is answered and the end is written.
            for method, path, expected in (('GET', media + 'master.m3u8', master.body),
                                           ('GET', media + rendition, playlist.body),
                                           ('HEAD', media + rendition, b'')):
                self.psql(running)
                answer = {}

                def ask():
                    answer['resp'] = srv.request(method, path, timeout=60)

                os.kill(self.double.proc.pid, signal.SIGSTOP)
                try:
                    t = threading.Thread(target=ask)
                    t.start()
                    time.sleep(1)
                    self.assertTrue(t.is_alive(), '%s %s did not wait for the stopped bucket' % (method, path))
                    self.psql(ended)
                finally:
                    os.kill(self.double.proc.pid, signal.SIGCONT)
                t.join(timeout=30)
                self.assertFalse(t.is_alive(), '%s %s did not answer' % (method, path))
                r = answer['resp']
                self.assertEqual(r.status, 200, '%s %s: %s' % (method, path, r.describe()))
                self.assertEqual(r.body, expected)
                self.assertEqual(r.header('Cache-Control'), 'no-cache')
        finally:
            if job_id:
                self.psql("UPDATE jobs SET state = 'succeeded', leased_until = 0 WHERE id = '%s'" % job_id)
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())


if __name__ == '__main__':
    main()
