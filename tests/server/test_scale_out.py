#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Scale-out as on separate machines: one `--role api` and two `--role worker` processes, each with a data folder of
its own, sharing only a throwaway PostgreSQL (test_store_postgres.PgServer) and one s3rver bucket
(test_storage_s3.Double). The api runs with every GStreamer plugin of this machine but x264's, as an api machine
that encodes nothing. 12 uploads of generated clips all become ready, each job run once, on both workers (which fetch
the sources from the bucket); the packages are in the bucket and ffmpeg plays them through an api node in proxy and
in redirect mode; an encoder only the workers have is taken, one none has is refused. A worker killed with -9 in the
middle of a job loses it to the other after the lease: it succeeds once and nothing of the dead attempt is left in
the bucket or served. The api killed with -9 during parallel uploads: every upload answered 201 has its source in
the bucket, and is listed and ready after the restart. A PostgreSQL restart during a run loses nothing and runs no
job twice. A tus upload begun on one api process is resumed on a second (its HEAD answers the bytes in the bucket and
takes the upload over; the first's late PATCH is refused) and finished there: its source object is the file sent, and
it plays. The partial uploads of a tus concatenation sent to two api processes are joined by a final on either (the
parts it lacks fetched from their objects in the bucket; one missing is a 409 that keeps the parts); the source is
the parts' bytes, it plays, and no object of the partials is left. Skipped, saying why, without PostgreSQL, node or
tests/s3/node_modules."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (FFMPEG, Server, _rmtree, environment, ffprobe_duration, main, need_binary,  # noqa: E402
                           need_ffmpeg, test_failed, wait_until, write_config)
from test_queue_roles import Worker  # noqa: E402
from test_storage_s3 import BUCKET, Double, double_missing  # noqa: E402
from test_store_postgres import PgServer  # noqa: E402

MIB = 1 << 20
LEASE = 4       # seconds: short, so that a dead worker's job comes back quickly
HEARTBEAT = 1
LADDER = '120p:200'                                   # the clips' own size, one rendition
SLOW = {'segment_seconds': 1, 'preset': 'veryslow'}   # a job that runs for several seconds
GST_INSPECT = shutil.which('gst-inspect-1.0')


