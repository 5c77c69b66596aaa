#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: failures that may be transient are retried with backoff up to
max-attempts; bad input fails at once; the job's error names what GStreamer said."""

import os
import subprocess

import sluice_server as s

s.install_unwritable_pipeline()


class Retry(s.ServerTestCase):
    CONFIG = {'jobs': {'concurrent': 1, 'max-attempts': 3, 'retry-delay': 1}}

    @s.need_ffmpeg
    def test_pipeline_error_is_retried_with_backoff_then_fails(self):
        with s.EventStream(self.server) as ev:
            body = self.server.upload_ok('short', fields={'pipeline': 'unwritable', 'ladder': '240p'})
            job_id = body['job']['id']
            job = self.server.wait_job(job_id, ('failed',), timeout=60)
            self.assertEqual(job['attempts'], 3, job)
            self.assertEqual(job['error']['code'], 'pipeline_error', job)
            # What GStreamer said, with the element that said it.
            self.assertIn('sluice-unwritable', job['error']['message'], job)
            self.assertIsNotNone(job['finished'], job)
            ev.wait_job_state(job_id, ('failed',))
            states = [e.json['state'] for e in ev.snapshot() if e.event == 'job' and e.json.get('id') == job_id]
        # queued, then three runs, each followed by a requeue except the last.
        self.assertEqual(states, ['queued', 'running', 'queued', 'running', 'queued', 'running', 'failed'], states)
        requeued = [e.json for e in ev.snapshot() if e.event == 'job' and e.json.get('id') == job_id
                    and e.json['state'] == 'queued' and e.json['attempts'] > 0]
        for r in requeued:
            self.assertIsNotNone(r['next_attempt'], r)
            self.assertEqual(r['error']['code'], 'pipeline_error', r)
        self.assert_no_outputs(body['video']['id'])
        self.assertNotIn('unwritable', os.listdir(os.path.join(self.server.data_dir, 'videos', body['video']['id'])))

    @s.need_ffmpeg
    def test_truncated_input_fails_at_once(self):
        # Matroska states its duration in its header, so a file cut in the middle still probes as 10 s;
        # the run then ends at 5 s, which the server must see.
        mkv = os.path.join(self.tmp, 'medium.mkv')
        subprocess.run([s.FFMPEG, '-v', 'error', '-y', '-i', s.MEDIA.path('medium'), '-c', 'copy', '-f', 'matroska', mkv],
                       check=True, timeout=60)
        with open(mkv, 'rb') as f:
            data = f.read()
        cut = data[:len(data) // 2]
        r = self.server.upload(data=cut, filename='cut.mkv', content_type='video/x-matroska')
        self.assertEqual(r.status, 201, r.describe())
        job = self.server.wait_job(r.json()['job']['id'], s.TERMINAL, timeout=60)
        self.assertEqual(job['state'], 'failed', job)
        self.assertEqual(job['attempts'], 1, 'bad input must not be retried: %s' % job)
        self.assertIn(job['error']['code'], ('truncated', 'bad_input'), job)
        self.assert_no_outputs(r.json()['video']['id'])


if __name__ == '__main__':
    s.main()
