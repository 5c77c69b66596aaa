#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Events across processes: two `sluice serve` on one PostgreSQL catalog (a throwaway server) and one data folder. An
upload on process A: the event stream of process B shows its job and progress events, with the same ids as A's own
stream; a client that left B resumes on A with B's last id and gets exactly the events it missed."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import (BINARY, EventStream, Server, _rmtree, main, need_binary, need_ffmpeg,  # noqa: E402
                           write_config)
from test_store_postgres import PgServer  # noqa: E402


def has_roles():
    """Whether `sluice serve` takes --role ([server] role)."""
    r = subprocess.run([BINARY, 'serve', '--help'], capture_output=True, text=True, timeout=30)
    return '--role' in r.stdout


def settle(stream, seconds=0.5):
    """The stream's events once nothing more came for `seconds`."""
    count = -1
    while count != len(stream.snapshot()):
        count = len(stream.snapshot())
        time.sleep(seconds)
    return stream.snapshot()


def describe(events, up_to=None):
    """The events as (id, name, data), those up to id `up_to` (events published later do not count)."""
    return [(int(e.id), e.event, e.data) for e in events if up_to is None or int(e.id) <= up_to]


@need_binary
@need_ffmpeg
class EventsAcrossProcesses(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (BINARY and os.access(BINARY, os.X_OK)):
            raise unittest.SkipTest('SLUICE_BINARY is not set or not executable (run through meson test)')
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)
        cls.tmp = tempfile.mkdtemp(prefix='sluice-e2e-pg-events-')
        cls.addClassCleanup(_rmtree, cls.tmp)

    def server(self, name, extra=None):
        config = {'store': {'url': self.pg.url()}, 'jobs': {'concurrent': 1, 'extras': ''},
                  'rtsp': {'listen': 'off'}, 'srt': {'listen': 'off'}}
        config.update(extra or {})
        path = os.path.join(self.tmp, name + '.conf')
        write_config(path, config)
        srv = Server(self.data, config_path=path, log_path=os.path.join(self.tmp, name + '.log'))
        srv.start()
        self.addCleanup(lambda: srv.alive() and srv.stop(signal.SIGTERM, timeout=20))
        return srv

    def test_progress_seen_on_b_and_resumed_on_a(self):
        self.data = os.path.join(self.tmp, 'data')
        os.makedirs(self.data)
        a = self.server('a')
        # B runs no job where it can say so (--role api): whatever B shows of a job comes from A.
        b = self.server('b', {'server': {'role': 'api'}} if has_roles() else None)

        watch_a = EventStream(a)              # A's own stream, for the whole run
        watch_b = EventStream(b)              # B's, for the whole run: what a client on B would have seen
        left = EventStream(b)                 # the client that leaves B halfway
        self.addCleanup(watch_a.close)
        self.addCleanup(watch_b.close)
        self.addCleanup(left.close)

        body = a.upload_ok('long', title='watched from elsewhere')
        job = body['job']['id']
        vid = body['video']['id']
        # B shows the job A runs, live: its start and its progress.
        left.wait_job_state(job, 'running', timeout=60)
        first = left.wait_for(lambda e: e.event == 'progress' and e.job_id() == job, timeout=60,
                              what='progress of job %s' % job)
        self.assertEqual(first.json['video'], vid)
        left.close()
        last_id = int(left.snapshot()[-1].id)

        a.wait_succeeded(job, timeout=120)
        watch_b.wait_job_state(job, 'succeeded', timeout=30)
        seen_on_b = settle(watch_b)
        seen_on_a = settle(watch_a)
        # One bus: the same events, with the same ids, in the same order, on both processes; ids only increase.
        end = min(int(seen_on_a[-1].id), int(seen_on_b[-1].id))
        self.assertEqual(describe(seen_on_b, end), describe(seen_on_a, end))
        ids = [int(e.id) for e in seen_on_b]
        self.assertEqual(ids, sorted(set(ids)))
        names = [e.event for e in seen_on_b]
        self.assertIn('video', names)
        self.assertGreaterEqual(names.count('progress'), 2, names)

        missed = [e for e in seen_on_b if int(e.id) > last_id]
        self.assertTrue(any(e.event == 'job' and e.json['id'] == job and e.json['state'] == 'succeeded'
                            for e in missed), describe(missed))
        # The client comes back on A with B's last id: exactly what it missed, nothing twice, nothing else.
        back = EventStream(a, last_event_id=last_id)
        self.addCleanup(back.close)
        back.wait_job_state(job, 'succeeded', timeout=30)
        self.assertEqual(describe(settle(back), int(missed[-1].id)), describe(missed))
        self.assertEqual(describe(back.snapshot()[:len(missed)]), describe(missed))

        # A process started after all of it replays from the catalog as well (and filters by video).
        c = self.server('c', {'server': {'role': 'api'}} if has_roles() else None)
        late = EventStream(c, query='?video=' + vid, last_event_id=last_id)
        self.addCleanup(late.close)
        late.wait_job_state(job, 'succeeded', timeout=30)
        mine = [e for e in missed if e.video_id() == vid]
        self.assertEqual(describe(settle(late), int(mine[-1].id)), describe(mine))

        for srv in (c, b, a):
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=20), 0, srv.log_tail())


if __name__ == '__main__':
    main()
