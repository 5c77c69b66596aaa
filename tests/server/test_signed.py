#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Signed playback: a video's playback_policy, playback tokens (HMAC-SHA256, key ids, rotation), and the media
of a signed CMAF package played with ffmpeg over HLS and DASH through tokened URLs only: every URL sluice
serves in a playlist, an MPD or a storyboard carries the token, and a request without one, with an expired
one or with another video's gets 403."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (FFMPEG, Server, ServerTestCase, encode_multipart, main, need_binary,  # noqa: E402
                           need_ffmpeg)

KEY_OLD = 'old:0123456789abcdef-old-secret'
KEY_NEW = 'new:fedcba9876543210-new-secret'
FPS = 30
SECONDS = 6


def make_clip(path):
    r = subprocess.run([FFMPEG, '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=426x240:rate=%d' % FPS,
                        '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', str(SECONDS),
                        '-c:v', 'libx264', '-preset', 'ultrafast', '-g', str(FPS), '-pix_fmt', 'yuv420p',
                        '-c:a', 'aac', '-shortest', path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError('ffmpeg could not make the clip: %s' % r.stderr)
    return path


def upload_clip(server, path, **fields):
    with open(path, 'rb') as f:
        data = f.read()
    ctype, body = encode_multipart(list(fields.items()), [('file', 'clip.mp4', 'video/mp4', data)])
    return server.request('POST', '/api/v1/videos', body=body, headers={'Content-Type': ctype})


def with_token(url, token):
    return url + ('&' if '?' in url else '?') + 'token=' + token


def playlist_urls(text):
    """Every URL of an HLS playlist: URI lines and URI="..." attributes."""
    urls = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith('#'):
            urls += re.findall(r'URI="([^"]*)"', line)
        else:
            urls.append(line)
    return urls


def query_of(url):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url.replace('&amp;', '&')).query)


