#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`sluice serve` with [store] url = postgresql://...: the catalog in a throwaway PostgreSQL server (initdb + pg_ctl,
a Unix socket in a temp folder, started and stopped by this test): upload, job, video ready, restart, the catalog is
still there; API keys made with `sluice keys --config`; a bad url stops the start without showing its password."""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import BINARY, Server, _rmtree, main, need_binary, need_ffmpeg, write_config  # noqa: E402


def pg_bindir():
    """initdb's folder: $SLUICE_TEST_PG_BINDIR, else the newest of Debian's /usr/lib/postgresql/N/bin."""
    if os.environ.get('SLUICE_TEST_PG_BINDIR'):
        return os.environ['SLUICE_TEST_PG_BINDIR']
    found = [d for d in glob.glob('/usr/lib/postgresql/*/bin') if os.access(os.path.join(d, 'initdb'), os.X_OK)]
    found.sort(key=lambda d: int(d.split('/')[-2]) if d.split('/')[-2].isdigit() else 0)
    return found[-1] if found else None


class PgServer:
    """A PostgreSQL server of its own: a Unix socket in a temp folder, no TCP port, nothing synced to disk (durable:
    fsync and synchronous commits as a production server has them, for benchmarks)."""

    def __init__(self, durable=False):
        self.bindir = pg_bindir()
        if not self.bindir:
            raise unittest.SkipTest('initdb not found (install Debian\'s postgresql package, or set '
                                    'SLUICE_TEST_PG_BINDIR)')
        self.prefix = []
        self.dir = tempfile.mkdtemp(prefix='sluice-pg-')
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root: as the postgres user, in a folder it owns.
            try:
                pw = pwd.getpwnam('postgres')
            except KeyError:
                _rmtree(self.dir)
                raise unittest.SkipTest('running as root and there is no postgres user to run the server as')
            if not shutil.which('runuser'):
                _rmtree(self.dir)
                raise unittest.SkipTest('running as root and runuser is missing')
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ['runuser', '-u', 'postgres', '--']
        self.data = os.path.join(self.dir, 'data')
        self.started = False
        self._run('initdb', '-D', self.data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale',
                  '--no-sync')
        options = ("-c listen_addresses='' -k %s " % self.dir) + (
            "-c max_connections=100" if durable else
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB")
        self._run('pg_ctl', '-D', self.data, '-l', os.path.join(self.dir, 'server.log'), '-w', '-t', '30',
                  '-o', options, 'start')
        self.started = True

    def _run(self, program, *args):
        r = subprocess.run(self.prefix + [os.path.join(self.bindir, program)] + list(args), capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError('%s failed (%d): %s%s' % (program, r.returncode, r.stdout, r.stderr))

    def create_database(self, name):
        self._run('createdb', '-h', self.dir, '-U', 'postgres', name)

    def url(self, db='postgres'):
        return 'postgresql:///%s?host=%s&user=postgres' % (db, self.dir)

    def stop(self):
        if self.started:
            self._run('pg_ctl', '-D', self.data, '-m', 'fast', '-w', 'stop')
            self.started = False
        _rmtree(self.dir)


@need_binary
@need_ffmpeg
class PostgresStore(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (BINARY and os.access(BINARY, os.X_OK)):
            raise unittest.SkipTest('SLUICE_BINARY is not set or not executable (run through meson test)')
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)
        cls.tmp = tempfile.mkdtemp(prefix='sluice-e2e-pg-')
        cls.addClassCleanup(_rmtree, cls.tmp)

    def test_catalog_in_postgres_survives_a_restart(self):
        data = os.path.join(self.tmp, 'data')
        os.makedirs(data)
        srv = Server(data, {'store': {'url': self.pg.url()}, 'auth': {'mode': 'keys'}, 'jobs': {'concurrent': 1}})
        # The key is made in the same catalog, through the same configuration.
        r = subprocess.run([BINARY, 'keys', 'create', '--config', srv.config_path, '--name', 'admin',
                            '--scope', 'admin'], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv.api_key = r.stdout.strip()
        srv.start()
        try:
            body = srv.upload_ok('short', title='in postgres')
            vid = body['video']['id']
            self.assertTrue(body.get('job'), body)
            srv.wait_succeeded(body['job']['id'])
            self.assertEqual(srv.video(vid)['state'], 'ready')
            self.assertEqual(srv.get('/videos/%s/hls/master.m3u8' % vid).status, 200)
            # A request without the key is refused: the key is the one in PostgreSQL.
            self.assertEqual(srv.request('GET', '/api/v1/videos', headers={'Authorization': 'Bearer nope'}).status,
                             401)
        finally:
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=20), 0, srv.log_tail())
        # No SQLite catalog was made: everything is in PostgreSQL.
        self.assertFalse(os.path.exists(os.path.join(data, 'sluice.db')), os.listdir(data))

        again = Server(data, config_path=srv.config_path, log_path=srv.log_path, api_key=srv.api_key).start()
        try:
            v = again.video(vid)
            self.assertEqual(v['state'], 'ready', v)
            self.assertEqual(v['title'], 'in postgres')
            self.assertEqual([x['id'] for x in again.get_json('/api/v1/videos')['videos']], [vid])
            self.assertEqual(again.get_json('/api/v1/jobs?video=' + vid)['jobs'][0]['state'], 'succeeded')
            self.assertEqual(again.get('/videos/%s/hls/master.m3u8' % vid).status, 200)
            listed = subprocess.run([BINARY, 'keys', 'list', '--config', srv.config_path], capture_output=True,
                                    text=True, timeout=30)
            self.assertEqual(listed.returncode, 0, listed.stderr)
            self.assertIn('admin', listed.stdout)
        finally:
            self.assertEqual(again.stop(signal.SIGTERM, timeout=20), 0, again.log_tail())

    def start_failure(self, url):
        conf = os.path.join(self.tmp, 'bad.conf')
        write_config(conf, {'store': {'url': url}, 'rtsp': {'listen': 'off'}, 'srt': {'listen': 'off'}})
        return subprocess.run([BINARY, 'serve', '--listen', '127.0.0.1:0', '--config', conf,
                               '--data', os.path.join(self.tmp, 'bad-data')],
                              capture_output=True, text=True, timeout=30)

    def test_bad_urls_stop_the_start_without_their_password(self):
        r = self.start_failure('mysql://sluice:hunter2@db.example/catalog')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('[store] url', r.stderr)
        self.assertNotIn('hunter2', r.stderr + r.stdout)
        # Well formed, but no server there.
        r = self.start_failure('postgresql://sluice:hunter2@/catalog?host=%s' % os.path.join(self.tmp, 'nothing'))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('cannot connect', r.stderr)
        self.assertIn('password=***', r.stderr)
        self.assertNotIn('hunter2', r.stderr + r.stdout)


if __name__ == '__main__':
    main()
