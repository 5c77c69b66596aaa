# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice upload`, the resumable (tus) client, against a real server: stopped by SIGINT at about half and run
again it sends only the rest and the stored source is the very file; a connection cut in the middle is retried;
--wait prints a playback URL that plays; server refusals come with their JSON message and exit status; with
[auth] mode=keys it needs --key (or $SLUICE_API_KEY), which it never prints.

The client talks to the server through a TCP relay of this file, which slows down what the client sends (so
that SIGINT lands in the middle), counts it (the bytes that went over the wire), and can cut every open
connection once after so many bytes.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sluice_server  # noqa: E402
from sluice_server import (BINARY, FFMPEG, ServerTestCase, main, need_ffmpeg,  # noqa: E402
                           wait_until)

# A pipeline whose every run fails inside GStreamer, for --wait on a job that fails.
sluice_server.install_unwritable_pipeline()

UPLOADING_RE = re.compile(r'uploading .+? \([^)]*\) to (http://\S+/api/v1/uploads/([0-9a-f]+))')


class Relay:
    """A TCP relay 127.0.0.1:port -> the server. rate: bytes per second from the client (None: as fast as they
    come); cut_after: once, every open connection is closed when the client has sent that many bytes in all."""

    def __init__(self, upstream_port, rate=None, cut_after=None):
        self.upstream = upstream_port
        self.rate = rate
        self.cut_after = cut_after
        self.sent = 0           # bytes the client sent through the relay (requests, headers included)
        self.cuts = 0
        self._lock = threading.Lock()
        self._socks = set()
        self._listener = socket.create_server(('127.0.0.1', 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(('127.0.0.1', self.upstream))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _cut_all(self):
        with self._lock:
            socks = list(self._socks)
            self._socks.clear()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump(self, src, dst, from_client):
        while True:
            try:
                data = src.recv(16384)
            except OSError:
                data = b''
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if from_client:
                if self.rate:
                    time.sleep(len(data) / self.rate)
                with self._lock:
                    self.sent += len(data)
                    cut = self.cut_after is not None and self.cuts == 0 and self.sent >= self.cut_after
                    if cut:
                        self.cuts += 1
                if cut:
                    self._cut_all()
                    return
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self):
        self._closed = True
        self._listener.close()
        self._cut_all()


class Client:
    """One `sluice upload` process; its stderr is read line by line (plain lines: it is not a terminal)."""

    def __init__(self, args, cache, env=None):
        e = dict(os.environ)
        e.pop('SLUICE_API_KEY', None)
        e.pop('SLUICE_SERVER', None)
        e['XDG_CACHE_HOME'] = cache
        e.update(env or {})
        self.args = [BINARY, 'upload'] + list(args)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e)
        self.lines = []
        self._out = []
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()), daemon=True)]
        for t in self._readers:
            t.start()
        self.stdout = ''

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b''):
            with self._lock:
                self.lines.append(raw.decode('utf-8', 'replace').rstrip('\n'))

    def stderr(self):
        with self._lock:
            return '\n'.join(self.lines)

    def wait(self, timeout=120):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('sluice upload did not end within %d s:\n%s' % (timeout, self.stderr()))
        for t in self._readers:
            t.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.stdout = b''.join(self._out).decode('utf-8', 'replace')
        return self.proc.returncode

    def upload_url(self, timeout=30):
        def find():
            m = UPLOADING_RE.search(self.stderr())
            if not m and self.proc.poll() is not None:
                raise AssertionError('sluice upload ended (%s) before creating the upload:\n%s'
                                     % (self.proc.returncode, self.stderr()))
            return m
        m = wait_until(find, timeout, 0.05, 'the client to create the upload')
        return m.group(1), m.group(2)


