#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` end to end: GET /metrics in the Prometheus text format (checked by promtool), values that move
with uploads, jobs, failures and event streams, a real Prometheus scraping the server, and the metrics address
([metrics] listen, --metrics-listen) that serves /metrics alone without credentials while the main address asks
for the metrics scope."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest
import urllib.parse
import urllib.request

import sluice_server as s

PROMTOOL = shutil.which('promtool')
PROMETHEUS = shutil.which('prometheus')

s.install_unwritable_pipeline()

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """The samples of a text exposition: [(name, {label: value}, float)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError('not a sample line: %r' % line)
        out.append((m.group(1), dict(LABEL_RE.findall(m.group(2) or '')), float(m.group(3))))
    return out


def value(samples, name, **labels):
    """The sum of the samples of name whose labels include labels (0 when there is none)."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items()))


def element_label(error_message):
    """The element of a job's error message as /metrics names it: without GStreamer's number."""
    name = error_message.split(': ', 1)[0]
    stripped = name.rstrip('0123456789')
    if stripped and stripped != name:
        name = stripped[:-1] if stripped[-1] in '-_' else stripped
    return name


def free_port():
    with socket.socket() as so:
        so.bind(('127.0.0.1', 0))
        return so.getsockname()[1]


class MetricsCase(s.ServerTestCase):
    def scrape(self, srv=None):
        r = (srv or self.server).get('/metrics')
        self.assertEqual(r.status, 200, r.describe())
        self.assertTrue(r.header('Content-Type', '').startswith('text/plain; version=0.0.4'), r.describe())
        return r.text()

    def promtool_check(self, text):
        if not PROMTOOL:
            self.skipTest('promtool not found (Debian package prometheus, installed by tools/setup)')
        r = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, 'promtool check metrics:\n%s%s\n--- text ---\n%s'
                         % (r.stdout, r.stderr, text[:3000]))


@s.need_ffmpeg
class Metrics(MetricsCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'events': {'keep-alive': 1}}

    def test_text_passes_promtool_and_moves_with_an_upload_and_its_job(self):
        srv = self.server
        before = parse(self.scrape())
        body = srv.upload_ok('short', fields={'ladder': '240p'})
        vid, job_id = body['video']['id'], body['job']['id']
        job = srv.wait_succeeded(job_id)
        self.assertEqual(srv.get('/api/v1/videos/' + vid).status, 200)
        text = self.scrape()
        self.promtool_check(text)
        after = parse(text)

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        # The upload's request, by its route's pattern; the video's GET by its pattern, never its path.
        self.assertEqual(moved('sluice_http_requests_total', method='POST', route='/api/v1/videos', status='201'), 1)
        self.assertEqual(moved('sluice_http_requests_total', method='GET', route='/api/v1/videos/{id}',
                               status='200'), 1)
        self.assertNotIn(vid, text)
        self.assertNotIn(job_id, text)
        self.assertEqual(moved('sluice_http_request_duration_seconds_count', route='/api/v1/videos'), 1)
        self.assertGreater(moved('sluice_http_response_bytes_total', route='/api/v1/videos/{id}'), 100)
        self.assertGreaterEqual(moved('sluice_upload_bytes_total'), len(s.MEDIA.bytes('short')))
        self.assertEqual(value(after, 'sluice_uploads_in_progress'), 0)
        # The job: one start, one success, one run in the duration histogram, its wait and its speed.
        self.assertEqual(moved('sluice_job_starts_total', pipeline=job['pipeline']), 1)
        self.assertEqual(moved('sluice_jobs_total', pipeline=job['pipeline'], state='succeeded'), 1)
        self.assertEqual(moved('sluice_jobs_total'), 1)
        self.assertEqual(moved('sluice_job_duration_seconds_count', pipeline=job['pipeline']), 1)
        self.assertGreater(moved('sluice_job_duration_seconds_sum', pipeline=job['pipeline']), 0)
        self.assertEqual(moved('sluice_job_queue_wait_seconds_count', pipeline=job['pipeline']), 1)
        self.assertEqual(moved('sluice_transcode_speed_ratio_count', pipeline=job['pipeline']), 1)
        self.assertGreater(moved('sluice_transcode_speed_ratio_sum', pipeline=job['pipeline']), 0)
        self.assertEqual(moved('sluice_jobs_in_state', state='succeeded'), 1)
        self.assertEqual(value(after, 'sluice_jobs_in_state', state='running'), 0)
        self.assertEqual(moved('sluice_job_failures_total'), 0)
        # Read when asked: free space and the version.
        self.assertGreater(value(after, 'sluice_disk_free_bytes'), 0)
        version = srv.get_json('/health')['version']
        self.assertEqual(value(after, 'sluice_build_info', version=version), 1)

    def test_unmatched_paths_share_one_series(self):
        srv = self.server
        before = parse(self.scrape())
        for i in range(3):
            self.assertEqual(srv.get('/no/such/path/%d' % i).status, 404)
        text = self.scrape()
        after = parse(text)
        self.assertEqual(value(after, 'sluice_http_requests_total', route='unmatched', status='404')
                         - value(before, 'sluice_http_requests_total', route='unmatched', status='404'), 3)
        self.assertNotIn('/no/such/path', text)

    def test_event_stream_clients(self):
        srv = self.server
        self.assertEqual(value(parse(self.scrape()), 'sluice_sse_clients'), 0)
        with s.EventStream(srv):
            s.wait_until(lambda: value(parse(self.scrape()), 'sluice_sse_clients') == 1, 10, 0.1, 'one SSE client')
        s.wait_until(lambda: value(parse(self.scrape()), 'sluice_sse_clients') == 0, 10, 0.1, 'no SSE client')
        # The stream the client closed is counted with the status it got (libsoup finishes it as a 500).
        events = dict(name='sluice_http_requests_total', route='/api/v1/events')
        samples = s.wait_until(lambda: (lambda p: p if value(p, **events) >= 1 else None)(parse(self.scrape())), 10,
                               0.1, 'the closed event stream counted')
        self.assertEqual(value(samples, status='200', **events), value(samples, **events))


