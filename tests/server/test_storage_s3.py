#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""[storage] url = s3://BUCKET/PREFIX end to end, against s3rver (tests/s3, npm) on a free port: an upload's source
and packages land in the bucket under versioned prefixes, the local package folder goes, ffmpeg plays the master
playlist through sluice in proxy mode (Range, ETag/304 from the bucket's objects) and in redirect mode (302 to a
presigned URL the double serves, X-Amz-Expires = presign-ttl), signed playback is checked before either, and
deleting the video deletes its objects. An upload streams to the bucket as it arrives (multipart, parts of 8 MiB): its
object is whole once the 201 comes, a refused or cut upload leaves no object and its multipart upload is aborted, and
memory stays bounded. A tus partial upload (of a concatenation) is an object of its own (uploads/ID) once its last PATCH
is answered, removed with its DELETE or its expiry. Skipped, saying why, without node or tests/s3/node_modules."""

import base64
import glob
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (FFMPEG, MEDIA, PLAYLIST_TYPE, IMMUTABLE, Server, ServerTestCase, ffprobe_duration,  # noqa: E402
                           main, need_binary, need_ffmpeg, wait_until)

DOUBLE = os.environ.get('SLUICE_S3_DOUBLE', '')
NODE = shutil.which('node')
BUCKET = 'media'
PREFIX = 'site/'
KEY_ID = 'S3RVER'
TTL = 123


def double_missing():
    if not DOUBLE:
        return 'SLUICE_S3_DOUBLE (tests/s3/server.mjs) is not set (run through meson test)'
    if not NODE:
        return 'node is not installed'
    if not os.path.isdir(os.path.join(os.path.dirname(DOUBLE), 'node_modules', 's3rver')):
        return 'tests/s3/node_modules is missing (tools/setup runs npm ci in tests/s3)'
    return None


def start_double(cls):
    """setUpClass's start of a test class that uses the double: skipped (saying why) without it; else cls.s3dir and
    cls.double, removed and stopped when the class is done."""
    why = double_missing()
    if why:
        raise unittest.SkipTest(why)
    cls.s3dir = tempfile.mkdtemp(prefix='sluice-s3-')
    cls.addClassCleanup(shutil.rmtree, cls.s3dir, True)
    cls.double = Double(cls.s3dir)
    cls.addClassCleanup(cls.double.stop)


class Double:
    """s3rver on 127.0.0.1 and a free port, its objects in a temp folder; stops when its stdin closes."""

    def __init__(self, directory):
        self.proc = subprocess.Popen([NODE, '--openssl-legacy-provider', DOUBLE, directory, BUCKET],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith('port '):
            self.stop()
            raise AssertionError('s3rver did not start: %r' % line)
        self.port = int(line[5:])
        self.endpoint = 'http://127.0.0.1:%d' % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path_and_query, headers=None):
        """A plain GET against the double (it does not check signatures): status, headers, body."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        try:
            conn.request('GET', path_and_query, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def keys(self, prefix):
        """Every key of the bucket under prefix (ListObjectsV2, one page is plenty here)."""
        status, _, body = self.get('/%s?list-type=2&max-keys=1000&prefix=%s' % (BUCKET, urllib.parse.quote(prefix)))
        if status != 200:
            raise AssertionError('listing the bucket: %d %r' % (status, body[:300]))
        return sorted(re.findall(r'<Key>([^<]+)</Key>', body.decode()))

    def put(self, key, data):
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=60)
        try:
            conn.request('PUT', '/%s/%s' % (BUCKET, urllib.parse.quote(key)), body=data,
                         headers={'Content-Type': 'video/mp2t'})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise AssertionError('PUT %s to the double: %d' % (key, r.status))
        finally:
            conn.close()

    def delete(self, key):
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        try:
            conn.request('DELETE', '/%s/%s' % (BUCKET, urllib.parse.quote(key)))
            r = conn.getresponse()
            r.read()
            if r.status not in (200, 204):
                raise AssertionError('DELETE %s from the double: %d' % (key, r.status))
        finally:
            conn.close()

    def object(self, key):
        status, _, body = self.get('/%s/%s' % (BUCKET, urllib.parse.quote(key)))
        if status != 200:
            raise AssertionError('GET %s from the double: %d' % (key, status))
        return body


class StorageCase(ServerTestCase):
    SERVE = 'proxy'
    EXTRAS = ''

    @classmethod
    def setUpClass(cls):
        start_double(cls)
        cls.CONFIG = {
            'jobs': {'concurrent': 1, 'extras': cls.EXTRAS},
            'storage': {'url': 's3://%s/%s' % (BUCKET, PREFIX.rstrip('/')), 'endpoint': cls.double.endpoint,
                        'region': 'eu-west-3', 'access-key': KEY_ID, 'secret-key': 'S3RVER-secret',
                        'serve': cls.SERVE, 'presign-ttl': TTL},
        }
        super().setUpClass()
        srv = cls.server
        v = srv.upload_ok('short', title='stored', fields={'ladder': '240p'})
        cls.vid = v['video']['id']
        cls.jobs = [srv.wait_succeeded(j['id']) for j in v['jobs']]
        cls.job = cls.jobs[0]
        cls.master = '/videos/%s/hls/master.m3u8' % cls.vid

    def media_playlist(self, srv=None):
        srv = srv or self.server
        r = srv.get(self.master)
        self.assertEqual(r.status, 200, r.describe())
        media = [ln for ln in r.text().splitlines() if ln and not ln.startswith('#')][0]
        r = srv.get('/videos/%s/hls/%s' % (self.vid, media))
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('Content-Type'), PLAYLIST_TYPE)
        segs = [ln for ln in r.text().splitlines() if ln and not ln.startswith('#')]
        self.assertTrue(segs, r.text())
        return os.path.dirname(media), segs

    def package_prefix(self):
        prefix = self.job['result'].get('storage_prefix', '')
        self.assertRegex(prefix, r'^videos/%s/hls/v\d+/$' % self.vid, self.job)
        return prefix


