# SPDX-License-Identifier: LGPL-2.1-or-later
"""The API's contract, checked on every answer the test harness receives: docs/openapi.json must describe the
route (path and method), the status and, for a JSON body, every field of it (Draft 2020-12, as OpenAPI 3.1 has
it). A server suite fails at the first answer the document does not describe.

The document is read and each schema compiled once per process (a validator per route, method and status, kept),
so that a check costs a dictionary lookup and one validation. Debian's python3-jsonschema (tools/setup).
"""

import json
import os
import re
import sys

try:
    import jsonschema
except ImportError:  # an interpreter of its own (a virtualenv, pyenv) does not see Debian's python3-* packages
    sys.path.append('/usr/lib/python3/dist-packages')
    import jsonschema

DOCUMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'docs', 'openapi.json')
METHODS = ('get', 'head', 'post', 'put', 'patch', 'delete', 'options')


class ContractError(AssertionError):
    """An answer that docs/openapi.json does not describe."""


class Contract:
    def __init__(self, document):
        self.doc = document
        self.components = document.get('components', {})
        self._validators = {}
        self._routes = []   # (regex, template, path item), most literal segments first
        for template, item in document['paths'].items():
            parts = []
            for seg in template.strip('/').split('/') if template != '/' else []:
                if seg == '{path}':
                    parts.append('.+')  # the rest of the path (a media file under its folders)
                elif seg.startswith('{'):
                    parts.append('[^/]+')
                else:
                    parts.append(re.escape(seg))
            regex = re.compile('^/' + '/'.join(parts) + '$')
            literal = sum(1 for s in template.split('/') if s and not s.startswith('{'))
            self._routes.append((literal, regex, template, item))
        self._routes.sort(key=lambda r: -r[0])

    @classmethod
    def load(cls, path=DOCUMENT):
        with open(path, encoding='utf-8') as f:
            return cls(json.load(f))

    @staticmethod
    def normalize(path):
        """The path the server routes: '%2e' decoded and dot segments removed (libsoup does both, RFC 3986)."""
        path = re.sub('%2[eE]', '.', path.split('?', 1)[0].split('#', 1)[0])
        out = []
        for seg in path.split('/')[1:]:
            if seg == '..':
                if out:
                    out.pop()
            elif seg != '.':
                out.append(seg)
        if path.split('/')[-1] in ('.', '..'):
            out.append('')
        return '/' + '/'.join(out)

    def route(self, path):
        """The template and path item of a request path (its query left out), or (None, None)."""
        path = self.normalize(path)
        # One trailing slash is not part of an API route, as the server has it.
        if path.startswith('/api/') and len(path) > 1 and path.endswith('/'):
            path = path[:-1]
        for _, regex, template, item in self._routes:
            if regex.match(path):
                return template, item
        return None, None

    def _validator(self, key, schema):
        v = self._validators.get(key)
        if v is None:
            # $refs ("#/components/schemas/Job") resolve against the schema's own root: give it the components.
            root = dict(schema)
            root['components'] = self.components
            v = jsonschema.Draft202012Validator(root)
            self._validators[key] = v
        return v

    def error_schema_check(self, what, body):
        schema = {'$ref': '#/components/schemas/Error'}
        self._check_json(('Error',), schema, body, what)

    def _check_json(self, key, schema, body, what):
        errors = sorted(self._validator(key, schema).iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            lines = ['%s at %s' % (e.message, '/'.join(str(p) for p in e.absolute_path) or '(root)') for e in errors[:5]]
            raise ContractError('%s: the answer does not match docs/openapi.json:\n  %s\n  body: %s'
                                % (what, '\n  '.join(lines), json.dumps(body)[:600]))

    def check(self, method, path, status, content_type, body):
        """Raises ContractError when the answer (status, Content-Type, body bytes) is not the document's."""
        method = method.lower()
        what = '%s %s -> %d' % (method.upper(), path, status)
        media = (content_type or '').split(';', 1)[0].strip().lower()
        template, item = self.route(path)
        op = item.get(method) if item else None
        if op is None and method == 'head' and item:
            op = item.get('get')
        if op is None:
            # A CORS preflight is answered on any path by the middleware chain.
            if method == 'options' and status == 204:
                return
            # A path no route has, or a method the route lacks: only an error fits (404, 405, or the chain's own).
            if status < 400:
                raise ContractError('%s: %s is not in docs/openapi.json' % (
                    what, 'no such path' if item is None else '%s has no %s' % (template, method.upper())))
            if body and media == 'application/json':
                self.error_schema_check(what, json.loads(body))
            return
        responses = op.get('responses', {})
        answer = responses.get(str(status)) or responses.get('%dXX' % (status // 100)) or responses.get('default')
        if answer is None:
            raise ContractError('%s: docs/openapi.json describes no %d for %s %s (it has %s)'
                                % (what, status, method.upper(), template, ', '.join(sorted(responses))))
        if '$ref' in answer:
            answer = self.components['responses'][answer['$ref'].rsplit('/', 1)[1]]
        content = answer.get('content') or {}
        if not body or method == 'head':
            return
        if not content:
            raise ContractError('%s: docs/openapi.json says this answer has no body; it has %d bytes (%s)'
                                % (what, len(body), content_type))
        types = {t.split(';', 1)[0].lower() for t in content}
        if media not in types and not any(t.endswith('/*') and media.startswith(t[:-1]) for t in types):
            raise ContractError('%s: Content-Type %r is not one docs/openapi.json gives (%s)'
                                % (what, content_type, ', '.join(sorted(types))))
        if media == 'application/json':
            schema = content['application/json'].get('schema')
            if schema is not None:
                try:
                    parsed = json.loads(body)
                except ValueError as e:
                    raise ContractError('%s: the body is not JSON (%s): %r' % (what, e, body[:300]))
                self._check_json((template, method, status), schema, parsed, what)

    def check_event(self, name, data):
        """An event of GET /api/v1/events: its data against the schema x-events gives for its name."""
        stream = self.doc['paths']['/api/v1/events']['get']['responses']['200']['content']['text/event-stream']
        events = stream.get('x-events', {})
        if name not in events:
            raise ContractError('event %r is not in docs/openapi.json (x-events has %s)' % (name, ', '.join(events)))
        self._check_json(('event', name), events[name], data, 'event %s' % name)


_contract = None


def contract():
    """The document of this checkout, loaded once per process."""
    global _contract
    if _contract is None:
        _contract = Contract.load()
    return _contract
