#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` streams uploads to disk: a large body does not grow the server's memory.

A 256 MiB body of random (non-media) bytes is refused with 415 not_media and leaves nothing in DATA/uploads;
a 64 MiB MPEG-TS is accepted (201). Through both, the server's VmHWM (peak resident memory since it started)
stays within 32 MiB of what it was before the first large upload.

The first probe of a server loads GStreamer's plugins once (about 50 MiB, whatever the upload's size), so two
small warm-up uploads (1 MiB of noise, 2 MiB of the media file) come before the reference VmHWM is read: the
bound is on what the size of a body costs, not on starting GStreamer.

Standard library only. The server binary comes from $SLUICE_BINARY (set by meson's test env); the media file is
made with ffmpeg (the media test is skipped without it). Linux only (/proc/PID/status).
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from sluice_server import main  # meson's exit status protocol  # noqa: E402
import unittest

BINARY = os.environ.get('SLUICE_BINARY', '')
FFMPEG = shutil.which('ffmpeg')
KEEP = os.environ.get('SLUICE_TEST_KEEP') == '1'

MIB = 1 << 20
BOUND_MIB = 32
NOISE_MIB = 256
MEDIA_MIB = 64
PORT_RE = re.compile(r'http://127\.0\.0\.1:(\d+)/')


def vm_kib(pid, field):
    """A Vm* field of /proc/PID/status, in KiB."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise AssertionError('no %s in /proc/%d/status' % (field, pid))


def make_media(path, size):
    """An MPEG-TS (H.264 + AAC) of about size bytes: a 2 s clip looped with -c copy (continuous timestamps)."""
    base = path + '.base.ts'
    subprocess.run([FFMPEG, '-nostdin', '-v', 'error', '-y',
                    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25,noise=alls=60:allf=t',
                    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '2',
                    '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '5', '-g', '25', '-c:a', 'aac',
                    '-f', 'mpegts', base], check=True, capture_output=True, timeout=120)
    subprocess.run([FFMPEG, '-nostdin', '-v', 'error', '-y', '-stream_loop', '-1', '-i', base,
                    '-map', '0', '-c', 'copy', '-f', 'mpegts', '-fs', str(size), path],
                   check=True, capture_output=True, timeout=120)
    os.unlink(base)


def noise_chunks(total, chunk=MIB):
    """total bytes of random data, made on the fly: one random MiB, sent over and over."""
    block = os.urandom(chunk)
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block[:n] if n < chunk else block
        sent += n


def file_chunks(path, chunk=MIB):
    with open(path, 'rb') as f:
        while True:
            b = f.read(chunk)
            if not b:
                return
            yield b


class UploadMemoryTest(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        if not (BINARY and os.access(BINARY, os.X_OK)):
            raise unittest.SkipTest('SLUICE_BINARY is not set or not executable (run through meson test)')
        if not os.path.exists('/proc/self/status'):
            raise unittest.SkipTest('no /proc: VmHWM cannot be read here')
        cls.tmp = tempfile.mkdtemp(prefix='sluice-upload-memory-')
        if not KEEP:
            cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.data = os.path.join(cls.tmp, 'data')
        os.makedirs(cls.data)
        conf = os.path.join(cls.tmp, 'sluice.conf')
        with open(conf, 'w') as f:
            f.write('[uploads]\nmax-size=1G\nauto-transcode=false\n\n[jobs]\nconcurrent=1\n')
        cls.log_path = os.path.join(cls.tmp, 'server.log')
        log = open(cls.log_path, 'wb')
        cls.server = subprocess.Popen([BINARY, 'serve', '--listen', '127.0.0.1:0', '--data', cls.data,
                                       '--config', conf], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=log)
        log.close()
        cls.addClassCleanup(cls.stop_server)
        found = threading.Event()
        cls.port = None

        def reader():
            with open(cls.log_path, 'ab') as out:
                for raw in iter(cls.server.stdout.readline, b''):
                    out.write(raw)
                    out.flush()
                    m = PORT_RE.search(raw.decode('utf-8', 'replace'))
                    if m and cls.port is None:
                        cls.port = int(m.group(1))
                        found.set()

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + 30
        while not found.wait(0.1):
            if cls.server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError('sluice serve did not start:\n' + cls.log_tail())
        status, _ = cls.request('GET', '/health')
        if status not in (200, 503):
            raise AssertionError('/health answered %d' % status)
        # Warm-up (see the module's docstring), then the reference peak.
        status, body = cls.request('POST', '/api/v1/videos', noise_chunks(MIB), MIB,
                                   {'Content-Type': 'video/mp4', 'X-Filename': 'warm-up.mp4'})
        if status != 415:
            raise AssertionError('warm-up noise upload: expected 415, got %d %r' % (status, body))
        cls.media = None
        if FFMPEG:
            cls.media = os.path.join(cls.tmp, 'media.ts')
            make_media(cls.media, MEDIA_MIB * MIB)
            head = 2 * MIB - (2 * MIB) % 188  # whole TS packets
            with open(cls.media, 'rb') as f:
                piece = f.read(head)
            status, body = cls.request('POST', '/api/v1/videos', [piece], len(piece),
                                       {'Content-Type': 'video/mp2t', 'X-Filename': 'warm-up.ts'})
            if status != 201:
                raise AssertionError('warm-up media upload: expected 201, got %d %r\n%s'
                                     % (status, body, cls.log_tail()))
            status, _ = cls.request('DELETE', '/api/v1/videos/' + body['video']['id'])
            if status != 204:
                raise AssertionError('DELETE of the warm-up video answered %d' % status)
        cls.hwm_before = vm_kib(cls.server.pid, 'VmHWM')

    @classmethod
    def stop_server(cls):
        if cls.server and cls.server.poll() is None:
            cls.server.terminate()
            try:
                cls.server.wait(20)
            except subprocess.TimeoutExpired:
                cls.server.kill()
                cls.server.wait()

    @classmethod
    def log_tail(cls, n=30):
        try:
            with open(cls.log_path, errors='replace') as f:
                return ''.join(f.readlines()[-n:])
        except OSError:
            return ''

    @classmethod
    def request(cls, method, path, chunks=None, length=None, headers=None, timeout=120):
        """One request; the body (an iterable of bytes) is streamed with Content-Length. (status, JSON or None)."""
        conn = http.client.HTTPConnection('127.0.0.1', cls.port, timeout=timeout)
        try:
            conn.putrequest(method, path)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if chunks is not None:
                conn.putheader('Content-Length', str(length))
            conn.endheaders()
            if chunks is not None:
                try:
                    for c in chunks:
                        conn.send(c)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server answered early: read its answer
            r = conn.getresponse()
            body = r.read()
            try:
                return r.status, json.loads(body.decode('utf-8')) if body else None
            except ValueError:
                return r.status, {'raw': body[:300]}
        finally:
            conn.close()

    def uploads_left(self):
        d = os.path.join(self.data, 'uploads')
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def assert_hwm_within_bound(self, what):
        hwm = vm_kib(self.server.pid, 'VmHWM')
        grown = (hwm - self.hwm_before) / 1024
        sys.stderr.write('%s: VmHWM %.1f -> %.1f MiB (+%.1f) ' % (what, self.hwm_before / 1024, hwm / 1024, grown))
        self.assertLess(grown, BOUND_MIB,
                        '%s: VmHWM grew by %.1f MiB (%.1f -> %.1f MiB), the bound is %d MiB\n%s'
                        % (what, grown, self.hwm_before / 1024, hwm / 1024, BOUND_MIB, self.log_tail()))
        return grown

    def test_1_large_non_media_body_is_refused_without_growing_memory(self):
        total = NOISE_MIB * MIB
        status, body = self.request('POST', '/api/v1/videos', noise_chunks(total), total,
                                    {'Content-Type': 'video/mp4', 'X-Filename': 'noise.mp4'}, timeout=300)
        self.assertEqual(status, 415, 'expected 415 not_media: %r\n%s' % (body, self.log_tail()))
        self.assertIsInstance(body, dict)
        self.assertEqual(body.get('error', {}).get('code'), 'not_media', body)
        self.assert_hwm_within_bound('a %d MiB non-media upload' % NOISE_MIB)
        deadline = time.monotonic() + 5
        while self.uploads_left() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.uploads_left(), [], 'temporary upload left in DATA/uploads')
        status, listing = self.request('GET', '/api/v1/videos')
        self.assertEqual((status, listing.get('videos')), (200, []), 'a refused upload was kept')

    @unittest.skipUnless(FFMPEG, 'ffmpeg not found: it makes the media file')
    def test_2_large_media_upload_is_accepted_without_growing_memory(self):
        path = self.media
        size = os.path.getsize(path)
        self.assertGreater(size, (MEDIA_MIB - 4) * MIB, 'ffmpeg made a smaller file than asked')
        status, body = self.request('POST', '/api/v1/videos', file_chunks(path), size,
                                    {'Content-Type': 'video/mp2t', 'X-Filename': 'big.ts'}, timeout=300)
        self.assertEqual(status, 201, 'expected 201: %r\n%s' % (body, self.log_tail()))
        video = body['video']
        self.assertEqual(video['size'], size)
        self.assertIsNone(body.get('job'), 'auto-transcode=false queued a job')
        self.assert_hwm_within_bound('a %d MiB media upload (after the non-media one)' % MEDIA_MIB)
        self.assertEqual(self.uploads_left(), [], 'temporary upload left in DATA/uploads')
        status, _ = self.request('DELETE', '/api/v1/videos/' + video['id'])
        self.assertEqual(status, 204)


if __name__ == '__main__':
    main()
