#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Webhooks: endpoints made, listed, read, rotated and deleted (admin), and their deliveries to a receiver in the test
(Python's http.server) that checks every signature, the order and deduplication: retries with backoff until a 2xx (500
three times, then one success after 4 attempts), no retry of a 4xx, a kill -9 between the state change and the
delivery still delivered after the restart, a private address refused without [webhooks] allow-private."""

import hashlib
import hmac
import http.server
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_case import LiveCase  # noqa: E402
from sluice_server import Server, ServerTestCase, _rmtree, main, need_binary, need_ffmpeg, wait_until  # noqa: E402

UNKNOWN_ID = '0123456789abcdef'
# Short waits, so that each test takes seconds.
FAST = {'allow-private': True, 'backoff-base': 0.2, 'backoff-max': 0.5, 'poll': 0.1, 'timeout': 3}


class Receiver:
    """An HTTP endpoint on 127.0.0.1: answers each POST with the next status of `statuses` (then 200), checks the
    signature of each with the secrets it is given, and keeps what it processed once per Sluice-Delivery."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.secrets = []
        self.requests = []   # every POST: (headers, body, signature ok)
        self.processed = []  # the deliveries taken, each once, in order
        self.seen = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
                with receiver.lock:
                    ok = receiver.verify(self.headers.get('Sluice-Signature', ''), body)
                    receiver.requests.append((dict(self.headers), body, ok))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    delivery = self.headers.get('Sluice-Delivery')
                    if ok and 200 <= status < 300 and delivery not in receiver.seen:
                        receiver.seen.add(delivery)
                        receiver.processed.append(json.loads(body))
                self.send_response(status)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'ok')

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/hook' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def verify(self, header, body):
        """Sluice-Signature: t=T,v1=HEX[,v1=HEX]: some v1 is HMAC-SHA256("T.BODY") with a secret we hold, T recent."""
        parts = [p.split('=', 1) for p in header.split(',') if '=' in p]
        t = [v for k, v in parts if k == 't']
        sigs = [v for k, v in parts if k == 'v1']
        if len(t) != 1 or not sigs or abs(time.time() - int(t[0])) > 300:
            return False
        signed = t[0].encode() + b'.' + body
        for secret in self.secrets:
            want = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            if any(hmac.compare_digest(want, s) for s in sigs):
                return True
        return False

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class WebhookCase(ServerTestCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'webhooks': FAST}

    def receiver(self, statuses=()):
        r = Receiver(statuses)
        self.addCleanup(r.close)
        return r

    def create(self, receiver, events, server=None, **fields):
        server = server or self.server
        body = dict(url=receiver.url, events=events, **fields)
        r = server.post_json('/api/v1/webhooks', body)
        self.assertEqual(r.status, 201, r.describe())
        hook = r.json()
        receiver.secrets.append(hook['secret'])
        self.addCleanup(lambda: server.alive() and server.request('DELETE', '/api/v1/webhooks/' + hook['id']))
        return hook

    def deliveries(self, hook, server=None):
        return (server or self.server).get_json('/api/v1/webhooks/%s/deliveries' % hook['id'])['deliveries']

    def wait_deliveries(self, hook, n, states=('succeeded', 'failed'), server=None, timeout=20):
        def done():
            d = self.deliveries(hook, server)
            return d if len(d) >= n and all(x['state'] in states for x in d) else None
        return wait_until(done, timeout, 0.1, '%d deliveries of webhook %s in %s' % (n, hook['id'], states))


