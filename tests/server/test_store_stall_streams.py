#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live streams under a PostgreSQL catalog that stops answering (every process of its cluster SIGSTOPped): creating,
listing, reading and deleting a stream each wait for the catalog while the main loop answers /health and a segment in
under 200 ms, then are 503 `unavailable` within [store] timeout, and all works after SIGCONT (the stream a failed
deletion left still takes publishers). A publisher that connects while the catalog is stopped is taken (its key is
checked without the catalog): the stream goes live and its playlists and segments are served at once; its recording,
made when the event ends with the catalog still stopped, becomes a video once the catalog is back, and the stream's
events arrive in the order they happened."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_store_stall as stall  # noqa: E402  (its helpers; imported as a module so its tests do not run here)
from live_case import live_ports, publisher_command  # noqa: E402
from sluice_server import BINARY, EventStream, Server, _rmtree, main, need_binary, need_ffmpeg, wait_until  # noqa
from test_store_postgres import PgServer  # noqa: E402

TIMEOUT_S = stall.TIMEOUT_S  # [store] timeout
IDLE_TIMEOUT = 2             # [live] idle-timeout
PUBLISH_SECONDS = 10


@need_binary
@need_ffmpeg
class StreamsStall(unittest.TestCase):
    # The stall test's own helpers, on this case's server and catalog.
    ready_video = stall.StoreStall.ready_video
    stop_catalog = stall.StoreStall.stop_catalog
    assert_loop_answers = stall.StoreStall.assert_loop_answers
    waits_then_unavailable = stall.StoreStall.waits_then_unavailable
    asks_then_unavailable = stall.StoreStall.asks_then_unavailable

    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)
        cls.tmp = tempfile.mkdtemp(prefix='sluice-stall-streams-')
        cls.addClassCleanup(_rmtree, cls.tmp)

    def start_server(self, name):
        """As the stall test's, with the live engine's RTSP listener and a short idle timeout."""
        data = os.path.join(self.tmp, name)
        os.makedirs(data)
        srv = Server(data, {'store': {'url': self.pg.url(), 'timeout': str(TIMEOUT_S)}, 'auth': {'mode': 'keys'},
                            'events': {'keep-alive': '1'}, 'jobs': {'concurrent': 1, 'heartbeat': '1'},
                            'rtsp': {'listen': '127.0.0.1:0'},
                            'live': {'window': 4, 'idle-timeout': IDLE_TIMEOUT}})
        r = subprocess.run([BINARY, 'keys', 'create', '--config', srv.config_path, '--name', 'admin-' + name,
                            '--scope', 'admin'], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv.api_key = r.stdout.strip()
        srv.start()
        self.rtsp_port, _ = live_ports(srv)
        self.assertIsNotNone(self.rtsp_port, srv.log_tail(30))
        return srv

    def create_stream(self, srv, **fields):
        r = srv.post_json('/api/v1/streams', fields)
        self.assertEqual(r.status, 201, '%s\n%s' % (r.describe(), srv.log_tail(30)))
        return r.json()

    def publish(self, url, seconds):
        return subprocess.Popen(publisher_command(url, seconds), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def test_stream_routes_wait_for_a_stopped_catalog(self):
        srv = self.start_server('routes')
        resume = lambda: None  # noqa: E731
        try:
            _, seg_path, expected_body = self.ready_video(srv, 'kept')
            kept = self.create_stream(srv, title='kept')
            json_type = {'Content-Type': 'application/json'}
            before = {s['id'] for s in srv.get_json('/api/v1/streams')['streams']}  # the catalog's, this one's too
            self.assertTrue(srv.get_json('/health')['ready'])

            resume = self.stop_catalog()
            # Each call waits for the catalog on the executor while the loop answers; then 503 JSON.
            calls = [
                ('a stream creation', 'POST', '/api/v1/streams', '{"title": "stalled"}', json_type),
                ('the stream list', 'GET', '/api/v1/streams', None, {}),
                ('a stream read', 'GET', '/api/v1/streams/' + kept['id'], None, {}),
                ('a stream deletion', 'DELETE', '/api/v1/streams/' + kept['id'], None, {}),
            ]
            for what, method, path, data, headers in calls:
                self.asks_then_unavailable(srv, seg_path, expected_body, what, method, path, data, headers)
            # A stream id that is not one is 404 at once, without the catalog.
            r, s = stall.timed(lambda: srv.request('GET', '/api/v1/streams/not-an-id', timeout=10))
            self.assertEqual(r.status, 404, r.describe())
            self.assertLess(s, 0.2)
            self.assertTrue(srv.alive())

            resume()
            wait_until(lambda: srv.request('GET', '/health').status == 200, timeout=20, message='ready again')
            # The refused deletion changed nothing: the stream is there. The stalled creation's INSERT was sent before
            # its timeout, and a stopped server that is resumed runs it: a 503 says the outcome is not known, so the
            # stream may exist (nobody has its key; it is deleted like any other).
            listed = {s['id']: s for s in srv.get_json('/api/v1/streams')['streams']}
            self.assertIn(kept['id'], listed)
            stalled = set(listed) - before
            self.assertLessEqual(len(stalled), 1, listed)
            for sid in stalled:
                self.assertEqual(listed[sid]['title'], 'stalled')
            self.assertEqual(srv.get_json('/api/v1/streams/' + kept['id'])['title'], 'kept')
            # The deletion the catalog refused left the stream running: its key still takes a publisher.
            proc = self.publish(kept['ingest']['rtsp'], 6)
            try:
                wait_until(lambda: srv.get_json('/api/v1/streams/' + kept['id'])['state'] in ('connecting', 'live'),
                           timeout=30, interval=0.2, message='the kept stream taking its publisher')
            finally:
                proc.kill()
                proc.wait()
            # Every call again, now answered.
            made = self.create_stream(srv, title='after')
            self.assertEqual(srv.get_json('/api/v1/streams/' + made['id'])['title'], 'after')
            self.assertEqual({s['id'] for s in srv.get_json('/api/v1/streams')['streams']} - before - stalled,
                             {made['id']})
            for sid in [kept['id'], made['id']] + sorted(stalled):
                d = srv.request('DELETE', '/api/v1/streams/' + sid)
                self.assertEqual(d.status, 204, d.describe())
                self.assertEqual(srv.get('/api/v1/streams/' + sid).status, 404)
                self.assertEqual(srv.request('DELETE', '/api/v1/streams/' + sid).status, 404)
            self.assertEqual({s['id'] for s in srv.get_json('/api/v1/streams')['streams']}, before - {kept['id']})
        finally:
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())

    def test_publisher_is_taken_and_recorded_while_the_catalog_is_stopped(self):
        srv = self.start_server('publisher')
        resume = lambda: None  # noqa: E731
        proc = None
        try:
            s = self.create_stream(srv, title='stalled event', record=True)
            sid = s['id']
            before = {v['id'] for v in srv.get_json('/api/v1/videos')['videos']}
            self.assertTrue(srv.get_json('/health')['ready'])
            events = EventStream(srv)

            resume = self.stop_catalog()
            proc = self.publish(s['ingest']['rtsp'], PUBLISH_SECONDS)
            # The publisher's key is checked and its ladder runs without the catalog: the live playlists and
            # segments are served, each at once, as is /health.
            master = '/streams/%s/master.m3u8' % sid

            def live_segment():
                h, t = stall.timed(lambda: srv.request('GET', '/health', timeout=10))
                self.assertLess(t, 0.2, 'GET /health took %.3f s while a publisher connected' % t)
                self.assertTrue(h.json()['live'])
                m, t = stall.timed(lambda: srv.get(master, timeout=10))
                self.assertLess(t, 0.2, 'the live master playlist took %.3f s' % t)
                if m.status != 200:
                    return None
                rendition = [l for l in m.text().splitlines() if l and not l.startswith('#')][0]
                p = srv.get('/streams/%s/%s' % (sid, rendition))
                segs = [l for l in p.text().splitlines() if l and not l.startswith('#')] if p.status == 200 else []
                if not segs:
                    return None
                seg, t = stall.timed(lambda: srv.get('/streams/%s/%s' % (sid, segs[-1]), timeout=10))
                self.assertLess(t, 0.2, 'a live segment took %.3f s' % t)
                return seg if seg.status == 200 else None

            seg = wait_until(live_segment, timeout=30, interval=0.3, message='the stream live while stopped')
            self.assertGreater(len(seg.body), 0)
            self.assertEqual(proc.wait(timeout=PUBLISH_SECONDS + 30), 0)
            # The event ends (idle timeout, ENDLIST) with the catalog still stopped: the recording is joined and
            # waits for the catalog; the loop answers meanwhile.
            wait_until(lambda: '#EXT-X-ENDLIST' in srv.get('/streams/%s/%s' % (sid, [
                l for l in srv.get(master).text().splitlines() if l and not l.startswith('#')][0])).text(),
                timeout=IDLE_TIMEOUT + 20, interval=0.3, message='the live playlists to end')
            time.sleep(TIMEOUT_S + 1)  # a save tried and failed meanwhile
            h, t = stall.timed(lambda: srv.request('GET', '/health', timeout=10))
            self.assertLess(t, 0.2, 'GET /health took %.3f s while the recording waited' % t)
            self.assertTrue(srv.alive())

            resume()
            # The recording is written once the catalog is back: it becomes a video, named by the stream.
            def saved():
                r = srv.request('GET', '/api/v1/streams/' + sid)
                if r.status != 200:
                    return None
                rec = r.json()['recording']
                if rec['state'] == 'failed':
                    raise AssertionError('the recording failed: %s\n%s' % (rec, srv.log_tail(30)))
                return rec if rec['state'] == 'saved' else None
            try:
                rec = wait_until(saved, timeout=90, interval=0.5, message='the recording saved after SIGCONT')
            except AssertionError as e:
                raise AssertionError('%s\n%s' % (e, srv.log_tail(40)))
            after = {v['id'] for v in srv.get_json('/api/v1/videos')['videos']}
            self.assertEqual(after - before, {rec['video_id']})
            self.assertEqual(srv.video(rec['video_id'])['title'], 'stalled event')
            # The events of the stall arrive once the catalog is back, in the order they happened.
            events.wait_for(lambda e: e.event == 'stream' and e.json and e.json.get('id') == sid
                            and (e.json.get('recording') or {}).get('state') == 'saved', 30,
                            what='the stream event of the saved recording')
            states = []
            for e in events.snapshot():
                if e.event == 'stream' and e.json and e.json.get('id') == sid:
                    state = e.json['state']
                    if not states or states[-1] != state:
                        states.append(state)
            for state in ('connecting', 'live', 'ended'):
                self.assertIn(state, states)
            self.assertLess(states.index('connecting'), states.index('live'), states)
            self.assertLess(states.index('live'), states.index('ended'), states)
            self.assertEqual(states[-1], 'ended', states)
            # Nothing of the recording is left behind.
            self.assertFalse(os.path.exists(os.path.join(srv.data_dir, 'streams', sid + '.rec')))
            wait_until(lambda: [n for n in os.listdir(os.path.join(srv.data_dir, 'uploads')) if
                                n.startswith('live-')] == [], timeout=10, message='the joined file to go')
            events.close()
        finally:
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()
            resume()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=30), 0, srv.log_tail())


if __name__ == '__main__':
    main()
