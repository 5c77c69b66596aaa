#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` when its storage fails under it: a catalog that stops taking writes while a job runs
(its files made immutable), a data folder short of space by configuration, and a real full disk (a small
tmpfs). The conditions are real ones, made as root with chattr and mount; a test that cannot make its
condition here is skipped, saying why."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import sluice_server as s

CHATTR = shutil.which('chattr')
MOUNT = shutil.which('mount')
UMOUNT = shutil.which('umount')

SLOW = {'segment_seconds': 1, 'preset': 'veryslow'}   # a job on 'medium' then runs for a few seconds

# Noise does not compress: at 20 Mbit/s two seconds of it are about 5 MB of segments.
s.Media.SPECS.setdefault('noise', ('noise.mp4', ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
                                                 '-vf', 'noise=alls=100:allf=t+u', '-t', '2', '-an',
                                                 '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '30',
                                                 '-g', '25']))


def _chattr_unsupported():
    """Why files cannot be made immutable here (None when they can)."""
    if not CHATTR:
        return 'chattr not found'
    if os.geteuid() != 0:
        return 'making a file immutable (chattr +i) needs root'
    folder = tempfile.mkdtemp(prefix='sluice-chattr-')
    probe = os.path.join(folder, 'probe')
    try:
        with open(probe, 'w') as f:
            f.write('x')
        r = subprocess.run([CHATTR, '+i', probe], capture_output=True, text=True)
        if r.returncode != 0:
            return 'the file system of the temp folder does not take chattr +i: ' + r.stderr.strip()
        subprocess.run([CHATTR, '-i', probe], capture_output=True)
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _send_upload(srv, data, headers, expect_continue=False):
    """POSTs a raw-body upload on its own socket and reads the answer, tolerating a server that answers and
    closes before it has read the body (as it does when it refuses an upload at once)."""
    head = ('POST /api/v1/videos?filename=clip.mp4 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n'
            % (srv.port, len(data)))
    head += ''.join('%s: %s\r\n' % kv for kv in headers.items())
    if expect_continue:
        head += 'Expect: 100-continue\r\n'
    sock = srv.raw_socket()
    try:
        sock.sendall((head + '\r\n').encode())
        if not expect_continue:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
        return s.read_http_response(sock, 'POST', timeout=30)
    finally:
        sock.close()