def decoded_frames(url):
    """ffmpeg decodes the first video stream at url to the end: (frames, stderr)."""
    r = subprocess.run([FFMPEG, '-nostdin', '-v', 'error', '-stats', '-i', url, '-map', '0:v:0', '-f', 'null', '-'],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError('ffmpeg could not play %s: %s' % (url, r.stderr))
    frames = re.findall(r'frame=\s*(\d+)', r.stderr)
    errors = [ln for ln in r.stderr.replace('\r', '\n').splitlines() if ln.strip() and 'frame=' not in ln]
    return (int(frames[-1]) if frames else 0), errors


@need_binary
@need_ffmpeg
class SignedPackage(ServerTestCase):
    """A signed CMAF package (with poster, storyboard and preview) and a public one, one key configured."""

    CONFIG = {'jobs': {'concurrent': 1, 'pipeline': 'cmaf', 'extras': 'poster;storyboard;preview'},
              'playback': {'keys': KEY_OLD}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.media_dir = tempfile.mkdtemp(prefix='sluice-signed-media-')
        cls.addClassCleanup(shutil.rmtree, cls.media_dir, True)
        cls.src = make_clip(os.path.join(cls.media_dir, 'clip.mp4'))
        s = cls.server
        ids = []
        for policy in ('signed', 'public'):
            r = upload_clip(s, cls.src, title=policy, ladder='240p', playback_policy=policy)
            if r.status != 201:
                raise AssertionError('upload: %s' % r.describe())
            up = r.json()
            ids.append(up['video']['id'])
            for j in up['jobs']:
                s.wait_succeeded(j['id'], timeout=120)
        cls.signed_id, cls.public_id = ids
        cls.signed = s.video(cls.signed_id)
        cls.public = s.video(cls.public_id)

    def token(self, video_id=None, ttl=None, status=200):
        body = {} if ttl is None else {'ttl': ttl}
        r = self.server.post_json('/api/v1/videos/%s/playback-tokens' % (video_id or self.signed_id), body)
        self.assertEqual(r.status, status, r.describe())
        return r.json()['token'] if status == 200 else r

    def media_urls(self, video):
        """The URLs of every kind of file of a video's packages, as the video JSON and its texts name them."""
        urls = {'master': video['playback']['hls'], 'mpd': video['playback']['dash'],
                'poster': video['poster'], 'storyboard': video['storyboard'], 'preview': video['preview']}
        base = urls['master'].rsplit('/', 1)[0] + '/'
        master = self.server.get(with_token(urls['master'], self.token(video['id']))).text()
        media_playlist = [u for u in playlist_urls(master)][0].split('?')[0]
        urls['media_playlist'] = base + media_playlist
        text = self.server.get(with_token(urls['media_playlist'], self.token(video['id']))).text()
        uris = [u.split('?')[0] for u in playlist_urls(text)]
        mdir = base + media_playlist.rsplit('/', 1)[0] + '/' if '/' in media_playlist else base
        urls['init'] = mdir + uris[0]
        urls['segment'] = mdir + uris[1]
        return urls

    def assert_forbidden(self, url):
        r = self.server.get(url)
        self.assert_error(r, 403, 'playback_forbidden')

    # -- the policy --

    def test_policy_in_the_video_json_and_validated(self):
        self.assertEqual(self.signed['playback_policy'], 'signed')
        self.assertEqual(self.public['playback_policy'], 'public')
        r = upload_clip(self.server, self.src, playback_policy='secret')
        self.assert_error(r, 422, 'invalid_parameter', 'playback_policy')
        r = self.server.request('POST', '/api/v1/videos?playback_policy=nobody', body=b'x' * 10,
                                headers={'Content-Type': 'video/mp4'})
        self.assert_error(r, 422, 'invalid_parameter', 'playback_policy')
        self.assertEqual(len(self.server.get_json('/api/v1/videos')['videos']), 2, 'refused uploads are not kept')

    def test_patch_policy(self):
        s, path = self.server, '/api/v1/videos/%s' % self.public_id
        master = self.public['playback']['hls']
        patch = lambda body, ctype='application/json': s.request('PATCH', path, body=body,  # noqa: E731
                                                                 headers={'Content-Type': ctype})
        self.assert_error(patch('{"playback_policy": "hidden"}'), 422, 'invalid_parameter', 'playback_policy')
        self.assert_error(patch('{"playback_policy": 1}'), 400, 'invalid_field', 'playback_policy')
        self.assert_error(patch('{"colour": "red"}'), 400, 'invalid_field', 'colour')
        self.assert_error(patch('{"playback_policy": "signed"}', 'text/plain'), 415)
        self.assert_error(patch('[1'), 400, 'invalid_json')
        self.assert_error(s.request('PATCH', '/api/v1/videos/0123456789abcdef', body='{"playback_policy": "signed"}',
                                    headers={'Content-Type': 'application/json'}), 404)
        self.assertEqual(s.get(master).status, 200)
        try:
            r = patch('{"playback_policy": "signed"}')
            self.assertEqual(r.status, 200, r.describe())
            self.assertEqual(r.json()['playback_policy'], 'signed')
            self.assertEqual(s.video(self.public_id)['playback_policy'], 'signed')
            self.assert_forbidden(master)
            self.assertEqual(s.get(with_token(master, self.token(self.public_id))).status, 200)
        finally:
            r = patch('{"playback_policy": "public"}')
            self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(s.get(master).status, 200)

    # -- tokens --

    def test_token_requests(self):
        t = time.time()
        r = self.server.post_json('/api/v1/videos/%s/playback-tokens' % self.signed_id, {})
        self.assertEqual(r.status, 200, r.describe())
        body = r.json()
        self.assertTrue(body['token'].startswith('old.'), body)
        self.assertRegex(body['token'], r'^[A-Za-z0-9_.-]+$', 'URL-safe')
        exp = int(body['token'].split('.')[1])
        self.assertAlmostEqual(exp, t + 3600, delta=5)
        self.assertRegex(body['expires'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d')
        for ttl in (0, -5, 86401):
            self.assert_error(self.token(ttl=ttl, status=422), 422, 'invalid_parameter', 'ttl')
        self.assert_error(self.token(ttl='60', status=400), 400, 'invalid_field', 'ttl')
        self.assertAlmostEqual(int(self.token(ttl=86400).split('.')[1]), t + 86400, delta=5)
        self.assert_error(self.token('0123456789abcdef', status=404), 404)
        r = self.server.request('POST', '/api/v1/videos/%s/playback-tokens' % self.signed_id, body='{"ttl": 60}',
                                headers={'Content-Type': 'text/plain'})
        self.assert_error(r, 415)

    # -- playing --

    def test_hls_and_dash_play_to_the_end_with_a_token(self):
        token = self.token()
        for kind in ('hls', 'dash'):
            url = self.server.url(with_token(self.signed['playback'][kind], token))
            frames, errors = decoded_frames(url)
            self.assertEqual(errors, [], '%s: ffmpeg reported errors' % kind)
            self.assertGreaterEqual(frames, SECONDS * FPS - 2, '%s: played to the end' % kind)

    def test_public_video_plays_without_a_token(self):
        frames, errors = decoded_frames(self.server.url(self.public['playback']['hls']))
        self.assertEqual(errors, [])
        self.assertGreaterEqual(frames, SECONDS * FPS - 2)
        text = self.server.get(self.public['playback']['dash']).text()
        self.assertNotIn('token=', text)
        # A token on a public video's URL changes nothing.
        self.assertEqual(self.server.get(with_token(self.public['playback']['hls'], 'junk')).status, 200)

    def test_every_served_url_carries_the_token(self):
        s, token = self.server, self.token()
        master = self.signed['playback']['hls']
        base = master.rsplit('/', 1)[0] + '/'
        seen, todo, fetched = set(), [with_token(master, token)], 0
        while todo:
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            r = s.get(url)
            self.assertEqual(r.status, 200, r.describe())
            fetched += 1
            path = urllib.parse.urlsplit(url).path
            if path.endswith('.m3u8'):
                self.assertEqual(r.header('Cache-Control'), 'no-cache')
                folder = path.rsplit('/', 1)[0] + '/'
                for u in playlist_urls(r.text()):
                    self.assertEqual(query_of(u).get('token'), [token], '%s names %s' % (path, u))
                    if not u.split('?')[0].endswith('.m3u8'):
                        self.assertIn('v', query_of(u), 'versioned: %s' % u)
                    todo.append(folder + u)
            elif path.endswith(('.m4s', '.mp4')):
                self.assertIn('immutable', r.header('Cache-Control'), 'versioned segments stay cacheable')
        self.assertGreater(fetched, 6, 'master, media playlists, init segments and segments')
        mpd = s.get(with_token(self.signed['playback']['dash'], token))
        self.assertEqual(mpd.status, 200, mpd.describe())
        attrs = re.findall(r'\s(?:initialization|media|sourceURL|href)="([^"]*)"', mpd.text())
        self.assertTrue(attrs)
        for u in attrs:
            self.assertEqual(query_of(u).get('token'), [token], 'MPD: %s' % u)
            self.assertIn('v', query_of(u))
        self.assertNotIn('<BaseURL', mpd.text())
        # A segment the MPD names, fetched as dash.js would.
        init = re.findall(r'\sinitialization="([^"]*)"', mpd.text())[0].replace('&amp;', '&')
        rep = re.findall(r'<Representation id="([^"]*)"', mpd.text())[0]
        init = init.replace('$RepresentationID$', rep)
        self.assertNotIn('$', init)
        self.assertEqual(s.get(base + init).status, 200)
        # The storyboard's sheets.
        vtt = s.get(with_token(self.signed['storyboard'], token))
        self.assertEqual(vtt.status, 200, vtt.describe())
        sheets = re.findall(r'^(\S+)#xywh=', vtt.text(), re.M)
        self.assertTrue(sheets)
        sb_base = self.signed['storyboard'].rsplit('/', 1)[0] + '/'
        for u in sheets:
            self.assertEqual(query_of(u).get('token'), [token], 'storyboard: %s' % u)
        self.assertEqual(s.get(sb_base + sheets[0]).status, 200)
        self.assert_forbidden(sb_base + sheets[0].split('?')[0])

    def test_running_job_playlists_carry_the_token(self):
        # A job's playlists while it runs (EVENT, read from its working folder): the token is added there too.
        s, token = self.server, self.token()
        r = s.post_job(self.signed_id, pipeline='hls', ladder='240p', params={'segment_seconds': 1, 'preset': 'veryslow'})
        self.assertEqual(r.status, 202, r.describe())
        job_id = r.json()['id']
        base = '/videos/%s/hls/' % self.signed_id
        seen = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and seen is None:
            state = s.job(job_id)['state']
            m = s.get(with_token(base + 'master.m3u8', token))
            p = s.get(with_token(base + '240p.m3u8', token))
            if state == 'running' and m.status == 200 and p.status == 200 and 'EVENT' in p.text() \
                    and playlist_urls(p.text()):
                seen = (m, p)
            elif state != 'running' and state != 'queued':
                break
            time.sleep(0.05)
        s.wait_succeeded(job_id, timeout=120)
        if seen is None:
            self.skipTest('the job finished before its EVENT playlist could be read')
        m, p = seen
        self.assertEqual(m.header('Cache-Control'), 'no-cache')
        for u in playlist_urls(m.text()) + playlist_urls(p.text()):
            self.assertEqual(query_of(u).get('token'), [token], u)
        seg = base + playlist_urls(p.text())[0]
        self.assertEqual(s.get(seg).status, 200, seg)
        self.assert_forbidden(seg.split('?')[0])
        self.assert_forbidden(base + '240p.m3u8')

    def test_no_expired_or_other_token_is_forbidden(self):
        urls = self.media_urls(self.signed)
        good = self.token()
        expired = self.token(ttl=1)
        other = self.token(self.public_id)
        kid, exp, mac = good.split('.')
        forged = [kid + '.' + str(int(exp) + 1) + '.' + mac,          # a later expiry under the same MAC
                  'nokey.' + exp + '.' + mac,                          # a key that is not configured
                  good[:-2] + ('AA' if not good.endswith('AA') else 'BB'),
                  good + '.x', '', '..']
        time.sleep(2.1)
        for name, url in urls.items():
            with self.subTest(name):
                self.assertEqual(self.server.get(with_token(url, good)).status, 200, name)
                self.assert_forbidden(url)
                self.assert_forbidden(with_token(url, expired))
                self.assert_forbidden(with_token(url, other))
                for t in forged:
                    self.assert_forbidden(with_token(url, t))
                r = self.server.request('HEAD', url)
                self.assertEqual(r.status, 403)
        # The public video's own files open with its token and without.
        self.assertEqual(self.server.get(with_token(self.public['playback']['hls'], other)).status, 200)


@need_binary
@need_ffmpeg
class KeyRotation(ServerTestCase):
    """Tokens of an old key verify while that key is configured, whichever key signs."""

    CONFIG = {'jobs': {'concurrent': 1, 'pipeline': 'cmaf'}, 'playback': {'keys': KEY_OLD}}

    def restart(self, playback):
        self.server.stop()
        self.server = Server(self.data, {'jobs': {'concurrent': 1, 'pipeline': 'cmaf'}, 'playback': playback})
        self.server.start()
        self.addCleanup(self.server.stop)

    def test_rotation(self):
        media_dir = tempfile.mkdtemp(prefix='sluice-rotation-media-')
        self.addCleanup(shutil.rmtree, media_dir, True)
        r = upload_clip(self.server, make_clip(os.path.join(media_dir, 'clip.mp4')), ladder='240p',
                        playback_policy='signed')
        self.assertEqual(r.status, 201, r.describe())
        vid = r.json()['video']['id']
        self.server.wait_succeeded(r.json()['job']['id'], timeout=120)
        master = self.server.video(vid)['playback']['hls']

        def token():
            r = self.server.post_json('/api/v1/videos/%s/playback-tokens' % vid, {'ttl': 600})
            self.assertEqual(r.status, 200, r.describe())
            return r.json()['token']

        old = token()
        self.assertTrue(old.startswith('old.'))
        # The new key signs; the old one still verifies.
        self.restart({'keys': KEY_OLD + ';' + KEY_NEW, 'signing-key-id': 'new'})
        new = token()
        self.assertTrue(new.startswith('new.'), new)
        for t in (old, new):
            r = self.server.get(with_token(master, t))
            self.assertEqual(r.status, 200, r.describe())
        # The keys from a file, the old one gone: its tokens no longer open anything.
        keys_file = os.path.join(self.tmp, 'playback.keys')
        with open(keys_file, 'w') as f:
            f.write('# rotated\n' + KEY_NEW + '\n')
        self.restart({'keys-file': keys_file})
        self.assertEqual(self.server.get(with_token(master, new)).status, 200)
        self.assert_error(self.server.get(with_token(master, old)), 403, 'playback_forbidden')

    def test_bad_key_configuration_stops_the_server(self):
        for playback, words in (({'keys': 'a:short'}, 'shorter than 16'),
                                ({'keys': KEY_OLD, 'signing-key-id': 'nope'}, 'signing-key-id'),
                                ({'keys': 'bad id:0123456789abcdefgh'}, '[playback] keys')):
            conf = os.path.join(self.tmp, 'bad.conf')
            with open(conf, 'w') as f:
                f.write('[playback]\n' + ''.join('%s=%s\n' % kv for kv in playback.items()))
            from sluice_server import BINARY
            r = subprocess.run([BINARY, 'serve', '--listen', '127.0.0.1:0', '--data', os.path.join(self.tmp, 'd2'),
                                '--config', conf], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(words, r.stderr)


if __name__ == '__main__':
    main()
