#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Roles: one `sluice serve --role api` and two `--role worker` processes on one throwaway PostgreSQL (initdb +
pg_ctl, as test_store_postgres.py) and one shared data folder. Uploads run on both workers once each; a worker killed
with -9 in the middle of a job loses it after its lease to the other, which runs it once, its partial output gone;
a PostgreSQL restart during a run loses nothing and runs no job twice; a worker delivers the webhooks of its job's end
while no api process runs; GET /api/v1/workers; roles refused on SQLite."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (BINARY, Server, _rmtree, main, need_binary, need_ffmpeg,  # noqa: E402
                           test_failed, wait_until, write_config)
from test_store_postgres import PgServer  # noqa: E402
from test_webhooks import FAST as FAST_WEBHOOKS, Receiver  # noqa: E402

LEASE = 4       # seconds: short, so that a dead worker's job comes back quickly
HEARTBEAT = 1
SLOW = {'segment_seconds': 1, 'preset': 'veryslow'}   # a job on 'long' runs for several seconds


class Worker:
    """One `sluice serve --role worker`: no HTTP; it says its name on stdout."""

    def __init__(self, data_dir, config_path, name, log_path):
        self.name = name
        self.lines = []
        self.log_path = log_path
        # sluice's warnings in the worker's log (a failed removal of a package's earlier versions, say): they go to
        # GStreamer's debug log, which is off by default.
        env = dict(os.environ)
        if 'GST_DEBUG' not in env:
            env.update(GST_DEBUG='sluice-*:2', GST_DEBUG_NO_COLOR='1')
        self.proc = subprocess.Popen([BINARY, 'serve', '--role', 'worker', '--config', config_path, '--data', data_dir],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            self.stop(signal.SIGKILL)
            raise AssertionError('worker %s did not start:\n%s' % (name, self.tail()))

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b''):
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            self.lines.append(line)
            with open(self.log_path, 'a') as f:
                f.write('[%s] %s\n' % (self.name, line))
            if line.startswith('sluice: worker %s:' % self.name):
                self.ready.set()
        self.ready.set()

    def tail(self, n=40):
        return '\n'.join(self.lines[-n:])

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError('worker %s did not stop within %d s' % (self.name, timeout))
        self.thread.join(5)
        return self.proc.returncode