@unittest.skipUnless(CHATTR, 'chattr not found')
class CatalogStopsTakingWrites(s.ServerTestCase):
    """The catalog's files are made immutable while a job runs (what an operator, a full or failing disk, or a
    read-only remount does to it); reads go on, writes fail."""

    CONFIG = {'jobs': {'concurrent': 1}, 'uploads': {'auto-transcode': False}}

    @classmethod
    def setUpClass(cls):
        reason = _chattr_unsupported()
        if reason:
            raise unittest.SkipTest(reason)
        super().setUpClass()

    def catalog_files(self):
        # Not sluice.db-shm: SQLite maps it into memory, and a write to a mapped immutable file is SIGBUS.
        d = self.server.data_dir
        return [os.path.join(d, n) for n in ('sluice.db', 'sluice.db-wal')]

    def freeze(self):
        files = self.catalog_files()
        for f in files:
            self.assertTrue(os.path.exists(f), f)
        subprocess.run([CHATTR, '+i'] + files, check=True)
        self.addCleanup(self.thaw)

    def thaw(self):
        subprocess.run([CHATTR, '-i'] + self.catalog_files(), capture_output=True)

    def health(self):
        r = self.server.get('/health')
        self.assertIn(r.status, (200, 503), r.describe())
        return r

    @s.need_ffmpeg
    def test_job_ends_succeeded_once_the_catalog_takes_writes_again(self):
        srv = self.server
        vid = srv.upload_ok('medium')['video']['id']
        other = srv.upload_ok('short')['video']['id']
        job = srv.running_job(vid, ladder='240p', params=SLOW)
        self.assertEqual(job['state'], 'running', job)
        # Queued behind it (one slot): a job the catalog will be asked to cancel.
        r = srv.post_job(other, ladder='240p', params={'segment_seconds': 1, 'preset': 'ultrafast'})
        self.assertEqual(r.status, 202, r.describe())
        queued = r.json()
        master = os.path.join(srv.data_dir, 'videos', vid, 'hls', 'master.m3u8')
        self.assertFalse(os.path.exists(master), 'the job ended before the catalog was frozen')

        self.freeze()
        # /health finds out with a real write (rate-limited: within a few seconds), not a read.
        r = s.wait_until(lambda: (lambda h: h if h.status == 503 else None)(self.health()), 15, 0.2,
                         '/health to report the catalog')
        store = r.json()['checks']['store']
        self.assertFalse(store['ok'], r.describe())
        self.assertFalse(store['writable'], r.describe())
        self.assertTrue(store['readable'], r.describe())
        self.assertEqual(r.json()['status'], 'unavailable', r.describe())

        # The package is published on disk; its job's end cannot be written.
        s.wait_until(lambda: os.path.exists(master), 180, 0.2, 'the package to be published')
        before = os.stat(master)
        r = s.wait_until(lambda: (lambda h: h if h.json()['checks']['store']['unsaved_jobs'] == 1 else None)(
            self.health()), 30, 0.2, 'the end of the job to wait for the catalog')
        self.assertEqual(r.status, 503, r.describe())
        self.assertEqual(srv.job(job['id'])['state'], 'running')

        # Every route whose write fails answers the same: 503 unavailable, nothing kept, nothing hangs.
        r = srv.upload('short')
        self.assert_error(r, 503, 'unavailable')
        self.assert_no_uploads_left()
        self.assertEqual(sorted(self.video_dirs()), sorted([vid, other]))
        r = srv.request('DELETE', '/api/v1/jobs/' + queued['id'], timeout=15)
        self.assert_error(r, 503, 'unavailable')
        r = srv.post_job(other, pipeline='poster')
        self.assert_error(r, 503, 'unavailable')
        # Deleting a video cancels its jobs first: that cancel waits for the catalog like a job's end, and the
        # delete itself is refused (the video stays, files and all).
        r = srv.request('DELETE', '/api/v1/videos/' + other, timeout=15)
        self.assert_error(r, 503, 'unavailable')
        self.assertTrue(os.path.isdir(os.path.join(srv.data_dir, 'videos', other)))
        time.sleep(1)
        self.assertEqual(srv.job(job['id'])['state'], 'running')
        self.assertEqual(srv.job(queued['id'])['state'], 'queued')  # not started: nothing starts meanwhile

        self.thaw()
        # The end lands without a second run: one attempt, the very files published before.
        done = srv.wait_succeeded(job['id'], timeout=60)
        self.assertEqual(done['attempts'], 1, done)
        after = os.stat(master)
        self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))
        r = s.wait_until(lambda: (lambda h: h if h.status == 200 else None)(self.health()), 15, 0.2,
                         '/health to be ok again')
        self.assertTrue(r.json()['checks']['store']['writable'], r.describe())
        self.assertEqual(r.json()['checks']['store']['unsaved_jobs'], 0, r.describe())
        # The cancel has landed too (the job never ran), and the video can be deleted now.
        self.assertEqual(srv.job(queued['id'])['state'], 'canceled')
        self.assertIsNone(srv.job(queued['id'])['started'])
        r = srv.request('DELETE', '/api/v1/videos/' + other, timeout=60)
        self.assertEqual(r.status, 204, r.describe())

    @s.need_ffmpeg
    def test_cancel_of_a_running_job_is_answered_while_the_catalog_refuses_writes(self):
        srv = self.server
        vid = srv.upload_ok('medium')['video']['id']
        job = srv.running_job(vid, ladder='240p', params=SLOW)
        r = srv.post_job(vid, pipeline='poster')   # queued behind it: the cancel stops the video's jobs
        self.assertEqual(r.status, 202, r.describe())
        poster = r.json()
        self.freeze()
        # Answered once the job has stopped (it used to wait forever: the queued job's cancel failed midway).
        r = srv.request('DELETE', '/api/v1/jobs/' + job['id'], timeout=30)
        self.assertEqual(r.status, 200, r.describe())
        self.thaw()
        for j in (job, poster):
            self.assertEqual(srv.wait_job(j['id'], s.TERMINAL, timeout=30)['state'], 'canceled')
        self.assert_no_outputs(vid)
        r = srv.request('DELETE', '/api/v1/videos/' + vid, timeout=30)
        self.assertEqual(r.status, 204, r.describe())

    def test_health_probe_is_rate_limited(self):
        # /health asked in a loop stays cheap: the catalog is written at most once every few seconds.
        wal = self.catalog_files()[1]
        self.health()
        size = os.path.getsize(wal)
        for _ in range(50):
            self.assertEqual(self.health().status, 200)
        self.assertLessEqual(os.path.getsize(wal) - size, 2 * 4096 + 2 * 24, 'more than one probe write')


class UploadsBelowMinFreeSpace(s.ServerTestCase):
    """[health] min-free-space above what is free: /health says 503, and uploads are refused before a byte of
    them is stored."""

    CONFIG = {'jobs': {'concurrent': 1}, 'health': {'min-free-space': '1000T'}}

    @s.need_ffmpeg
    def test_upload_is_refused_with_507_and_nothing_kept(self):
        srv = self.server
        h = srv.get('/health')
        self.assertEqual(h.status, 503, h.describe())
        self.assertFalse(h.json()['checks']['disk']['ok'], h.describe())
        data = s.MEDIA.bytes('short')
        r = srv.upload('short')
        self.assert_error(r, 507, 'insufficient_storage')
        r = _send_upload(srv, data, {'Content-Type': 'video/mp4'})
        self.assertIsNotNone(r, 'closed without an answer')
        self.assert_error(r, 507, 'insufficient_storage')
        r = _send_upload(srv, data, {'Content-Type': 'video/mp4'}, expect_continue=True)
        self.assertIsNotNone(r, 'closed without an answer')
        self.assert_error(r, 507, 'insufficient_storage')
        self.assertEqual(self.uploads_left(), [])
        self.assertEqual(self.video_dirs(), [])
        self.assertEqual(srv.get_json('/api/v1/videos')['videos'], [])
        # Only uploads are refused: reading goes on.
        self.assertEqual(srv.get('/api/v1/jobs').status, 200)