@s.need_ffmpeg
class Failures(MetricsCase):
    CONFIG = {'jobs': {'concurrent': 1, 'max-attempts': 2, 'retry-delay': 1}}

    def test_retries_failures_and_pipeline_errors_by_element(self):
        srv = self.server
        before = parse(self.scrape())
        body = srv.upload_ok('short', fields={'pipeline': 'unwritable', 'ladder': '240p'})
        job = srv.wait_job(body['job']['id'], ('failed',), timeout=60)
        self.assertEqual(job['attempts'], 2, job)
        text = self.scrape()
        self.promtool_check(text)
        after = parse(text)

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        code = job['error']['code']
        self.assertEqual(code, 'pipeline_error', job)
        self.assertEqual(moved('sluice_job_starts_total', pipeline='unwritable'), 2)
        self.assertEqual(moved('sluice_job_retries_total', pipeline='unwritable', code=code), 1)
        self.assertEqual(moved('sluice_job_failures_total', pipeline='unwritable', code=code), 1)
        self.assertEqual(moved('sluice_jobs_total', pipeline='unwritable', state='failed'), 1)
        self.assertEqual(moved('sluice_jobs_total', state='succeeded'), 0)
        self.assertEqual(moved('sluice_job_duration_seconds_count', pipeline='unwritable'), 2)
        # Both runs failed in the element the job's error names.
        element = element_label(job['error']['message'])
        self.assertTrue(element and element != 'unknown', job)
        self.assertEqual(moved('sluice_pipeline_errors_total', pipeline='unwritable', element=element), 2, text)
        self.assertEqual(moved('sluice_pipeline_errors_total'), 2, text)