@need_binary
class Webhooks(WebhookCase):

    def test_endpoints_are_made_shown_rotated_and_deleted(self):
        rec = self.receiver()
        hook = self.create(rec, ['video.ready', 'job.failed'], description='CI')
        self.assertRegex(hook['id'], r'^[0-9a-f]{16}$')
        self.assertRegex(hook['secret'], r'^whsec_[0-9a-f]{64}$')
        self.assertEqual(hook['events'], ['video.ready', 'job.failed'])
        self.assertEqual(hook['description'], 'CI')
        self.assertIsNone(hook['previous_secret_expires'])
        # The secret is shown once.
        got = self.server.get_json('/api/v1/webhooks/' + hook['id'])
        self.assertNotIn('secret', got)
        self.assertEqual(got['url'], rec.url)
        listed = self.server.get_json('/api/v1/webhooks')['webhooks']
        self.assertIn(hook['id'], [w['id'] for w in listed])
        self.assertNotIn(hook['secret'], json.dumps(listed))
        self.assertEqual(self.deliveries(hook), [])
        # A rotation: a new secret, shown once; the old one still signs for the grace period.
        r = self.server.request('POST', '/api/v1/webhooks/%s/rotate-secret' % hook['id'])
        self.assertEqual(r.status, 200, r.describe())
        rotated = r.json()
        self.assertNotEqual(rotated['secret'], hook['secret'])
        self.assertIsNotNone(rotated['previous_secret_expires'])
        self.assertNotIn('secret', self.server.get_json('/api/v1/webhooks/' + hook['id']))
        # Unknown ids.
        for method, path in (('GET', ''), ('DELETE', ''), ('GET', '/deliveries'), ('POST', '/rotate-secret')):
            self.assert_error(self.server.request(method, '/api/v1/webhooks/' + UNKNOWN_ID + path), 404, 'not_found')
        r = self.server.request('DELETE', '/api/v1/webhooks/' + hook['id'])
        self.assertEqual(r.status, 204, r.describe())
        self.assert_error(self.server.get('/api/v1/webhooks/' + hook['id']), 404, 'not_found')

    def test_bad_requests_name_the_field(self):
        ok = {'url': 'https://hooks.example.com/in', 'events': ['job.failed']}
        for body, field in ((dict(ok, url='ftp://hooks.example.com/'), 'url'),
                            (dict(ok, url='not a url'), 'url'),
                            (dict(ok, url='https://user:pw@hooks.example.com/'), 'url'),
                            (dict(ok, url=42), 'url'),
                            ({'events': ['job.failed']}, 'url'),
                            (dict(ok, events=[]), 'events'),
                            (dict(ok, events=['video.deleted']), 'events'),
                            (dict(ok, events=['job.failed', 'job.failed']), 'events'),
                            (dict(ok, events='job.failed'), 'events'),
                            ({'url': ok['url']}, 'events'),
                            (dict(ok, description='x' * 1001), 'description'),
                            (dict(ok, secret='mine'), 'secret')):
            self.assert_error(self.server.post_json('/api/v1/webhooks', body), 400, 'invalid_field', field)
        self.assert_error(self.server.post_json('/api/v1/webhooks', b'{"url":'), 400)
        self.assert_error(self.server.get('/api/v1/webhooks/%s/deliveries?limit=0' % UNKNOWN_ID), 400,
                          'invalid_field', 'limit')

    def test_signed_deliveries_in_order_with_the_api_views(self):
        rec = self.receiver()
        other = self.receiver()
        hook = self.create(rec, ['upload.completed', 'job.succeeded', 'video.ready'])
        self.create(other, ['job.failed'])  # subscribed to nothing that happens here
        video = self.server.upload_ok('short', title='hooked')
        self.server.wait_succeeded(video['job']['id'])
        self.wait_deliveries(hook, 3)
        wait_until(lambda: len(rec.processed) == 3, 10, 0.1, 'three deliveries processed')
        self.assertTrue(all(ok for _, _, ok in rec.requests), rec.requests)
        self.assertEqual([e['type'] for e in rec.processed], ['upload.completed', 'job.succeeded', 'video.ready'])
        up, job, ready = rec.processed
        self.assertEqual(up['data']['id'], video['video']['id'])
        self.assertEqual(up['data']['title'], 'hooked')
        self.assertEqual(job['data']['id'], video['job']['id'])
        self.assertEqual(job['data']['state'], 'succeeded')
        self.assertEqual(ready['data']['id'], video['video']['id'])
        self.assertEqual(ready['data']['state'], 'ready')
        self.assertEqual(ready['data']['playback']['hls'], '/videos/%s/hls/master.m3u8' % video['video']['id'])
        for e in rec.processed:
            self.assertEqual(set(e), {'id', 'type', 'created', 'data'})
            self.assertRegex(e['id'], r'^[0-9a-f]{16}$')
        headers = [h for h, _, _ in rec.requests]
        self.assertEqual(len({h['Sluice-Delivery'] for h in headers}), 3)
        self.assertEqual([h['Sluice-Event'] for h in headers], ['upload.completed', 'job.succeeded', 'video.ready'])
        self.assertTrue(all(h['Content-Type'] == 'application/json' for h in headers))
        self.assertEqual(other.requests, [])
        shown = self.deliveries(hook)
        self.assertEqual([d['type'] for d in shown], ['video.ready', 'job.succeeded', 'upload.completed'])
        for d in shown:
            self.assertEqual((d['state'], d['attempts'], d['last_status']), ('succeeded', 1, 200))
            self.assertIsNone(d['next_attempt'])
        # After a rotation both secrets sign: a receiver that still has only the old one accepts the next delivery.
        r = self.server.request('POST', '/api/v1/webhooks/%s/rotate-secret' % hook['id'])
        self.assertEqual(r.status, 200, r.describe())
        new_secret = r.json()['secret']
        old_only = list(rec.secrets)
        self.server.upload_ok('short', fields={'pipeline': 'poster'})
        wait_until(lambda: len(rec.processed) >= 4, 20, 0.1, 'the delivery after the rotation')
        header, body, _ = rec.requests[3]
        self.assertEqual(header['Sluice-Signature'].count('v1='), 2, header)
        rec.secrets = [new_secret]
        self.assertTrue(rec.verify(header['Sluice-Signature'], body))
        rec.secrets = old_only
        self.assertTrue(rec.verify(header['Sluice-Signature'], body))
        rec.secrets = ['whsec_' + '0' * 64]
        self.assertFalse(rec.verify(header['Sluice-Signature'], body))

    def test_a_failing_receiver_gets_one_success_after_retries(self):
        # 500 three times, then 200: one delivery, processed once, attempts 4; the same id and body each time.
        rec = self.receiver([500, 500, 500])
        hook = self.create(rec, ['upload.completed'])
        video = self.server.upload_ok('short', fields={'pipeline': 'poster'})
        [d] = self.wait_deliveries(hook, 1)
        self.assertEqual((d['state'], d['attempts'], d['last_status']), ('succeeded', 4, 200))
        self.assertEqual(len(rec.requests), 4)
        self.assertEqual(len({h['Sluice-Delivery'] for h, _, _ in rec.requests}), 1)
        self.assertEqual(len({b for _, b, _ in rec.requests}), 1)
        self.assertEqual([e['data']['id'] for e in rec.processed], [video['video']['id']])
        self.server.wait_job(video['job']['id'])

    def test_a_4xx_is_not_retried_and_the_next_delivery_goes(self):
        rec = self.receiver([400])
        hook = self.create(rec, ['upload.completed'])
        first = self.server.upload_ok('short', fields={'pipeline': 'poster'})
        second = self.server.upload_ok('short', fields={'pipeline': 'poster'})
        shown = self.wait_deliveries(hook, 2)
        self.assertEqual([(d['subject'], d['state'], d['attempts'], d['last_status']) for d in shown],
                         [(second['video']['id'], 'succeeded', 1, 200), (first['video']['id'], 'failed', 1, 400)])
        self.assertEqual(shown[1]['last_error'], 'answered 400')
        self.assertEqual([e['data']['id'] for e in rec.processed], [second['video']['id']])
        for v in (first, second):
            self.server.wait_job(v['job']['id'])


