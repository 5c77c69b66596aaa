#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The live engine under bad input and faults: garbage on the SRT port, an SRT caller whose bytes are not MPEG-TS
or have no video, an RTSP publisher that announces a video encoding sluice cannot take (415), publishers killed
mid-GOP over RTSP and SRT. Each stream's state says why; the listeners take the next good publisher; and all the
while another stream keeps producing segments and a VOD upload's job becomes ready."""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_case import LiveCase, startup_lines, publisher_command  # noqa: E402
from sluice_server import BINARY, FFPROBE, main, need_binary, need_ffmpeg, wait_until  # noqa: E402

IDLE_TIMEOUT = 2
NO_VIDEO_S = 6      # a publisher without video is let go after this long (live/engine.cpp)
SIZE = '320x180'


def media_playlist(text):
    """(media sequence, [segment uri], ended)"""
    m = re.search(r'^#EXT-X-MEDIA-SEQUENCE:(\d+)$', text, re.M)
    return (int(m.group(1)) if m else None, re.findall(r'^#EXTINF:[0-9.]+,\n(\S+)$', text, re.M),
            '#EXT-X-ENDLIST' in text)


@need_binary
@need_ffmpeg
class LiveFaults(LiveCase):
    CONFIG = {'jobs': {'concurrent': 1}, 'live': {'window': 6, 'idle-timeout': IDLE_TIMEOUT}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.rtsp_port is None or cls.srt_port is None:
            raise AssertionError('the server did not print its RTSP and SRT addresses:\n' + cls.server.log_tail(50))
        cls.work = tempfile.mkdtemp(prefix='sluice-live-faults-')
        cls.addClassCleanup(shutil.rmtree, cls.work, True)
        cls.procs = []
        cls.addClassCleanup(cls.stop_all)
        # The bystander: a stream published all along. And an RTSP publisher that will vanish.
        cls.steady = cls.create_stream('steady')
        cls.publish(cls.steady['ingest']['rtsp'], 90)
        cls.vanishing = cls.create_stream('rtsp vanish')
        cls.vanishing_proc = cls.publish(cls.vanishing['ingest']['rtsp'], 90)
        for s in (cls.steady, cls.vanishing):
            wait_until(lambda: cls.server.get_json('/api/v1/streams/' + s['id'])['state'] == 'live', 40, 0.2,
                       'stream %s to be live' % s['title'])
        cls.steady_seq = cls.sequence(cls.steady['id'])

    @classmethod
    def stop_all(cls):
        for p in cls.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    @classmethod
    def create_stream(cls, title):
        r = cls.server.post_json('/api/v1/streams', {'title': title})
        if r.status != 201:
            raise AssertionError(r.describe())
        return r.json()

    @classmethod
    def publish(cls, url, seconds, audio=True, video=True, fmt=None):
        """ffmpeg publishes a small 25 fps test pattern (a keyframe every 2 s) and a tone to url (killed at the end
        of the class at the latest)."""
        cmd = publisher_command(url, seconds, video='testsrc2=size=%s:rate=25' % SIZE if video else None,
                                audio=('pcm_s16le' if fmt == 's16le' else 'aac') if audio else None, fmt=fmt,
                                deadline=False)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cls.procs.append(p)
        return p

    @classmethod
    def sequence(cls, sid):
        """The number of segments a stream's first media playlist has listed so far (its media sequence and those
        it lists now)."""
        r = cls.server.get('/streams/%s/master.m3u8' % sid)
        if r.status != 200:
            return None
        first = re.search(r'^#EXT-X-STREAM-INF:.*\n(\S+)$', r.text(), re.M).group(1)
        seq, segments, _ = media_playlist(cls.server.get('/streams/%s/%s' % (sid, first)).text())
        return seq + len(segments)

    # -- helpers --

    def wait_stream(self, sid, pred, timeout, what):
        try:
            return wait_until(lambda: (lambda s: s if pred(s) else None)(self.stream(sid)), timeout, 0.2, what)
        except AssertionError as e:
            raise AssertionError('%s\nserver log:\n%s' % (e, self.server.log_tail(30)))

    def assert_bystanders_fine(self):
        """The steady stream is still live and its playlists move on (a new 2 s segment within 5 s); the server
        is up."""
        self.assertTrue(self.server.alive())
        self.assertEqual(self.stream(self.steady['id'])['state'], 'live')
        seq = wait_until(lambda: (lambda n: n if n > self.steady_seq else None)(self.sequence(self.steady['id'])),
                         5, 0.2, 'a new segment of the steady stream')
        type(self).steady_seq = seq

    def assert_segments_decode(self, sid):
        master = self.server.get('/streams/%s/master.m3u8' % sid)
        self.assertEqual(master.status, 200, master.describe())
        playlists = re.findall(r'^#EXT-X-STREAM-INF:.*\n(\S+)$', master.text(), re.M)
        self.assertTrue(playlists, master.text())
        for playlist in playlists:
            _, segments, ended = media_playlist(self.server.get('/streams/%s/%s' % (sid, playlist)).text())
            self.assertTrue(ended, '%s has no ENDLIST' % playlist)
            self.assertTrue(segments, playlist)
            for uri in segments:
                r = self.server.get('/streams/%s/%s' % (sid, uri))
                self.assertEqual(r.status, 200, r.describe())
                path = os.path.join(self.work, uri)
                with open(path, 'wb') as f:
                    f.write(r.body)
                p = subprocess.run([FFPROBE, '-v', 'error', '-count_frames', '-show_entries',
                                    'stream=codec_type,nb_read_frames', '-of', 'json', path],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr.strip(), '', 'decoding %s: %s' % (uri, p.stderr))
                video = [s for s in json.loads(p.stdout)['streams'] if s['codec_type'] == 'video']
                self.assertEqual(len(video), 1, p.stdout)
                self.assertGreater(int(video[0]['nb_read_frames']), 0, uri)
                os.unlink(path)

    def publish_srt(self, s, seconds, **kw):
        """Publishes to stream s over SRT once the listener takes it (it listens again a moment after a caller that
        failed): returns the publisher, taken."""
        deadline = time.monotonic() + 15
        while True:
            proc = self.publish(s['ingest']['srt'], seconds, **kw)
            try:
                wait_until(lambda: self.stream(s['id'])['state'] == 'connecting' or proc.poll() is not None, 10, 0.1,
                           'the SRT caller to be taken or to give up')
            except AssertionError:
                pass
            if self.stream(s['id'])['state'] in ('connecting', 'live') or time.monotonic() > deadline:
                return proc
            self.finished(proc)

    def finished(self, proc, timeout=5, must_end=False):
        return super().finished(proc, timeout, must_end)

    # -- tests --

    def raw_announce(self, url, encoding):
        sdp = ('v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n'
               'm=video 0 RTP/AVP 96\r\na=rtpmap:96 %s/90000\r\na=control:streamid=0\r\n'
               'm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n'
               'a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;'
               'config=1190\r\na=control:streamid=1\r\n' % encoding)
        req = ('ANNOUNCE %s RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s'
               % (url, len(sdp), sdp))
        with socket.create_connection(('127.0.0.1', self.rtsp_port), 10) as c:
            c.sendall(req.encode())
            c.settimeout(10)
            answer = b''
            while b'\r\n\r\n' not in answer:
                chunk = c.recv(4096)
                if not chunk:
                    break
                answer += chunk
        return answer.decode('utf-8', 'replace')

    def test_1_rtsp_unsupported_codec(self):
        rtsp = self.create_stream('rtsp fault')
        # H.266 over RTP: no depayloader for it. Refused at the ANNOUNCE (415), nothing starts, the stream says why.
        answer = self.raw_announce(rtsp['ingest']['rtsp'], 'H266')
        self.assertRegex(answer, r'^RTSP/1\.0 415 ', answer)
        st = self.wait_stream(rtsp['id'], lambda x: x.get('reason'), 5, 'the refusal to show')
        self.assertEqual(st['state'], 'idle')
        self.assertIn('H266', st['reason'])
        self.assertFalse(os.path.exists(os.path.join(self.server.data_dir, 'streams', rtsp['id'], 'master.m3u8')))
        self.assertTrue(self.server.alive())

    def test_2_srt_garbage_then_publishers_vanish_mid_gop(self):
        # A VOD upload whose job runs while the faults come (test_3 sees it ready).
        up = self.server.upload_ok('medium')
        type(self).vod_video, type(self).vod_job = up['video']['id'], up['jobs'][0]['id']
        s = self.create_stream('srt garbage')
        sid = s['id']
        # Random datagrams on the SRT port: nothing to say to anyone, nothing breaks.
        rnd = random.Random(13)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for _ in range(300):
                u.sendto(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 1500))), ('127.0.0.1', self.srt_port))
        # A caller with the stream's key whose bytes are not MPEG-TS (raw PCM).
        proc = self.publish(s['ingest']['srt'], 10, video=False, fmt='s16le')
        st = self.wait_stream(sid, lambda x: x['state'] == 'idle' and x.get('reason'), 15,
                              'the stream to refuse the non-MPEG-TS input')
        self.assertIn('SRT input failed', st['reason'])
        self.finished(proc)
        # An MPEG-TS without video (audio only): let go after a while, saying so.
        proc = self.publish_srt(s, 30, video=False)
        started = time.monotonic()
        st = self.wait_stream(sid, lambda x: x['state'] == 'idle', NO_VIDEO_S + 8, 'the audio-only caller to go')
        self.assertIn('no video', st.get('reason', ''))
        self.assertLess(time.monotonic() - started, NO_VIDEO_S + 8)
        self.finished(proc)
        self.assertFalse(os.path.exists(os.path.join(self.server.data_dir, 'streams', sid, 'master.m3u8')))
        # The listener takes the next good publisher.
        proc = self.publish_srt(s, 60)
        self.wait_stream(sid, lambda x: x['state'] == 'live', 30, 'a good SRT publisher to go live')
        self.assertNotIn('reason', self.stream(sid))
        self.assert_bystanders_fine()

        # Publishers killed (kill -9: no TEARDOWN, no SRT shutdown), this one and the RTSP one live since the start.
        # A keyframe every 2 s at 25 fps: the kill lands inside a GOP 49 times in 50, cutting the last one short.
        for p in (proc, self.vanishing_proc):
            os.kill(p.pid, signal.SIGKILL)
            p.communicate()
        for sid in (s['id'], self.vanishing['id']):
            # Reconnecting for the idle timeout, then ended; the segments listed at the end all decode.
            st = self.wait_stream(sid, lambda x: x['state'] == 'ended', IDLE_TIMEOUT + 15, 'stream %s to end' % sid)
            self.assertRegex(st['reason'], r'no input for %d s' % IDLE_TIMEOUT)
            self.assert_segments_decode(sid)
        self.assert_bystanders_fine()

    def test_3_vod_job_unaffected(self):
        if not hasattr(type(self), 'vod_job'):
            self.skipTest('the VOD job is made by test_2, during the faults')
        self.server.wait_succeeded(self.vod_job, timeout=60)
        self.assertEqual(self.server.video(self.vod_video)['state'], 'ready')
        self.assert_bystanders_fine()


    def test_4_live_ports_on_all_addresses_without_auth(self):
        # [auth] mode none refuses an HTTP listen other machines reach (anyone could upload and delete), but not the
        # RTSP and SRT ones: publishing there needs a stream's key, and RTSP plays only what HTTP plays to anyone
        # (a ready video under its playback policy, a live stream).
        data = os.path.join(self.work, 'open-data')
        base = [BINARY, 'serve', '--data', data]
        proc = subprocess.Popen(base + ['--listen', '127.0.0.1:0', '--rtsp-listen', '0.0.0.0:0',
                                        '--srt-listen', '0.0.0.0:0'],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            text = startup_lines(proc)
            m = re.search(r'(?m)^sluice: RTSP on rtsp://0\.0\.0\.0:([1-9]\d*)/$', text)
            self.assertTrue(m, text)
            self.assertRegex(text, r'(?m)^sluice: SRT on srt://0\.0\.0\.0:[1-9]\d*$')
            # It answers RTSP (on every address, so on the loopback one too).
            with socket.create_connection(('127.0.0.1', int(m.group(1))), 10) as c:
                c.sendall(b'OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n')
                c.settimeout(10)
                self.assertRegex(c.recv(4096).decode('utf-8', 'replace'), r'^RTSP/1\.0 200 ')
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, err)
        r = subprocess.run(base + ['--listen', '0.0.0.0:0', '--rtsp-listen', '0.0.0.0:0'], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('refusing to listen on 0.0.0.0 without access control', r.stderr)


if __name__ == '__main__':
    main()
