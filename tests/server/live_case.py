# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the live suites share: the engine's ports from the server's start-up lines, ffmpeg publishing a small test
pattern and a tone, a stream's JSON and waiting for its state."""

import re
import subprocess
import time

from sluice_server import FFMPEG, ServerTestCase, wait_until


def live_ports(server):
    """(RTSP port, SRT port) that a server printed at start (None for one it does not serve)."""
    log = server.log_tail(50)
    rtsp = re.search(r'sluice: RTSP on rtsp://[^:/]+:(\d+)/', log)
    srt = re.search(r'sluice: SRT on srt://[^:/]+:(\d+)', log)
    return (int(rtsp.group(1)) if rtsp else None), (int(srt.group(1)) if srt else None)


def startup_lines(proc, timeout=30):
    """What a `sluice serve` started with stdout=PIPE, text=True printed up to its last start-up line."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith('sluice: data in'):
            break
    return ''.join(lines)


def publisher_command(url, seconds, video='testsrc2=size=320x180:rate=25', gop=50, audio='aac', audio_kbps=64,
                      fmt=None, deadline=True):
    """ffmpeg publishing `video` (a lavfi source, None for none) and a 440 Hz tone (audio: 'aac', 'pcm_s16le' or None)
    for `seconds` in real time: over RTSP (TCP) to rtsp:// URLs, else as `fmt` (MPEG-TS by default). With
    `deadline`, it is ended 30 s after it should have finished."""
    cmd = (['timeout', '-k', '2', str(seconds + 30)] if deadline else []) + [
        FFMPEG, '-hide_banner', '-loglevel', 'error', '-re']
    if video:
        cmd += ['-f', 'lavfi', '-i', video]
    if audio:
        cmd += ['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000']
    cmd += ['-t', str(seconds)]
    if video:
        cmd += ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', str(gop), '-threads', '1']
    if audio == 'aac':
        cmd += ['-c:a', 'aac', '-b:a', '%dk' % audio_kbps]
    elif audio:
        cmd += ['-c:a', audio]
    if url.startswith('rtsp://'):
        cmd += ['-f', 'rtsp', '-rtsp_transport', 'tcp', url]
    else:
        cmd += ['-f', fmt or 'mpegts', url]
    return cmd


class LiveCase(ServerTestCase):
    """A server with the live engine; rtsp_port and srt_port are the ports it took."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rtsp_port, cls.srt_port = live_ports(cls.server)

    def publish(self, url, seconds, **kw):
        """A publisher (publisher_command) started; stderr is kept for finished()."""
        return subprocess.Popen(publisher_command(url, seconds, **kw), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finished(self, proc, timeout, must_end=True):
        """(exit status, stderr) of a publisher once it ended; killed after timeout (a failure when must_end)."""
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            if must_end:
                self.fail('the publisher did not end within %d s' % timeout)
        return proc.returncode, err.decode('utf-8', 'replace')

    def stream(self, sid):
        return self.server.get_json('/api/v1/streams/' + sid)

    def state(self, sid):
        return self.stream(sid)['state']

    def wait_state(self, sid, state, timeout):
        try:
            wait_until(lambda: self.state(sid) == state, timeout, 0.2, 'stream %s to be %s' % (sid, state))
        except AssertionError as e:
            raise AssertionError('%s\nserver log:\n%s' % (e, self.server.log_tail(30)))
