#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""[limits]: token buckets per API key or client address. A burst gets 429 rate_limited with Retry-After and the
RateLimit-* headers, the budget refills, uploads refused for rate leave nothing on disk, X-Forwarded-For is
believed only from a trusted proxy, and the media, API and per-key budgets are separate."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import MEDIA, ServerTestCase, main, need_binary, need_ffmpeg  # noqa: E402

MEDIA_URL = '/videos/0123456789abcdef/hls/master.m3u8'


class LimitsCase(ServerTestCase):
    """Checks the data folder on disk at the end of a test (check_clean's own requests would draw on the
    budgets under test)."""

    def tearDown(self):
        srv = self.server
        if not srv.alive():
            self.fail('sluice serve died during the test:\n%s' % srv.log_tail())
        self.assert_no_uploads_left(srv)

    def assert_limited(self, r, limit):
        self.assert_error(r, 429, 'rate_limited')
        self.assertEqual(r.header('RateLimit-Limit'), str(limit), r.describe())
        self.assertEqual(r.header('RateLimit-Remaining'), '0', r.describe())
        self.assertGreaterEqual(int(r.header('Retry-After')), 1, r.describe())
        self.assertGreaterEqual(int(r.header('RateLimit-Reset')), 1, r.describe())

    def drain(self, path, limit, headers=None):
        """limit requests answered (not 429), with RateLimit-Remaining counting down; then the next one is 429."""
        for i in range(limit):
            r = self.server.get(path, headers=headers)
            self.assertNotEqual(r.status, 429, 'request %d of %d: %s' % (i + 1, limit, r.describe()))
            self.assertEqual(r.header('RateLimit-Limit'), str(limit), r.describe())
            self.assertEqual(r.header('RateLimit-Remaining'), str(limit - 1 - i), r.describe())
        return self.server.get(path, headers=headers)


@need_binary
class ApiBurst(LimitsCase):
    CONFIG = {'uploads': {'auto-transcode': False},
              'limits': {'enabled': True, 'api-rate': 2, 'api-burst': 3, 'media-rate': 0.01, 'media-burst': 2}}

    def test_burst_then_429_then_refill(self):
        r = self.drain('/api/v1/videos', 3)
        self.assert_limited(r, 3)
        self.assertEqual(r.header('Retry-After'), '1', r.describe())  # one token in 0.5 s at 2/s
        self.assertEqual(r.header('RateLimit-Reset'), '2', r.describe())  # 3 tokens in 1.5 s
        self.assertIn('try again in 1 s', r.json()['error']['message'])
        # Still refused at once; after Retry-After one request (only) goes through again.
        self.assert_limited(self.server.get('/api/v1/jobs'), 3)
        time.sleep(int(r.header('Retry-After')))
        r = self.server.get('/api/v1/videos')
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.json()['videos'], [])
        # After the stated reset the whole burst is back.
        time.sleep(1.6)
        self.assertEqual(self.drain('/api/v1/videos', 3).status, 429)
        # Routes that are not limited: no headers, never 429.
        for _ in range(5):
            h = self.server.get('/health')
            self.assertEqual(h.status, 200, h.describe())
            self.assertIsNone(h.header('RateLimit-Limit'), h.describe())

    def test_media_and_api_budgets_are_separate(self):
        time.sleep(1.6)  # the API budget full again after any other test
        # Media: 2, then 429 (the video does not exist: the budget is drawn before the answer).
        r = self.drain(MEDIA_URL, 2)
        self.assert_limited(r, 2)
        # The API budget is untouched by media requests, and spending it leaves media refused, not reset.
        r = self.server.get('/api/v1/videos')
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('RateLimit-Limit'), '3', r.describe())
        self.assertEqual(r.header('RateLimit-Remaining'), '2', r.describe())
        self.assert_limited(self.server.get(MEDIA_URL), 2)


@need_binary
class LoopbackDefault(LimitsCase):
    """No [limits] enabled: listening on loopback, the limits are off."""
    CONFIG = {'uploads': {'auto-transcode': False}, 'limits': {'api-rate': 0.01, 'api-burst': 1}}

    def test_off_on_loopback(self):
        for _ in range(5):
            r = self.server.get('/api/v1/videos')
            self.assertEqual(r.status, 200, r.describe())
            self.assertIsNone(r.header('RateLimit-Limit'), r.describe())