class PrometheusCase(MetricsCase):
    def start_prometheus(self, port=None):
        """A Prometheus scraping /metrics of 127.0.0.1:port (the server's main port by default) every second."""
        if not PROMETHEUS:
            self.skipTest('prometheus not found (Debian package prometheus, installed by tools/setup)')
        tmp = tempfile.mkdtemp(prefix='sluice-prometheus-')
        self.addCleanup(s._rmtree, tmp)
        config = os.path.join(tmp, 'prometheus.yml')
        with open(config, 'w') as f:
            f.write('global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n'
                    'scrape_configs:\n  - job_name: sluice\n    metrics_path: /metrics\n'
                    '    static_configs:\n      - targets: ["127.0.0.1:%d"]\n' % (port or self.server.port))
        port = free_port()
        log_path = os.path.join(tmp, 'prometheus.log')
        log = open(log_path, 'w')
        self.addCleanup(log.close)
        proc = subprocess.Popen([PROMETHEUS, '--config.file=' + config,
                                 '--storage.tsdb.path=' + os.path.join(tmp, 'tsdb'),
                                 '--web.listen-address=127.0.0.1:%d' % port],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(15)
        self.addCleanup(stop)
        self.prometheus_log = log_path
        return 'http://127.0.0.1:%d' % port, proc

    def query(self, base, promql):
        """The vector result of an instant query: [(labels, float)] (None while Prometheus does not answer)."""
        url = base + '/api/v1/query?' + urllib.parse.urlencode({'query': promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.loads(r.read().decode())
        except OSError:
            return None
        self.assertEqual(body.get('status'), 'success', body)
        return [(x['metric'], float(x['value'][1])) for x in body['data']['result']]

    def prometheus_log_tail(self):
        with open(self.prometheus_log) as f:
            return f.read()[-3000:]


@s.need_ffmpeg
class Scraped(PrometheusCase):
    """A real Prometheus scrapes the server; its server runs only this class's jobs."""
    CONFIG = {'jobs': {'concurrent': 1}}
    JOBS = 2

    def test_prometheus_scrapes_up_and_counts_the_jobs(self):
        srv = self.server
        base, proc = self.start_prometheus()
        jobs = []
        for i in range(self.JOBS):
            body = srv.upload_ok('short', title='scraped %d' % i, fields={'ladder': '240p'})
            jobs.append(body['job']['id'])
        for j in jobs:
            srv.wait_succeeded(j)
        self.assertEqual(len(srv.get_json('/api/v1/jobs')['jobs']), self.JOBS)

        def up():
            self.assertIsNone(proc.poll(), 'prometheus exited:\n' + self.prometheus_log_tail())
            r = self.query(base, 'up{job="sluice"}')
            return r and r[0][1] == 1
        s.wait_until(up, 60, 0.5, 'up{job="sluice"} to be 1')

        def jobs_counted():
            r = self.query(base, 'sum(sluice_jobs_total{job="sluice"})')
            return r and r[0][1] == self.JOBS
        s.wait_until(jobs_counted, 30, 0.5, 'sum(sluice_jobs_total) to be %d' % self.JOBS)
        r = self.query(base, 'sum(sluice_jobs_total{state="succeeded"})')
        self.assertEqual(r[0][1], self.JOBS, r)
        r = self.query(base, 'sum(sluice_job_duration_seconds_count)')
        self.assertEqual(r[0][1], self.JOBS, r)
        # Prometheus's own scrapes are requests of the route (a scrape is counted once it is answered: in the next).
        def scrapes_counted():
            r = self.query(base, 'sum(sluice_http_requests_total{route="/metrics",status="200"})')
            return r and r[0][1] >= 1
        s.wait_until(scrapes_counted, 30, 0.5, 'the scrapes to be counted')


METRICS_LINE_RE = re.compile(r'metrics \(alone, without credentials\) on http://127\.0\.0\.1:(\d+)/metrics')


def plain_request(port, method, path, headers=None):
    """One request to 127.0.0.1:port with exactly these headers (no API key added): (status, headers, body)."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return s.Response(r.status, r.reason, r.headers, r.read(), method, path)
    finally:
        conn.close()


class MetricsAddress(PrometheusCase):
    """[auth] mode=keys and [metrics] listen: the metrics address serves /metrics alone and without a key, the
    main address's /metrics needs the metrics scope. The class's key (sent by self.server) has the read scope."""
    CONFIG = {'uploads': {'auto-transcode': False}, 'auth': {'mode': 'keys'}, 'metrics': {'listen': '127.0.0.1:0'}}
    API_KEY_SCOPES = 'read'

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        srv = cls.server

        def printed():
            m = METRICS_LINE_RE.search(srv.log_tail(200))
            return int(m.group(1)) if m else None
        cls.metrics_port = s.wait_until(printed, 10, 0.05, 'the metrics address to be printed')

    def test_metrics_address_answers_without_a_key_and_the_main_one_asks_for_the_scope(self):
        port = self.metrics_port
        self.assertNotEqual(port, self.server.port)
        r = plain_request(port, 'GET', '/metrics')
        self.assertEqual(r.status, 200, r.describe())
        self.assertTrue(r.header('Content-Type', '').startswith('text/plain; version=0.0.4'), r.describe())
        self.promtool_check(r.text())
        self.assertEqual(plain_request(port, 'HEAD', '/metrics').status, 200)
        # The main address: no key 401, a key without the metrics scope 403, one with it 200.
        r = plain_request(self.server.port, 'GET', '/metrics')
        self.assert_error(r, 401, 'unauthorized')
        self.assertTrue(r.header('WWW-Authenticate', '').startswith('Bearer'), r.describe())
        self.assert_error(self.server.get('/metrics'), 403, 'forbidden')
        key = self.server.create_key('scraper', 'metrics')
        r = plain_request(self.server.port, 'GET', '/metrics', {'Authorization': 'Bearer ' + key})
        self.assertEqual(r.status, 200, r.describe())
        # Scrapes of either address are counted, by the route's pattern.
        text = plain_request(port, 'GET', '/metrics').text()
        self.assertGreaterEqual(value(parse(text), 'sluice_http_requests_total', route='/metrics', status='200'), 3)

    def test_metrics_address_serves_nothing_else(self):
        port = self.metrics_port
        for path in ('/api/v1/videos', '/health', '/', '/index.html', '/videos/x/hls/master.m3u8', '/metrics/',
                     '/api/v1/videos/../../metrics', '/no/such/path'):
            # With or without a key (even an admin one): this address serves /metrics alone.
            self.assert_error(plain_request(port, 'GET', path), 404, 'not_found')
            self.assert_error(plain_request(port, 'GET', path, {'Authorization': 'Bearer ' + self.server.api_key}),
                              404, 'not_found')
        r = plain_request(port, 'POST', '/api/v1/videos', {'Content-Type': 'application/json', 'Content-Length': '0'})
        self.assert_error(r, 404, 'not_found')
        r = plain_request(port, 'DELETE', '/metrics')
        self.assert_error(r, 405)
        self.assertEqual(r.header('Allow'), 'GET, HEAD', r.describe())
        # The main address still serves the API to the key.
        self.assertEqual(self.server.get('/api/v1/videos').status, 200)

    def test_prometheus_scrapes_the_metrics_address_without_a_key(self):
        base, proc = self.start_prometheus(self.metrics_port)

        def up():
            self.assertIsNone(proc.poll(), 'prometheus exited:\n' + self.prometheus_log_tail())
            r = self.query(base, 'up{job="sluice"}')
            return r and r[0][1] == 1
        s.wait_until(up, 60, 0.5, 'up{job="sluice"} to be 1')

        def scrapes_counted():
            r = self.query(base, 'sum(sluice_http_requests_total{job="sluice",route="/metrics",status="200"})')
            return r and r[0][1] >= 1
        s.wait_until(scrapes_counted, 30, 0.5, 'the scrapes to be counted')
        r = self.query(base, 'sluice_build_info{job="sluice"}')
        self.assertEqual(r[0][0]['version'], self.server.get_json('/health')['version'], r)


@s.need_binary
class MetricsListenOption(unittest.TestCase):
    """--metrics-listen on the command line; a metrics address other machines can reach is allowed with [auth]
    mode none (it serves metrics alone); a bad one stops the start."""

    def serve(self, *args):
        tmp = tempfile.mkdtemp(prefix='sluice-metrics-listen-')
        self.addCleanup(s._rmtree, tmp)
        conf = os.path.join(tmp, 'sluice.conf')
        s.write_config(conf, {'jobs': {'extras': ''}})
        return subprocess.Popen([s.BINARY, 'serve', '--listen', '127.0.0.1:0', '--data', os.path.join(tmp, 'data'),
                                 '--config', conf] + list(args),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_command_line_address_on_all_interfaces_with_auth_none(self):
        p = self.serve('--metrics-listen', '0.0.0.0:0')

        def stop():
            if p.poll() is None:
                p.terminate()
                p.communicate(timeout=20)
        self.addCleanup(stop)
        main_port = metrics_port = None
        for _ in range(2):
            line = p.stdout.readline()
            m = re.search(r'serving on http://127\.0\.0\.1:(\d+)/', line)
            main_port = int(m.group(1)) if m else main_port
            m = re.search(r'metrics \(alone, without credentials\) on http://0\.0\.0\.0:(\d+)/metrics', line)
            metrics_port = int(m.group(1)) if m else metrics_port
        self.assertIsNotNone(main_port, 'no main address printed')
        self.assertIsNotNone(metrics_port, 'no metrics address printed')
        self.assertNotEqual(metrics_port, 0)
        r = plain_request(metrics_port, 'GET', '/metrics')
        self.assertEqual(r.status, 200, r.describe())
        self.assertIn('sluice_build_info', r.text())
        self.assertEqual(plain_request(metrics_port, 'GET', '/health').status, 404)
        # Auth mode none: the main address's /metrics stays open.
        self.assertEqual(plain_request(main_port, 'GET', '/metrics').status, 200)
        self.assertEqual(plain_request(main_port, 'GET', '/health').status, 200)
        p.terminate()
        p.communicate(timeout=20)
        self.assertEqual(p.returncode, 0)

    def test_bad_metrics_address_stops_the_start(self):
        for bad in ('127.0.0.1', '127.0.0.1:99999', ':9100'):
            p = self.serve('--metrics-listen', bad)
            out, err = p.communicate(timeout=30)
            self.assertEqual(p.returncode, 2, (bad, out, err))
            self.assertIn('metrics listen address', err, (bad, err))
        # An address that cannot be bound (the main one's, taken): the start fails naming it.
        with socket.socket() as taken:
            taken.bind(('127.0.0.1', 0))
            taken.listen(1)
            where = '127.0.0.1:%d' % taken.getsockname()[1]
            p = self.serve('--metrics-listen', where)
            out, err = p.communicate(timeout=30)
        self.assertNotEqual(p.returncode, 0, (out, err))
        self.assertIn(where, err, err)
        self.assertNotIn('serving on', out)


if __name__ == '__main__':
    s.main()