@need_binary
class PrivateAddresses(WebhookCase):
    """Without [webhooks] allow-private: loopback, private and link-local addresses are refused."""
    CONFIG = {'jobs': {'concurrent': 1}, 'webhooks': dict(FAST, **{'allow-private': False})}

    def test_private_addresses_are_refused(self):
        for url in ('http://127.0.0.1:9/', 'http://localhost/', 'http://[::1]/', 'http://10.1.2.3/',
                    'http://169.254.169.254/latest/meta-data/', 'http://192.168.0.1/', 'http://[fe80::1]/',
                    'http://[::ffff:127.0.0.1]/'):
            r = self.server.post_json('/api/v1/webhooks', {'url': url, 'events': ['upload.completed']})
            self.assert_error(r, 400, 'invalid_field', 'url')

    def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(self):
        # A name that passes creation and resolves (at the delivery) to a private address: this machine's own name.
        host = socket.gethostname()
        try:
            addrs = {a[4][0] for a in socket.getaddrinfo(host, 80)}
        except OSError as e:
            self.skipTest('this machine\'s name does not resolve: %s' % e)
        public = [a for a in addrs if not (a.startswith(('127.', '10.', '192.168.', '169.254.', 'fe80', 'fc', 'fd'))
                                           or a == '::1' or a.startswith('172.'))]
        if public:
            self.skipTest('this machine\'s name %s resolves to a public address (%s)' % (host, public))
        rec = Receiver()
        self.addCleanup(rec.close)
        port = rec.httpd.server_address[1]
        rec.url = 'http://%s:%d/hook' % (host, port)
        hook = self.create(rec, ['upload.completed'])
        video = self.server.upload_ok('short', fields={'pipeline': 'poster'})
        [d] = self.wait_deliveries(hook, 1, states=('failed',))
        self.assertEqual(d['attempts'], 1)
        self.assertIsNone(d['last_status'])
        self.assertTrue(d['last_error'].startswith('refused'), d)
        self.assertEqual(rec.requests, [])
        self.server.wait_job(video['job']['id'])