@need_binary
@need_ffmpeg
class Roles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sluice-roles-')
        self.addCleanup(_rmtree, self.tmp)
        self.db = 'roles_%d_%d' % (os.getpid(), int(time.monotonic() * 1000))
        subprocess.run(self.pg.prefix + [os.path.join(self.pg.bindir, 'createdb'), '-h', self.pg.dir, '-U',
                                         'postgres', self.db], check=True, capture_output=True, timeout=30)
        self.url = self.pg.url(self.db)
        self.data = os.path.join(self.tmp, 'data')
        os.makedirs(self.data)
        self.log = os.path.join(self.tmp, 'workers.log')
        self.workers = []
        self.api = None

    def tearDown(self):
        for w in self.workers:
            w.stop(signal.SIGKILL)
        if self.api:
            self.api.stop(signal.SIGKILL)
        if self.api and test_failed(self):
            sys.stderr.write('api log:\n%s\nworkers:\n%s\n' % (self.api.log_tail(80),
                                                                 '\n'.join(w.tail(80) for w in self.workers)))

    def config(self, **jobs):
        j = {'lease': LEASE, 'heartbeat': HEARTBEAT, 'extras': '', 'concurrent': 1, 'retry-delay': 1}
        j.update(jobs)
        return {'store': {'url': self.url}, 'uploads': {'auto-transcode': False}, 'jobs': j,
                'rtsp': {'listen': 'off'}, 'srt': {'listen': 'off'}, 'webhooks': FAST_WEBHOOKS}

    def start_api(self):
        c = self.config()
        c['server'] = {'role': 'api'}
        self.api = Server(self.data, c, log_path=os.path.join(self.tmp, 'api.log')).start()
        return self.api

    def start_worker(self, name):
        path = os.path.join(self.tmp, name + '.conf')
        write_config(path, self.config(**{'worker-name': name}))
        w = Worker(self.data, path, name, self.log)
        self.workers.append(w)
        return w

    def queue(self, clip, n, **fields):
        jobs = []
        for i in range(n):
            vid = self.api.upload_ok(clip, title='%s %d' % (clip, i))['video']['id']
            r = self.api.post_job(vid, **fields)
            self.assertEqual(r.status, 202, r.describe())
            body = r.json()
            jobs.append(body.get('job', body))
        return jobs

    def test_uploads_run_once_each_on_both_workers(self):
        api = self.start_api()
        # The jobs are queued first, then both workers start at once: each takes one (a slot each) before either can
        # have run them all, so both do work whatever the machine's speed.
        jobs = self.queue('short', 6)
        starting = [threading.Thread(target=self.start_worker, args=(name,)) for name in ('w-one', 'w-two')]
        for t in starting:
            t.start()
        for t in starting:
            t.join()
        self.assertEqual(len(self.workers), 2, 'both workers started')
        ws = wait_until(lambda: len(api.get_json('/api/v1/workers')['workers']) == 2 and
                        api.get_json('/api/v1/workers')['workers'], 10, message='both workers registered')
        self.assertEqual([w['name'] for w in ws], ['w-one', 'w-two'])
        for w in ws:
            self.assertEqual(w['role'], 'worker')
            self.assertTrue(w['alive'], w)
            self.assertEqual(w['concurrent'], 1)
            self.assertIn('x264', w['encoders'])
        done = [api.wait_succeeded(j['id'], timeout=120) for j in jobs]
        for j in done:
            self.assertEqual(j['attempts'], 1, j)
            self.assertIn(j['worker'], ('w-one', 'w-two'), j)
            self.assertEqual(api.video(j['video_id'])['state'], 'ready')
            self.assertEqual(api.get('/videos/%s/hls/master.m3u8' % j['video_id']).status, 200)
        self.assertEqual({j['worker'] for j in done}, {'w-one', 'w-two'}, 'both workers did work')
        # While a job runs, its worker lists it.
        running = self.queue('long', 1, params=SLOW)[0]
        wait_until(lambda: api.job(running['id'])['state'] == 'running', 30, message='the slow job running')
        owner = api.job(running['id'])['worker']
        listed = {w['name']: w for w in api.get_json('/api/v1/workers')['workers']}
        self.assertEqual(listed[owner]['jobs'], [running['id']])
        self.assertEqual(api.wait_succeeded(running['id'], timeout=120)['attempts'], 1)
        # A worker stopped cleanly leaves the list; the api process is no worker.
        self.assertEqual([w for w in self.workers if w.name == 'w-one'][0].stop(), 0)
        wait_until(lambda: [w['name'] for w in api.get_json('/api/v1/workers')['workers']] == ['w-two'], 10,
                   message='w-one gone from the list')

    def test_a_killed_worker_loses_its_job_to_the_other_after_the_lease(self):
        api = self.start_api()
        first = self.start_worker('w-first')
        job = self.queue('long', 1, params=SLOW)[0]
        wait_until(lambda: api.job(job['id'])['state'] == 'running', 30, message='the job running')
        vdir = os.path.join(self.data, 'videos', job['video_id'])
        wait_until(lambda: [n for n in os.listdir(vdir) if '.partial' in n], 30, message='a working folder')
        self.start_worker('w-second')
        killed_at = time.monotonic()
        first.stop(signal.SIGKILL)
        # The job stays running (w-first's) until its lease runs out, then w-second claims it: attempt 2.
        j = wait_until(lambda: (lambda x: x if x['worker'] == 'w-second' else None)(api.job(job['id'])), 30,
                       interval=0.2, message='w-second to claim the job')
        self.assertGreater(time.monotonic() - killed_at, LEASE - HEARTBEAT - 1.5, 'claimed before the lease ran out')
        j = api.wait_succeeded(job['id'], timeout=180)
        self.assertEqual(j['attempts'], 2, j)
        self.assertEqual(j['worker'], 'w-second')
        # The dead attempt's working folder is gone; only the published package is left.
        self.assertEqual(sorted(n for n in os.listdir(vdir) if n != 'source.mp4'), ['hls'])
        self.assertEqual(api.get('/videos/%s/hls/master.m3u8' % job['video_id']).status, 200)
        self.assertEqual(api.video(job['video_id'])['state'], 'ready')

    def test_postgres_restart_during_a_run_loses_nothing(self):
        api = self.start_api()
        self.start_worker('w-a')
        self.start_worker('w-b')
        jobs = self.queue('medium', 4, params=SLOW)
        wait_until(lambda: any(api.job(j['id'])['state'] == 'running' for j in jobs), 60, message='a job running')
        # -l: the new server's output goes to its log, not to this test's pipes (pg_ctl would wait on them).
        self.pg._run('pg_ctl', '-D', self.pg.data, '-l', os.path.join(self.pg.dir, 'server.log'), '-m', 'fast', '-w',
                     '-t', '30', 'restart')
        # The api reconnects: reads and an upload after the restart work.
        wait_until(lambda: api.request('GET', '/api/v1/jobs').status == 200, 20, message='the api reading again')
        jobs += self.queue('short', 1)
        done = [api.wait_succeeded(j['id'], timeout=180) for j in jobs]
        for j in done:
            self.assertEqual(j['attempts'], 1, j)
            self.assertEqual(api.video(j['video_id'])['state'], 'ready')
        self.assertTrue(all(w.proc.poll() is None for w in self.workers), 'the workers survived the restart')

    def test_a_worker_delivers_the_webhooks_of_its_jobs_end_while_no_api_runs(self):
        api = self.start_api()
        self.start_worker('w-hooks')
        rec = Receiver()
        self.addCleanup(rec.close)
        r = api.post_json('/api/v1/webhooks', {'url': rec.url, 'events': ['job.succeeded', 'video.ready']})
        self.assertEqual(r.status, 201, r.describe())
        rec.secrets.append(r.json()['secret'])
        job = self.queue('long', 1, params=SLOW)[0]
        wait_until(lambda: api.job(job['id'])['state'] == 'running', 30, message='the job running on the worker')
        # The only api process goes (kill -9): the worker's end of the job writes the deliveries, and the worker
        # sends them, signed, with the data its own catalog reads give.
        api.stop(signal.SIGKILL)
        self.api = None
        wait_until(lambda: len(rec.processed) == 2, 180, 0.2, 'both deliveries, sent by the worker')
        self.assertTrue(rec.requests and all(ok for _, _, ok in rec.requests), rec.requests)
        done, ready = rec.processed
        self.assertEqual((done['type'], done['data']['id'], done['data']['state']),
                         ('job.succeeded', job['id'], 'succeeded'))
        self.assertEqual(done['data']['worker'], 'w-hooks')
        self.assertEqual((ready['type'], ready['data']['id'], ready['data']['state']),
                         ('video.ready', job['video_id'], 'ready'))
        self.assertEqual(ready['data']['playback']['hls'], '/videos/%s/hls/master.m3u8' % job['video_id'])
        # Each once: no delivery twice (one process claimed each).
        self.assertEqual(len({h['Sluice-Delivery'] for h, _, _ in rec.requests}), 2)

    def test_roles_need_a_shared_catalog(self):
        for role in ('api', 'worker'):
            conf = os.path.join(self.tmp, 'sqlite-%s.conf' % role)
            write_config(conf, {'rtsp': {'listen': 'off'}, 'srt': {'listen': 'off'}})
            r = subprocess.run([BINARY, 'serve', '--role', role, '--listen', '127.0.0.1:0', '--config', conf,
                                '--data', os.path.join(self.tmp, 'sqlite')], capture_output=True, text=True,
                               timeout=30)
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertIn('[server] role', r.stderr)
            self.assertIn('postgresql://', r.stderr)
        r = subprocess.run([BINARY, 'serve', '--role', 'boss', '--data', os.path.join(self.tmp, 'sqlite')],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('expected all, api or worker', r.stderr)


if __name__ == '__main__':
    main()