@need_binary
@need_ffmpeg
class Proxy(StorageCase):
    EXTRAS = 'poster'

    def test_source_and_package_in_the_bucket(self):
        prefix = self.package_prefix()
        keys = self.double.keys(PREFIX + 'videos/%s/' % self.vid)
        self.assertIn(PREFIX + 'videos/%s/source.mp4' % self.vid, keys)
        package = [k for k in keys if k.startswith(PREFIX + prefix)]
        self.assertIn(PREFIX + prefix + 'master.m3u8', package)
        self.assertTrue(any(k.endswith('.ts') for k in package), package)
        self.assertTrue(any(k.endswith('.m3u8') and k != PREFIX + prefix + 'master.m3u8' for k in package), package)
        # The poster is a package too, with a version of its own.
        self.assertTrue(any(re.search(r'/poster/v\d+/.+\.jpg$', k) for k in keys), keys)
        # The bucket holds the package; the data folder keeps no copy of it (the source stays as a local cache).
        local = os.path.join(self.data, 'videos', self.vid)
        self.assertFalse(os.path.exists(os.path.join(local, 'hls')), os.listdir(local))
        self.assertTrue(any(f.startswith('source.') for f in os.listdir(local)))
        v = self.server.get_json('/api/v1/videos/%s' % self.vid)
        self.assertEqual(v['state'], 'ready')

    def test_ffmpeg_plays_through_sluice(self):
        url = self.server.url(self.master)
        r = subprocess.run([FFMPEG, '-v', 'error', '-i', url, '-f', 'null', '-'], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), '', 'ffmpeg reported errors')
        self.assertAlmostEqual(ffprobe_duration(url), 3.0, delta=0.5)

    def test_segments_range_etag_and_cache(self):
        rendition, segs = self.media_playlist()
        uri = segs[0]
        self.assertRegex(uri, r'\?v=v\d+$', 'finished segments carry the package version')
        name = uri.split('?')[0]
        want = self.double.object(PREFIX + self.package_prefix() + (rendition + '/' if rendition else '') + name)
        path = '/videos/%s/hls/%s%s' % (self.vid, rendition + '/' if rendition else '', uri)
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.body, want)
        self.assertEqual(r.header('Content-Type'), 'video/mp2t')
        self.assertEqual(r.header('Cache-Control'), IMMUTABLE)
        self.assertEqual(r.header('Accept-Ranges'), 'bytes')
        self.assertTrue(r.header('Last-Modified'))
        etag = r.header('ETag')
        self.assertTrue(etag and etag.startswith('"'), etag)
        r = self.server.get(path, headers={'Range': 'bytes=100-1099'})
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.header('Content-Range'), 'bytes 100-1099/%d' % len(want))
        self.assertEqual(r.body, want[100:1100])
        r = self.server.get(path, headers={'Range': 'bytes=-188'})
        self.assertEqual(r.status, 206, r.describe())
        self.assertEqual(r.body, want[-188:])
        r = self.server.get(path, headers={'Range': 'bytes=%d-' % (len(want) + 10)})
        self.assert_error(r, 416)
        r = self.server.get(path, headers={'If-None-Match': etag})
        self.assertEqual(r.status, 304, r.describe())
        self.assertEqual(r.body, b'')
        r = self.server.get(path, headers={'If-None-Match': '"other"'})
        self.assertEqual(r.status, 200, r.describe())
        # A version that is not the package's: nothing (it never reaches another video's objects).
        r = self.server.get(path.replace('?v=v', '?v=v9'))
        self.assert_error(r, 404)

    def test_large_object_streams_whole(self):
        # Larger than what is read ahead (4 MiB): the bytes come through in order, whole, and a range of the middle.
        data = os.urandom(11 << 20)
        prefix = self.package_prefix()
        self.double.put(PREFIX + prefix + 'big.ts', data)
        path = '/videos/%s/hls/big.ts?v=%s' % (self.vid, prefix.rstrip('/').rsplit('/', 1)[1])
        r = self.server.get(path, timeout=60)
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('Content-Length'), str(len(data)))
        self.assertTrue(r.body == data, 'the streamed body differs (%d bytes)' % len(r.body))
        r = self.server.get(path, headers={'Range': 'bytes=5000000-9999999'}, timeout=60)
        self.assertEqual(r.status, 206, r.describe())
        self.assertTrue(r.body == data[5000000:10000000])
        # A client that goes away in the middle: the server carries on.
        sock = self.server.raw_socket()
        sock.sendall(('GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n' %
                      (path, self.server.auth_header_line())).encode())
        sock.recv(65536)
        sock.close()
        self.assertEqual(self.server.get(self.master).status, 200)

    def test_poster_from_the_bucket(self):
        keys = [k for k in self.double.keys(PREFIX + 'videos/%s/poster/' % self.vid) if k.endswith('.jpg')]
        self.assertEqual(len(keys), 1, keys)
        r = self.server.get('/videos/%s/poster/%s' % (self.vid, keys[0].rsplit('/', 1)[1]))
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('Content-Type'), 'image/jpeg')
        self.assertEqual(r.body, self.double.object(keys[0]))

    def test_signed_playback_checked_first(self):
        srv = self.server
        r = srv.request('PATCH', '/api/v1/videos/%s' % self.vid, body=b'{"playback_policy": "signed"}',
                        headers={'Content-Type': 'application/json'})
        self.assertEqual(r.status, 200, r.describe())
        try:
            self.assert_error(srv.get(self.master), 403, 'playback_forbidden')
            r = srv.post_json('/api/v1/videos/%s/playback-tokens' % self.vid, {'ttl': 60})
            self.assertIn(r.status, (200, 201), r.describe())
            token = r.json()['token']
            r = srv.get(self.master + '?token=' + token)
            self.assertEqual(r.status, 200, r.describe())
            self.assertIn('token=' + token, r.text())
        finally:
            srv.request('PATCH', '/api/v1/videos/%s' % self.vid, body=b'{"playback_policy": "public"}',
                        headers={'Content-Type': 'application/json'})

    def test_zz_delete_removes_the_objects(self):
        self.assertTrue(self.double.keys(PREFIX + 'videos/%s/' % self.vid))
        r = self.server.request('DELETE', '/api/v1/videos/%s' % self.vid)
        self.assertIn(r.status, (200, 204), r.describe())
        wait_until(lambda: not self.double.keys(PREFIX + 'videos/%s/' % self.vid), 20, 0.2, 'the objects gone')
        self.assert_error(self.server.get(self.master), 404)


