#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A running job's live playlists across machines: a `--role worker` and two `--role api` processes (proxy and
redirect), each with a data folder of its own, on one throwaway PostgreSQL and one s3rver bucket. While the worker
transcodes, both api processes serve the master and EVENT media playlists (no ENDLIST) that list only segments
already in the bucket, each fetchable and decodable, the list growing; once the job succeeded the playlists are the
finished package's (ENDLIST) and the attempt's live prefix is gone from the bucket. Skipped without PostgreSQL's
programs or s3rver."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (FFPROBE, PLAYLIST_TYPE, Server, _rmtree, main, need_binary, need_ffmpeg,  # noqa: E402
                           test_failed, wait_until, write_config)
from test_queue_roles import HEARTBEAT, LEASE, SLOW, Worker  # noqa: E402
from test_store_postgres import PgServer  # noqa: E402
from test_storage_s3 import BUCKET, KEY_ID, PREFIX, Double, double_missing  # noqa: E402


def uris(text):
    return [ln for ln in text.splitlines() if ln and not ln.startswith('#')]


@need_binary
@need_ffmpeg
class LiveJobInStorage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = double_missing()
        if why:
            raise unittest.SkipTest(why)
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)
        cls.s3dir = tempfile.mkdtemp(prefix='sluice-s3-')
        cls.addClassCleanup(_rmtree, cls.s3dir)
        cls.double = Double(cls.s3dir)
        cls.addClassCleanup(cls.double.stop)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sluice-livejob-')
        self.addCleanup(_rmtree, self.tmp)
        db = 'livejob_%d_%d' % (os.getpid(), int(time.monotonic() * 1000))
        subprocess.run(self.pg.prefix + [os.path.join(self.pg.bindir, 'createdb'), '-h', self.pg.dir, '-U',
                                         'postgres', db], check=True, capture_output=True, timeout=30)
        self.url = self.pg.url(db)
        self.apis = []
        self.worker = None

    def tearDown(self):
        if self.worker:
            self.worker.stop(signal.SIGKILL)
        for a in self.apis:
            a.stop(signal.SIGKILL)
        if test_failed(self):
            sys.stderr.write('worker:\n%s\n' % (self.worker.tail(80) if self.worker else ''))
            for a in self.apis:
                sys.stderr.write('api:\n%s\n' % a.log_tail(60))

    def config(self, serve, **extra):
        c = {'store': {'url': self.url}, 'uploads': {'auto-transcode': False},
             'jobs': {'lease': LEASE, 'heartbeat': HEARTBEAT, 'extras': '', 'concurrent': 1, 'retry-delay': 1},
             'storage': {'url': 's3://%s/%s' % (BUCKET, PREFIX.rstrip('/')), 'endpoint': self.double.endpoint,
                         'region': 'eu-west-3', 'access-key': KEY_ID, 'secret-key': 'S3RVER-secret', 'serve': serve,
                         'presign-ttl': 60},
             'rtsp': {'listen': 'off'}, 'srt': {'listen': 'off'}}
        c.update(extra)
        return c

    def start_api(self, name, serve):
        data = os.path.join(self.tmp, name)
        os.makedirs(data)
        srv = Server(data, self.config(serve, server={'role': 'api'}), log_path=os.path.join(self.tmp, name + '.log'))
        self.apis.append(srv.start())
        return srv

    def fetch(self, api, path):
        """A segment through an api process: its bytes (a redirect is followed to the bucket)."""
        r = api.get(path)
        if r.status == 302:
            location = urllib.parse.urlsplit(r.header('Location'))
            self.assertEqual('%s://%s' % (location.scheme, location.netloc), self.double.endpoint)
            status, _, body = self.double.get(location.path + '?' + location.query)
            self.assertEqual(status, 200, path)
            return body
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('Cache-Control'), 'no-cache')
        return r.body

    def decodes(self, data, name):
        path = os.path.join(self.tmp, 'probe-' + name.replace('/', '_'))
        with open(path, 'wb') as f:
            f.write(data)
        r = subprocess.run([FFPROBE, '-v', 'error', '-show_entries', 'stream=codec_type', '-of', 'csv=p=0', path],
                           capture_output=True, text=True, timeout=30)
        os.unlink(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('video', r.stdout.split(), name)

    def look(self, api, vid, checked):
        """While the job runs: the master and every media playlist of one api process, each listed segment fetched
        (once) and decoded. Returns the number of segments listed, or None before the master is there."""
        r = api.get('/videos/%s/hls/master.m3u8' % vid)
        if r.status == 404:
            return None
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('Content-Type'), PLAYLIST_TYPE)
        listed = 0
        for media in uris(r.text()):
            r = api.get('/videos/%s/hls/%s' % (vid, media))
            self.assertEqual(r.status, 200, r.describe())
            text = r.text()
            if '#EXT-X-ENDLIST' in text:
                return -1   # the job has just finished: the package's playlist
            self.assertIn('#EXT-X-PLAYLIST-TYPE:EVENT', text)
            segs = uris(text)
            self.assertTrue(segs, text)
            self.assertNotIn('?v=', text, 'a live playlist has no package version')
            listed += len(segs)
            folder = os.path.dirname(media)
            for s in segs:
                path = '/videos/%s/hls/%s' % (vid, os.path.join(folder, s) if folder else s)
                if path not in checked:
                    self.decodes(self.fetch(api, path), s)
                    checked.add(path)
        return listed

    def test_api_processes_serve_the_workers_live_playlists(self):
        proxy = self.start_api('api-proxy', 'proxy')
        redirect = self.start_api('api-redirect', 'redirect')
        data = os.path.join(self.tmp, 'worker')
        os.makedirs(data)
        conf = os.path.join(self.tmp, 'worker.conf')
        write_config(conf, self.config('proxy', jobs={'lease': LEASE, 'heartbeat': HEARTBEAT, 'extras': '',
                                                      'concurrent': 1, 'retry-delay': 1, 'worker-name': 'w-live'}))
        self.worker = Worker(data, conf, 'w-live', os.path.join(self.tmp, 'worker.log'))

        vid = proxy.upload_ok('long', title='live across machines')['video']['id']
        r = proxy.post_job(vid, params=SLOW)
        self.assertEqual(r.status, 202, r.describe())
        job = r.json().get('job', r.json())
        wait_until(lambda: proxy.job(job['id'])['state'] == 'running', 60, message='the job running on the worker')
        self.assertEqual(proxy.job(job['id'])['worker'], 'w-live')
        live = PREFIX + 'videos/%s/hls/live-%s-' % (vid, job['id'])

        counts = {'proxy': [], 'redirect': []}
        checked = set()
        in_bucket = False
        while proxy.job(job['id'])['state'] == 'running':
            for name, api in (('proxy', proxy), ('redirect', redirect)):
                n = self.look(api, vid, checked)
                if n is not None and n >= 0 and (not counts[name] or counts[name][-1] != n):
                    counts[name].append(n)
                    # What the playlists list is in the bucket, under the attempt's prefix.
                    in_bucket = in_bucket or bool(self.double.keys(live))
            time.sleep(0.3)
        sys.stderr.write('segments listed while the job ran: %r, %d fetched\n' % (counts, len(checked)))
        self.assertTrue(counts['proxy'] and counts['redirect'], 'the live playlists were served while the job ran')
        self.assertTrue(in_bucket, 'the live prefix in the bucket')
        for name, seen in counts.items():
            self.assertGreaterEqual(len(seen), 2, '%s: the list grew: %r' % (name, seen))
            self.assertEqual(seen, sorted(seen), name)
        self.assertGreaterEqual(len(checked), 4)
        # Neither api process holds the job's files: all came from the bucket.
        for a in self.apis:
            vdir = os.path.join(a.data_dir, 'videos', vid)
            self.assertFalse([n for n in os.listdir(vdir) if n != 'source.mp4'] if os.path.isdir(vdir) else [])

        j = proxy.wait_succeeded(job['id'], timeout=180)
        self.assertEqual(j['attempts'], 1, j)
        self.assertRegex(j['result']['storage_prefix'], r'^videos/%s/hls/v\d+/$' % vid)
        for api in (proxy, redirect):
            r = api.get('/videos/%s/hls/master.m3u8' % vid)
            self.assertEqual(r.status, 200, r.describe())
            media = uris(r.text())[0]
            r = api.get('/videos/%s/hls/%s' % (vid, media))
            self.assertIn('#EXT-X-ENDLIST', r.text())
            self.assertIn('?v=v', r.text(), 'the finished package is served')
        wait_until(lambda: not self.double.keys(live), 20, message='the live prefix removed from the bucket')
        self.assertTrue(self.double.keys(PREFIX + j['result']['storage_prefix']))


if __name__ == '__main__':
    main()
