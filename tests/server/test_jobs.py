#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: jobs (cancel, re-transcode, failure, deletion), Server-Sent Events (filters,
Last-Event-ID, keep-alive) and the queue limit."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (TERMINAL, EventStream, ServerTestCase, environment, main, need_binary,  # noqa: E402
                           need_ffmpeg, wait_until)

SLOW = {'segment_seconds': 1, 'preset': 'veryslow'}   # a job on 'medium' then runs for a few seconds


def job_of(body):
    """POST jobs answers the job (tolerates {"job": job})."""
    return body.get('job', body) if isinstance(body, dict) else body


@need_binary
@need_ffmpeg
class Jobs(ServerTestCase):
    CONFIG = {'uploads': {'auto-transcode': False},
              # capacity: two ladders (each weighs every core) fit side by side, as concurrent=2 lets them.
              'jobs': {'concurrent': 2, 'capacity': 2 * (os.cpu_count() or 1), 'max-attempts': 2, 'retry-delay': 1},
              'events': {'keep-alive': 1}}

    def new_video(self, clip='medium', title='jobs'):
        body = self.server.upload_ok(clip, title=title)
        self.assertFalse(body.get('job'), 'auto-transcode=false, yet a job: %s' % body)
        return body['video']['id']

    def wait_idle(self):
        def idle():
            jobs = self.server.get_json('/health')['jobs']
            return jobs.get('running') == 0 and jobs.get('queued') == 0
        wait_until(idle, 20, 0.1, 'no job queued or running')

    # 6. cancel, then delete the video
    def test_cancel_running_job_then_delete_video(self):
        srv = self.server
        vid = self.new_video()
        with EventStream(srv, '?video=' + vid) as events:
            job = srv.running_job(vid, ladder='360p', params=SLOW)
            self.assertEqual(job['state'], 'running', job)
            events.wait_for(lambda e: e.event == 'progress', 30, what='progress')
            r = srv.request('DELETE', '/api/v1/jobs/' + job['id'])
            self.assertEqual(r.status, 200, r.describe())
            canceled = job_of(r.json())
            self.assertEqual(canceled['id'], job['id'])
            self.assertEqual(canceled['state'], 'canceled', canceled)
            events.wait_job_state(job['id'], 'canceled', 10)
            # the answer comes once the pipeline has stopped and its partial output is gone
            self.assert_no_outputs(vid, timeout=0)
            j = srv.job(job['id'])
            self.assertEqual(j['state'], 'canceled', j)
            self.assertTrue(j['finished'], j)
            v = srv.video(vid)
            self.assertEqual(v['state'], 'canceled', v)
            self.assertFalse((v.get('playback') or {}).get('hls'), v)
            r = srv.request('DELETE', '/api/v1/jobs/' + job['id'])
            self.assert_error(r, 409, 'conflict')
            self.wait_idle()
            # nothing more happens to a canceled job
            time.sleep(1.5)
            self.assertEqual(srv.job(job['id'])['state'], 'canceled')
            self.assert_no_outputs(vid, timeout=0)

            r = srv.request('DELETE', '/api/v1/videos/' + vid)
            self.assertEqual(r.status, 204, r.describe())
            self.assertEqual(r.body, b'')
            events.wait_for(lambda e: e.event == 'video' and e.json == {'id': vid, 'action': 'deleted'}, 10,
                            what='video deleted event')
        self.assert_error(srv.get('/api/v1/videos/' + vid), 404, 'not_found')
        self.assert_error(srv.get('/api/v1/jobs/' + job['id']), 404, 'not_found')
        self.assertNotIn(vid, [v['id'] for v in srv.get_json('/api/v1/videos')['videos']])
        self.assertNotIn(vid, [j['video_id'] for j in srv.get_json('/api/v1/jobs')['jobs']])
        self.assertEqual(srv.get_json('/api/v1/jobs?video=' + vid)['jobs'], [])
        wait_until(lambda: not os.path.exists(os.path.join(self.data, 'videos', vid)), 5, 0.1, 'folder removed')
        self.assert_error(srv.request('DELETE', '/api/v1/videos/' + vid), 404, 'not_found')
        self.assert_error(srv.get('/videos/%s/hls/master.m3u8' % vid), 404, 'not_found')

    def test_cancel_queued_job_and_delete_video_while_running(self):
        srv = self.server
        v1, v2, v3 = self.new_video(), self.new_video(), self.new_video('short')
        j1 = srv.running_job(v1, ladder='360p', params=SLOW)
        j2 = srv.running_job(v2, ladder='360p', params=SLOW)
        r = srv.post_job(v3, ladder='240p')
        self.assertEqual(r.status, 202, r.describe())
        j3 = job_of(r.json())
        self.assertEqual(srv.job(j3['id'])['state'], 'queued', 'concurrent=2 and two jobs run')
        r = srv.request('DELETE', '/api/v1/jobs/' + j3['id'])
        self.assertEqual(r.status, 200, r.describe())
        self.assertEqual(job_of(r.json())['state'], 'canceled')
        j = srv.job(j3['id'])
        self.assertEqual(j['attempts'], 0, j)
        self.assertFalse(j['started'], j)
        self.assert_error(srv.request('DELETE', '/api/v1/jobs/' + j3['id']), 409, 'conflict')
        # deleting a video stops its running job
        r = srv.request('DELETE', '/api/v1/videos/' + v1)
        self.assertEqual(r.status, 204, r.describe())
        self.assert_error(srv.get('/api/v1/jobs/' + j1['id']), 404, 'not_found')
        wait_until(lambda: not os.path.exists(os.path.join(self.data, 'videos', v1)), 5, 0.1, 'folder removed')
        running = [j['id'] for j in srv.get_json('/api/v1/jobs?state=running')['jobs']]
        self.assertNotIn(j1['id'], running)
        self.assertEqual(srv.request('DELETE', '/api/v1/jobs/' + j2['id']).status, 200)
        self.wait_idle()
        for vid in (v2, v3):
            self.assert_no_outputs(vid)
            self.assertEqual(srv.request('DELETE', '/api/v1/videos/' + vid).status, 204)

    def test_priority_then_age_decide_what_runs_next(self):
        srv = self.server
        blockers = [srv.running_job(self.new_video(), ladder='360p', params=SLOW) for _ in range(2)]
        low_v, high_v, mid_v = self.new_video('short'), self.new_video('short'), self.new_video('short')
        with EventStream(srv) as events:
            low = job_of(srv.post_job(low_v, ladder='240p', priority=0).json())
            high = job_of(srv.post_job(high_v, ladder='240p', priority=5).json())
            later = job_of(srv.post_job(mid_v, ladder='240p', priority=0).json())
            for j in (low, high, later):
                self.assertEqual(srv.job(j['id'])['state'], 'queued', 'two slots, two blockers: %s' % j)
            self.assertEqual(srv.request('DELETE', '/api/v1/jobs/' + blockers[0]['id']).status, 200)
            events.wait_job_state(high['id'], 'running', 20)
            self.assertEqual(srv.job(low['id'])['state'], 'queued')
            self.assertEqual(srv.job(later['id'])['state'], 'queued')
            self.assertEqual(srv.request('DELETE', '/api/v1/jobs/' + blockers[1]['id']).status, 200)
            for j in (high, low, later):
                events.wait_job_state(j['id'], 'succeeded', 60)
            order = [e.json['id'] for e in events.snapshot() if e.event == 'job' and e.json['state'] == 'running'
                     and e.json['id'] in (low['id'], high['id'], later['id'])]
        self.assertEqual(order, [high['id'], low['id'], later['id']],
                         'expected the higher priority first, then the older of two equal priorities')
        self.wait_idle()

    # 7. re-transcode
    def test_retranscode(self):
        srv = self.server
        vid = self.new_video()
        r = srv.post_job(vid, pipeline='hls', encoder='auto', ladder='240p', priority=5,
                         params={'segment_seconds': 2, 'preset': 'ultrafast'})
        self.assertEqual(r.status, 202, r.describe())
        first = job_of(r.json())
        self.assertEqual(first['video_id'], vid)
        self.assertEqual(first['priority'], 5)
        self.assertEqual(first['ladder'], '240p')
        self.assertEqual(str(first['params']['segment_seconds']), '2', first)
        self.assertIn(first['state'], ('queued', 'running'))
        r = srv.post_job(vid, ladder='240p')
        self.assert_error(r, 409, 'conflict')
        srv.wait_succeeded(first['id'])
        first_text = srv.get('/videos/%s/hls/240p.m3u8' % vid).text()
        self.assertIn('#EXT-X-TARGETDURATION:2', first_text)
        segment = '/videos/%s/hls/240p_00000.ts' % vid
        old = srv.get(segment)
        self.assertEqual(old.status, 200)
        r = srv.post_job(vid, ladder='240p', params={'segment_seconds': 1, 'preset': 'ultrafast'})
        self.assertEqual(r.status, 202, r.describe())
        second = job_of(r.json())
        srv.wait_succeeded(second['id'])
        text = srv.get('/videos/%s/hls/240p.m3u8' % vid).text()
        self.assertIn('#EXT-X-TARGETDURATION:1', text)
        new = srv.get(segment)
        self.assertEqual(new.status, 200)
        self.assertNotEqual(new.body, old.body, 'the second package has other segments')
        # The same file name now holds other bytes: revalidation sees it (new ETag), and the immutable
        # URLs listed in the playlists differ between the two packages (their version).
        self.assertNotEqual(new.header('ETag'), old.header('ETag'), 'new bytes under the old ETag')
        r = srv.get(segment, {'If-None-Match': old.header('ETag')})
        self.assertEqual(r.status, 200, r.describe())
        first_uris = [ln for ln in first_text.splitlines() if ln and not ln.startswith('#')]
        new_uris = [ln for ln in text.splitlines() if ln and not ln.startswith('#')]
        self.assertFalse(set(first_uris) & set(new_uris), 'a versioned segment URL names two packages')
        self.assertIn('#EXT-X-ENDLIST', text)
        v = srv.video(vid)
        self.assertEqual(v['state'], 'ready')
        self.assertEqual([j['id'] for j in v['jobs']], [second['id'], first['id']], 'jobs newest first')
        listed = [j['id'] for j in srv.get_json('/api/v1/jobs?video=' + vid)['jobs']]
        self.assertEqual(listed, [second['id'], first['id']])
        top = sorted(os.listdir(os.path.join(self.data, 'videos', vid)))
        self.assertEqual([f for f in top if f.startswith('hls')], ['hls'], top)

    def test_failed_job_leaves_no_output(self):
        srv = self.server
        vid = self.new_video('short')
        source = os.path.join(self.data, 'videos', vid, 'source.mp4')
        with open(source, 'r+b') as f:      # the upload rots on disk: half of it is left
            f.truncate(os.path.getsize(source) // 2)
        with EventStream(srv, '?video=' + vid) as events:
            r = srv.post_job(vid, ladder='240p', params={'segment_seconds': 1})
            self.assertEqual(r.status, 202, r.describe())
            job = job_of(r.json())
            events.wait_job_state(job['id'], ('failed', 'succeeded', 'canceled'), 30)
        j = srv.job(job['id'])
        self.assertEqual(j['state'], 'failed', j)
        self.assertIsInstance(j['error'], dict, j)
        self.assertTrue(j['error'].get('code') and j['error'].get('message'), j)
        self.assertTrue(1 <= j['attempts'] <= j['max_attempts'], j)
        self.assertIsNone(j['result'], j)
        self.assert_no_outputs(vid)
        self.assertEqual(srv.video(vid)['state'], 'failed')

    # 11. Server-Sent Events
    def test_events_resume_with_last_event_id(self):
        srv = self.server
        vid = self.new_video()
        with EventStream(srv) as everything:
            job = srv.running_job(vid, ladder='360p', params=SLOW)
            jid = job['id']
            first = EventStream(srv, '?job=' + jid)
            try:
                wait_until(lambda: len([e for e in first.snapshot() if e.event == 'progress']) >= 2, 30, 0.05,
                           'two progress events')
            finally:
                first.close()
            seen = first.snapshot()
            last_id = seen[-1].id
            time.sleep(1.2)          # events go by while nobody listens
            reconnect_at = time.monotonic()
            with EventStream(srv, '?job=' + jid, last_event_id=last_id) as second:
                second.wait_job_state(jid, TERMINAL, 90)
                everything.wait_job_state(jid, TERMINAL, 10)
                got = second.snapshot()
            expected = [e for e in everything.snapshot() if e.job_id() == jid and int(e.id) > int(last_id)]
            got_ids = [int(e.id) for e in got]
            self.assertEqual(got_ids, sorted(set(got_ids)), 'ids must increase, without duplicates')
            self.assertTrue(all(i > int(last_id) for i in got_ids), 'replayed an event already seen')
            self.assertEqual([(e.id, e.event, e.json) for e in got[:len(expected)]],
                             [(e.id, e.event, e.json) for e in expected])
            missed = [e for e in expected if e.received < reconnect_at]
            self.assertTrue(missed, 'no event happened while disconnected: nothing was tested')
            for e in got:
                self.assertEqual(e.job_id(), jid, e)
            # after the fact, the video's whole history is replayed from before its job
            before_job = [e for e in everything.snapshot() if e.job_id() == jid][0]
            anchor = [e for e in everything.snapshot() if int(e.id) < int(before_job.id)]
            if anchor:
                with EventStream(srv, '?video=' + vid, last_event_id=anchor[-1].id) as replay:
                    replay.wait_job_state(jid, TERMINAL, 10)
                    ids = [e.id for e in replay.snapshot() if e.job_id() == jid]
                    self.assertEqual(ids, [e.id for e in everything.snapshot() if e.job_id() == jid])

    def test_events_keep_alive(self):
        with EventStream(self.server) as events:
            self.assertTrue(events.headers.get('Content-Type', '').startswith('text/event-stream'),
                            dict(events.headers))
            events.wait_comment('keep-alive', 5)
            time.sleep(2.5)
            n = len([c for c in events.comments if c[0] == 'keep-alive'])
            self.assertGreaterEqual(n, 2, 'keep-alive=1 but %d comments in 2.5 s after the first' % n)

    def test_events_filters(self):
        srv = self.server
        v1, v2 = self.new_video(), self.new_video('short')
        with EventStream(srv) as everything, EventStream(srv, '?video=' + v1) as only1, \
                EventStream(srv, '?video=' + v2) as only2:
            j1 = srv.running_job(v1, ladder='360p', params=SLOW)
            with EventStream(srv, '?job=' + j1['id']) as by_job:
                r = srv.post_job(v2, ladder='240p', params={'segment_seconds': 1})
                self.assertEqual(r.status, 202, r.describe())
                j2 = job_of(r.json())
                only2.wait_job_state(j2['id'], 'succeeded', 60)
                by_job.wait_for(lambda e: e.event == 'progress', 30, what='progress of j1')
                self.assertEqual(srv.request('DELETE', '/api/v1/jobs/' + j1['id']).status, 200)
                by_job.wait_job_state(j1['id'], 'canceled', 10)
                only1.wait_job_state(j1['id'], 'canceled', 10)
                everything.wait_job_state(j2['id'], 'succeeded', 10)
                everything.wait_job_state(j1['id'], 'canceled', 10)
                for e in by_job.snapshot():
                    self.assertEqual(e.job_id(), j1['id'], e)
                    self.assertIn(e.event, ('job', 'progress'), e)
            for e in only1.snapshot():
                self.assertEqual(e.video_id(), v1, e)
            for e in only2.snapshot():
                self.assertEqual(e.video_id(), v2, e)
            self.assertTrue(any(e.event == 'progress' for e in only1.snapshot()))
            seen = {e.video_id() for e in everything.snapshot()}
            self.assertTrue({v1, v2} <= seen, seen)
        self.assert_error(srv.get('/api/v1/events?job=nonsense!'), (400, 404), ('bad_request', 'not_found'))
        self.wait_idle()


@need_binary
@need_ffmpeg
class QueueLimit(ServerTestCase):
    """14. queue-limit=1: one job queued or running is the most."""
    CONFIG = {'uploads': {'auto-transcode': True}, 'jobs': {'concurrent': 1, 'queue-limit': 1}}

    def test_queue_full(self):
        srv = self.server
        a = srv.upload_ok('medium', title='first', fields={'ladder': '240p,360p'})
        ja = a['job']
        before_dirs = self.video_dirs()
        before = len(srv.get_json('/api/v1/videos')['videos'])
        r = srv.upload('short', title='second')
        self.assert_error(r, 503, 'queue_full')
        after = srv.get_json('/api/v1/videos')['videos']
        kept = [v for v in after if v['title'] == 'second']
        # A 503 upload is not kept: the client is told to try again, nothing half accepted stays.
        self.assertEqual(kept, [], after)
        self.assertEqual(len(after), before)
        self.assertEqual(self.video_dirs(), before_dirs)
        self.assert_no_uploads_left()
        health = srv.get_json('/health')
        self.assertEqual(health['jobs']['queued'] + health['jobs']['running'], 1, health)
        self.assertIn(srv.request('DELETE', '/api/v1/jobs/' + ja['id']).status, (200, 409))
        srv.wait_job(ja['id'])
        c = srv.upload_ok('medium', title='third', fields={'ladder': '240p,360p'})
        r = srv.post_job(a['video']['id'], ladder='240p')
        self.assert_error(r, 503, 'queue_full')
        self.assertIn(srv.request('DELETE', '/api/v1/jobs/' + c['job']['id']).status, (200, 409))
        srv.wait_job(c['job']['id'])
        r = srv.post_job(a['video']['id'], ladder='240p', params={'segment_seconds': 1})
        self.assertEqual(r.status, 202, r.describe())
        srv.wait_succeeded(job_of(r.json())['id'])


@need_binary
@need_ffmpeg
class ProbedOnce(ServerTestCase):
    """An upload is probed once, when it arrives: its jobs plan with the probe the catalog keeps, and probe the file
    again only when it changed since. Counted from the probe's own log line (GST_DEBUG sluice-probe:4) naming the
    upload or the stored source (the preview job also probes the clip it made, to check it)."""
    CONFIG = {'uploads': {'auto-transcode': True},
              'jobs': {'concurrent': 2, 'extras': 'poster;storyboard;preview'}}
    PROBED = re.compile(r'\bsluice-probe\b.*\bprobed .*/(uploads/[^/ ]+|videos/[0-9a-f]+/source\.[a-z0-9]+): ')

    @classmethod
    def setUpClass(cls):
        with environment({'GST_DEBUG': 'sluice-probe:4', 'GST_DEBUG_NO_COLOR': '1'}):
            super().setUpClass()

    def probes(self):
        return len([ln for ln in self.server.log_tail(10 ** 7).splitlines() if self.PROBED.search(ln)])

    def test_an_upload_is_probed_once(self):
        srv = self.server
        before = self.probes()
        with EventStream(srv) as events:
            up = srv.upload_ok('short', title='probed once', fields={'ladder': '240p'})
            vid = up['video']['id']
            jobs = [j['id'] for j in srv.video(vid)['jobs']]
            self.assertEqual(sorted(j['pipeline'] for j in srv.video(vid)['jobs']),
                             ['hls', 'poster', 'preview', 'storyboard'], 'the default profile')
            for jid in jobs:
                srv.wait_succeeded(jid)
            # The running hls job said it could be watched, with the URL of its master playlist (spelled by the
            # HTTP layer), in the same shape as always.
            hls_job = [j['id'] for j in srv.video(vid)['jobs'] if j['pipeline'] == 'hls'][0]
            playable = events.wait_for(lambda e: e.event == 'video' and e.json and e.json.get('id') == vid
                                       and e.json.get('action') == 'playable', 10, what='playable event')
            self.assertEqual(playable.json, {'id': vid, 'action': 'playable', 'job': hls_job,
                                             'hls': '/videos/%s/hls/master.m3u8' % vid})
        self.assertEqual(self.probes() - before, 1, 'one probe for an upload and its four jobs (was 5)')
        # A job run later plans with the stored probe too.
        r = srv.post_job(vid, pipeline='poster')
        self.assertEqual(r.status, 202, r.describe())
        srv.wait_succeeded(job_of(r.json())['id'])
        self.assertEqual(self.probes() - before, 1, 'the stored probe serves every later job')
        # The source changed since it was probed (here: its modification time): the next job probes it again.
        source = os.path.join(self.data, 'videos', vid, 'source.mp4')
        later = time.time() + 5
        os.utime(source, (later, later))
        r = srv.post_job(vid, pipeline='poster')
        self.assertEqual(r.status, 202, r.describe())
        srv.wait_succeeded(job_of(r.json())['id'])
        self.assertEqual(self.probes() - before, 2, 'a changed source is probed again')
        self.assertEqual(srv.video(vid)['state'], 'ready')


if __name__ == '__main__':
    main()
