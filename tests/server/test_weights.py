#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: the scheduler's capacity. A job weighs the cores its description says it keeps busy
(a ladder: every core; a poster: 1); jobs run side by side while their weights fit [jobs] capacity, and
[jobs] concurrent still caps how many run at once."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (TERMINAL, ServerTestCase, main, need_binary, need_ffmpeg,  # noqa: E402
                           wait_until)

SLOW = {'segment_seconds': 1, 'preset': 'veryslow'}   # an hls job on 'medium' then runs for a few seconds
POSTER = {'candidates': 100}                          # every frame of 'medium' compared: a poster that takes a while


def job_of(body):
    return body.get('job', body) if isinstance(body, dict) else body


def post_job(case, **fields):
    """Uploads a video of its own (a video has one unfinished job per pipeline) and asks for the job; its id."""
    vid = case.server.upload_ok('medium', title='weights')['video']['id']
    r = case.server.post_job(vid, **fields)
    case.assertEqual(r.status, 202, r.describe())
    return job_of(r.json())['id']


class Watch:
    """Polls the jobs' states through the API until all have ended; keeps every snapshot (job id -> state)."""

    def __init__(self, server, ids):
        self.server, self.ids, self.snapshots = server, ids, []

    def run(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {i: self.server.job(i)['state'] for i in self.ids}
            self.snapshots.append(states)
            if all(s in TERMINAL for s in states.values()):
                return states
            time.sleep(0.05)
        raise AssertionError('the jobs did not end in %d s: %s\n%s' % (timeout, self.snapshots[-1:],
                                                                        self.server.log_tail(30)))

    def running(self):
        """Per snapshot, the ids that were running."""
        return [{i for i, s in snap.items() if s == 'running'} for snap in self.snapshots]


@need_binary
@need_ffmpeg
class Capacity(ServerTestCase):
    # Two cores' worth: a ladder (weight "cores", never more than the capacity) takes all of it, a poster one.
    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'capacity': 2}}

    def test_weights_show_in_the_descriptions(self):
        pipelines = {p['name']: p for p in self.server.get_json('/api/v1/pipelines')['pipelines']}
        self.assertEqual(pipelines['hls']['weight'], 'cores')
        self.assertEqual(pipelines['poster']['weight'], 1)

    def test_a_ladder_runs_alone_and_posters_side_by_side(self):
        srv = self.server
        ladder = post_job(self, pipeline='hls', ladder='360p', params=SLOW)
        wait_until(lambda: srv.job(ladder)['state'] == 'running', 30, 0.05, 'the ladder to run')
        posters = [post_job(self, pipeline='poster', params=POSTER) for _ in range(2)]
        watch = Watch(srv, [ladder] + posters)
        states = watch.run()
        self.assertEqual(set(states.values()), {'succeeded'}, states)
        running = watch.running()
        # While the ladder ran, no poster did: it weighs the whole capacity.
        for ids in running:
            if ladder in ids:
                self.assertEqual(ids, {ladder}, 'a poster ran beside the ladder: %s' % watch.snapshots)
        # Then the two posters (1 + 1 of 2) ran at the same time.
        self.assertIn(set(posters), running, 'the posters never ran side by side: %s' % watch.snapshots)
        self.assertTrue(all(len(ids) <= 2 for ids in running), watch.snapshots)


@need_binary
@need_ffmpeg
class ConcurrentCaps(ServerTestCase):
    # Room for four posters, but one job at a time.
    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'capacity': 4, 'concurrent': 1}}

    def test_concurrent_still_caps_the_jobs(self):
        srv = self.server
        ids = [post_job(self, pipeline='poster', params=POSTER) for _ in range(3)]
        watch = Watch(srv, ids)
        states = watch.run()
        self.assertEqual(set(states.values()), {'succeeded'}, states)
        running = watch.running()
        self.assertTrue(any(running), 'no job was ever seen running: %s' % watch.snapshots)
        self.assertTrue(all(len(r) <= 1 for r in running), 'concurrent=1, yet: %s' % watch.snapshots)


@need_binary
@need_ffmpeg
class HeldRoom(ServerTestCase):
    # A ladder queued behind a poster waits for room; with hold-after 0 its room is held at once, so the poster queued
    # after it does not pass it.
    CONFIG = {'uploads': {'auto-transcode': False}, 'jobs': {'capacity': 2, 'hold-after': '0'}}

    def test_a_poster_does_not_pass_a_ladder_that_waits(self):
        srv = self.server
        first = post_job(self, pipeline='hls', ladder='360p', params=SLOW)   # runs alone: the rest queue behind it
        wait_until(lambda: srv.job(first)['state'] == 'running', 30, 0.05, 'the first ladder to run')
        poster = post_job(self, pipeline='poster', params=POSTER)
        ladder = post_job(self, pipeline='hls', ladder='360p', params=SLOW)
        late = post_job(self, pipeline='poster', params=POSTER)
        watch = Watch(srv, [first, poster, ladder, late])
        states = watch.run(240)
        self.assertEqual(set(states.values()), {'succeeded'}, states)
        running = watch.running()
        # The late poster never ran before the ladder it was queued behind, though it fit beside the first poster.
        seen_ladder = False
        for ids in running:
            seen_ladder = seen_ladder or ladder in ids
            if late in ids:
                self.assertTrue(seen_ladder, 'the late poster passed the waiting ladder: %s' % watch.snapshots)
        self.assertTrue(seen_ladder, watch.snapshots)


if __name__ == '__main__':
    main()
