#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A PostgreSQL catalog that stops answering (every process of its cluster SIGSTOPped) never freezes `sluice serve`:
health answers at once (and says not ready), a ready video's segments are served, event streams get their
keep-alives, a catalog read or write (a job request, a cancel, deletes, a playback policy, a playback token, an
Idempotency-Key's kept answer, the workers, an unseen API key, an upload's queue check, an SSE resume's replay) is
answered 503 JSON once [store] timeout has passed while the loop keeps answering, /metrics answers with the last
counts, and after SIGCONT all works again."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (BINARY, MEDIA, EventStream, Server, _rmtree, encode_multipart, main, need_binary,  # noqa
                           need_ffmpeg, wait_until)
from test_store_postgres import PgServer  # noqa: E402

TIMEOUT_S = 2  # [store] timeout


def cluster_pids(data_dir):
    """The postmaster (the first line of postmaster.pid) and every process it started."""
    with open(os.path.join(data_dir, 'postmaster.pid')) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        ppid = int(stat[stat.rindex(')') + 2:].split()[1])
        if ppid == postmaster:
            pids.append(int(entry))
    return pids


def succeeded_count(metrics_text):
    """The succeeded jobs /metrics counts."""
    m = re.search(r'^sluice_jobs_in_state\{state="succeeded"\} (\d+)', metrics_text, re.M)
    return int(m.group(1)) if m else None


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


