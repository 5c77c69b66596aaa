#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: health, pipelines, encoders, routing errors, and the validation of job
requests (nothing here runs a long transcode)."""

import os
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (Server, ServerTestCase, _rmtree, main, need_binary, need_ffmpeg,  # noqa: E402
                           read_http_response)

UNKNOWN_ID = '0123456789abcdef'


@need_binary
class ApiBasics(ServerTestCase):
    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'concurrent': 1}}

    def test_health(self):
        r = self.server.get('/health')
        self.assertEqual(r.status, 200, r.describe())
        self.assertTrue(r.header('Content-Type', '').startswith('application/json'), r.describe())
        h = r.json()
        self.assertEqual(h.get('status'), 'ok', h)
        self.assertIsInstance(h.get('version'), str, h)
        self.assertIs(h['checks']['store']['ok'], True, h)
        self.assertIs(h['checks']['disk']['ok'], True, h)
        self.assertIsInstance(h['checks']['disk']['free_bytes'], int, h)
        self.assertGreater(h['checks']['disk']['free_bytes'], 0, h)
        self.assertIsInstance(h['jobs']['queued'], int, h)
        self.assertIsInstance(h['jobs']['running'], int, h)
        r = self.server.request('HEAD', '/health')
        self.assertIn(r.status, (200, 405), r.describe())

    def test_pipelines_list_hls_with_schema(self):
        body = self.server.get_json('/api/v1/pipelines')
        pipelines = {p['name']: p for p in body['pipelines']}
        self.assertIn('hls', pipelines, body)
        hls = pipelines['hls']
        self.assertIsInstance(hls.get('summary'), str, hls)
        # docs/api.md: parameters in the description's order, each {name, type, default, min, max, values, description}.
        params = {p['name']: p for p in hls['parameters']}
        seg = params['segment_seconds']
        self.assertEqual(seg['type'], 'integer', seg)
        self.assertEqual(seg['default'], 4, seg)
        self.assertIsInstance(seg['min'], int, seg)
        self.assertEqual(seg['min'], 1, seg)
        self.assertEqual(seg['max'], 20, seg)
        self.assertTrue(seg.get('description'), seg)
        preset = params['preset']
        self.assertEqual(preset['type'], 'enum', preset)
        self.assertIn('veryslow', preset['values'], preset)
        self.assertIn('ultrafast', preset['values'], preset)
        self.assertEqual(preset['default'], 'veryfast', preset)
        for name in ('audio_bitrate', 'scaler', 'queue_buffers'):
            self.assertIn(name, params)
        self.assertEqual(body.get('default'), 'hls', body)
        # The gst-launch fragments come along, for people who debug pipelines by hand.
        self.assertIn('hlssink2', hls['fragments']['sink'], hls)

    def test_encoders_x264_runs(self):
        body = self.server.get_json('/api/v1/encoders')
        table = body['encoders']
        self.assertIn('x264', body['order'], body)
        encoders = {e['name']: e for e in table}
        self.assertIn('x264', encoders, body)
        self.assertIs(encoders['x264'].get('runs'), True, encoders['x264'])
        self.assertEqual(body.get('auto'), 'x264', 'the answer does not say which encoder auto picks: %s' % body)
        # Which rate controls each offers: x264 both, an encoder that spells its rate control itself cbr only.
        self.assertEqual(encoders['x264'].get('rate_controls'), ['cbr', 'capped-crf'], encoders['x264'])
        self.assertEqual(encoders['openh264'].get('rate_controls'), ['cbr'], encoders['openh264'])

    def test_unknown_routes_are_json_404(self):
        for path in ('/api/v1/nope', '/api/v2/videos', '/nope', '/api/v1/videos/' + UNKNOWN_ID,
                     '/api/v1/videos/not-an-id', '/api/v1/jobs/' + UNKNOWN_ID, '/api/v1/jobs/xyz',
                     '/api/v1/videos/%s/jobs/extra' % UNKNOWN_ID,
                     '/videos/%s/hls/master.m3u8' % UNKNOWN_ID, '/videos/', '/videos/' + UNKNOWN_ID):
            with self.subTest(path=path):
                self.assert_error(self.server.get(path), 404, 'not_found')
        self.assert_error(self.server.request('DELETE', '/api/v1/videos/' + UNKNOWN_ID), 404, 'not_found')
        self.assert_error(self.server.request('DELETE', '/api/v1/jobs/' + UNKNOWN_ID), 404, 'not_found')
        self.assert_error(self.server.post_job(UNKNOWN_ID, ladder='240p'), 404, 'not_found')

    @need_ffmpeg
    def test_wrong_method_is_405_with_allow(self):
        vid = self.video_id()
        cases = [('PUT', '/api/v1/videos', {'GET', 'POST'}),
                 ('DELETE', '/api/v1/videos', {'GET', 'POST'}),
                 ('PATCH', '/api/v1/videos', {'GET', 'POST'}),
                 ('PUT', '/api/v1/videos/' + vid, {'GET', 'PATCH', 'DELETE'}),
                 ('GET', '/api/v1/videos/%s/playback-tokens' % vid, {'POST'}),
                 ('POST', '/api/v1/videos/' + vid, {'GET', 'DELETE'}),
                 ('PUT', '/api/v1/videos/%s/jobs' % vid, {'POST'}),
                 ('POST', '/api/v1/jobs', {'GET'}),
                 ('POST', '/api/v1/pipelines', {'GET'}),
                 ('DELETE', '/api/v1/encoders', {'GET'}),
                 ('POST', '/api/v1/events', {'GET'}),
                 ('POST', '/health', {'GET'})]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = self.server.request(method, path, body=b'{}' if method in ('POST', 'PUT', 'PATCH') else None,
                                        headers={'Content-Type': 'application/json'})
                self.assert_error(r, 405, 'method_not_allowed')
                allow = {m.strip().upper() for m in (r.header('Allow') or '').split(',') if m.strip()}
                self.assertTrue(allowed <= allow, 'Allow %r lacks %s: %s' % (r.header('Allow'), allowed, r.describe()))
                self.assertNotIn(method, allow, r.describe())

    def test_jobs_listing_and_bad_query(self):
        body = self.server.get_json('/api/v1/jobs')
        self.assertIsInstance(body['jobs'], list)
        body = self.server.get_json('/api/v1/jobs?state=running')
        self.assertTrue(all(j['state'] == 'running' for j in body['jobs']), body)
        self.assertEqual(self.server.get_json('/api/v1/jobs?video=' + UNKNOWN_ID)['jobs'], [])
        # api.md: "400 bad_request ... bad query"; invalid_field naming the parameter is as good
        self.assert_error(self.server.get('/api/v1/jobs?state=sleeping'), 400, ('bad_request', 'invalid_field'),
                          'state')
        self.assert_error(self.server.get('/api/v1/jobs?video=../../etc'), (400, 404),
                          ('bad_request', 'invalid_field', 'not_found'))

    @need_ffmpeg
    def test_video_without_job_is_uploaded(self):
        v = self.server.video(self.video_id())
        self.assertEqual(v['state'], 'uploaded', v)
        self.assertEqual(v['jobs'], [], v)
        self.assertFalse((v.get('playback') or {}).get('hls'), v)
        self.assertEqual(self.server.get_json('/api/v1/jobs?video=' + v['id'])['jobs'], [])
        listed = [x['id'] for x in self.server.get_json('/api/v1/videos')['videos']]
        self.assertIn(v['id'], listed)

    # -- validation of POST /api/v1/videos/{id}/jobs: nothing is queued --

    _video = None

    def video_id(self):
        if ApiBasics._video is None:
            r = self.server.upload('short', title='validation')
            self.assertEqual(r.status, 201, r.describe())
            body = r.json()
            self.assertFalse(body.get('job'), 'auto-transcode=false, yet a job was queued: %s' % body)
            ApiBasics._video = body['video']['id']
        return ApiBasics._video

    def assert_no_job_queued(self, vid):
        self.assertEqual(self.server.get_json('/api/v1/jobs?video=' + vid)['jobs'], [])

    @need_ffmpeg
    def test_job_request_bad_json(self):
        vid = self.video_id()
        path = '/api/v1/videos/%s/jobs' % vid
        for body in (b'{"pipeline": "hls"', b'not json', b'[1, 2]', b'"hls"', b'42', b'{"ladder": "240p"} x'):
            with self.subTest(body=body):
                r = self.server.request('POST', path, body=body, headers={'Content-Type': 'application/json'})
                self.assert_error(r, 400, 'invalid_json')
        self.assert_no_job_queued(vid)

    @need_ffmpeg
    def test_job_request_body_over_1_mib(self):
        vid = self.video_id()
        path = '/api/v1/videos/%s/jobs' % vid
        big = b'{"ladder": "' + b'x' * (1100 * 1024) + b'"}'
        # Known from Content-Length.
        r = self.server.request('POST', path, body=big, headers={'Content-Type': 'application/json'})
        self.assert_error(r, 413, 'too_large')
        # Chunked: counted as it arrives, never kept whole.
        s = self.server.raw_socket()
        try:
            s.sendall(('POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s'
                       'Transfer-Encoding: chunked\r\n\r\n' % (path, self.server.auth_header_line())).encode())
            for off in range(0, len(big), 64 * 1024):
                piece = big[off:off + 64 * 1024]
                s.sendall(b'%x\r\n' % len(piece) + piece + b'\r\n')
            s.sendall(b'0\r\n\r\n')
            r = read_http_response(s, 'POST', timeout=30)
        finally:
            s.close()
        self.assertIsNotNone(r, 'connection closed without an answer')
        self.assert_error(r, 413, 'too_large')
        self.assert_no_job_queued(vid)

    @need_ffmpeg
    def test_job_request_invalid_fields(self):
        vid = self.video_id()
        for body, field in (({'colour': 'blue'}, 'colour'),
                            ({'priority': 'high'}, 'priority'),
                            ({'priority': 1.5}, 'priority'),
                            ({'params': 'segment_seconds=2'}, 'params'),
                            ({'params': [2]}, 'params'),
                            ({'ladder': 240}, 'ladder'),
                            ({'pipeline': ['hls']}, 'pipeline'),
                            ({'encoder': {'name': 'x264'}}, 'encoder')):
            with self.subTest(body=body):
                self.assert_error(self.server.post_job(vid, **body), 400, 'invalid_field', field)
        self.assert_no_job_queued(vid)

    @need_ffmpeg
    def test_job_request_invalid_parameters(self):
        vid = self.video_id()
        for body, name in (({'params': {'segment_seconds': 999}}, 'segment_seconds'),
                           ({'params': {'segment_seconds': 0}}, 'segment_seconds'),
                           ({'params': {'segment_seconds': -3}}, 'segment_seconds'),
                           ({'params': {'segment_seconds': 'abc'}}, 'segment_seconds'),
                           ({'params': {'segment_seconds': 2.5}}, 'segment_seconds'),
                           ({'params': {'segment_seconds': True}}, 'segment_seconds'),
                           ({'params': {'preset': 'turbo'}}, 'preset'),
                           ({'params': {'audio_bitrate': 4096}}, 'audio_bitrate'),
                           ({'params': {'scaler': ''}}, 'scaler'),
                           ({'params': {'rate_control': 'vbr'}}, 'rate_control'),
                           ({'params': {'crf': 0}}, 'crf'),
                           ({'params': {'crf': 52}}, 'crf'),
                           # an encoder without that rate control: refused, saying which encoders have it
                           ({'params': {'rate_control': 'capped-crf'}, 'encoder': 'openh264'}, 'x264'),
                           ({'pipeline': 'nope'}, 'nope'),
                           ({'encoder': 'nope'}, 'nope'),
                           ({'ladder': 'banana'}, 'banana')):
            with self.subTest(body=body):
                self.assert_error(self.server.post_job(vid, **body), 422, 'invalid_parameter', name)
        # an unknown parameter name: refused, whether as a bad field or as a bad parameter
        self.assert_error(self.server.post_job(vid, params={'bogus': 1}), (400, 422),
                          ('invalid_field', 'invalid_parameter'), 'bogus')
        self.assert_no_job_queued(vid)

    @need_ffmpeg
    def test_job_request_hostile_values(self):
        vid = self.video_id()
        target = os.path.join(self.tmp, 'pwned')
        inject = '" ! filesink location=%s' % target
        cases = [{'params': {'preset': 'veryfast' + inject}},
                 {'params': {'scaler': 'bilinear' + inject}},
                 {'params': {'segment_seconds': '2 ! filesink location=%s' % target}},
                 {'params': {'preset': 'veryfast\n'}},
                 {'params': {'preset': 'veryfast\\'}},
                 {'ladder': '240p ! filesink location=%s' % target},
                 {'ladder': '240p" ' + inject},
                 {'encoder': 'x264 ! filesink location=%s' % target},
                 {'pipeline': 'hls ! filesink location=%s' % target},
                 {'pipeline': '../pipelines/hls'},
                 {'pipeline': '/etc/passwd'}]
        for body in cases:
            with self.subTest(body=body):
                self.assert_error(self.server.post_job(vid, **body), 422, 'invalid_parameter')
        self.assert_error(self.server.post_job(vid, params={'preset" ! filesink location=%s' % target: 1}),
                          (400, 422), ('invalid_field', 'invalid_parameter'))
        self.assert_no_job_queued(vid)
        self.assertFalse(os.path.exists(target), 'a hostile value wrote %s' % target)


@need_binary
class ServerStartup(unittest.TestCase):
    """Servers of their own: a data folder that does not exist yet, a disk below min-free-space."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sluice-e2e-startup-')
        self.addCleanup(_rmtree, self.tmp)
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if s.alive():
                s.kill()

    def start(self, data, config=None):
        s = Server(data, config)
        self.servers.append(s)
        return s.start()

    def test_creates_missing_data_folder(self):
        data = os.path.join(self.tmp, 'new', 'data')
        s = self.start(data)
        r = s.get('/health')
        self.assertEqual(r.status, 200, r.describe())
        self.assertTrue(os.path.isfile(os.path.join(data, 'sluice.db')), os.listdir(data))
        self.assertEqual(s.get_json('/api/v1/videos')['videos'], [])
        self.assertEqual(s.stop(signal.SIGINT), 0, 'SIGINT must exit 0:\n' + s.log_tail())

    def test_health_503_below_min_free_space(self):
        data = os.path.join(self.tmp, 'data')
        os.makedirs(data)
        s = self.start(data, {'health': {'min-free-space': '1000000000G'}})
        r = s.get('/health')
        self.assertEqual(r.status, 503, r.describe())
        h = r.json()
        self.assertEqual(h.get('status'), 'unavailable', h)
        self.assertIs(h['checks']['disk']['ok'], False, h)
        self.assertIs(h['checks']['store']['ok'], True, h)
        self.assertEqual(s.stop(), 0, s.log_tail())

    def test_port_line_and_sigterm_when_idle(self):
        data = os.path.join(self.tmp, 'data')
        s = self.start(data)
        self.assertTrue(1 <= s.port <= 65535)
        self.assertEqual(s.get('/health').status, 200)
        self.assertEqual(s.stop(signal.SIGTERM, timeout=10), 0, s.log_tail())


if __name__ == '__main__':
    main()
