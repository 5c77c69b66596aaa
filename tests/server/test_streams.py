#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live streams as a resource: created with a key shown once (the catalog keeps its hash), validated, listed, deleted,
announced on the event stream; their files served from the data folder's streams/ and nothing outside it."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import EventStream, ServerTestCase, main, need_binary  # noqa: E402


@need_binary
class Streams(ServerTestCase):
    CONFIG = {'jobs': {'concurrent': 1}}

    def create(self, **fields):
        r = self.server.post_json('/api/v1/streams', fields)
        self.assertEqual(r.status, 201, r.describe())
        return r.json()

    def test_create_shows_the_key_once_and_keeps_its_hash(self):
        s = self.create(title='Morning show', ladder='720p,360p', record=True)
        self.assertRegex(s['id'], r'^[0-9a-f]{16}$')
        key = s['key']
        self.assertTrue(key.startswith('lk_') and len(key) > 40, key)
        self.assertEqual(s['state'], 'idle')
        self.assertEqual(s['pipeline'], 'live-hls')
        self.assertIsNone(s['source'])
        self.assertTrue(s['record'])
        # The ports the server bound (the harness asks for free ones).
        self.assertRegex(s['ingest']['rtsp'], r'^rtsp://127\.0\.0\.1:[1-9][0-9]*/live/' + re.escape(key) + '$')
        self.assertRegex(s['ingest']['srt'], r'^srt://127\.0\.0\.1:[1-9][0-9]*\?streamid=' + re.escape(key) + '$')
        self.assertEqual(s['playback']['hls'], '/streams/%s/master.m3u8' % s['id'])
        self.assertNotIn('dash', s['playback'])
        # Shown once: GET and the list do not show it.
        got = self.server.get_json('/api/v1/streams/' + s['id'])
        self.assertNotIn('key', got)
        self.assertNotIn('ingest', got)
        self.assertEqual(got['title'], 'Morning show')
        listed = self.server.get_json('/api/v1/streams')['streams']
        self.assertIn(s['id'], [x['id'] for x in listed])
        self.assertNotIn(key, repr(listed))
        # The catalog holds no key in clear.
        raw = b''
        for name in os.listdir(self.server.data_dir):
            if name.startswith('sluice.db'):
                with open(os.path.join(self.server.data_dir, name), 'rb') as f:
                    raw += f.read()
        self.assertNotIn(key.encode(), raw)
        # A pulled live-cmaf stream: no ingest URLs, a DASH playback URL.
        p = self.create(pipeline='live-cmaf', source='rtsp://camera.example/stream1')
        self.assertEqual(p['source'], 'rtsp://camera.example/stream1')
        self.assertEqual(p['ingest'], {})
        self.assertEqual(p['playback']['dash'], '/streams/%s/manifest.mpd' % p['id'])

    def test_ingest_and_playback_urls_name_the_host_asked(self):
        # The host the client reached (an IPv6 literal in brackets too), with the live engine's ports.
        for host, shown in (('[::1]:8080', '[::1]'), ('127.0.0.2:8080', '127.0.0.2')):
            with self.subTest(host=host):
                r = self.server.post_json('/api/v1/streams', {'title': 'hosts'}, headers={'Host': host})
                self.assertEqual(r.status, 201, r.describe())
                s = r.json()
                h = re.escape(shown)
                self.assertRegex(s['ingest']['rtsp'], r'^rtsp://%s:[1-9][0-9]*/live/%s$' % (h, re.escape(s['key'])))
                self.assertRegex(s['ingest']['srt'], r'^srt://%s:[1-9][0-9]*\?streamid=%s$' % (h, re.escape(s['key'])))
                self.assertRegex(s['playback']['rtsp'], r'^rtsp://%s:[1-9][0-9]*/live/%s$' % (h, s['id']))

    def test_bad_requests_are_refused(self):
        for body, status, code, field in (
                ({'pipeline': 'hls'}, 422, 'invalid_parameter', 'pipeline'),
                ({'ladder': '99999p'}, 422, 'invalid_parameter', 'ladder'),
                ({'source': 'file:///etc/passwd'}, 422, 'invalid_parameter', 'source'),
                ({'source': 'rtsp://cam/x y'}, 422, 'invalid_parameter', 'source'),
                ({'record': 'yes'}, 400, 'invalid_field', 'record'),
                ({'title': 5}, 400, 'invalid_field', 'title'),
                ({'colour': 'red'}, 400, 'invalid_field', 'colour')):
            with self.subTest(body=body):
                r = self.server.post_json('/api/v1/streams', body)
                self.assert_error(r, status, code)
                self.assertEqual(r.json()['error'].get('field'), field, r.describe())
        r = self.server.post_json('/api/v1/streams', '[')
        self.assert_error(r, 400, 'invalid_json')

    def test_delete_and_events(self):
        with EventStream(self.server) as ev:
            s = self.create(title='gone soon')
            e = ev.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == s['id'])
            self.assertEqual(e.json['state'], 'idle')
            r = self.server.request('DELETE', '/api/v1/streams/' + s['id'])
            self.assertEqual(r.status, 204, r.describe())
            ev.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == s['id']
                        and e.json.get('action') == 'deleted')
        self.assert_error(self.server.get('/api/v1/streams/' + s['id']), 404, 'not_found')
        self.assert_error(self.server.request('DELETE', '/api/v1/streams/' + s['id']), 404, 'not_found')

    def test_live_files_are_served_from_the_stream_folder_only(self):
        s = self.create()
        folder = os.path.join(self.server.data_dir, 'streams', s['id'])
        os.makedirs(folder)
        with open(os.path.join(folder, 'master.m3u8'), 'w') as f:
            f.write('#EXTM3U\n')
        r = self.server.get('/streams/%s/master.m3u8' % s['id'])
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(r.body, b'#EXTM3U\n')
        self.assertEqual(r.header('Cache-Control'), 'no-cache')
        for path in ('/streams/%s/..%%2f..%%2fsluice.db' % s['id'], '/streams/%s/%%2e%%2e/x' % s['id'],
                     '/streams/0123456789abcdef/master.m3u8', '/streams/nothex/master.m3u8',
                     '/streams/%s/nothing.ts' % s['id']):
            with self.subTest(path=path):
                self.assertEqual(self.server.get(path).status, 404)
        # A deleted stream's files go with it.
        self.assertEqual(self.server.request('DELETE', '/api/v1/streams/' + s['id']).status, 204)
        self.assertFalse(os.path.exists(folder))
        self.assertEqual(self.server.get('/streams/%s/master.m3u8' % s['id']).status, 404)


if __name__ == '__main__':
    main()