@need_binary
class Crash(WebhookCase):
    """kill -9 between the state change (its outbox row committed with it) and the delivery: delivered after the
    restart, once."""
    # The class server is not used: each test runs servers of its own.
    CONFIG = {'jobs': {'concurrent': 1}}

    def test_kill_9_before_the_delivery_still_delivers_after_the_restart(self):
        tmp = tempfile.mkdtemp(prefix='sluice-webhooks-crash-')
        self.addCleanup(_rmtree, tmp)
        data = os.path.join(tmp, 'data')
        rec = self.receiver()
        # First life: the outbox is looked at once at start, then every 60 s: the upload's event is written and not
        # delivered before the kill.
        slow = Server(data, {'webhooks': dict(FAST, poll=60), 'uploads': {'auto-transcode': False}})
        slow.start()
        try:
            hook = self.create(rec, ['upload.completed'], server=slow)
            video = slow.upload_ok('short')
            [d] = self.deliveries(hook, slow)
            self.assertEqual((d['state'], d['attempts']), ('pending', 0))
        finally:
            slow.kill()
        self.assertEqual(rec.requests, [])
        again = Server(data, {'webhooks': FAST, 'uploads': {'auto-transcode': False}})
        again.start()
        try:
            [d] = self.wait_deliveries(hook, 1, server=again)
            self.assertEqual((d['state'], d['attempts']), ('succeeded', 1))
            self.assertEqual([e['data']['id'] for e in rec.processed], [video['video']['id']])
            self.assertEqual(len(rec.requests), 1)
            self.assertTrue(rec.requests[0][2])
            again.request('DELETE', '/api/v1/webhooks/' + hook['id'])
        finally:
            again.stop()


@need_binary
@need_ffmpeg
class StreamEvents(WebhookCase, LiveCase):
    """A publisher going live and going away: stream.live, then stream.ended, each once, with the stream's row."""
    CONFIG = {'jobs': {'concurrent': 1}, 'webhooks': FAST, 'srt': {'listen': '127.0.0.1:0'},
              'rtsp': {'listen': 'off'}, 'live': {'idle-timeout': 2}}

    def test_a_publish_sends_stream_live_then_stream_ended(self):
        rec = self.receiver()
        hook = self.create(rec, ['stream.live', 'stream.ended'])
        r = self.server.post_json('/api/v1/streams', {'title': 'hooked'})
        self.assertEqual(r.status, 201, r.describe())
        stream = r.json()
        proc = self.publish(stream['ingest']['srt'], 10)
        try:
            self.wait_state(stream['id'], 'live', 45)
        finally:
            rc, err = self.finished(proc, 60)
        self.assertEqual(rc, 0, err)
        self.wait_state(stream['id'], 'ended', 20)
        got = self.wait_deliveries(hook, 2)
        self.assertEqual([d['state'] for d in got], ['succeeded', 'succeeded'], got)
        self.assertEqual([p['type'] for p in rec.processed], ['stream.live', 'stream.ended'], rec.processed)
        for p, state in zip(rec.processed, ('live', 'ended')):
            self.assertEqual(p['data']['id'], stream['id'])
            self.assertEqual((p['data']['title'], p['data']['state']), ('hooked', state))
        self.assertTrue(all(ok for _, _, ok in rec.requests), 'every request is signed')
        self.assertEqual(len(rec.requests), 2)


if __name__ == '__main__':
    main()
