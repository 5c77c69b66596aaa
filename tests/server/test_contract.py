# SPDX-License-Identifier: LGPL-2.1-or-later
"""The API's contract: the checks every server suite's answers go through (contract.py) refuse what
docs/openapi.json does not describe; the server serves that document and its reference page, open to anyone."""

import copy
import json
import os
import re
import unittest

from contract import DOCUMENT, Contract, ContractError
from sluice_server import ServerTestCase, need_binary

JOB = {'id': 'a1b2c3d4e5f60718', 'video_id': '3f9a0c1d2b4e5f60', 'pipeline': 'hls', 'output': 'hls', 'encoder': 'auto',
       'ladder': '', 'params': {}, 'state': 'queued', 'priority': 0, 'attempts': 0, 'max_attempts': 3,
       'created': '2026-11-25T18:20:05Z', 'started': None, 'finished': None, 'next_attempt': None, 'worker': None,
       'progress': None, 'error': None, 'result': None}


def body(obj):
    return json.dumps(obj).encode()


class ContractChecks(unittest.TestCase):
    """contract.py on answers made here: what fits passes, anything the document lacks is refused."""

    @classmethod
    def setUpClass(cls):
        cls.c = Contract.load()

    def refused(self, *args, match=None):
        with self.assertRaises(ContractError) as cm:
            self.c.check(*args)
        if match:
            self.assertRegex(str(cm.exception), match)

    def test_a_described_answer_passes(self):
        self.c.check('GET', '/api/v1/jobs/' + JOB['id'], 200, 'application/json', body(JOB))
        self.c.check('GET', '/api/v1/jobs?state=queued', 200, 'application/json', body({'jobs': [JOB]}))
        self.c.check('DELETE', '/api/v1/streams/0123456789abcdef', 204, None, b'')
        self.c.check('GET', '/api/v1/videos/nope', 404, 'application/json',
                     body({'error': {'code': 'not_found', 'message': 'no video nope'}}))

    def test_an_undescribed_field_is_refused(self):
        job = dict(JOB, surprise=1)
        self.refused('GET', '/api/v1/jobs/' + JOB['id'], 200, 'application/json', body(job), match='surprise')
        nested = copy.deepcopy(JOB)
        nested['error'] = {'code': 'pipeline_error', 'message': 'x', 'element': 'x264enc0'}
        self.refused('GET', '/api/v1/jobs/' + JOB['id'], 200, 'application/json', body(nested), match='element')
        err = {'error': {'code': 'not_found', 'message': 'no such job', 'hint': 'try another'}}
        self.refused('GET', '/api/v1/jobs/x', 404, 'application/json', body(err), match='hint')

    def test_a_missing_field_or_a_wrong_type_is_refused(self):
        job = dict(JOB)
        del job['state']
        self.refused('GET', '/api/v1/jobs/' + JOB['id'], 200, 'application/json', body(job), match='state')
        self.refused('GET', '/api/v1/jobs/' + JOB['id'], 200, 'application/json', body(dict(JOB, priority='0')))
        self.refused('GET', '/api/v1/jobs/' + JOB['id'], 200, 'application/json', body(dict(JOB, state='paused')))
        self.refused('GET', '/api/v1/jobs/x', 404, 'application/json',
                     body({'error': {'code': 'no_such_code', 'message': 'x'}}))

    def test_an_undescribed_status_route_or_type_is_refused(self):
        self.refused('GET', '/api/v1/jobs/' + JOB['id'], 202, 'application/json', body(JOB), match='describes no 202')
        self.refused('GET', '/api/v1/nothing', 200, 'application/json', body({}), match='no such path')
        self.refused('PUT', '/api/v1/jobs/' + JOB['id'], 200, 'application/json', body(JOB), match='has no PUT')
        self.refused('GET', '/api/v1/jobs/' + JOB['id'], 200, 'text/plain', b'hello', match='Content-Type')
        self.refused('DELETE', '/api/v1/streams/0123456789abcdef', 204, 'application/json', b'{}', match='no body')
        # An unknown path may only be an error, in the error object.
        self.c.check('GET', '/api/v1/nothing', 404, 'application/json',
                     body({'error': {'code': 'not_found', 'message': 'no route'}}))
        self.refused('GET', '/api/v1/nothing', 404, 'application/json', body({'message': 'no route'}))

    def test_events(self):
        self.c.check_event('job', JOB)
        self.c.check_event('video', {'id': JOB['video_id'], 'action': 'created'})
        with self.assertRaises(ContractError):
            self.c.check_event('video', {'id': JOB['video_id'], 'action': 'created', 'extra': True})
        with self.assertRaises(ContractError):
            self.c.check_event('mystery', {})

    def test_routes_match_as_the_server_has_them(self):
        self.assertEqual(self.c.route('/videos/abc/cmaf/720p/init.mp4')[0], '/videos/{id}/{path}')
        self.assertEqual(self.c.route('/api/v1/videos/')[0], '/api/v1/videos')
        self.assertEqual(self.c.route('/api/v1/videos/abc/jobs')[0], '/api/v1/videos/{id}/jobs')
        self.assertEqual(self.c.route('/api/v1/openapi.json')[0], '/api/v1/openapi.json')
        self.assertIsNone(self.c.route('/videos/abc')[0])

    def test_every_route_of_the_server_is_described(self):
        """routes.cpp's table and the document's paths name the same routes and methods."""
        routes = os.path.join(os.path.dirname(DOCUMENT), '..', 'src', 'http', 'routes.cpp')
        with open(routes) as f:
            table = re.findall(r'\{"([A-Z]+)", "([^"]+)", \w+, Scope::', f.read())
        described = {(m.upper(), p) for p, item in self.c.doc['paths'].items() for m in item
                     if m in ('get', 'post', 'patch', 'delete', 'put')}
        served = {(m, p.replace('/*', '/{path}')) for m, p in table}
        self.assertEqual(described, served)