def make_clip(folder, name, seconds=2, size='160x120', frequency=440):
    """A small H.264 + AAC MP4 generated with ffmpeg; returns its path."""
    path = os.path.join(folder, name + '.mp4')
    r = subprocess.run([FFMPEG, '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=%s:rate=25' % size,
                        '-f', 'lavfi', '-i', 'sine=frequency=%d:sample_rate=48000' % frequency, '-t', str(seconds),
                        '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-c:a', 'aac', '-shortest', path],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError('ffmpeg could not make %s: %s' % (name, r.stderr))
    return path


def api_machine_env(folder):
    """The environment of an api machine: GStreamer with every plugin of this one but x264's (a folder of links to
    the others as its system path) and a registry of its own. None when x264enc is not installed here."""
    if not GST_INSPECT:
        return None
    r = subprocess.run([GST_INSPECT, 'x264enc'], capture_output=True, text=True, timeout=60)
    m = re.search(r'^\s*Filename\s+(\S+)$', r.stdout, re.M)
    if r.returncode != 0 or not m:
        return None
    plugin = os.path.realpath(m.group(1))
    plugins = os.path.join(folder, 'api-plugins')
    os.makedirs(plugins)
    for name in os.listdir(os.path.dirname(plugin)):
        if name != os.path.basename(plugin):
            os.symlink(os.path.join(os.path.dirname(plugin), name), os.path.join(plugins, name))
    env = dict(os.environ, GST_PLUGIN_SYSTEM_PATH_1_0=plugins, GST_REGISTRY=os.path.join(folder, 'api-registry.bin'))
    # The registry is made once here; the api machine really has no x264enc.
    r = subprocess.run([GST_INSPECT, 'x264enc'], capture_output=True, text=True, timeout=120, env=env)
    if r.returncode == 0:
        raise AssertionError('x264enc is still found without its plugin: %s' % r.stdout[:300])
    return env


_ENV_LOCK = threading.Lock()


class ApiNode(Server):
    """`sluice serve --role api` started in the api machine's environment."""

    env = {}

    def start(self, timeout=60):
        with _ENV_LOCK, environment(self.env):
            return super().start(timeout)


@need_binary
@need_ffmpeg
class ScaleOut(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        why = double_missing()
        if why:
            raise unittest.SkipTest(why)
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)
        cls.shared = tempfile.mkdtemp(prefix='sluice-scale-')
        cls.addClassCleanup(_rmtree, cls.shared)
        cls.double = Double(os.path.join(cls.shared, 's3'))
        cls.addClassCleanup(cls.double.stop)
        ApiNode.env = api_machine_env(cls.shared) or {}
        clips = os.path.join(cls.shared, 'clips')
        os.makedirs(clips)
        cls.clips = [make_clip(clips, 'clip%02d' % i, 2 + i % 2, frequency=300 + 40 * i) for i in range(12)]
        cls.slow_clip = make_clip(clips, 'slow', 8, '320x240')
        # Long enough that its job is still running when its worker is stopped (about 2 s of work here).
        cls.long_clip = make_clip(clips, 'long', 40, '320x240')

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sluice-scale-', dir=self.shared)
        self.addCleanup(_rmtree, self.tmp)
        name = self.id().rsplit('.', 1)[1][5:25]
        self.db = 'scale_%s_%d' % (name, os.getpid())
        subprocess.run(self.pg.prefix + [os.path.join(self.pg.bindir, 'createdb'), '-h', self.pg.dir, '-U',
                                         'postgres', self.db], check=True, capture_output=True, timeout=30)
        self.url = self.pg.url(self.db)
        self.prefix = 'scale-%s/' % name      # this test's part of the bucket
        self.log = os.path.join(self.tmp, 'workers.log')
        self.workers = []
        self.apis = []

    def tearDown(self):
        for w in self.workers:
            w.stop(signal.SIGKILL)
        for a in self.apis:
            if a.alive():
                a.stop(signal.SIGKILL)
        if test_failed(self):
            sys.stderr.write('%s\nworkers:\n%s\n' % ('\n'.join('api log:\n' + a.log_tail(60) for a in self.apis),
                                                     '\n'.join(w.tail(60) for w in self.workers)))

    # -- the processes, each with a data folder of its own (a machine of its own) --

    def config(self, **jobs):
        j = {'lease': LEASE, 'heartbeat': HEARTBEAT, 'extras': '', 'concurrent': 1, 'retry-delay': 1}
        j.update(jobs)
        return {'store': {'url': self.url},
                'storage': {'url': 's3://%s/%s' % (BUCKET, self.prefix.rstrip('/')),
                            'endpoint': self.double.endpoint, 'region': 'us-east-1', 'access-key': 'S3RVER',
                            'secret-key': 'S3RVER-secret'},
                'jobs': j, 'rtsp': {'listen': 'off'}, 'srt': {'listen': 'off'}}

    def start_api(self, name='api', serve='proxy', **uploads):
        c = self.config()
        c['server'] = {'role': 'api'}
        c['storage']['serve'] = serve
        c['uploads'] = dict(uploads)
        data = os.path.join(self.tmp, name, 'data')
        os.makedirs(data, exist_ok=True)
        api = ApiNode(data, c, log_path=os.path.join(self.tmp, name + '.log')).start()
        self.apis.append(api)
        return api

    def restart_api(self, api):
        again = ApiNode(api.data_dir, config_path=api.config_path, log_path=api.log_path).start()
        self.apis.append(again)
        return again

    def start_worker(self, name):
        folder = os.path.join(self.tmp, name)
        os.makedirs(os.path.join(folder, 'data'))
        path = os.path.join(folder, 'sluice.conf')
        write_config(path, self.config(**{'worker-name': name}))
        w = Worker(os.path.join(folder, 'data'), path, name, self.log)
        w.data = os.path.join(folder, 'data')
        self.workers.append(w)
        return w

    def wait_workers(self, api, names):
        return wait_until(lambda: (lambda ws: ws if sorted(w['name'] for w in ws if w['alive']) == sorted(names)
                                   else None)(api.get_json('/api/v1/workers')['workers']), 20,
                          message='workers %s registered' % names)

    # -- uploads, the bucket, playback --

    def upload(self, api, path, **fields):
        with open(path, 'rb') as f:
            data = f.read()
        fields.setdefault('ladder', LADDER)
        return api.upload(data=data, filename=os.path.basename(path), title=os.path.basename(path), fields=fields)

    def upload_ok(self, api, path, **fields):
        r = self.upload(api, path, **fields)
        self.assertEqual(r.status, 201, r.describe())
        return r.json()

    def keys(self, video_id):
        """The bucket's keys of a video, relative to the test's prefix."""
        return [k[len(self.prefix):] for k in self.double.keys(self.prefix + 'videos/%s/' % video_id)]

    def assert_one_package(self, job):
        """The bucket holds the video's source and exactly the package the job recorded, its playlists included."""
        vid = job['video_id']
        current = job['result'].get('storage_prefix', '')
        self.assertRegex(current, r'^videos/%s/hls/v\d+/$' % vid, job)
        def others():
            return [k for k in self.keys(vid) if k != 'videos/%s/source.mp4' % vid and not k.startswith(current)]
        # The running job's live playlists (live-JOB-TOKEN/) are removed by their uploader's thread once the job's end
        # is written, moments after the job is announced succeeded: gone soon, never kept.
        deadline = time.monotonic() + 15
        while others() and time.monotonic() < deadline:
            time.sleep(0.1)
        keys = self.keys(vid)
        self.assertIn('videos/%s/source.mp4' % vid, keys)
        self.assertEqual(others(), [], 'objects of another version are left')
        package = [k[len(current):] for k in keys if k.startswith(current)]
        self.assertIn('master.m3u8', package)
        self.assertTrue(any(k.endswith('.ts') for k in package), package)
        return current

    def assert_all_urls_resolve(self, api, video_id):
        """Every URI of the master playlist and of its media playlists answers through the api (proxy: 200)."""
        base = '/videos/%s/hls/' % video_id
        r = api.get(base + 'master.m3u8')
        self.assertEqual(r.status, 200, r.describe())
        media = [ln for ln in r.text().splitlines() if ln and not ln.startswith('#')]
        self.assertTrue(media, r.text())
        count = 0
        for m in media:
            r = api.get(base + m)
            self.assertEqual(r.status, 200, r.describe())
            folder = os.path.dirname(m.split('?')[0])
            for seg in [ln for ln in r.text().splitlines() if ln and not ln.startswith('#')]:
                s = api.get(base + (folder + '/' if folder else '') + seg)
                self.assertEqual(s.status, 200, s.describe())
                self.assertTrue(s.body.startswith(b'G'), 'not MPEG-TS: %r' % s.body[:8])
                count += 1
        self.assertGreater(count, 0)

    def assert_plays(self, api, video_id, seconds):
        url = api.url('/videos/%s/hls/master.m3u8' % video_id)
        r = subprocess.run([FFMPEG, '-v', 'error', '-i', url, '-f', 'null', '-'], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), '', 'ffmpeg reported errors for %s' % url)
        self.assertAlmostEqual(ffprobe_duration(url), seconds, delta=0.5)

    def psql(self, sql):
        r = subprocess.run(self.pg.prefix + [os.path.join(self.pg.bindir, 'psql'), '-h', self.pg.dir, '-U', 'postgres',
                                             '-d', self.db, '-At', '-c', sql], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise AssertionError('psql: %s' % r.stderr)
        return r.stdout.strip()

    # -- the tests --

    def test_uploads_on_two_workers_play_in_both_serve_modes(self):
        api = self.start_api()
        self.start_worker('w-one')
        self.start_worker('w-two')
        for w in self.wait_workers(api, ['w-one', 'w-two']):
            self.assertIn('x264', w['encoders'])
        if ApiNode.env:
            # The api machine cannot run x264, the workers can: a job asking for it is taken.
            r = api.get_json('/api/v1/encoders')
            self.assertFalse([e for e in r['encoders'] if e['name'] == 'x264' and e.get('runs')], r)
        uploads = [self.upload_ok(api, clip, **({'encoder': 'x264'} if i == 0 else {}))
                   for i, clip in enumerate(self.clips)]
        self.assertEqual(len(uploads), 12)
        jobs = [u['jobs'][0] for u in uploads]
        self.assertEqual([len(u['jobs']) for u in uploads], [1] * 12)
        done = [api.wait_succeeded(j['id'], timeout=180) for j in jobs]
        for j in done:
            self.assertEqual(j['attempts'], 1, j)
            self.assertIn(j['worker'], ('w-one', 'w-two'), j)
            self.assertEqual(api.video(j['video_id'])['state'], 'ready')
            self.assert_one_package(j)
        self.assertEqual(done[0]['encoder'], 'x264')
        self.assertEqual({j['worker'] for j in done}, {'w-one', 'w-two'}, 'both workers did work')
        # Each machine's folder: the api keeps the sources it took; a worker fetched the sources of its jobs from the
        # bucket and keeps no package (the packages are only in the bucket).
        for j in done:
            vid = j['video_id']
            self.assertEqual(os.listdir(os.path.join(api.data_dir, 'videos', vid)), ['source.mp4'])
            w = next(w for w in self.workers if w.name == j['worker'])
            self.assertEqual(os.listdir(os.path.join(w.data, 'videos', vid)), ['source.mp4'])
        # An encoder no live worker lists is refused, saying so.
        r = api.post_job(done[0]['video_id'], pipeline='hls', encoder='nvenc')
        self.assertEqual(r.status, 422, r.describe())
        err = r.json()['error']
        self.assertEqual(err.get('field'), 'encoder', err)
        self.assertIn('no live worker', err['message'])
        # Proxy mode: every package plays with ffmpeg through the api.
        durations = [2 + i % 2 for i in range(12)]
        for j, seconds in zip(done, durations):
            self.assert_plays(api, j['video_id'], seconds)
        # Redirect mode: a second api node on the same catalog and bucket, with an empty folder of its own.
        other = self.start_api('api-redirect', serve='redirect')
        seg = self.first_segment(other, done[0]['video_id'])
        r = other.get(seg)
        self.assertEqual(r.status, 302, r.describe())
        self.assertTrue(r.header('Location').startswith(self.double.endpoint + '/'), r.describe())
        for j, seconds in zip(done, durations):
            self.assert_plays(other, j['video_id'], seconds)
        # A video deleted through the api: its objects go, and the worker that fetched its source removes it too.
        gone = done[1]
        w = next(w for w in self.workers if w.name == gone['worker'])
        folder = os.path.join(w.data, 'videos', gone['video_id'])
        self.assertTrue(os.path.isdir(folder))
        r = api.request('DELETE', '/api/v1/videos/' + gone['video_id'])
        self.assertEqual(r.status, 204, r.describe())
        wait_until(lambda: not os.path.exists(folder), 15, 0.2, "the worker's copy of the deleted video to go")
        wait_until(lambda: not self.double.keys(self.prefix + 'videos/' + gone['video_id'] + '/'), 15, 0.2,
                   'the deleted video\'s objects to go')
        other_worker = next(x for x in self.workers if x is not w)
        kept = [j for j in done if j['worker'] == other_worker.name][0]
        self.assertTrue(os.path.isdir(os.path.join(other_worker.data, 'videos', kept['video_id'])))

    def first_segment(self, api, video_id):
        base = '/videos/%s/hls/' % video_id
        media = [ln for ln in api.get(base + 'master.m3u8').text().splitlines() if ln and not ln.startswith('#')][0]
        r = api.get(base + media)
        self.assertEqual(r.status, 200, r.describe())
        folder = os.path.dirname(media.split('?')[0])
        seg = [ln for ln in r.text().splitlines() if ln and not ln.startswith('#')][0]
        return base + (folder + '/' if folder else '') + seg

    def test_a_killed_worker_leaves_nothing_of_its_attempt(self):
        api = self.start_api()
        first = self.start_worker('w-first')
        self.wait_workers(api, ['w-first'])
        job = self.upload_ok(api, self.long_clip, params=json.dumps(SLOW))['jobs'][0]
        vid = job['video_id']
        wait_until(lambda: api.job(job['id'])['state'] == 'running', 30, message='the job running')
        # In the middle of the job: its working folder on w-first's machine has segments. w-first is frozen there at
        # once (its lease no longer renewed), so that the job cannot end while the second worker starts; then killed.
        vdir = os.path.join(first.data, 'videos', vid)
        wait_until(lambda: any(f.endswith('.ts') for _, _, fs in os.walk(vdir) for f in fs), 60, 0.02,
                   'segments in the working folder of w-first')
        first.proc.send_signal(signal.SIGSTOP)
        killed_at = time.monotonic()
        self.assertEqual(api.job(job['id'])['state'], 'running', 'the job ended before its worker was stopped')
        dead = int(self.psql("SELECT token FROM jobs WHERE id = '%s'" % job['id']))
        self.start_worker('w-second')
        first.stop(signal.SIGKILL)
        # What a worker killed in the middle of publishing leaves: objects under its own version's prefix.
        dead_prefix = '%svideos/%s/hls/v%d/' % (self.prefix, vid, dead)
        self.double.put(dead_prefix + '120p/seg_00000.ts', b'G' + bytes(187))
        j = wait_until(lambda: (lambda x: x if x['worker'] == 'w-second' else None)(api.job(job['id'])), 30,
                       interval=0.2, message='w-second to claim the job')
        self.assertGreater(time.monotonic() - killed_at, LEASE - HEARTBEAT - 1.5, 'claimed before the lease ran out')
        j = api.wait_succeeded(job['id'], timeout=240)
        self.assertEqual(j['attempts'], 2, j)
        self.assertEqual(j['worker'], 'w-second')
        self.assertEqual(api.video(vid)['state'], 'ready')
        # The dead attempt's version goes once the new one is recorded (on a thread of w-second): only the current
        # version is left.
        current = j['result']['storage_prefix']
        self.assertNotEqual(self.prefix + current, dead_prefix)
        wait_until(lambda: not self.double.keys(dead_prefix), 20, 0.2, 'the dead attempt\'s objects gone')
        self.assert_one_package(j)
        self.assert_all_urls_resolve(api, vid)
        self.assert_plays(api, vid, 40)

    def test_a_killed_api_keeps_every_upload_it_answered(self):
        api = self.start_api()
        self.start_worker('w-one')
        self.wait_workers(api, ['w-one'])
        answered, failed = [], []
        lock = threading.Lock()
        stop = threading.Event()

        def uploader(clips):
            for clip in clips:
                if stop.is_set():
                    return
                try:
                    r = self.upload(api, clip)
                except OSError as e:      # the api died under the request
                    with lock:
                        failed.append(repr(e))
                    return
                with lock:
                    (answered if r.status == 201 else failed).append(r.json() if r.status == 201 else r.status)

        threads = [threading.Thread(target=uploader, args=(self.clips[i::3] * 2,), daemon=True) for i in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: len(answered) >= 4, 60, 0.01, 'four uploads answered')
        api.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(60)
        with lock:
            ok = list(answered)
        self.assertGreaterEqual(len(ok), 4)
        # Answered 201: its source was in the bucket before the answer.
        for v in ok:
            vid = v['video']['id']
            self.assertIn('videos/%s/source.mp4' % vid, self.keys(vid))
        api = self.restart_api(api)
        listed = {v['id'] for v in api.get_json('/api/v1/videos?limit=100')['videos']}
        for v in ok:
            self.assertIn(v['video']['id'], listed)
        for v in ok:
            j = api.wait_succeeded(v['jobs'][0]['id'], timeout=180)
            self.assertEqual(j['attempts'], 1, j)
            self.assertEqual(api.video(j['video_id'])['state'], 'ready')
            self.assert_one_package(j)
        # Whatever else the catalog took before the kill (answered or not) is whole: its job ends, it is ready.
        for vid in listed:
            for j in api.get_json('/api/v1/videos/%s/jobs' % vid)['jobs']:
                self.assertEqual(api.wait_succeeded(j['id'], timeout=180)['attempts'], 1)
            self.assertEqual(api.video(vid)['state'], 'ready')
        # The uploads cut by the kill left nothing in the api's folder.
        self.assertEqual(os.listdir(os.path.join(api.data_dir, 'uploads')), [])

    def test_tus_upload_resumes_on_another_api(self):
        # Two api processes (each with a data folder of its own) behind one catalog and one bucket: a tus upload begun
        # on one is resumed on the other from the bytes in the bucket, finished there, and becomes a video that plays.
        from test_storage_s3 import OCTETS, TUS, multipart_uploads, tus_create, tus_offset, tus_patch
        from test_upload_memory import make_media
        media = os.path.join(self.tmp, 'tus.ts')
        make_media(media, 18 << 20)
        with open(media, 'rb') as f:
            data = f.read()
        mib = 1 << 20
        # api-one sweeps every 15 s (a quarter of its resumable-expiry), so that its leftover goes within the test.
        one, two = self.start_api('api-one', **{'resumable-expiry': '60'}), self.start_api('api-two')
        self.start_worker('w-tus')
        self.wait_workers(one, ['w-tus'])
        path = tus_create(one, len(data), 'tus.ts')
        uid = path.rsplit('/', 1)[1]
        r = tus_patch(one, path, 0, data[:12 * mib])
        self.assertEqual(r.status, 204, r.describe())
        holder, parts = self.psql("SELECT holder || '|' || parts FROM uploads WHERE id = '%s'" % uid).split('|')
        self.assertEqual(len(parts.splitlines()), 1, parts)
        self.assertTrue(os.path.exists(os.path.join(one.data_dir, 'resumable', uid)))
        # The second process answers the bytes in the bucket (one part of 8 MiB) and holds the upload now.
        self.assertEqual(tus_offset(two, path), 8 * mib)
        now = self.psql("SELECT holder || '|' || received || '|' || held_from FROM uploads WHERE id = '%s'" % uid)
        new_holder, received, held_from = now.split('|')
        self.assertNotEqual(new_holder, holder)
        self.assertEqual((int(received), int(held_from)), (8 * mib, 8 * mib))
        # The first one's late PATCH (at the offset it had answered) is refused, with JSON, and takes nothing.
        r = one.request('PATCH', path, body=data[12 * mib:14 * mib],
                        headers=dict(TUS, **{'Content-Type': OCTETS, 'Upload-Offset': str(12 * mib)}))
        self.assertEqual(r.status, 409, r.describe())
        self.assertEqual(r.json()['error']['code'], 'offset_mismatch', r.describe())
        self.assertEqual(self.psql("SELECT holder FROM uploads WHERE id = '%s'" % uid), new_holder)
        # The client finishes on the second process.
        r = tus_patch(two, path, 8 * mib, data[8 * mib:])
        self.assertEqual(r.status, 204, r.describe())
        vid = r.header('Sluice-Video-Id')
        self.assertTrue(vid, r.describe())
        self.assertTrue(self.double.object(self.prefix + 'videos/%s/source.ts' % vid) == data,
                        'the source object differs from the file sent')
        self.assertEqual([k for k in multipart_uploads(os.path.join(self.shared, 's3')).values()
                          if k.startswith(self.prefix)], [])
        # api-one's local bytes of the upload it lost are removed by its sweep once they are a minute old (made old
        # here rather than waited for); api-two, which held it to the end, keeps none either.
        left = os.path.join(one.data_dir, 'resumable', uid)
        self.assertTrue(os.path.exists(left), 'the leftover, before the sweep')
        old = time.time() - 120
        os.utime(left, (old, old))
        wait_until(lambda: not os.path.exists(left), 40, 0.2, "api-one's sweep to remove its leftover")
        self.assertFalse(os.path.exists(os.path.join(two.data_dir, 'resumable', uid)))
        video = one.video(vid)
        self.assertEqual(video['size'], len(data))
        for j in one.get_json('/api/v1/videos/%s/jobs' % vid)['jobs']:
            one.wait_succeeded(j['id'], timeout=180)
        self.assertEqual(one.video(vid)['state'], 'ready')
        self.assertGreater(ffprobe_duration(one.url('/videos/%s/hls/master.m3u8' % vid)), 1.0)

    def test_tus_concatenation_of_partials_on_two_apis(self):
        # tus-js-client's parallelUploads behind a load balancer: the partial uploads of a concatenation go to
        # different api processes, the final to either. Each partial is an object of its own in the bucket once its
        # last PATCH is answered; the final fetches the parts its process lacks, joins, and makes a video that plays.
        # An object missing is a clear refusal that loses nothing; afterwards no object of the partials and no
        # multipart upload is left.
        from test_storage_s3 import TUS, multipart_uploads, tus_final, tus_partial, tus_patch
        from test_upload_memory import make_media
        media = os.path.join(self.tmp, 'concat.ts')
        make_media(media, 12 << 20)
        with open(media, 'rb') as f:
            data = f.read()
        one, two = self.start_api('api-one'), self.start_api('api-two')
        self.start_worker('w-concat')
        self.wait_workers(one, ['w-concat'])
        s3dir = os.path.join(self.shared, 's3')

        def partials(cut):
            """Part A (data[:cut]) sent to api-one, part B (the rest) to api-two; their paths and object keys."""
            a, b = tus_partial(one, cut), tus_partial(two, len(data) - cut)
            r = tus_patch(one, a, 0, data[:cut])
            self.assertEqual(r.status, 204, r.describe())
            r = tus_patch(two, b, 0, data[cut:])
            self.assertEqual(r.status, 204, r.describe())
            keys = [self.prefix + 'uploads/' + p.rsplit('/', 1)[1] for p in (a, b)]
            for key, part in zip(keys, (data[:cut], data[cut:])):
                self.assertTrue(self.double.object(key) == part, 'the object of %s differs from the part' % key)
            return [a, b], keys

        def made(r, paths, keys):
            self.assertEqual(r.status, 201, r.describe())
            vid = r.header('Sluice-Video-Id')
            self.assertTrue(vid, r.describe())
            self.assertTrue(self.double.object(self.prefix + 'videos/%s/source.ts' % vid) == data,
                            'the source object differs from A+B')
            for p in paths:
                self.assertEqual(one.request('HEAD', p, headers=TUS).status, 404, 'a part outlived its final')
            wait_until(lambda: not any(self.double.keys(k) for k in keys), 20, 0.1, 'the partials\' objects removed')
            return vid

        # The final on api-two: part A (api-one's, a multipart upload of one 8 MiB part and the rest) is fetched.
        paths, keys = partials(9 * MIB + 123)
        vid_two = made(tus_final(two, paths, 'joined.ts'), paths, keys)
        # The final on api-one: part B (api-two's, one PUT) is fetched. Its object gone first: a refusal, with JSON,
        # that keeps both parts; once the object is back, the same final succeeds.
        paths, keys = partials(10 * MIB)
        saved = self.double.object(keys[1])
        self.double.delete(keys[1])
        r = tus_final(one, paths, 'joined.ts')
        self.assertEqual(r.status, 409, r.describe())
        self.assertEqual(r.json()['error']['code'], 'conflict', r.describe())
        for p in paths:
            self.assertEqual(one.request('HEAD', p, headers=TUS).status, 200, 'a part was lost with the refusal')
        self.double.put(keys[1], saved)
        vid_one = made(tus_final(one, paths, 'joined.ts'), paths, keys)
        self.assertEqual(self.double.keys(self.prefix + 'uploads/'), [])
        self.assertEqual([k for k in multipart_uploads(s3dir).values() if k.startswith(self.prefix)], [])
        for vid in (vid_two, vid_one):
            self.assertEqual(one.video(vid)['size'], len(data))
            for j in one.get_json('/api/v1/videos/%s/jobs' % vid)['jobs']:
                one.wait_succeeded(j['id'], timeout=180)
            self.assertEqual(one.video(vid)['state'], 'ready')
            self.assertGreater(ffprobe_duration(two.url('/videos/%s/hls/master.m3u8' % vid)), 1.0)

    def test_postgres_restart_during_a_run_loses_nothing(self):
        api = self.start_api()
        self.start_worker('w-a')
        self.start_worker('w-b')
        self.wait_workers(api, ['w-a', 'w-b'])
        jobs = [self.upload_ok(api, self.slow_clip, params=json.dumps(SLOW))['jobs'][0] for _ in range(2)]
        jobs += [self.upload_ok(api, clip)['jobs'][0] for clip in self.clips[:4]]
        wait_until(lambda: any(api.job(j['id'])['state'] == 'running' for j in jobs), 60, message='a job running')
        self.pg._run('pg_ctl', '-D', self.pg.data, '-l', os.path.join(self.pg.dir, 'server.log'), '-m', 'fast', '-w',
                     '-t', '30', 'restart')
        # The api reconnects: reads and uploads after the restart work.
        wait_until(lambda: api.request('GET', '/api/v1/jobs').status == 200, 20, message='the api reading again')
        jobs += [self.upload_ok(api, clip)['jobs'][0] for clip in self.clips[4:6]]
        done = [api.wait_succeeded(j['id'], timeout=240) for j in jobs]
        for j in done:
            self.assertEqual(j['attempts'], 1, j)
            self.assertEqual(api.video(j['video_id'])['state'], 'ready')
            self.assert_one_package(j)
        self.assertTrue(all(w.proc.poll() is None for w in self.workers), 'the workers survived the restart')
        self.assert_all_urls_resolve(api, done[0]['video_id'])


if __name__ == '__main__':
    main()