@need_binary
class ForwardedFor(LimitsCase):
    """The test client is 127.0.0.1, listed as a trusted proxy: X-Forwarded-For names the client."""
    CONFIG = {'uploads': {'auto-transcode': False},
              'server': {'trusted-proxies': '10.0.0.0/8;127.0.0.1'},
              'limits': {'enabled': True, 'api-rate': 0.01, 'api-burst': 2}}

    def test_believed_from_a_trusted_proxy(self):
        a = {'X-Forwarded-For': '198.51.100.7'}
        self.assert_limited(self.drain('/api/v1/videos', 2, a), 2)
        # Another client behind the same proxy has its own budget.
        r = self.server.get('/api/v1/videos', headers={'X-Forwarded-For': '198.51.100.8'})
        self.assertEqual(r.status, 200, r.describe())
        # The nearest untrusted address counts: what a client writes to the left of it does not get it a new
        # budget, and trusted proxies on the right are skipped.
        for xff in ('203.0.113.1, 198.51.100.7', '192.0.2.1, 198.51.100.7, 10.1.2.3'):
            self.assert_limited(self.server.get('/api/v1/videos', headers={'X-Forwarded-For': xff}), 2)


@need_binary
class ForwardedForUntrusted(LimitsCase):
    """No trusted proxies: X-Forwarded-For is ignored and the connection's address counts."""
    CONFIG = {'uploads': {'auto-transcode': False},
              'limits': {'enabled': True, 'api-rate': 0.01, 'api-burst': 2}}

    def test_ignored_from_anyone_else(self):
        for i, xff in enumerate(('198.51.100.1', '198.51.100.2')):
            r = self.server.get('/api/v1/videos', headers={'X-Forwarded-For': xff})
            self.assertEqual(r.status, 200, r.describe())
            self.assertEqual(r.header('RateLimit-Remaining'), str(1 - i), r.describe())
        r = self.server.get('/api/v1/videos', headers={'X-Forwarded-For': '198.51.100.3'})
        self.assert_limited(r, 2)


@need_binary
class PerKey(LimitsCase):
    """With API keys, each key has its own budget, whatever address it comes from."""
    API_KEY_SCOPES = 'admin'
    CONFIG = {'uploads': {'auto-transcode': False}, 'auth': {'mode': 'keys'},
              'limits': {'enabled': True, 'api-rate': 0.01, 'api-burst': 2}}

    def test_budget_per_key(self):
        other = self.server.create_key('other', 'read')
        self.assert_limited(self.drain('/api/v1/videos', 2), 2)
        r = self.server.get('/api/v1/videos', headers={'Authorization': 'Bearer ' + other})
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.header('RateLimit-Remaining'), '1', r.describe())


@need_binary
@need_ffmpeg
class UploadStarts(LimitsCase):
    CONFIG = {'uploads': {'auto-transcode': False},
              'limits': {'enabled': True, 'upload-starts-rate': 0.01, 'upload-starts-burst': 1}}

    def test_refused_upload_leaves_nothing(self):
        first = self.server.upload_ok()['video']
        self.assertEqual(self.video_dirs(), [first['id']])
        r = self.server.upload()
        self.assert_limited(r, 1)
        self.assertEqual(self.video_dirs(), [first['id']])
        self.assertEqual(self.uploads_left(self.server), [])
        # Uploads have a budget of their own: the API is still answered.
        self.assertEqual(len(self.server.get_json('/api/v1/videos')['videos']), 1)


@need_binary
@need_ffmpeg
class UploadBytes(LimitsCase):
    CONFIG = {'uploads': {'auto-transcode': False},
              'limits': {'enabled': True, 'upload-bytes-rate': '1K', 'upload-bytes-burst': '64K'}}

    def test_upload_over_the_byte_budget_leaves_nothing(self):
        data = MEDIA.bytes('short')
        self.assertGreater(len(data), 64 * 1024)
        r = self.server.upload()
        self.assert_error(r, 429, 'rate_limited')
        self.assertEqual(r.header('RateLimit-Limit'), str(64 * 1024), r.describe())
        self.assertGreaterEqual(int(r.header('Retry-After')), 1, r.describe())
        self.assertIn('upload bytes', r.json()['error']['message'])
        self.assertEqual(self.video_dirs(), [])
        self.assertEqual(self.uploads_left(self.server), [])
        self.assertEqual(self.server.get_json('/api/v1/videos')['videos'], [])


if __name__ == '__main__':
    main()