@need_binary
@need_ffmpeg
class StoreStall(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)
        cls.tmp = tempfile.mkdtemp(prefix='sluice-stall-')
        cls.addClassCleanup(_rmtree, cls.tmp)

    def start_server(self, name):
        data = os.path.join(self.tmp, name)
        os.makedirs(data)
        srv = Server(data, {'store': {'url': self.pg.url(), 'timeout': str(TIMEOUT_S)}, 'auth': {'mode': 'keys'},
                            'events': {'keep-alive': '1'}, 'jobs': {'concurrent': 1, 'heartbeat': '1'}})
        r = subprocess.run([BINARY, 'keys', 'create', '--config', srv.config_path, '--name', 'admin-' + name,
                            '--scope', 'admin'], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv.api_key = r.stdout.strip()
        srv.start()
        return srv

    def ready_video(self, srv, title):
        """Uploads a clip and waits for its job: (the upload's answer, the path of one of its segments, its bytes)."""
        body = srv.upload_ok('short', title=title)
        srv.wait_succeeded(body['job']['id'])
        media = '/videos/%s/hls/' % body['video']['id']
        master = srv.get(media + 'master.m3u8')
        self.assertEqual(master.status, 200)
        rendition = [l for l in master.text().splitlines() if l and not l.startswith('#')][0]
        playlist = srv.get(media + rendition)
        self.assertEqual(playlist.status, 200, playlist.describe())
        segment = [l for l in playlist.text().splitlines() if l and not l.startswith('#')][0]
        base = rendition.rsplit('/', 1)[0] + '/' if '/' in rendition else ''
        seg_path = media + base + segment
        expected = srv.get(seg_path)
        self.assertEqual(expected.status, 200, expected.describe())
        return body, seg_path, expected.body

    def stop_catalog(self):
        """SIGSTOPs every process of the cluster; returns what SIGCONTs them (again harmless)."""
        stopped = cluster_pids(self.pg.data)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)

        def resume():
            for pid in stopped:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            stopped.clear()
        return resume

    def assert_loop_answers(self, srv, seg_path, expected, what):
        """/health and a segment, each answered in under 200 ms."""
        h, s = timed(lambda: srv.request('GET', '/health', timeout=10))
        self.assertLess(s, 0.2, 'GET /health took %.3f s during %s' % (s, what))
        self.assertIn(h.status, (200, 503))
        self.assertTrue(h.json()['live'])
        seg, s = timed(lambda: srv.get(seg_path, timeout=10))
        self.assertLess(s, 0.2, 'the segment took %.3f s during %s' % (s, what))
        self.assertEqual(seg.status, 200)
        self.assertEqual(seg.body, expected)

    def test_stopped_catalog_freezes_nothing(self):
        srv = self.start_server('reads')
        resume = lambda: None  # noqa: E731
        try:
            body, seg_path, expected_body = self.ready_video(srv, 'before the stall')
            vid = body['video']['id']
            self.assertTrue(srv.get_json('/health')['ready'])
            events = EventStream(srv)

            resume = self.stop_catalog()
            t_stop = time.monotonic()

            # A catalog read, on a thread: it waits for the catalog, the loop does not.
            answer = {}

            def list_videos():
                t0 = time.monotonic()
                resp = srv.request('GET', '/api/v1/videos', timeout=60)
                answer['status'], answer['body'], answer['s'] = resp.status, resp.body, time.monotonic() - t0

            reader = threading.Thread(target=list_videos)
            reader.start()
            time.sleep(0.3)

            # Liveness: at once, every time, while the catalog does not answer.
            for _ in range(5):
                h, s = timed(lambda: srv.request('GET', '/health', timeout=10))
                self.assertLess(s, 0.2, 'GET /health took %.3f s' % s)
                self.assertIn(h.status, (200, 503))
                self.assertTrue(h.json()['live'])
                time.sleep(0.1)
            # The segment of a ready video, as it was.
            seg, s = timed(lambda: srv.get(seg_path, timeout=10))
            self.assertLess(s, 0.2, 'the segment took %.3f s' % s)
            self.assertEqual(seg.status, 200)
            self.assertEqual(seg.body, expected_body)
            # The event stream's keep-alive, sent after the stop.
            wait_until(lambda: any(t > t_stop + 0.5 for _, t in list(events.comments)), timeout=5,
                       message='a keep-alive while the catalog is stopped')
            # Readiness says so within a probe's life (a second), still at once.
            def not_ready():
                h, s = timed(lambda: srv.request('GET', '/health', timeout=10))
                self.assertLess(s, 0.2, 'GET /health took %.3f s' % s)
                return h.status == 503 and not h.json()['checks']['store']['readable']
            wait_until(not_ready, timeout=5, message='health saying the catalog is not readable')

            # The catalog read: 503 JSON within a bounded time ([store] timeout, twice at most: waiting for a store
            # thread, then the statement), not a frozen request.
            reader.join(timeout=4 * TIMEOUT_S + 5)
            self.assertFalse(reader.is_alive(), 'GET /api/v1/videos did not answer while the catalog was stopped')
            self.assertEqual(answer['status'], 503, answer)
            err = json.loads(answer['body'])['error']
            self.assertEqual(err['code'], 'unavailable', err)
            self.assertLess(answer['s'], 2 * TIMEOUT_S + 2, answer)
            self.assertTrue(srv.alive())

            resume()
            # Back: catalog reads, readiness, a new job runs.
            wait_until(lambda: srv.request('GET', '/api/v1/videos').status == 200, timeout=20,
                       message='GET /api/v1/videos after SIGCONT')
            self.assertEqual([v['id'] for v in srv.get_json('/api/v1/videos')['videos']], [vid])
            wait_until(lambda: srv.request('GET', '/health').status == 200, timeout=20, message='ready again')
            after = srv.upload_ok('short', title='after the stall')
            srv.wait_succeeded(after['job']['id'])
            self.assertEqual(srv.video(after['video']['id'])['state'], 'ready')
            self.assertFalse(events.closed)
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())

    def test_stopped_catalog_writes_freeze_nothing(self):
        srv = self.start_server('writes')
        resume = lambda: None  # noqa: E731
        try:
            body, seg_path, expected_body = self.ready_video(srv, 'kept')
            vid, done_job = body['video']['id'], body['job']['id']
            other = srv.upload_ok('short', title='deleted')
            srv.wait_succeeded(other['job']['id'])
            gone = other['video']['id']
            key = {'Idempotency-Key': 'stall-job-1'}
            json_type = {'Content-Type': 'application/json'}
            self.assertTrue(srv.get_json('/health')['ready'])  # the first probe is made (a later one answers at once)

            resume = self.stop_catalog()
            # Each write waits for the catalog on the executor while the loop answers; then 503 JSON.
            writes = [
                ('a job request', 'POST', '/api/v1/videos/%s/jobs' % vid, '{}', dict(key, **json_type)),
                ('a cancel', 'DELETE', '/api/v1/jobs/' + done_job, None, {}),
                ('a video deletion', 'DELETE', '/api/v1/videos/' + gone, None, {}),
                ('a playback policy change', 'PATCH', '/api/v1/videos/' + vid, '{"playback_policy": "signed"}',
                 json_type),
                ('a playback token', 'POST', '/api/v1/videos/%s/playback-tokens' % vid, '{}', json_type),
            ]
            for what, method, path, data, headers in writes:
                self.asks_then_unavailable(srv, seg_path, expected_body, what, method, path, data, headers)
            self.assertTrue(srv.alive())

            resume()
            wait_until(lambda: srv.request('GET', '/health').status == 200, timeout=20, message='ready again')
            # Every write again, now answered. The job request's key was not spent by its 503: it makes the job,
            # and a retry with it gets that answer again.
            r = srv.post_json('/api/v1/videos/%s/jobs' % vid, {}, headers=key)
            self.assertEqual(r.status, 202, r.describe())
            job = r.json()
            self.assertEqual(job['state'], 'queued')
            again = srv.post_json('/api/v1/videos/%s/jobs' % vid, {}, headers=key)
            self.assertEqual(again.status, 202, again.describe())
            self.assertEqual(again.header('Idempotent-Replayed'), 'true')
            self.assertEqual(again.json()['id'], job['id'])
            c = srv.request('DELETE', '/api/v1/jobs/' + job['id'])
            if c.status == 200:
                self.assertEqual(c.json()['state'], 'canceled', c.describe())
            else:  # it ran to its end first
                self.assertEqual(c.status, 409, c.describe())
                self.assertEqual(srv.job(job['id'])['state'], 'succeeded')
            self.assertEqual(srv.request('DELETE', '/api/v1/jobs/' + done_job).status, 409)
            d = srv.request('DELETE', '/api/v1/videos/' + gone)
            self.assertEqual(d.status, 204, d.describe())
            self.assertEqual(srv.get('/api/v1/videos/' + gone).status, 404)
            p = srv.request('PATCH', '/api/v1/videos/' + vid, body='{"playback_policy": "signed"}', headers=json_type)
            self.assertEqual(p.status, 200, p.describe())
            self.assertEqual(p.json()['playback_policy'], 'signed')
            self.assertEqual(srv.get(seg_path).status, 403)
            t = srv.post_json('/api/v1/videos/%s/playback-tokens' % vid, {})
            self.assertEqual(t.status, 200, t.describe())
            signed = srv.get(seg_path + ('&' if '?' in seg_path else '?') + t.json()['query'])
            self.assertEqual(signed.status, 200, signed.describe())
            self.assertEqual(signed.body, expected_body)
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())


    def waits_then_unavailable(self, srv, seg_path, expected, what, send):
        """send() on a thread waits for the stopped catalog while the loop answers; then it is 503 `unavailable`
        within the bound. Returns the answer."""
        answer = {}

        def run():
            t0 = time.monotonic()
            answer['resp'] = send()
            answer['s'] = time.monotonic() - t0

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)
        self.assertTrue(t.is_alive(), '%s did not wait for the stopped catalog: %s' % (what, answer))
        self.assert_loop_answers(srv, seg_path, expected, what)
        t.join(timeout=4 * TIMEOUT_S + 5)
        self.assertFalse(t.is_alive(), '%s did not answer while the catalog was stopped' % what)
        resp = answer['resp']
        self.assertEqual(resp.status, 503, '%s: %s' % (what, resp.describe()))
        if resp.body:  # a HEAD's answer has none
            self.assertEqual(resp.json()['error']['code'], 'unavailable', resp.describe())
        self.assertLess(answer['s'], 2 * TIMEOUT_S + 2, '%s took %.3f s' % (what, answer['s']))
        return resp

    def asks_then_unavailable(self, srv, seg_path, expected, what, method, path, body=None, headers=None):
        """waits_then_unavailable for one request."""
        return self.waits_then_unavailable(
            srv, seg_path, expected, what,
            lambda: srv.request(method, path, body=body, headers=headers, timeout=60))

    def test_stopped_catalog_reads_freeze_nothing(self):
        """The reads that used to be made on the loop: an SSE resume's replay, /metrics' job counts, the workers, the
        first sight of an API key, an upload's queue check and a job request's read of the workers' rows."""
        srv = self.start_server('reads-off')
        resume = lambda: None  # noqa: E731
        try:
            watch = EventStream(srv)
            body, seg_path, expected_body = self.ready_video(srv, 'before the stall')
            vid = body['video']['id']
            first = watch.wait_for(lambda e: e.id is not None, what='a first event')
            following = watch.wait_for(lambda e: e.id is not None and int(e.id) > int(first.id), what='a next event')
            watch.close()
            # A key written now, first seen during the stall.
            r = subprocess.run([BINARY, 'keys', 'create', '--config', srv.config_path, '--name', 'fresh', '--scope',
                                'admin'], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            fresh_key = r.stdout.strip()
            self.assertEqual(srv.get('/api/v1/workers').status, 200)
            succeeded = succeeded_count(srv.get('/metrics').text())  # the class's catalog: other tests' jobs too
            self.assertGreaterEqual(succeeded, 1)
            self.assertTrue(srv.get_json('/health')['ready'])

            resume = self.stop_catalog()
            # /metrics: answered within its wait for the counts (a second), with the last counts read.
            m, s = timed(lambda: srv.get('/metrics', timeout=10))
            self.assertLess(s, 1.5, '/metrics took %.3f s' % s)
            self.assertEqual(m.status, 200, m.describe())
            self.assertEqual(succeeded_count(m.text()), succeeded)
            self.assert_loop_answers(srv, seg_path, expected_body, '/metrics')
            # The workers, an unseen key (whatever it is, it cannot be told yet), an upload's queue check, a job
            # request for an encoder only a worker elsewhere could run: each waits, then 503.
            self.asks_then_unavailable(srv, seg_path, expected_body, 'GET /api/v1/workers', 'GET', '/api/v1/workers')
            self.asks_then_unavailable(srv, seg_path, expected_body, 'an unseen API key', 'GET', '/api/v1/videos',
                                        headers={'Authorization': 'Bearer ' + fresh_key})
            upload_type, upload_body = encode_multipart([('title', 'during the stall')],
                                                        [('file', 'clip.mp4', 'video/mp4', MEDIA.bytes('short'))])
            self.asks_then_unavailable(srv, seg_path, expected_body, 'an upload', 'POST', '/api/v1/videos',
                                        body=upload_body, headers={'Content-Type': upload_type})
            self.asks_then_unavailable(srv, seg_path, expected_body, 'a job for an encoder run elsewhere', 'POST',
                                        '/api/v1/videos/%s/jobs' % vid, body='{"encoder": "nvenc"}',
                                        headers={'Content-Type': 'application/json'})
            # An SSE resume: the stream is open at once, keep-alives come while its replay waits, and it is ended
            # (the client reconnects) once neither the replay nor the current state could be read.
            t0 = time.monotonic()
            resumed = EventStream(srv, last_event_id=first.id)
            self.assertLess(time.monotonic() - t0, 0.5, 'the resumed stream waited for the catalog')
            self.assert_loop_answers(srv, seg_path, expected_body, 'an SSE resume')
            wait_until(lambda: resumed.closed, timeout=4 * TIMEOUT_S + 5, message='the resumed stream ended')
            self.assertEqual(resumed.snapshot(), [])
            resumed.close()
            self.assertTrue(srv.alive())

            resume()
            wait_until(lambda: srv.request('GET', '/health').status == 200, timeout=20, message='ready again')
            workers = srv.get_json('/api/v1/workers')['workers']
            self.assertTrue(any(w['alive'] for w in workers), workers)
            self.assertEqual(srv.get('/api/v1/videos', headers={'Authorization': 'Bearer ' + fresh_key}).status, 200)
            # A bad key is refused before any work: the video it would delete is still there.
            bad = srv.request('DELETE', '/api/v1/videos/' + vid, headers={'Authorization': 'Bearer sk_' + 'x' * 40})
            self.assertEqual(bad.status, 401, bad.describe())
            self.assertEqual(srv.get('/api/v1/videos/' + vid).status, 200)
            r = srv.post_job(vid, pipeline='hls', encoder='nvenc')
            self.assertEqual(r.status, 422, r.describe())
            self.assertIn('no live worker', r.json()['error']['message'])
            # The replay from the table: the events after the client's last one, in order.
            with EventStream(srv, last_event_id=first.id) as again:
                replayed = again.wait_for(lambda e: e.id is not None, what='a replayed event')
                self.assertEqual(replayed.id, following.id)
            after = srv.upload_ok('short', title='after the stall')
            srv.wait_succeeded(after['job']['id'])
            self.assertEqual(succeeded_count(srv.get('/metrics').text()), succeeded + 1)
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())


if __name__ == '__main__':
    main()