class DiskFull(s.ServerTestCase):
    """The data folder is a small tmpfs that is filled while a job runs: the job fails for lack of space, is
    queued again (without an attempt limit, although max-attempts is 1) and succeeds once space is freed."""

    CONFIG = {'jobs': {'concurrent': 1, 'max-attempts': 1, 'retry-delay': 1, 'no-space-retry-delay': 1},
              'uploads': {'auto-transcode': False}, 'health': {'min-free-space': '8M'}}

    @classmethod
    def setUpClass(cls):
        if not (s.BINARY and os.access(s.BINARY, os.X_OK)):
            raise unittest.SkipTest('SLUICE_BINARY is not set or not executable (run through meson test)')
        if not (MOUNT and UMOUNT) or os.geteuid() != 0:
            raise unittest.SkipTest('a full disk is made with a small tmpfs, which needs root and mount')
        cls.tmp = tempfile.mkdtemp(prefix='sluice-e2e-%s-' % cls.__name__)
        cls.addClassCleanup(s._rmtree, cls.tmp)
        cls.data = os.path.join(cls.tmp, 'data')
        os.makedirs(cls.data)
        r = subprocess.run([MOUNT, '-t', 'tmpfs', '-o', 'size=64m,mode=0755', 'sluice-test', cls.data],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise unittest.SkipTest('cannot mount a tmpfs here: ' + r.stderr.strip())
        cls.addClassCleanup(cls._unmount)
        cls.server = s.Server(cls.data, cls.CONFIG)
        cls.server.start()
        cls.addClassCleanup(cls._stop_class_server)

    @classmethod
    def _unmount(cls):
        if subprocess.run([UMOUNT, cls.data], capture_output=True).returncode != 0:
            subprocess.run([UMOUNT, '-l', cls.data], capture_output=True)

    def fill(self, leave):
        """Fills the data folder until `leave` bytes are free; returns the filler's path."""
        path = os.path.join(self.data, 'filler')
        self.addCleanup(lambda: os.path.exists(path) and os.remove(path))
        st = os.statvfs(self.data)
        size = st.f_bavail * st.f_frsize - leave
        with open(path, 'wb') as f:
            chunk = b'\xa5' * (1 << 20)
            while size > 0:
                n = min(size, len(chunk))
                f.write(chunk[:n])
                size -= n
        return path

    @s.need_ffmpeg
    def test_no_space_job_is_retried_until_space_is_freed(self):
        srv = self.server
        vid = srv.upload_ok('noise')['video']['id']
        filler = self.fill(768 * 1024)
        # The disk is full now (a real condition, not a setting): uploads are refused on the spot.
        r = srv.upload('short')
        self.assert_error(r, 507, 'insufficient_storage')
        self.assert_no_uploads_left()
        self.assertEqual(self.video_dirs(), [vid])

        r = srv.post_job(vid, ladder='240p:20000', params={'segment_seconds': 1, 'preset': 'ultrafast'})
        self.assertEqual(r.status, 202, r.describe())
        job_id = r.json()['id']

        def waiting_for_space(min_attempts):
            def check():
                j = srv.job(job_id)
                if j['state'] in s.TERMINAL:
                    raise AssertionError('the job ended %s: %s\n%s' % (j['state'], j, srv.log_tail(20)))
                if (j['state'] == 'queued' and j['attempts'] >= min_attempts and j['error']
                        and j['error']['code'] == 'no_space'):
                    return j
                return None
            return check

        j = s.wait_until(waiting_for_space(1), 120, 0.1, 'the job to wait for space')
        self.assertIsNotNone(j['next_attempt'], j)
        self.assertIn('No space left', j['error']['message'], j)
        self.assertGreater(j['max_attempts'], j['attempts'], j)
        # Tried again (beyond max-attempts=1) while the disk stays full, and never failed for good.
        s.wait_until(waiting_for_space(2), 120, 0.1, 'a second try while the disk is full')

        os.remove(filler)
        done = srv.wait_succeeded(job_id, timeout=120)
        self.assertGreaterEqual(done['attempts'], 3, done)
        self.assertTrue(os.path.exists(os.path.join(self.data, 'videos', vid, 'hls', 'master.m3u8')))
        r = s.wait_until(lambda: (lambda h: h if h.status == 200 else None)(srv.get('/health')), 15, 0.2,
                         '/health to be ok again')
        self.assertTrue(r.json()['checks']['disk']['ok'], r.describe())


if __name__ == '__main__':
    s.main()
