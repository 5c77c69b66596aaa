#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: GET /api/v1/stats, the operator view's figures, checked against real jobs (one that
succeeds, one that fails in GStreamer), a stream, and the data folder's files; admin only."""

import calendar
import os
import time
import unittest

import sluice_server as s

s.install_unwritable_pipeline()

STATES = ('queued', 'running', 'succeeded', 'failed', 'canceled')


def epoch(iso):
    return calendar.timegm(time.strptime(iso, '%Y-%m-%dT%H:%M:%SZ'))


def folder_use(path):
    total, count = 0, 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
                count += 1
    return total, count


@s.need_ffmpeg
class Stats(s.ServerTestCase):
    # One attempt: the failing job fails at once, without a retry's backoff.
    CONFIG = {'jobs': {'concurrent': 1, 'max-attempts': 1}}

    def jobs(self, state):
        return self.server.get_json('/api/v1/jobs?state=' + state)['jobs']

    def test_figures_follow_a_succeeded_and_a_failed_job(self):
        srv = self.server
        empty = srv.get_json('/api/v1/stats')
        self.assertEqual(empty['jobs'], {k: 0 for k in STATES})
        self.assertEqual(empty['failures'], [])
        self.assertEqual(len(empty['minutes']['succeeded']), 60)
        self.assertEqual(empty['last_hour']['speed'], None)

        ok = srv.upload_ok('short', fields={'ladder': '240p'})
        bad = srv.upload_ok('short', title='broken', fields={'pipeline': 'unwritable', 'ladder': '240p'})
        for j in ok['jobs'] + bad['jobs']:
            srv.wait_job(j['id'], s.TERMINAL, timeout=120)
        good = srv.job(ok['job']['id'])
        failed = srv.job(bad['job']['id'])
        self.assertEqual(good['state'], 'succeeded', good)
        self.assertEqual(failed['state'], 'failed', failed)

        st = srv.get_json('/api/v1/stats')
        # Jobs by state: as the jobs resource lists them.
        for state in STATES:
            self.assertEqual(st['jobs'][state], len(self.jobs(state)), (state, st['jobs']))
        succeeded, failures = self.jobs('succeeded'), self.jobs('failed')
        self.assertGreaterEqual(len(succeeded), 1)
        self.assertEqual([f['id'] for f in failures], [failed['id']])
        # The last hour, per minute: every job ended in its minute's bucket.
        minutes = st['minutes']
        self.assertEqual(minutes['seconds'], 60)
        start = epoch(minutes['start'])
        self.assertLessEqual(start, epoch(st['time']))
        self.assertGreater(start + 3600, epoch(st['time']))
        for name, jobs in (('succeeded', succeeded), ('failed', failures)):
            self.assertEqual(len(minutes[name]), 60)
            want = [0] * 60
            for j in jobs:
                want[(epoch(j['finished']) - start) // 60] += 1
            self.assertEqual(minutes[name], want, name)
            self.assertEqual(st['last_hour'][name], len(jobs))
        # Transcode speed: media seconds of the streaming jobs over the seconds they ran.
        streamed = [j for j in succeeded if (j.get('result') or {}).get('output') in ('hls', 'cmaf')]
        self.assertEqual([j['id'] for j in streamed], [good['id']])
        media = good['result']['duration']
        self.assertGreater(media, 1)
        self.assertAlmostEqual(st['last_hour']['media_seconds'], media, delta=0.1)
        wall = epoch(good['finished']) - epoch(good['started'])  # whole seconds: within one of the real run
        self.assertLessEqual(abs(st['last_hour']['wall_seconds'] - wall), 1.05, (st['last_hour'], good))
        speed = st['last_hour']['speed']
        hour = st['last_hour']
        self.assertAlmostEqual(speed, hour['media_seconds'] / hour['wall_seconds'], delta=speed * 0.01)
        speeds = [v for v in minutes['speed'] if v is not None]
        self.assertEqual(len(speeds), 1, minutes['speed'])
        self.assertEqual(minutes['speed'][(epoch(good['finished']) - start) // 60], speed)
        # The failure, with its video, pipeline and error as the job has them.
        self.assertEqual(len(st['failures']), 1, st['failures'])
        f = st['failures'][0]
        self.assertEqual((f['job_id'], f['video_id'], f['video_title'], f['pipeline'], f['attempts']),
                         (failed['id'], bad['video']['id'], 'broken', 'unwritable', failed['attempts']))
        self.assertEqual(f['error'], failed['error'])
        self.assertEqual(f['error']['code'], 'pipeline_error')
        self.assertTrue(f['error']['message'])
        self.assertEqual(f['finished'], failed['finished'])

    def test_streams(self):
        srv = self.server
        r = srv.post_json('/api/v1/streams', {'title': 'stats'})
        self.assertEqual(r.status, 201, r.describe())
        sid = r.json()['id']
        try:
            st = srv.get_json('/api/v1/stats')['streams']
            self.assertEqual(st['total'], len(srv.get_json('/api/v1/streams')['streams']))
            self.assertGreaterEqual(st['by_state']['idle'], 1)
            self.assertEqual(sum(st['by_state'].values()), st['total'])
            self.assertNotIn(sid, [a['id'] for a in st['active']])  # nobody publishes to it
        finally:
            self.assertEqual(srv.request('DELETE', '/api/v1/streams/' + sid).status, 204)

    def test_only_get(self):
        self.assert_error(self.server.request('POST', '/api/v1/stats', body=b'{}',
                                              headers={'Content-Type': 'application/json'}), 405)


@s.need_ffmpeg
class StatsStorage(s.ServerTestCase):
    """A server of its own: the data folder is measured at the first request, after the upload."""

    CONFIG = {'jobs': {'concurrent': 1, 'extras': ''}}

    def test_storage_is_measured_off_the_request(self):
        srv = self.server
        for j in srv.upload_ok('short', fields={'ladder': '240p'})['jobs']:
            srv.wait_job(j['id'], s.TERMINAL, timeout=120)
        st = srv.get_json('/api/v1/stats')['storage']
        self.assertEqual(st['kind'], 'folder')
        self.assertEqual(os.path.realpath(st['where']), os.path.realpath(srv.data_dir))
        self.assertGreater(st['free_bytes'], 0)
        # Measured on a thread: the first answer may not have it yet, a later one does.
        st = s.wait_until(lambda: (lambda d: d if d['measured'] else None)(srv.get_json('/api/v1/stats')['storage']),
                          10, 0.2, 'a measurement of the data folder')
        used, files = folder_use(srv.data_dir)
        self.assertGreaterEqual(st['used_bytes'], len(s.MEDIA.bytes('short')))
        # The folder changes a little meanwhile (the catalog's journal): the same order of size and count.
        self.assertLess(abs(st['used_bytes'] - used), used // 2 + 1, (st, used, files))
        self.assertLess(abs(st['files'] - files), files // 2 + 1, (st, used, files))
        # Not measured again per request: a file added now is not counted before the next measurement (a minute on).
        extra = os.path.join(srv.data_dir, 'operator-stats-extra.bin')
        with open(extra, 'wb') as f:
            f.write(b'\0' * 5000000)
        try:
            again = srv.get_json('/api/v1/stats')['storage']
            self.assertEqual((again['used_bytes'], again['measured']), (st['used_bytes'], st['measured']))
        finally:
            os.remove(extra)


class StatsNeedAdmin(s.ServerTestCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'auth': {'mode': 'keys'}}
    HARNESS_AUTH = False
    API_KEY_SCOPES = 'admin'

    def test_read_key_is_forbidden(self):
        srv = self.server
        reader = srv.create_key('reader', 'read')
        self.assert_error(srv.request('GET', '/api/v1/stats', headers={'Authorization': 'Bearer ' + reader}), 403,
                          'forbidden')
        self.assertEqual(srv.request('GET', '/api/v1/stats').status, 200)  # the admin key, sent by the harness


if __name__ == '__main__':
    unittest.main()