@need_binary
class Served(ServerTestCase):
    """The document and the reference page, open with [auth] mode=keys (nothing in them is secret)."""

    CONFIG = {'jobs': {'concurrent': 1}, 'auth': {'mode': 'keys'}}
    API_KEY_SCOPES = 'admin'   # for the harness's own checks after each test

    def anonymous(self, path, method='GET'):
        conn = self.server.connection(10)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.headers, r.read()
        finally:
            conn.close()

    def test_the_document(self):
        status, headers, data = self.anonymous('/api/v1/openapi.json')
        self.assertEqual(status, 200, data[:300])
        self.assertTrue(headers['Content-Type'].startswith('application/json'), headers['Content-Type'])
        with open(DOCUMENT, 'rb') as f:
            self.assertEqual(json.loads(data), json.loads(f.read()))
        # Without a key an API route is refused: the document alone is open.
        self.assertEqual(self.anonymous('/api/v1/videos')[0], 401)

    def test_the_reference_page_and_its_files(self):
        status, headers, data = self.anonymous('/docs/api')
        self.assertEqual(status, 200, data[:300])
        self.assertTrue(headers['Content-Type'].startswith('text/html'), headers['Content-Type'])
        csp = headers['Content-Security-Policy']
        self.assertIn("script-src 'self'", csp)
        self.assertNotIn('unsafe-eval', csp)
        page = data.decode()
        assets = re.findall(r'(?:src|href)="(/web/[^"]+)"', page)
        self.assertIn('/web/node_modules/swagger-ui-dist/swagger-ui-bundle.js', assets)
        # Every script and stylesheet comes from this server (no CDN), and is there.
        self.assertNotRegex(page, r'(?:src|href)="(?:https?:)?//')
        if not os.path.isdir(os.path.join(os.environ.get('SLUICE_DATA_DIR', ''), 'web', 'node_modules')):
            self.skipTest('data/web/node_modules is missing (tools/setup runs npm ci there)')
        for asset in assets + ['/web/reference.js']:
            status, _, data = self.anonymous(asset)
            self.assertEqual(status, 200, asset)
            self.assertGreater(len(data), 0, asset)
        with open(os.path.join(os.environ['SLUICE_DATA_DIR'], 'web', 'reference.js')) as f:
            self.assertIn("'/api/v1/openapi.json'", f.read())


if __name__ == '__main__':
    unittest.main(verbosity=2)