@need_binary
@need_ffmpeg
class Redirect(StorageCase):
    SERVE = 'redirect'

    def test_segments_redirect_to_presigned_urls(self):
        rendition, segs = self.media_playlist()
        path = '/videos/%s/hls/%s%s' % (self.vid, rendition + '/' if rendition else '', segs[0])
        r = self.server.get(path)
        self.assertEqual(r.status, 302, r.describe())
        location = r.header('Location')
        url = urllib.parse.urlsplit(location)
        self.assertEqual('%s://%s' % (url.scheme, url.netloc), self.double.endpoint)
        key = PREFIX + self.package_prefix() + (rendition + '/' if rendition else '') + segs[0].split('?')[0]
        self.assertEqual(urllib.parse.unquote(url.path), '/%s/%s' % (BUCKET, key))
        q = urllib.parse.parse_qs(url.query)
        # What the double does not check: the URL lives presign-ttl seconds, signed for the configured region.
        self.assertEqual(q['X-Amz-Expires'], [str(TTL)])
        self.assertEqual(q['X-Amz-Algorithm'], ['AWS4-HMAC-SHA256'])
        self.assertRegex(q['X-Amz-Credential'][0], r'^%s/\d{8}/eu-west-3/s3/aws4_request$' % KEY_ID)
        self.assertRegex(q['X-Amz-Signature'][0], r'^[0-9a-f]{64}$')
        self.assertNotIn('S3RVER-secret', location)
        status, _, body = self.double.get(url.path + '?' + url.query)
        self.assertEqual(status, 200)
        self.assertEqual(body, self.double.object(key))

    def test_playlists_served_by_sluice(self):
        for path in (self.master, '/videos/%s/hls/%s' % (self.vid, self.media_playlist()[1][0].split('?')[0])):
            if path.endswith('.ts'):
                continue
            r = self.server.get(path)
            self.assertEqual(r.status, 200, r.describe())
            self.assertEqual(r.header('Content-Type'), PLAYLIST_TYPE)

    def test_ffmpeg_follows_the_redirects(self):
        url = self.server.url(self.master)
        r = subprocess.run([FFMPEG, '-v', 'error', '-i', url, '-f', 'null', '-'], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertAlmostEqual(ffprobe_duration(url), 3.0, delta=0.5)


class Refused(unittest.TestCase):
    """A [storage] the server cannot use stops its start, naming the key, never echoing the secret."""

    @need_binary
    def test_bad_storage_configuration(self):
        with tempfile.TemporaryDirectory() as d:
            for storage, says in (({'url': 's3://media/x', 'serve': 'sideways'}, '[storage] serve'),
                                  ({'url': 'file:///srv/x', 'serve': 'redirect'}, '[storage] serve'),
                                  ({'url': 'ftp://media/x'}, '[storage] url'),
                                  ({'url': 's3://media/x', 'access-key': 'AK', 'secret-key': ''}, 'secret')):
                srv = Server(os.path.join(d, 'data'), {'storage': dict(storage, **{'presign-ttl': 60})})
                env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
                r = subprocess.run([srv_binary(), 'serve', '--listen', '127.0.0.1:0', '--data', srv.data_dir,
                                    '--config', srv.config_path], capture_output=True, text=True, timeout=30,
                                   env=env)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn(says, r.stderr)
        with tempfile.TemporaryDirectory() as d:
            srv = Server(os.path.join(d, 'data'), {'storage': {'url': 's3://media/x', 'access-key': 'AK',
                                                               'secret-key': 'TOPSECRET', 'serve': 'nope'}})
            r = subprocess.run([srv_binary(), 'serve', '--listen', '127.0.0.1:0', '--data', srv.data_dir,
                                '--config', srv.config_path], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0)
            self.assertNotIn('TOPSECRET', r.stderr + r.stdout)


MIB = 1 << 20
STREAM_BOUND_MIB = 32  # what the size of a body may cost in VmHWM, as for an upload to the local folder


@need_binary
@need_ffmpeg
class Streamed(ServerTestCase):
    """Uploads stream to the bucket while they arrive (jobs::SourceUpload). s3rver 3.7 implements neither the listing
    of multipart uploads (GET ?uploads: NotImplemented) nor their abort (tests/s3/server.mjs adds the abort): an
    upload it was asked to start stays in its folder (BUCKET/._S3rver_uploads/ID/, with the key in `key`) until it is
    completed or aborted. So a refused or cut upload is checked three ways: no object under its key; for every
    multipart upload the double holds for that key, the server's log says it was aborted; and the server's log says
    the upload was abandoned."""

    @classmethod
    def setUpClass(cls):
        start_double(cls)
        from test_upload_memory import make_media, vm_kib
        cls.vm_kib = staticmethod(vm_kib)
        cls.CONFIG = {
            'uploads': {'max-size': '1G', 'auto-transcode': 'false'},
            'jobs': {'concurrent': 1},
            'storage': {'url': 's3://%s/%s' % (BUCKET, PREFIX.rstrip('/')), 'endpoint': cls.double.endpoint,
                        'region': 'eu-west-3', 'access-key': KEY_ID, 'secret-key': 'S3RVER-secret'},
        }
        # The storage's log lines (abandoned uploads, aborts) are the second witness; the server inherits this.
        old = os.environ.get('GST_DEBUG')
        os.environ['GST_DEBUG'] = 'sluice-storage:4'
        try:
            super().setUpClass()
        finally:
            if old is None:
                os.environ.pop('GST_DEBUG', None)
            else:
                os.environ['GST_DEBUG'] = old
        cls.media = os.path.join(cls.tmp, 'media.ts')
        make_media(cls.media, 40 * MIB)
        with open(cls.media, 'rb') as f:
            cls.media_bytes = f.read()
        # Warm-up: the first probe loads GStreamer's plugins (test_upload_memory.py says why), then the reference peak.
        srv = cls.server
        r = srv.request('POST', '/api/v1/videos', body=os.urandom(MIB),
                        headers={'Content-Type': 'video/mp4', 'X-Filename': 'warm-up.mp4'})
        assert r.status == 415, r.describe()
        head = cls.media_bytes[:2 * MIB - (2 * MIB) % 188]
        r = srv.request('POST', '/api/v1/videos', body=head,
                        headers={'Content-Type': 'video/mp2t', 'X-Filename': 'warm-up.ts'})
        assert r.status == 201, r.describe()
        assert srv.request('DELETE', '/api/v1/videos/' + r.json()['video']['id']).status == 204
        cls.hwm_before = vm_kib(srv.proc.pid, 'VmHWM')

    def log_lines(self):
        return self.server.log_tail(100000).splitlines()

    def upload_ids_for(self, key):
        """The multipart uploads the double was asked to start for key (its folder keeps them: see the class)."""
        out = []
        for f in glob.glob(os.path.join(self.s3dir, BUCKET, '._S3rver_uploads', '*', 'key')):
            with open(f) as k:
                if k.read() == PREFIX + key:
                    out.append(os.path.basename(os.path.dirname(f)))
        return out

    def assert_nothing_left(self, since):
        """The upload abandoned after log line `since`: its key has no object, and every multipart upload of the key
        was aborted (asked for). Returns the key."""
        found = {}

        def abandoned():
            for line in self.log_lines()[since:]:
                m = re.search(r'video (\w+): the upload to (videos/\S+) is abandoned', line)
                if m:
                    found['id'], found['key'] = m.group(1), m.group(2)
                    return True
            return False

        wait_until(abandoned, 20, 0.1, 'the server to abandon the upload')
        key = found['key']
        self.assertRegex(key, r'^videos/%s/source\.\w+$' % found['id'])

        def aborted():
            # The thread aborts once the part in flight is back: asked of the double (which refuses it), or not needed.
            text = '\n'.join(self.log_lines()[since:])
            said = re.search(r'abort(ed the| of the) multipart upload of %s\b' % re.escape(key), text)
            return said is not None or not self.upload_ids_for(key)

        wait_until(aborted, 20, 0.1, 'the abort of the multipart upload of %s' % key)
        # An upload whose object was complete before it was refused (the probe comes after the last part): removed.
        wait_until(lambda: not self.double.keys(PREFIX + 'videos/%s/' % found['id']), 20, 0.1,
                   'no object of video %s in the bucket' % found['id'])
        self.assertEqual(self.server.get('/api/v1/videos/' + found['id']).status, 404)
        return key

    def test_1_large_upload_memory_bounded_and_object_whole(self):
        srv = self.server
        r = srv.request('POST', '/api/v1/videos', body=self.media_bytes, timeout=300,
                        headers={'Content-Type': 'video/mp2t', 'X-Filename': 'big.ts'})
        self.assertEqual(r.status, 201, r.describe())
        vid = r.json()['video']['id']
        hwm = self.vm_kib(srv.proc.pid, 'VmHWM')
        grown = (hwm - self.hwm_before) / 1024
        sys.stderr.write('VmHWM %.1f -> %.1f MiB (+%.1f) ' % (self.hwm_before / 1024, hwm / 1024, grown))
        self.assertLess(grown, STREAM_BOUND_MIB, 'VmHWM grew by %.1f MiB over a %d MiB upload to the bucket'
                        % (grown, len(self.media_bytes) >> 20))
        # Whole in the bucket once the 201 came, in parts (the upload the double completed has gone from its folder).
        key = PREFIX + 'videos/%s/source.ts' % vid
        self.assertEqual(self.double.keys(PREFIX + 'videos/%s/' % vid), [key])
        self.assertTrue(self.double.object(key) == self.media_bytes, 'the object differs from the upload')
        self.assertEqual(self.upload_ids_for('videos/%s/source.ts' % vid), [])
        self.assertEqual(srv.request('DELETE', '/api/v1/videos/' + vid).status, 204)

    def test_form_upload_object_whole(self):
        # A multipart form, the file larger than two parts: the key's extension from the form's file name.
        data = self.media_bytes[:20 * MIB - (20 * MIB) % 188]
        r = self.server.upload(data=data, filename='Clip.TS', content_type='video/mp2t', title='form')
        self.assertEqual(r.status, 201, r.describe())
        vid = r.json()['video']['id']
        key = PREFIX + 'videos/%s/source.ts' % vid
        self.assertEqual(self.double.keys(PREFIX + 'videos/%s/' % vid), [key])
        self.assertTrue(self.double.object(key) == data, 'the object differs from the upload')
        # A small one: one PUT.
        r = self.server.upload('short')
        self.assertEqual(r.status, 201, r.describe())
        small = r.json()['video']['id']
        self.assertEqual(self.double.object(PREFIX + 'videos/%s/source.mp4' % small), MEDIA.bytes('short'))
        for v in (vid, small):
            self.assertEqual(self.server.request('DELETE', '/api/v1/videos/' + v).status, 204)

    def test_not_media_leaves_nothing(self):
        since = len(self.log_lines())
        r = self.server.request('POST', '/api/v1/videos', body=os.urandom(20 * MIB), timeout=120,
                                headers={'Content-Type': 'video/mp4', 'X-Filename': 'noise.mp4'})
        self.assert_error(r, 415, 'not_media')
        self.assert_nothing_left(since)

    def test_bad_field_leaves_nothing(self):
        # Refused once the body is in (a priority out of range): the bytes went to the bucket meanwhile.
        since = len(self.log_lines())
        r = self.server.request('POST', '/api/v1/videos?priority=5000', body=self.media_bytes[:12 * MIB], timeout=120,
                                headers={'Content-Type': 'video/mp2t', 'X-Filename': 'bad.ts'})
        self.assert_error(r, 422, 'invalid_parameter', 'priority')
        self.assert_nothing_left(since)

    def test_client_gone_midway_leaves_nothing(self):
        since = len(self.log_lines())
        sock = self.server.raw_socket()
        sock.sendall(('POST /api/v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp2t\r\n'
                      'X-Filename: cut.ts\r\nContent-Length: %d\r\n%s\r\n'
                      % (len(self.media_bytes), self.server.auth_header_line())).encode())
        sock.sendall(self.media_bytes[:20 * MIB])
        sock.close()
        key = self.assert_nothing_left(since)
        self.assertTrue(key.endswith('.ts'), key)


TUS = {'Tus-Resumable': '1.0.0'}
OCTETS = 'application/offset+octet-stream'


def tus_create(srv, length, filename, concat=None):
    headers = dict(TUS, **{'Upload-Length': str(length),
                           'Upload-Metadata': 'filename ' + base64.b64encode(filename.encode()).decode()})
    if concat:
        headers['Upload-Concat'] = concat
    r = srv.request('POST', '/api/v1/uploads', headers=headers)
    if r.status != 201:
        raise AssertionError('tus creation: %s' % r.describe())
    return urllib.parse.urlparse(r.header('Location')).path


def tus_partial(srv, length):
    """A partial upload of a concatenation (Upload-Concat: partial); its path."""
    return tus_create(srv, length, 'part', concat='partial')


def tus_final(srv, paths, filename):
    """The final upload of a concatenation of `paths`, in order: the answer (201 with Sluice-Video-Id once ingested)."""
    return srv.request('POST', '/api/v1/uploads', timeout=120, headers=dict(TUS, **{
        'Upload-Concat': 'final;' + ' '.join(paths),
        'Upload-Metadata': 'filename ' + base64.b64encode(filename.encode()).decode()}))


def tus_patch(srv, path, offset, body, timeout=120):
    return srv.request('PATCH', path, body=body, timeout=timeout,
                       headers=dict(TUS, **{'Content-Type': OCTETS, 'Upload-Offset': str(offset)}))


def tus_offset(srv, path):
    r = srv.request('HEAD', path, headers=TUS)
    if r.status != 200:
        raise AssertionError('HEAD %s: %s' % (path, r.describe()))
    return int(r.header('Upload-Offset'))


def multipart_parts(s3dir, upload_id):
    """The parts the double holds of one multipart upload (BUCKET/._S3rver_uploads/ID/N, N.md5): {N: (bytes, md5)}."""
    folder = os.path.join(s3dir, BUCKET, '._S3rver_uploads', upload_id)
    out = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.isdigit():
            with open(os.path.join(folder, name), 'rb') as f, open(os.path.join(folder, name + '.md5')) as m:
                out[int(name)] = (f.read(), m.read().strip())
    return out


def multipart_uploads(s3dir):
    """The multipart uploads the double holds (neither completed nor aborted): {upload id: key}."""
    out = {}
    for f in glob.glob(os.path.join(s3dir, BUCKET, '._S3rver_uploads', '*', 'key')):
        try:
            with open(f) as k:
                out[os.path.basename(os.path.dirname(f))] = k.read()
        except FileNotFoundError:
            pass  # aborted (or completed) between the listing and the read: not held any more
    return out


@need_binary
@need_ffmpeg
class TusToBucket(ServerTestCase):
    """A resumable (tus) upload goes to the bucket as it arrives: every whole 8 MiB part of what a PATCH brought is in
    the bucket before that PATCH is answered (the double's own folder of the multipart upload, and the catalog row's
    parts, which name the same ETags), the last PATCH completes the object, and the video plays. DELETE and expiry
    abort the multipart upload (the double, which does not itself, is taught to by tests/s3/server.mjs)."""

    EXPIRY = 3600

    @classmethod
    def setUpClass(cls):
        start_double(cls)
        from test_upload_memory import make_media
        cls.CONFIG = {
            'uploads': {'max-size': '1G', 'auto-transcode': 'false', 'resumable-expiry': cls.EXPIRY},
            'jobs': {'concurrent': 1},
            'storage': {'url': 's3://%s/%s' % (BUCKET, PREFIX.rstrip('/')), 'endpoint': cls.double.endpoint,
                        'region': 'eu-west-3', 'access-key': KEY_ID, 'secret-key': 'S3RVER-secret'},
        }
        super().setUpClass()
        media = os.path.join(cls.tmp, 'tus.ts')
        make_media(media, 18 * MIB)
        with open(media, 'rb') as f:
            cls.data = f.read()

    def row(self, path):
        """The upload's catalog row: (offset, multipart upload id, parts as [(size, etag)], holder)."""
        con = sqlite3.connect('file:%s?mode=ro' % os.path.join(self.server.data_dir, 'sluice.db'), uri=True,
                              timeout=5)
        try:
            got = con.execute('SELECT received, multipart, parts, holder FROM uploads WHERE id = ?',
                              (path.rsplit('/', 1)[1],)).fetchone()
        finally:
            con.close()
        self.assertIsNotNone(got, 'no row for %s' % path)
        parts = [(int(ln.split(' ', 1)[0]), ln.split(' ', 1)[1]) for ln in got[2].splitlines()]
        return got[0], got[1], parts, got[3]

    def assert_parts(self, path, count):
        """The bucket holds exactly `count` parts of 8 MiB of the upload, the data's first bytes in order, and the row
        records them with the ETags the double gave."""
        offset, multipart, parts, holder = self.row(path)
        self.assertTrue(holder, 'the row names no holder')
        self.assertEqual(len(parts), count, parts)
        held = multipart_parts(self.s3dir, multipart)
        self.assertEqual(sorted(held), list(range(1, count + 1)))
        for n in range(1, count + 1):
            body, md5 = held[n]
            self.assertEqual(len(body), 8 * MIB)
            self.assertTrue(body == self.data[(n - 1) * 8 * MIB:n * 8 * MIB], 'part %d differs from the upload' % n)
            self.assertEqual(parts[n - 1], (8 * MIB, '"%s"' % md5))
        return offset, multipart

    def test_parts_in_the_bucket_before_the_last_patch(self):
        srv = self.server
        path = tus_create(srv, len(self.data), 'tus.ts')
        # 5 MiB: no whole part yet, nothing in the bucket.
        r = tus_patch(srv, path, 0, self.data[:5 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        self.assertEqual(self.row(path)[1:3], ('', []))
        # To 9 MiB: part 1 is in the bucket once the PATCH is answered.
        r = tus_patch(srv, path, 5 * MIB, self.data[5 * MIB:9 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        offset, multipart = self.assert_parts(path, 1)
        self.assertEqual(offset, 9 * MIB)
        self.assertEqual(multipart_uploads(self.s3dir)[multipart].split('/')[-1], 'source.ts')
        # To 17 MiB: part 2.
        r = tus_patch(srv, path, 9 * MIB, self.data[9 * MIB:17 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        self.assert_parts(path, 2)
        self.assertEqual(tus_offset(srv, path), 17 * MIB)
        # The last PATCH: the last part and the completion make the source, whole; no multipart upload is left.
        r = tus_patch(srv, path, 17 * MIB, self.data[17 * MIB:])
        self.assertEqual(r.status, 204, r.describe())
        vid = r.header('Sluice-Video-Id')
        self.assertTrue(vid, r.describe())
        key = PREFIX + 'videos/%s/source.ts' % vid
        self.assertEqual(self.double.keys(PREFIX + 'videos/%s/' % vid), [key])
        self.assertTrue(self.double.object(key) == self.data, 'the object differs from the upload')
        self.assertNotIn(multipart, multipart_uploads(self.s3dir))
        self.assertEqual(srv.video(vid)['size'], len(self.data))
        # It plays: a job's package through the api.
        r = srv.post_job(vid, ladder='120p:200')
        self.assertEqual(r.status, 202, r.describe())
        job = r.json()
        srv.wait_succeeded(job.get('job', job)['id'], timeout=120)
        self.assertGreater(ffprobe_duration(srv.url('/videos/%s/hls/master.m3u8' % vid)), 1.0)
        self.assertEqual(srv.request('DELETE', '/api/v1/videos/' + vid).status, 204)

    def test_delete_aborts_the_multipart_upload(self):
        srv = self.server
        path = tus_create(srv, len(self.data), 'gone.ts')
        r = tus_patch(srv, path, 0, self.data[:9 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        _, multipart = self.assert_parts(path, 1)
        r = srv.request('DELETE', path, headers=TUS)
        self.assertEqual(r.status, 204, r.describe())
        wait_until(lambda: multipart not in multipart_uploads(self.s3dir), 20, 0.1,
                   'the multipart upload %s to be aborted' % multipart)
        self.assertFalse(os.path.exists(os.path.join(srv.data_dir, 'resumable', path.rsplit('/', 1)[1])))

    def test_a_cut_ingest_is_sent_again_whole_after_the_restart(self):
        # A real cut: the bucket stalls (the double stopped) while the last PATCH's ingest sends the last part and the
        # completion, after the row recorded the hand-over ("processing"); the server is killed there. Its next start
        # sends the whole local file again as a new multipart upload (the old one is aborted: it may or may not have
        # been completed) and makes the video.
        data_dir = os.path.join(self.tmp, 'cut')
        srv = Server(data_dir, self.CONFIG).start()
        self.addCleanup(srv.kill)
        path = tus_create(srv, len(self.data), 'cut.ts')
        uid = path.rsplit('/', 1)[1]
        r = tus_patch(srv, path, 0, self.data[:17 * MIB])
        self.assertEqual(r.status, 204, r.describe())

        def row():
            con = sqlite3.connect('file:%s?mode=ro' % os.path.join(data_dir, 'sluice.db'), uri=True, timeout=5)
            try:
                return con.execute('SELECT state, video_id, multipart FROM uploads WHERE id = ?', (uid,)).fetchone()
            finally:
                con.close()

        old_multipart = row()[2]
        self.assertIn(old_multipart, multipart_uploads(self.s3dir))
        self.double.proc.send_signal(signal.SIGSTOP)
        try:
            def last_patch():
                try:
                    tus_patch(srv, path, 17 * MIB, self.data[17 * MIB:], timeout=60)
                except (OSError, http.client.HTTPException):
                    pass  # the server is killed before it answers

            threading.Thread(target=last_patch, daemon=True).start()
            state, vid, _ = wait_until(lambda: (lambda r: r if r[0] == 'processing' else None)(row()), 30, 0.05,
                                       'the hand-over to ingest recorded')
            time.sleep(0.5)  # the ingest is now waiting on the stopped bucket
            srv.kill()
        finally:
            self.double.proc.send_signal(signal.SIGCONT)
        self.assertFalse(self.double.keys(PREFIX + 'videos/%s/' % vid), 'the source exists before the restart')
        again = Server(data_dir, self.CONFIG).start()
        self.addCleanup(again.kill)
        wait_until(lambda: again.request('GET', '/api/v1/videos/' + vid).status == 200, 60, 0.2,
                   'the video made by the ingest after the restart')
        self.assertEqual(row()[0], 'completed')
        key = PREFIX + 'videos/%s/source.ts' % vid
        self.assertTrue(self.double.object(key) == self.data, 'the object differs from the upload')
        self.assertEqual(again.video(vid)['size'], len(self.data))
        wait_until(lambda: old_multipart not in multipart_uploads(self.s3dir), 20, 0.1,
                   'the cut multipart upload aborted')
        self.assertEqual([k for k in multipart_uploads(self.s3dir).values() if k == key], [])
        self.assertFalse(os.path.exists(os.path.join(data_dir, 'resumable', uid)))
        self.assertEqual(again.request('DELETE', '/api/v1/videos/' + vid).status, 204)


    def test_partial_object_once_answered_removed_on_delete(self):
        # A partial upload of a concatenation goes to the bucket too, as an object of its own (uploads/ID, not under
        # videos/): it exists once the PATCH with its last byte is answered, its multipart upload completed, and goes
        # with the partial's DELETE. A small one is one PUT at its last byte.
        srv = self.server
        big, small = tus_partial(srv, 10 * MIB), tus_partial(srv, MIB + 7)
        keys = {p: PREFIX + 'uploads/' + p.rsplit('/', 1)[1] for p in (big, small)}
        r = tus_patch(srv, big, 0, self.data[:9 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        offset, multipart, parts, holder = self.row(big)
        self.assertEqual((offset, len(parts)), (9 * MIB, 1))
        self.assertTrue(holder)
        self.assertEqual(multipart_uploads(self.s3dir)[multipart], keys[big])
        self.assertEqual(self.double.keys(keys[big]), [], 'the object exists before the last byte')
        r = tus_patch(srv, big, 9 * MIB, self.data[9 * MIB:10 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        self.assertEqual(self.double.keys(keys[big]), [keys[big]])
        self.assertTrue(self.double.object(keys[big]) == self.data[:10 * MIB], 'the object differs from the part')
        self.assertNotIn(multipart, multipart_uploads(self.s3dir))
        r = tus_patch(srv, small, 0, self.data[:MIB + 7])
        self.assertEqual(r.status, 204, r.describe())
        self.assertTrue(self.double.object(keys[small]) == self.data[:MIB + 7], 'the object differs from the part')
        self.assertEqual(self.row(small)[1:3], ('', []))
        for path in (big, small):
            r = srv.request('DELETE', path, headers=TUS)
            self.assertEqual(r.status, 204, r.describe())
            wait_until(lambda: not self.double.keys(keys[path]), 20, 0.1, 'the object of %s removed' % path)
            self.assertFalse(os.path.exists(os.path.join(srv.data_dir, 'resumable', path.rsplit('/', 1)[1])))
        self.assertEqual(self.double.keys(PREFIX + 'uploads/'), [])

    def test_partial_completion_refused_then_retried(self):
        # The bucket refuses the completion of a partial's object (its multipart upload is gone from the double): the
        # last PATCH is 503 with JSON, the partial is not complete (its offset one byte short, so a final refuses it),
        # and the client's retry of that byte sends the file again whole: the object is the part's bytes.
        srv = self.server
        path = tus_partial(srv, 10 * MIB)
        key = PREFIX + 'uploads/' + path.rsplit('/', 1)[1]
        r = tus_patch(srv, path, 0, self.data[:9 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        _, multipart = self.assert_parts(path, 1)
        shutil.rmtree(os.path.join(self.s3dir, BUCKET, '._S3rver_uploads', multipart))
        r = tus_patch(srv, path, 9 * MIB, self.data[9 * MIB:10 * MIB])
        self.assertEqual(r.status, 503, r.describe())
        self.assertEqual(r.json()['error']['code'], 'unavailable', r.describe())
        self.assertEqual(tus_offset(srv, path), 10 * MIB - 1)
        self.assertEqual(self.double.keys(key), [])
        r = tus_final(srv, [path], 'joined.ts')
        self.assertEqual(r.status, 400, r.describe())
        r = tus_patch(srv, path, 10 * MIB - 1, self.data[10 * MIB - 1:10 * MIB])
        self.assertEqual(r.status, 204, r.describe())
        self.assertTrue(self.double.object(key) == self.data[:10 * MIB], 'the object differs from the part')
        self.assertEqual([k for k in multipart_uploads(self.s3dir).values() if k == key], [])
        r = srv.request('DELETE', path, headers=TUS)
        self.assertEqual(r.status, 204, r.describe())
        wait_until(lambda: not self.double.keys(key), 20, 0.1, 'the object removed')


class TusExpiryInBucket(TusToBucket):
    """An expired upload's multipart upload is aborted by the sweep."""

    EXPIRY = 4

    test_parts_in_the_bucket_before_the_last_patch = None
    test_delete_aborts_the_multipart_upload = None
    test_a_cut_ingest_is_sent_again_whole_after_the_restart = None
    test_partial_object_once_answered_removed_on_delete = None
    test_partial_completion_refused_then_retried = None

    def test_expiry_aborts_the_multipart_upload(self):
        srv = self.server
        path = tus_create(srv, len(self.data), 'late.ts')
        r = tus_patch(srv, path, 0, self.data[:9 * MIB])
        if r.status == 410:
            self.skipTest('the upload expired before its first PATCH was answered (a very slow machine)')
        self.assertEqual(r.status, 204, r.describe())
        _, multipart = self.assert_parts(path, 1)
        wait_until(lambda: multipart not in multipart_uploads(self.s3dir), 20, 0.2,
                   'the sweep to abort the multipart upload %s' % multipart)
        self.assertEqual(srv.request('HEAD', path, headers=TUS).status, 404)
        self.assertFalse(os.path.exists(os.path.join(srv.data_dir, 'resumable', path.rsplit('/', 1)[1])))

    def test_expiry_removes_a_partial_object(self):
        srv = self.server
        path = tus_partial(srv, MIB)
        key = PREFIX + 'uploads/' + path.rsplit('/', 1)[1]
        r = tus_patch(srv, path, 0, self.data[:MIB])
        if r.status == 410:
            self.skipTest('the upload expired before its PATCH was answered (a very slow machine)')
        self.assertEqual(r.status, 204, r.describe())
        self.assertEqual(self.double.keys(key), [key])
        wait_until(lambda: not self.double.keys(key), 20, 0.2, 'the sweep to remove %s' % key)
        self.assertEqual(srv.request('HEAD', path, headers=TUS).status, 404)


def srv_binary():
    return os.environ['SLUICE_BINARY']


if __name__ == '__main__':
    main()
