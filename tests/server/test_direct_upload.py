#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Direct uploads: a backend with a key makes a one-time tus endpoint for a browser that holds none. It works once,
without a key, from its origin; a second upload, a bigger file, another origin, an expired token and any other route
with the token are refused; the catalog keeps no token in clear."""

import base64
import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import MEDIA, ServerTestCase, main, need_binary, need_ffmpeg  # noqa: E402

ORIGIN = 'https://app.example'
OCTETS = 'application/offset+octet-stream'


def b64(s):
    return base64.b64encode(s.encode()).decode()


@need_binary
@need_ffmpeg
class DirectUpload(ServerTestCase):
    # Keys on: nothing below sends the backend's key but the grant itself.
    CONFIG = {'jobs': {'concurrent': 1}, 'auth': {'mode': 'keys'}}
    API_KEY_SCOPES = 'upload,read'

    def grant(self, **fields):
        body = {'max_size': 10 * 1024 * 1024, 'ttl': 600, 'metadata': {'title': 'From the backend'},
                'cors_origin': ORIGIN}
        body.update(fields)
        r = self.server.post_json('/api/v1/direct-uploads', body)
        self.assertEqual(r.status, 201, r.describe())
        g = r.json()
        u = urllib.parse.urlsplit(g['url'])
        self.assertEqual(u.path, '/api/v1/uploads')
        self.assertEqual(urllib.parse.parse_qs(u.query)['token'], [g['token']])
        return g, u.path + '?' + u.query

    def tus(self, method, path, headers=None, body=None, origin=ORIGIN):
        """A request as the browser sends it: no Authorization (the harness's key is held back)."""
        h = {'Tus-Resumable': '1.0.0', 'Authorization': ''}
        if origin:
            h['Origin'] = origin
        h.update(headers or {})
        conn = self.server.connection(30)
        try:
            # http.client sends the empty Authorization; the server reads it as none.
            h = {k: v for k, v in h.items() if v != ''}
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            conn.close()

    def create(self, endpoint, length, body=None, origin=ORIGIN, metadata='filename ' + b64('phone.mp4')):
        h = {'Upload-Length': str(length), 'Upload-Metadata': metadata}
        if body is not None:
            h['Content-Type'] = OCTETS
        return self.tus('POST', endpoint, h, body, origin)

    def test_one_upload_from_its_origin_without_a_key(self):
        data = MEDIA.bytes('short')
        g, endpoint = self.grant()
        # The browser's preflight is answered for the grant's origin, and for no other.
        st, h, _ = self.tus('OPTIONS', endpoint, {'Access-Control-Request-Method': 'POST',
                                                  'Access-Control-Request-Headers': 'tus-resumable,upload-length'})
        self.assertEqual(st, 204)
        self.assertEqual(h.get('access-control-allow-origin'), ORIGIN)
        self.assertIn('Upload-Length', h.get('access-control-allow-headers', ''))
        st, h, _ = self.tus('OPTIONS', endpoint, {'Access-Control-Request-Method': 'POST'},
                            origin='https://evil.example')
        self.assertNotEqual(h.get('access-control-allow-origin'), 'https://evil.example')
        # Another origin, and no origin at all, cannot use it.
        st, _, body = self.create(endpoint, len(data), origin='https://evil.example')
        self.assertEqual(st, 403, body)
        st, _, body = self.create(endpoint, len(data), origin=None)
        self.assertEqual(st, 403, body)
        # A bigger file than the grant allows: 413, and the grant is still unused.
        g2, small = self.grant(max_size=len(data) - 1)
        st, _, body = self.create(small, len(data))
        self.assertEqual(st, 413, body)
        self.assertEqual(json.loads(body)['error']['code'], 'too_large')
        # The upload, in two PATCHes, with no key.
        st, h, body = self.create(endpoint, len(data))
        self.assertEqual(st, 201, body)
        self.assertEqual(h['access-control-allow-origin'], ORIGIN)
        self.assertIn('Location', h['access-control-expose-headers'])
        location = h['location']
        self.assertIn('token=', location)
        half = len(data) // 2
        st, h, body = self.tus('PATCH', location, {'Upload-Offset': '0', 'Content-Type': OCTETS}, data[:half])
        self.assertEqual(st, 204, body)
        st, h, body = self.tus('PATCH', location, {'Upload-Offset': str(half), 'Content-Type': OCTETS}, data[half:])
        self.assertEqual(st, 204, body)
        video_id = h['sluice-video-id']
        # The backend's metadata won; the browser's file name came along.
        v = self.server.get_json('/api/v1/videos/' + video_id)
        self.assertEqual(v['title'], 'From the backend')
        self.assertEqual(v['filename'], 'phone.mp4')
        folder = os.path.join(self.server.data_dir, 'videos', video_id)
        source = [n for n in os.listdir(folder) if n.startswith('source.')]
        self.assertEqual(source, ['source.mp4'])
        with open(os.path.join(folder, source[0]), 'rb') as f:
            self.assertEqual(f.read(), data)
        # Once: a second creation with the same token is refused, and nothing is made.
        st, _, body = self.create(endpoint, len(data), data)
        self.assertEqual(st, 401, body)
        self.assertEqual(json.loads(body)['error']['code'], 'unauthorized')
        # The token opens its own upload (HEAD) and nothing else: not the API, not another upload.
        st, h, _ = self.tus('HEAD', location)
        self.assertEqual(st, 200)
        token = g['token']
        for method, path in (('GET', '/api/v1/videos?token=' + token), ('GET', '/api/v1/videos/%s?token=%s' % (video_id, token)),
                             ('DELETE', '/api/v1/videos/%s?token=%s' % (video_id, token)),
                             ('POST', '/api/v1/direct-uploads?token=' + token),
                             ('HEAD', '/api/v1/uploads/0123456789abcdef?token=' + token)):
            with self.subTest(method=method, path=path):
                # 401 (no key), or 403 for a write from another site: either way not opened.
                st, _, body = self.tus(method, path)
                self.assertIn(st, (401, 403), body)
        self.server.wait_job(self.server.get_json('/api/v1/videos/' + video_id)['jobs'][0]['id'])
        # The catalog keeps the token's hash, never the token.
        with open(os.path.join(self.server.data_dir, 'sluice.db'), 'rb') as f:
            raw = f.read()
        for name in os.listdir(self.server.data_dir):
            if name.startswith('sluice.db-'):
                with open(os.path.join(self.server.data_dir, name), 'rb') as f:
                    raw += f.read()
        self.assertNotIn(token.encode(), raw)
        self.assertNotIn(g2['token'].encode(), raw)

    def test_expired_token_is_refused(self):
        g, endpoint = self.grant(ttl=1)
        time.sleep(1.2)
        st, _, body = self.create(endpoint, 1000)
        self.assertEqual(st, 401, body)
        self.assertEqual(json.loads(body)['error']['code'], 'unauthorized')

    def test_unknown_token_and_bad_grants(self):
        st, _, body = self.create('/api/v1/uploads?token=du_nonsense', 1000)
        self.assertEqual(st, 401, body)
        for fields, field in (({'max_size': 0}, 'max_size'), ({'ttl': 0}, 'ttl'), ({'ttl': 10 ** 7}, 'ttl'),
                              ({'cors_origin': 'https://app.example/path'}, 'cors_origin'),
                              ({'cors_origin': 'javascript:alert(1)'}, 'cors_origin'),
                              ({'metadata': {'pipeline': 'no-such-pipeline'}}, 'pipeline'),
                              ({'metadata': {'title': 5}}, 'metadata'), ({'extra': 1}, 'extra')):
            with self.subTest(fields=fields):
                body = {'max_size': 1000, 'ttl': 60}
                body.update(fields)
                r = self.server.post_json('/api/v1/direct-uploads', body)
                self.assertIn(r.status, (400, 422), r.describe())
                self.assertEqual(r.json()['error'].get('field'), field, r.describe())
        # Making grants needs the upload scope.
        reader = self.server.create_key('reader', 'read')
        r = self.server.post_json('/api/v1/direct-uploads', {'max_size': 1000},
                                  headers={'Authorization': 'Bearer ' + reader})
        self.assertEqual(r.status, 403, r.describe())


if __name__ == '__main__':
    main()