def make_clip(folder, seconds=2):
    """A few MiB of H.264 that does not compress (noise at a low quantizer) with audio."""
    path = os.path.join(folder, 'noisy clip.mp4')
    r = subprocess.run([FFMPEG, '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
                        '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', str(seconds),
                        '-vf', 'noise=alls=30:allf=t', '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '5',
                        '-g', '25', '-c:a', 'aac', '-shortest', path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError('ffmpeg: ' + r.stderr)
    return path


def metric(server, name):
    """The value of an unlabelled metric in /metrics (0 when absent)."""
    r = server.get('/metrics')
    if r.status != 200:
        raise AssertionError('GET /metrics: ' + r.describe())
    for line in r.text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return 0.0


class UploadCliCase(ServerTestCase):
    """A clip made once per class; a fresh cache folder per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not FFMPEG:
            raise unittest.SkipTest('ffmpeg not found: it generates the test media')
        cls.clip = make_clip(cls.tmp)
        cls.size = os.path.getsize(cls.clip)
        with open(cls.clip, 'rb') as f:
            cls.clip_bytes = f.read()

    def setUp(self):
        self.cache = tempfile.mkdtemp(prefix='cache-', dir=self.tmp)
        self.addCleanup(shutil.rmtree, self.cache, True)
        self.relays = []

    def tearDown(self):
        for r in self.relays:
            r.close()
        super().tearDown()

    def relay(self, **kw):
        r = Relay(self.server.port, **kw)
        self.relays.append(r)
        return r

    def client(self, *args, env=None):
        return Client(args, self.cache, env)

    def remembered(self):
        d = os.path.join(self.cache, 'sluice', 'uploads')
        return sorted(f for f in os.listdir(d) if f.endswith('.json')) if os.path.isdir(d) else []

    def source_of(self, video_id):
        d = os.path.join(self.server.data_dir, 'videos', video_id)
        sources = [f for f in os.listdir(d) if f.startswith('source')]
        self.assertEqual(len(sources), 1, os.listdir(d))
        with open(os.path.join(d, sources[0]), 'rb') as f:
            return f.read()

    def assert_stored_intact(self, video_id):
        stored = self.source_of(video_id)
        self.assertEqual(len(stored), self.size)
        self.assertTrue(stored == self.clip_bytes, 'the stored source differs from the file')

    def upload_offset(self, upload_id):
        r = self.server.request('HEAD', '/api/v1/uploads/' + upload_id, headers={'Tus-Resumable': '1.0.0'})
        if r.status != 200:
            raise AssertionError('HEAD: ' + r.describe())
        return int(r.header('Upload-Offset'))


@need_ffmpeg
class ResumeTest(UploadCliCase):

    def test_sigint_at_half_then_resume_sends_only_the_rest(self):
        received_before = metric(self.server, 'sluice_upload_bytes_total')
        # About 4 s for the whole file; 256 KiB chunks, each confirmed (and fsynced) by the server.
        relay = self.relay(rate=self.size / 4)
        c = self.client(self.clip, '--server', relay.url, '--title', 'Resumed', '--chunk-size', '256K')
        url, upload_id = c.upload_url()
        self.assertEqual(len(self.remembered()), 1, 'the upload URL is remembered')
        wait_until(lambda: self.upload_offset(upload_id) >= self.size // 2, 30, 0.05, 'half of the file on the server')
        c.proc.send_signal(signal.SIGINT)
        self.assertEqual(c.wait(30), 130, c.stderr())
        self.assertIn('run the same command again to resume', c.stderr())
        self.assertEqual(c.stdout, '', 'no video id before the upload is complete')
        at_stop = self.upload_offset(upload_id)
        self.assertGreaterEqual(at_stop, self.size // 2)
        self.assertLess(at_stop, self.size, 'SIGINT came too late to test a resume')
        self.assertEqual(len(self.remembered()), 1, 'the upload URL stays remembered after SIGINT')
        sent_first = relay.sent

        # Again, at full speed, through the same server URL: it continues from the server's offset.
        relay.rate = None
        c2 = self.client(self.clip, '--server', relay.url, '--title', 'Resumed', '--chunk-size', '256K', '--wait')
        self.assertEqual(c2.wait(180), 0, c2.stderr())
        self.assertIn('resuming the upload', c2.stderr())
        self.assertIn(url, c2.stderr())
        self.assertNotIn('uploading ', c2.stderr(), 'a second upload was created')
        out = c2.stdout.splitlines()
        video_id = out[0]
        self.assertRegex(video_id, r'^[0-9a-f]{16}$', c2.stdout)

        # The server received the first half once: in all, the rest plus at most the chunk cut by SIGINT.
        sent_second = relay.sent - sent_first
        self.assertLess(sent_second, self.size - at_stop + 64 * 1024, (sent_second, self.size, at_stop))
        self.assertLess(relay.sent, 1.5 * self.size, (relay.sent, self.size))
        received = metric(self.server, 'sluice_upload_bytes_total') - received_before
        self.assertGreaterEqual(received, self.size)
        self.assertLess(received, 1.5 * self.size, 'the server received %d bytes for a file of %d' % (received,
                                                                                                     self.size))
        sys.stderr.write('file %d bytes; stopped at %d; sent %d + %d bytes through the relay; server received %d\n'
                         % (self.size, at_stop, sent_first, sent_second, received))
        self.assert_stored_intact(video_id)
        video = self.server.video(video_id)
        self.assertEqual(video['title'], 'Resumed')
        self.assertEqual(video['filename'], 'noisy clip.mp4')
        self.assertEqual(video['state'], 'ready')
        self.assertEqual(self.remembered(), [], 'a finished upload is forgotten')

        # --wait printed the playback URL, and it plays.
        hls = [line.split(' ', 1)[1] for line in out[1:] if line.startswith('hls ')]
        self.assertEqual(len(hls), 1, c2.stdout)
        self.assertTrue(hls[0].startswith(relay.url + '/videos/%s/' % video_id), hls[0])
        with urllib.request.urlopen(hls[0], timeout=30) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.read().startswith(b'#EXTM3U'))

    def test_lost_connection_is_retried(self):
        relay = self.relay(cut_after=self.size // 2)
        c = self.client(self.clip, '--server', relay.url, '--chunk-size', '256K')
        self.assertEqual(c.wait(120), 0, c.stderr())
        self.assertEqual(relay.cuts, 1)
        self.assertIn('retrying in', c.stderr())
        video_id = c.stdout.strip()
        self.assertRegex(video_id, r'^[0-9a-f]{16}$', c.stdout)
        self.assertLess(relay.sent, 1.5 * self.size, (relay.sent, self.size))
        self.assert_stored_intact(video_id)
        self.assertEqual(self.remembered(), [])

    def test_upload_gone_on_the_server_starts_over(self):
        relay = self.relay(rate=self.size / 4)
        c = self.client(self.clip, '--server', relay.url, '--chunk-size', '256K')
        url, upload_id = c.upload_url()
        wait_until(lambda: self.upload_offset(upload_id) > 0, 30, 0.05, 'a chunk on the server')
        c.proc.send_signal(signal.SIGINT)
        self.assertEqual(c.wait(30), 130, c.stderr())
        # (423 until the server is done with the PATCH that SIGINT cut)
        r = wait_until(lambda: (lambda r: r if r.status != 423 else None)(
            self.server.request('DELETE', '/api/v1/uploads/' + upload_id, headers={'Tus-Resumable': '1.0.0'})),
            10, 0.1, 'DELETE to be answered otherwise than 423')
        self.assertEqual(r.status, 204, r.describe())
        relay.rate = None
        c = self.client(self.clip, '--server', relay.url, '--chunk-size', '256K')
        self.assertEqual(c.wait(60), 0, c.stderr())
        self.assertIn('the server no longer has the earlier upload', c.stderr())
        self.assertNotIn(url, c.stderr().split('starting over', 1)[1])
        self.assert_stored_intact(c.stdout.strip())
        self.assertEqual(self.remembered(), [])

    def test_server_refusals_carry_their_message(self):
        # Metadata the server does not accept: refused at creation, with the JSON message.
        c = self.client(self.clip, '--server', self.server.base, '--pipeline', 'no-such-pipeline')
        self.assertEqual(c.wait(60), 1, c.stderr())
        self.assertIn('invalid_parameter', c.stderr())
        self.assertIn('no-such-pipeline', c.stderr())
        self.assertEqual(self.remembered(), [])
        # Not media: every byte goes, the last PATCH is refused with the probe's reason; nothing to resume.
        notes = os.path.join(self.tmp, 'notes.mp4')
        with open(notes, 'wb') as f:
            f.write(b'These are my notes, not a video.\n' * 4000)
        c = self.client(notes, '--server', self.server.base, '--chunk-size', '64K')
        self.assertEqual(c.wait(60), 1, c.stderr())
        self.assertIn('not_media', c.stderr())
        self.assertEqual(c.stdout, '')
        self.assertEqual(self.remembered(), [])
        # Usage errors.
        for args in ([self.clip], [self.clip, '--server', 'ftp://x'], [self.clip, '--server', self.server.base,
                                                                      '--chunk-size', '1K']):
            c = self.client(*args)
            self.assertEqual(c.wait(30), 2, (args, c.stderr()))


    def test_unreachable_server(self):
        # A port nobody listens on: 5 retries (1 + 2 + 4 + 8 + 16 s), then exit status 3 and why.
        with socket.create_server(('127.0.0.1', 0)) as s:
            port = s.getsockname()[1]
        start = time.monotonic()
        c = self.client(self.clip, '--server', 'http://127.0.0.1:%d' % port)
        self.assertEqual(c.wait(90), 3, c.stderr())
        self.assertGreaterEqual(time.monotonic() - start, 31)
        self.assertEqual(c.stderr().count('retrying in'), 5, c.stderr())
        self.assertIn('gave up after 5 retries', c.stderr())
        self.assertEqual(self.remembered(), [])


@need_ffmpeg
class JobFailsTest(UploadCliCase):
    CONFIG = {'jobs': {'concurrent': 1, 'max-attempts': 1}}

    def test_wait_for_a_job_that_fails(self):
        c = self.client(self.clip, '--server', self.server.base, '--pipeline', 'unwritable', '--wait')
        self.assertEqual(c.wait(120), 5, c.stderr())
        video_id = c.stdout.strip()
        self.assertRegex(video_id, r'^[0-9a-f]{16}$', c.stdout)
        job = self.server.video(video_id)['jobs'][0]
        self.assertEqual(job['state'], 'failed')
        self.assertIn("the video's job failed: " + job['error']['message'], c.stderr())


@need_ffmpeg
class KeysTest(UploadCliCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'auth': {'mode': 'keys'}}
    API_KEY_SCOPES = 'upload,read'

    def test_key_needed(self):
        key = self.server.api_key
        c = self.client(self.clip, '--server', self.server.base)
        self.assertEqual(c.wait(60), 4, c.stderr())
        self.assertIn('API key', c.stderr())
        self.assertIn('--key', c.stderr())
        self.assertIn('401', c.stderr())
        self.assertEqual(self.remembered(), [])

        c = self.client(self.clip, '--server', self.server.base, '--key', 'sk_' + 'A' * 43)
        self.assertEqual(c.wait(60), 4, c.stderr())
        self.assertIn('refused the API key', c.stderr())

        c = self.client(self.clip, '--server', self.server.base, '--key', key, '--chunk-size', '1M', '--wait')
        self.assertEqual(c.wait(180), 0, c.stderr())
        video_id = c.stdout.splitlines()[0]
        self.assert_stored_intact(video_id)
        self.assertNotIn(key, c.stdout + c.stderr())
        self.assertTrue(any(line.startswith('hls http://') for line in c.stdout.splitlines()), c.stdout)

        # The key from the environment, and a key without the read scope: the upload works, --wait is refused.
        upload_only = self.server.create_key('upload-only', 'upload')
        c = self.client(self.clip, '--server', self.server.base, '--wait', env={'SLUICE_API_KEY': upload_only})
        self.assertEqual(c.wait(180), 4, c.stderr())
        self.assertRegex(c.stdout.strip(), r'^[0-9a-f]{16}$')
        self.assertIn('forbidden', c.stderr())
        self.assertNotIn(upload_only, c.stdout + c.stderr())
        self.server.wait_succeeded(self.server.video(c.stdout.strip())['jobs'][0]['id'])


if __name__ == '__main__':
    main()
