# SPDX-License-Identifier: LGPL-2.1-or-later
# `tools/bench live`: live latency (a burned-in clock read at hls.js and at an RTSP client) and live capacity (720p30
# inputs taken to a 720p+360p ladder in real time) against one ffmpeg per stream.
"""The `live` benchmark of tools/bench (which imports this file and passes itself as `b` for its helpers)."""

import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

SHORT = "live streams: latency at hls.js and at an RTSP client (burned-in clock), capacity vs one ffmpeg per stream"

HELP = """\
Benchmark the live engine of `sluice serve`: how far behind the publisher viewers are, and how many
720p30 inputs one server takes to a ladder in real time, against one ffmpeg per stream.

Latency (with 2 s segments; goals: live HLS at the player at most 3 segments + 1 s = 7 s behind the
publisher, the RTSP restream under 1 s):
  1. a publisher of this script's own: 1280x720 30 fps frames (a testsrc2 picture) on which the wall
     clock at capture (ms, 24 bits, with a 4-bit checksum and a black and a white reference) is
     painted as two rows of 64x64 black/white blocks, written in real time to ffmpeg, which adds a
     human-readable clock (drawtext, when ffmpeg has it), encodes (x264 ultrafast, zerolatency, 2 s
     GOP, 4 Mbit/s, no audio) and publishes over RTSP (TCP) to a stream with the ladder --ladder;
  2. RTSP client: `ffmpeg -rtsp_transport tcp -fflags nobuffer -flags low_delay` reads the restream
     rtsp://HOST:PORT/live/ID and writes small grey raw frames to a pipe; each frame's blocks are
     read as it arrives: latency = wall clock when the decoded frame arrived - the clock in it;
  3. player: Debian's chromium (driven by playwright-core from tests/e2e) opens the web page's own
     player (#/streams/ID: hls.js with the page's live settings, liveSyncDurationCount 3), and on each
     frame it presents (requestVideoFrameCallback) draws the <video> to a canvas and reads the
     blocks: latency = the frame's expected display time (wall clock) - the clock in it. hls.js's own
     figure (the page's "s behind live") is sampled too;
  after --warmup seconds, each client is measured for --latency-seconds: median, p95, min, max.

Capacity (goal: report the largest N that holds real time for sluice and for ffmpeg, and CPU):
  1. a 720p30 H.264 (testsrc2, x264 veryfast 4 Mbit/s, 2 s GOP) + AAC clip, made once; each input
     is `ffmpeg -re -stream_loop -1 -i CLIP -c copy -f rtsp -rtsp_transport tcp` (publishing costs
     almost nothing);
  2. for N = 1.. --max-streams: sluice: N streams (live-hls, --ladder), N publishers; once all are
     live and after --warmup s, --seconds s are watched: every media playlist is polled (on disk)
     every 0.25 s and each segment's arrival noted; the stream's figures (input fps, dropped
     frames) are read from GET /api/v1/streams/ID. Then ffmpeg: N processes, each an RTSP server
     for one publisher (-rtsp_flags listen), decoding once and encoding the same ladder to HLS
     (split + scale with the bilinear scaler, libx264 with the x264enc settings sluice's ladder
     uses: preset, zerolatency, bitrate, VBV of 600 ms, GOP, scenecut 0, threads; AAC copied), the
     same -re inputs, watched the same way. The settings are read from the server's log of the
     ladder it built (GST_DEBUG=sluice-live:4), else the built-in numbers are used (and said);
  3. speed of each rung of each stream over the window: distinct frames in the segments that
     arrived (counted in the MPEG-TS, less the repeats a videorate put in for frames dropped before
     an encoder: told by their size, tiny next to a real frame of the moving pattern) per wall
     second against 30 fps, and seconds of media per wall second
     (both least-squares slopes over the arrivals); real time = every rung of every stream at
     speed >= 0.99 (--min-speed), never a segment (2 s) further behind the media than at another
     moment of the window (ffmpeg, pushed back on, falls behind and then catches up in a burst;
     sluice's ladder drops frames instead), with its publisher alive. CPU: user+system seconds of
     the sluice process (all its threads) or of the N ffmpeg processes over the window, per
     stream-second (1.00 = one core per stream), and per second of media made (cores / that: an
     estimate of the streams an idle machine would take); the publishers' CPU and the whole
     machine's busy share are shown apart. A side stops stepping up once it fails
     (--tries times).

The machine should be idle: its busy share before the start and during each window is printed.
Needs ffmpeg, python3; the player part needs chromium and tests/e2e/node_modules (tools/setup),
and is skipped (saying so) without them. --skip latency or --skip capacity runs one half.
"""

# The burned-in clock: two rows of 15 cells of 64x64 pixels at (32, 32) of a 1280x720 picture. Cell 0 is black,
# cell 1 white (the references); cells 2..29 carry the wall clock in ms modulo 2^24 (MSB first) and a 4-bit checksum.
WIDTH, HEIGHT, FPS = 1280, 720, 30
CELL, X0, Y0, COLS, ROWS = 64, 32, 32, 15, 2
STAMP_BITS, CHECK_BITS = 24, 4
STAMP_MOD = 1 << STAMP_BITS
LAYOUT = {"width": WIDTH, "height": HEIGHT, "cell": CELL, "x0": X0, "y0": Y0, "cols": COLS, "rows": ROWS,
          "stampBits": STAMP_BITS, "checkBits": CHECK_BITS}
SEGMENT_SECONDS = 2
HLS_GOAL_S = 3 * SEGMENT_SECONDS + 1.0
RTSP_GOAL_S = 1.0
RTSP_READ_SIZE = (320, 180)  # the RTSP client scales to this before the pipe

# Used when the server's log does not show the ladder it built: the rungs' bitrates of src/media/ladder.cpp, the
# x264enc settings of src/live/ladder.cpp.
FALLBACK_RUNGS = {720: 2800, 360: 800, 240: 400, 480: 1400, 1080: 5000}
X264ENC_VBV_MS = 600  # x264enc's default vbv-buf-capacity (pass=cbr: vbv-maxrate = bitrate)

# One rung of the ladder the server logs: "videoconvertscale [method=M] ! video/x-raw,...width=W,height=H... ! ...
# ! x264enc OPTIONS !" (whatever elements come between the caps and the encoder).
LADDER_LOG_RE = re.compile(r"videoconvertscale(?: method=([\w-]+))?[^!]*! video/x-raw,[^!]*?width=(\d+),height=(\d+)"
                           r"(?:(?!x264enc|videoconvertscale)[^\n])*?! x264enc ([^!]*)!")
RTSP_PORT_RE = re.compile(r"RTSP on rtsp://127\.0\.0\.1:(\d+)/")


def checksum(stamp):
    s = 0
    for i in range(0, STAMP_BITS, 4):
        s += (stamp >> i) & 0xF
    return s & 0xF


def stamp_bits(stamp):
    word = (stamp << CHECK_BITS) | checksum(stamp)
    n = STAMP_BITS + CHECK_BITS
    return [0, 1] + [(word >> (n - 1 - i)) & 1 for i in range(n)]


def decode_cells(levels):
    """levels: the mean luma of each cell (2 + 28) -> the stamp, or None when unreadable."""
    black, white = levels[0], levels[1]
    if white - black < 60:
        return None
    mid = (white + black) / 2
    word = 0
    for v in levels[2:]:
        word = (word << 1) | (1 if v > mid else 0)
    stamp, check = word >> CHECK_BITS, word & ((1 << CHECK_BITS) - 1)
    return stamp if checksum(stamp) == check else None


def latency_ms(stamp, now_ms):
    """now - the capture clock, from a stamp (wall ms modulo 2^24, i.e. 4.6 hours)."""
    return (now_ms - stamp) % STAMP_MOD


def cell_centres(w, h):
    out = []
    for i in range(COLS * ROWS):
        r, c = divmod(i, COLS)
        out.append((int((X0 + c * CELL + CELL / 2) * w / WIDTH), int((Y0 + r * CELL + CELL / 2) * h / HEIGHT)))
    return out


def read_grey(frame, w, h, centres):
    """The mean of 4x4 pixels at each cell's centre of a grey w x h frame."""
    levels = []
    for x, y in centres:
        s = 0
        for yy in range(y - 2, y + 2):
            row = yy * w
            s += sum(frame[row + x - 2:row + x + 2])
        levels.append(s / 16)
    return levels


def summarize(values):
    if not values:
        return {"count": 0, "median": None, "p95": None, "min": None, "max": None}
    v = sorted(values)
    p95 = v[min(len(v) - 1, int(math.ceil(0.95 * len(v))) - 1)]
    return {"count": len(v), "median": statistics.median(v), "p95": p95, "min": v[0], "max": v[-1]}


def fmt_s(x):
    return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:5.2f}"


def slope(xs, ys):
    if len(xs) < 3 or max(xs) - min(xs) <= 0:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def ts_video_frames(path):
    """(frames, repeats) of the video of an MPEG-TS file: its access units (PES packets of a video stream id,
    0xE0..0xEF), and how many look like repeats: under 0.3x the file's 75th percentile of frame sizes. A frame the
    encoder got twice (a videorate that filled a gap left by dropped frames with copies) costs x264 a few hundred
    bytes to a fifth of a real frame of the moving test pattern; the first two frames of a segment (its keyframe and
    the small frame VBV leaves after it) are never counted. (None, None) when the file cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None, None
    vpid = None
    sizes = []
    for off in range(0, len(data) - 187, 188):
        if data[off] != 0x47:
            continue
        pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        if vpid is not None and pid != vpid:
            continue
        afc = (data[off + 3] >> 4) & 3
        if not afc & 1:
            continue
        p = off + 4
        if afc & 2:
            p += 1 + data[p]
        if data[off + 1] & 0x40 and data[p:p + 3] == b"\0\0\x01" and 0xE0 <= data[p + 3] <= 0xEF:
            vpid = pid
            sizes.append(0)
        if sizes and pid == vpid:
            sizes[-1] += off + 188 - p
    if len(sizes) < 4:
        return len(sizes), 0
    floor = 0.3 * statistics.quantiles(sizes, n=4)[2]
    return len(sizes), sum(1 for x in sizes[2:] if x < floor)


def parse_media_playlist(text):
    """[(uri, duration, program date in s or None)] of a media playlist."""
    out = []
    dur, date = None, None
    for ln in text.splitlines():
        ln = ln.strip()
        if ln.startswith("#EXTINF:"):
            try:
                dur = float(ln[8:].split(",", 1)[0])
            except ValueError:
                dur = None
        elif ln.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date = parse_date(ln.split(":", 1)[1])
        elif ln and not ln.startswith("#"):
            if dur is not None:
                out.append((ln, dur, date))
            dur, date = None, None
    return out


def parse_date(text):
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def machine_busy_sample():
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v[:8]), v[3] + (v[4] if len(v) > 4 else 0)
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_since(s0):
    s1 = machine_busy_sample()
    if not s0 or not s1 or s1[0] <= s0[0]:
        return float("nan")
    return 1.0 - (s1[1] - s0[1]) / (s1[0] - s0[0])


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------

def live_server(b, children, sluice, work, window):
    class LiveServer(b.SluiceServer):
        def env(self):
            env = super().env()
            # The ladder the engine builds is logged at INFO: the ffmpeg side copies its settings.
            env["GST_DEBUG"] = ",".join(x for x in (env.get("GST_DEBUG", ""), "sluice-live:4") if x)
            return env

    os.makedirs(work, exist_ok=True)
    config = {"rtsp": {"listen": "127.0.0.1:0"}, "srt": {"listen": "127.0.0.1:0"},
              "live": {"window": window, "idle-timeout": 5}, "jobs": {"extras": ""}}
    server = LiveServer(children, sluice, os.path.join(work, "data"), config, work).start()
    deadline = time.monotonic() + 10
    while True:
        m = RTSP_PORT_RE.search(server.log_tail(200))
        if m:
            server.rtsp_port = int(m.group(1))
            return server
        if time.monotonic() > deadline:
            raise b.BenchError("the server printed no RTSP address (built without the live engine?):\n"
                               + server.log_tail())
        time.sleep(0.1)


def create_stream(b, server, title, ladder):
    body = json.dumps({"title": title, "pipeline": "live-hls", "ladder": ladder}).encode()
    status, s = b.http_json("POST", server.base + "/api/v1/streams", body, {"Content-Type": "application/json"})
    if status != 201 or not s:
        raise b.BenchError(f"POST /api/v1/streams answered {status}: {s}")
    return s


def stream_json(b, server, sid):
    status, s = b.http_json("GET", f"{server.base}/api/v1/streams/{sid}", timeout=10)
    return s if status == 200 else None


def delete_stream(b, server, sid):
    b.http_json("DELETE", f"{server.base}/api/v1/streams/{sid}", timeout=30)


def wait_live(b, server, sids, procs, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        states = {sid: (stream_json(b, server, sid) or {}).get("state") for sid in sids}
        if all(s == "live" for s in states.values()):
            return
        for p in procs:
            if p.poll() is not None:
                raise b.BenchError(f"a publisher ended ({p.returncode}) before its stream was live: {states}\n"
                                   + server.log_tail())
        if time.monotonic() > deadline:
            raise b.BenchError(f"streams not live within {timeout} s: {states}\n{server.log_tail()}")
        time.sleep(0.5)


# ----------------------------------------------------------------------------------------------
# Latency
# ----------------------------------------------------------------------------------------------

class StampPublisher:
    """Frames with the wall clock painted on, written in real time to an ffmpeg that publishes them over RTSP."""

    def __init__(self, b, children, work, url, drawtext):
        self.b, self.children = b, children
        ysize, csize = WIDTH * HEIGHT, WIDTH * HEIGHT // 4
        raw = os.path.join(work, "background.yuv")
        b.run_quiet(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                     "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", "-frames:v", str(FPS),
                     "-pix_fmt", "yuv420p", "-f", "rawvideo", raw])
        with open(raw, "rb") as f:
            data = f.read()
        os.unlink(raw)
        fsize = ysize + 2 * csize
        self.frames = []
        cw = WIDTH // 2
        for i in range(len(data) // fsize):
            frame = bytearray(data[i * fsize:(i + 1) * fsize])
            # Neutral chroma under the cells: their colour is black, white or grey whatever the picture.
            for plane in (ysize, ysize + csize):
                for y in range(Y0 // 2, (Y0 + ROWS * CELL) // 2):
                    o = plane + y * cw + X0 // 2
                    frame[o:o + COLS * CELL // 2] = b"\x80" * (COLS * CELL // 2)
            self.frames.append(frame)
        if not self.frames:
            raise b.BenchError("ffmpeg made no background frames")
        vf = []
        if drawtext:
            vf = ["-vf", "drawtext=text='%{localtime\\:%T} pts %{pts\\:hms}':fontsize=40:fontcolor=white"
                         f":box=1:boxcolor=black:x={X0}:y={Y0 + ROWS * CELL + 24}"]
        self.cmd = (["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                     "yuv420p", "-s", f"{WIDTH}x{HEIGHT}", "-framerate", str(FPS), "-i", "pipe:0"] + vf
                    + ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS * 2),
                       "-b:v", "4M", "-maxrate", "4M", "-bufsize", "2M", "-pix_fmt", "yuv420p",
                       "-f", "rtsp", "-rtsp_transport", "tcp", url])
        self.log_path = os.path.join(work, "publisher.log")
        self.proc = None
        self.halt = threading.Event()
        self.late_frames = 0
        self.max_late = 0.0
        self.written = 0
        self.t0 = None

    def fps(self):
        return self.written / (time.monotonic() - self.t0) if self.t0 and self.written else float("nan")

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = self.children.start(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _compose(self, n, stamp):
        frame = bytearray(self.frames[n % len(self.frames)])
        bits = stamp_bits(stamp)
        for r in range(ROWS):
            strip = b"".join((b"\xeb" if bits[r * COLS + c] else b"\x10") * CELL for c in range(COLS))
            for y in range(Y0 + r * CELL, Y0 + (r + 1) * CELL):
                o = y * WIDTH + X0
                frame[o:o + COLS * CELL] = strip
        return frame

    def _run(self):
        t0 = self.t0 = time.monotonic()
        n = 0
        try:
            while not self.halt.is_set():
                wait = t0 + n / FPS - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -1.0 / FPS:
                    self.late_frames += 1
                    self.max_late = max(self.max_late, -wait)
                stamp = int(time.time() * 1000) % STAMP_MOD
                self.proc.stdin.write(self._compose(n, stamp))
                self.proc.stdin.flush()
                n += 1
                self.written = n
        except (BrokenPipeError, ValueError, OSError):
            pass

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        self.halt.set()
        if self.proc:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.thread.join(5)
            self.children.stop(self.proc, timeout=10)

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-10:])
        except OSError:
            return ""


def measure_rtsp(b, children, url, warmup, seconds, work):
    """Latency of the RTSP restream read by ffmpeg: wall clock when each decoded frame reaches us - its clock."""
    w, h = RTSP_READ_SIZE
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
           "-fflags", "nobuffer", "-flags", "low_delay", "-analyzeduration", "1000000", "-i", url, "-an",
           "-vf", f"scale={w}:{h}:flags=area", "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1"]
    log_path = os.path.join(work, "rtsp-client.log")
    log = open(log_path, "wb")
    proc = children.start(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, bufsize=0)
    log.close()
    centres = cell_centres(w, h)
    size = w * h
    lat, unreadable, frames = [], 0, 0
    start = time.monotonic()
    first = None
    try:
        while time.monotonic() - start < warmup + seconds + 30:
            buf = bytearray()
            while len(buf) < size:
                chunk = proc.stdout.read(size - len(buf))
                if not chunk:
                    break
                buf += chunk
            if len(buf) < size:
                break
            now_ms = int(time.time() * 1000)
            if first is None:
                first = time.monotonic()
            frames += 1
            if time.monotonic() - first < warmup:
                continue
            stamp = decode_cells(read_grey(buf, w, h, centres))
            if stamp is None:
                unreadable += 1
            else:
                lat.append(latency_ms(stamp, now_ms) / 1000)
            if time.monotonic() - first >= warmup + seconds:
                break
    finally:
        children.stop(proc, timeout=5)
    if first is None:
        with open(log_path, errors="replace") as f:
            raise b.BenchError(f"the RTSP client read no frame from {url}:\n{f.read()[-2000:]}")
    return {"client": "ffmpeg -rtsp_transport tcp -fflags nobuffer -flags low_delay", "frames": frames,
            "unreadable": unreadable, "latency_s": summarize(lat)}


def measure_player(b, base, sid, warmup, seconds, work):
    """Latency at the web page's player (hls.js in chromium), from tools/bench-live-player.mjs."""
    node = shutil.which("node")
    chromium = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
    pw = os.path.join(b.REPO, "tests", "e2e", "node_modules", "playwright-core", "package.json")
    missing = [x for x, ok in (("node", node), (chromium, os.path.exists(chromium)),
                               ("tests/e2e/node_modules/playwright-core (tools/setup)", os.path.exists(pw))) if not ok]
    if missing:
        return {"skipped": "needs " + ", ".join(missing)}
    script = os.path.join(b.REPO, "tools", "bench-live-player.mjs")
    cmd = [node, script, "--url", f"{base}/#/streams/{sid}", "--seconds", str(seconds), "--warmup", str(warmup),
           "--chromium", chromium, "--layout", json.dumps(LAYOUT)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=warmup + seconds + 150)
    with open(os.path.join(work, "player.log"), "w") as f:
        f.write(p.stderr)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise b.BenchError(f"the player failed ({p.returncode}):\n{p.stderr[-3000:]}{p.stdout[-1000:]}")
    r = json.loads(lines[-1])
    lat = [s[1] / 1000 for s in r["samples"]]
    heights = {}
    for s in r["samples"]:
        heights[str(s[2])] = heights.get(str(s[2]), 0) + 1
    hls_own = [x for x in r.get("hlsLatency", []) if x is not None]
    by_height = {}
    for s in r["samples"]:
        by_height.setdefault(str(s[2]), []).append(s[1] / 1000)
    return {"client": f"chromium {r.get('browser', '')}, the page's player ({r.get('library', 'hls.js')})",
            "frames": r["frames"], "unreadable": r["unreadable"], "stalls": r.get("stalls", 0),
            "heights": heights, "latency_s": summarize(lat),
            "latency_by_height_s": {h: summarize(v) for h, v in by_height.items()},
            "hls_own_latency_s": summarize(hls_own)}


def run_latency(b, a, children, work, out):
    say = b.say
    say("== latency ==")
    drawtext = " drawtext " in subprocess.run(["ffmpeg", "-hide_banner", "-filters"], stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL, text=True).stdout
    server = live_server(b, children, a.sluice, os.path.join(work, "latency"), 300)
    res = {}
    try:
        s = create_stream(b, server, "latency", a.ladder)
        sid = s["id"]
        pub = StampPublisher(b, children, os.path.join(work, "latency"), s["ingest"]["rtsp"], drawtext)
        pub.start()
        wait_live(b, server, [sid], [pub.proc])
        say(f"stream {sid} live (ladder {a.ladder}); publisher: 720p30 with the clock burned in, RTSP/TCP")
        # The stream's playlists, watched all along: when each segment is listed against its program date.
        folder = os.path.join(server.data, "streams", sid)
        watcher = Watcher()
        for r in a.ladder.split(","):
            watcher.add(sid, r.strip(), os.path.join(folder, r.strip() + ".m3u8"))
        poller = Poller(watcher)
        poller.start()
        try:
            say(f"RTSP restream {s['playback']['rtsp']}: {a.warmup} s warm-up, {a.latency_seconds} s measured ...")
            try:
                res["rtsp"] = measure_rtsp(b, children, s["playback"]["rtsp"], a.warmup, a.latency_seconds,
                                           os.path.join(work, "latency"))
            except b.BenchError as e:
                b.warn(f"RTSP client: {e}")
                res["rtsp"] = {"failed": str(e)}
            say(f"player (hls.js in chromium, #/streams/{sid}): {a.warmup} s warm-up, {a.latency_seconds} s "
                "measured ...")
            try:
                res["hls"] = measure_player(b, server.base, sid, a.warmup, a.latency_seconds,
                                            os.path.join(work, "latency"))
            except (b.BenchError, subprocess.TimeoutExpired) as e:
                b.warn(f"player: {e}")
                res["hls"] = {"failed": str(e)}
            info = stream_json(b, server, sid) or {}
            res["server_figures"] = info.get("input")
        finally:
            poller.stop()
            res["segments"] = {k[1]: watcher.listing(k, poller.started + 0.5) for k in watcher.seen}
            res["publisher_late_frames"] = pub.late_frames
            res["publisher_max_late_s"] = pub.max_late
            res["publisher_fps"] = pub.fps()
            res["publisher_frames"] = pub.written
            alive = pub.alive()
            pub.stop()
            if not alive:
                b.warn("the publisher died during the measure:\n" + pub.log_tail())
    finally:
        server.stop()
    say("")
    say("client          samples  unread   median     p95     min     max   goal")
    goals = {"rtsp": RTSP_GOAL_S, "hls": HLS_GOAL_S}
    met = {}
    for k, label in (("rtsp", "RTSP restream"), ("hls", "HLS at hls.js")):
        r = res.get(k, {})
        if "skipped" in r or "failed" in r:
            say(f"{label:15s} " + (f"skipped: {r['skipped']}" if "skipped" in r else "FAILED (see above)"))
            if "failed" in r:
                met[k] = False
            continue
        ls = r["latency_s"]
        ok = ls["count"] > 0 and ls["median"] <= goals[k] and ls["p95"] <= goals[k]
        met[k] = ok
        cmp_ = "<" if k == "rtsp" else "<="
        say(f"{label:15s} {ls['count']:7d} {r['unreadable']:7d}   {fmt_s(ls['median'])}   {fmt_s(ls['p95'])}   "
            f"{fmt_s(ls['min'])}   {fmt_s(ls['max'])}   {cmp_} {goals[k]:.1f} s: {'met' if ok else 'NOT MET'}")
    if "heights" in res.get("hls", {}):
        h = res["hls"]
        per = ", ".join(f"{k}p {fmt_s(v['median']).strip()} s" for k, v in sorted(h["latency_by_height_s"].items()))
        say(f"  player: frames shown per rung {h['heights']} (median latency {per}), stalls {h['stalls']}, "
            f"hls.js's own latency behind its live edge: median {fmt_s(h['hls_own_latency_s']['median']).strip()} s")
    for name, g in sorted(res.get("segments", {}).items()):
        say(f"  {name}.m3u8: TARGETDURATION {g['target_duration']}, segments {g['segments']} of "
            f"{fmt_s(g['duration_s']['median'])} s median (max {fmt_s(g['duration_s']['max'])}), listed "
            f"{fmt_s(g['listed_after_end_s']['median'])} s (p95 {fmt_s(g['listed_after_end_s']['p95'])}) after the "
            "wall time of their end (from EXT-X-PROGRAM-DATE-TIME); frames per media second: min "
            f"{fmt_s(g['frames_per_media_second']['min'])}, median {fmt_s(g['frames_per_media_second']['median'])}")
    say(f"  publisher: {res.get('publisher_frames')} frames at {res.get('publisher_fps', 0):.2f} fps, "
        f"{res.get('publisher_late_frames')} written more than a frame late (at most "
        f"{res.get('publisher_max_late_s', 0):.2f} s)")
    res["goals_s"] = goals
    res["goals_met"] = met
    out["latency"] = res
    return all(met.values()) if met else False


# ----------------------------------------------------------------------------------------------
# Capacity
# ----------------------------------------------------------------------------------------------

def make_clip(b, path, seconds=20):
    b.run_quiet(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                 "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
                 "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000",
                 "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-maxrate", "4M",
                 "-bufsize", "4M", "-g", str(FPS * 2), "-keyint_min", str(FPS * 2), "-sc_threshold", "0",
                 "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2", path])


def publisher_cmd(clip, url):
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip,
            "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", url]


class Watcher:
    """Polls media playlists on disk and notes when each segment is first listed."""

    def __init__(self):
        self.seen = {}  # (stream, rung) -> {uri: (first seen, duration, program date)}
        self.paths = {}  # (stream, rung) -> playlist path

    def add(self, stream, rung, path):
        self.paths[(stream, rung)] = path
        self.seen.setdefault((stream, rung), {})

    def poll(self):
        now = time.time()
        for key, path in self.paths.items():
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                continue
            seen = self.seen[key]
            for uri, dur, date in parse_media_playlist(text):
                if uri not in seen:
                    seen[uri] = (now, dur, date)

    def listing(self, key, since):
        """Segment durations, TARGETDURATION and how long after its end (program date + duration) each segment that
        appeared after `since` was listed."""
        segs = [(t, d, date) for t, d, date in self.seen[key].values()]
        delays = [t - (date + d) for t, d, date in segs if date is not None and t > since]
        # Frames per second of media in each segment (30 unless the rung dropped frames before its encoder).
        folder = os.path.dirname(self.paths[key])
        rates = []
        for uri, (_, d, _) in self.seen[key].items():
            n, repeats = ts_video_frames(os.path.join(folder, uri))
            if n is not None and d > 0:
                rates.append((n - repeats) / d)
        target = None
        try:
            with open(self.paths[key]) as f:
                m = re.search(r"^#EXT-X-TARGETDURATION:(\d+)", f.read(), re.M)
                target = int(m.group(1)) if m else None
        except OSError:
            pass
        return {"segments": len(segs), "target_duration": target, "duration_s": summarize([d for _, d, _ in segs]),
                "listed_after_end_s": summarize(delays), "frames_per_media_second": summarize(rates)}

    def rung_speed(self, key, t0, t1, folder):
        """Speeds of one rung over [t0, t1]: frames (counted in the files) and media seconds per wall second."""
        segs = sorted(((t, d, date, uri) for uri, (t, d, date) in self.seen[key].items() if t0 <= t <= t1))
        if len(segs) < 3:
            return {"segments": len(segs), "frame_speed": float("nan"), "media_speed": float("nan"),
                    "ready_delay_s": None}
        xs, frames_cum, media_cum = [], [], []
        fc = mc = 0.0
        missing = repeated = 0
        for i, (t, d, date, uri) in enumerate(segs):
            n, repeats = ts_video_frames(os.path.join(folder, uri))
            if n is None:
                missing += 1
                n, repeats = round(d * FPS), 0
            n -= repeats  # distinct frames: a repeat stands for a frame dropped before the encoder
            if i > 0:
                repeated += repeats
            if i > 0:  # the first arrival is the origin: what arrives after it was made after it
                fc += n
                mc += d
            xs.append(t)
            frames_cum.append(fc)
            media_cum.append(mc)
        delays = [t - (date + d) for t, d, date, _ in segs if date is not None]
        # How far behind the media each arrival is (wall time since the first arrival - media made since): a rung
        # that fell behind and caught up again within the window (a backlog, then a burst) swings.
        lags = [x - xs[0] - m for x, m in zip(xs, media_cum)]
        return {"segments": len(segs), "frame_speed": slope(xs, frames_cum) / FPS,
                "media_speed": slope(xs, media_cum), "unreadable_files": missing, "repeated_frames": repeated,
                "lag_swing_s": max(lags) - min(lags),
                "ready_delay_s": statistics.median(delays) if delays else None,
                "ready_delay_growth_s": (delays[-1] - delays[0]) if len(delays) > 1 else None}


class Poller(threading.Thread):
    """Polls a Watcher every `interval` seconds until stopped."""

    def __init__(self, watcher, interval=0.25):
        super().__init__(daemon=True)
        self.watcher, self.interval = watcher, interval
        self.halt = threading.Event()
        self.started = time.time()

    def run(self):
        while not self.halt.is_set():
            self.watcher.poll()
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(5)


def watch_window(b, a, watcher, procs, pids, on_tick=None):
    """Warm-up, then the window: playlists polled every 0.25 s; CPU of pids and of the machine over the window."""
    end_warm = time.monotonic() + a.warmup
    while time.monotonic() < end_warm:
        watcher.poll()
        time.sleep(0.25)
    cpu0 = {p: b.proc_cpu_seconds(p) for p in pids}
    busy0 = machine_busy_sample()
    t0 = time.time()
    m0 = time.monotonic()
    died = []
    last_tick = 0.0
    while time.monotonic() - m0 < a.seconds:
        watcher.poll()
        if on_tick and time.monotonic() - last_tick >= 2:
            last_tick = time.monotonic()
            on_tick()
        for p in procs:
            if p.poll() is not None and p not in died:
                died.append(p)
        time.sleep(0.25)
    watcher.poll()
    t1 = time.time()
    wall = time.monotonic() - m0
    cpu = {p: b.proc_cpu_seconds(p) - cpu0[p] for p in pids}
    return t0, t1, wall, cpu, machine_busy_since(busy0), died


def judge(rungs, min_speed):
    """The slowest rung's speed; real time when every rung holds min_speed and none swung a segment or more behind.
    A rung with too few segments to measure (nan) is the slowest of all."""
    def speed(r):
        v = min(r["frame_speed"], r["media_speed"])
        return -1.0 if math.isnan(v) else v

    def swing(r):
        v = r.get("lag_swing_s", float("nan"))
        return math.inf if math.isnan(v) else v

    if not rungs:
        return float("nan"), False
    worst = min(speed(r) for r in rungs)
    return (float("nan") if worst < 0 else worst), worst >= min_speed and max(swing(r) for r in rungs) < SEGMENT_SECONDS


def read_ladder_settings(log_text):
    """[{width, height, bitrate, gop, preset, tune, threads, options}] of the first ladder in the server's log."""
    rungs = []
    for m in LADDER_LOG_RE.finditer(log_text):
        method, w, h, opts = m.group(1) or "bilinear", int(m.group(2)), int(m.group(3)), m.group(4)
        kv = dict(re.findall(r'([\w-]+)=("[^"]*"|\S+)', opts))
        r = {"width": w, "height": h, "bitrate": int(kv.get("bitrate", 0)), "gop": int(kv.get("key-int-max", 0)),
             "preset": kv.get("speed-preset", "medium"), "tune": kv.get("tune", ""),
             "threads": int(kv.get("threads", 0)), "options": kv.get("option-string", "").strip('"'),
             "vbv_ms": int(kv.get("vbv-buf-capacity", X264ENC_VBV_MS)), "scaler": method}
        if any(x["height"] == h for x in rungs):
            break  # the next ladder of the log
        rungs.append(r)
    return rungs


def read_audio_setting(log_text):
    """The AAC bitrate (kbit/s) when the first ladder in the server's log encodes audio, None when it passes it on."""
    line = next((ln for ln in log_text.splitlines() if "x264enc" in ln), "")
    m = re.search(r"avenc_aac bitrate=(\d+)", line)
    return int(m.group(1)) // 1000 if m else None


def fallback_settings(ladder, cores):
    rungs = []
    for name in ladder.split(","):
        h = int(name.strip().rstrip("p"))
        w = int(round(WIDTH * h / HEIGHT / 2)) * 2
        rungs.append({"width": w, "height": h, "bitrate": FALLBACK_RUNGS.get(h, 1000), "gop": FPS * SEGMENT_SECONDS,
                      "preset": "veryfast", "tune": "zerolatency", "threads": max(1, cores // len(ladder.split(","))),
                      "options": "scenecut=0", "vbv_ms": X264ENC_VBV_MS, "scaler": "bilinear"})
    return rungs


# videoconvertscale's method -> the nearest swscale flag (as tools/bench transcode maps them).
SWS_FOR_SCALER = {"nearest": "neighbor", "bilinear": "bilinear", "4-tap": "bicubic", "lanczos": "lanczos"}


def ffmpeg_ladder_cmd(listen_url, rungs, out, audio_kbps=None):
    n = len(rungs)
    graph = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";" + ";".join(
        f"[s{i}]scale={r['width']}:{r['height']}:flags={SWS_FOR_SCALER.get(r.get('scaler'), 'bilinear')},setsar=1,"
        f"format=yuv420p[v{i}]" for i, r in enumerate(rungs))
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_flags", "listen",
           "-i", listen_url, "-filter_complex", graph]
    for i in range(n):
        cmd += ["-map", f"[v{i}]", "-map", "0:a?"]
    # The audio as sluice's ladder has it: copied, or encoded (once per variant: ffmpeg's HLS muxer cannot share one).
    audio = ["-c:a", "aac", "-b:a", f"{audio_kbps}k", "-ar", "48000"] if audio_kbps else ["-c:a", "copy"]
    cmd += ["-c:v", "libx264"] + audio + ["-r", str(FPS)]
    for i, r in enumerate(rungs):
        buf = r["bitrate"] * r["vbv_ms"] // 1000
        cmd += [f"-preset:v:{i}", r["preset"], f"-b:v:{i}", f"{r['bitrate']}k", f"-maxrate:v:{i}",
                f"{r['bitrate']}k", f"-bufsize:v:{i}", f"{buf}k", f"-g:v:{i}", str(r["gop"])]
        if r["options"]:  # x264enc's option-string, e.g. scenecut=0
            cmd += [f"-x264-params:v:{i}", r["options"].replace(" ", ":")]
        if r["tune"]:
            cmd += [f"-tune:v:{i}", r["tune"]]
        if r["threads"]:
            cmd += [f"-threads:v:{i}", str(r["threads"])]
    cmd += ["-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_list_size", "0",
            "-hls_segment_filename", os.path.join(out, "%v-%05d.ts"),
            "-var_stream_map", " ".join(f"v:{i},a:{i}" for i in range(n)), "-master_pl_name", "master.m3u8",
            os.path.join(out, "%v.m3u8")]
    return cmd


def run_sluice_step(b, a, children, server, clip, n, work):
    sids, procs = [], []
    try:
        for i in range(n):
            s = create_stream(b, server, f"capacity {n}.{i}", a.ladder)
            sids.append(s["id"])
            procs.append(children.start(publisher_cmd(clip, s["ingest"]["rtsp"]), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_live(b, server, sids, procs)
        watcher = Watcher()
        folders = {}
        for sid in sids:
            folder = os.path.join(server.data, "streams", sid)
            folders[sid] = folder
            for r in a.ladder.split(","):
                watcher.add(sid, r.strip(), os.path.join(folder, r.strip() + ".m3u8"))
        figures = {sid: [] for sid in sids}

        def tick():
            for sid in sids:
                s = stream_json(b, server, sid) or {}
                figures[sid].append((s.get("state"), s.get("input") or {}))

        t0, t1, wall, cpu, busy, died = watch_window(b, a, watcher, procs, [server.pid] + [p.pid for p in procs],
                                                     tick)
        streams = []
        for sid, proc in zip(sids, procs):
            rungs = {k[1]: watcher.rung_speed(k, t0, t1, folders[sid]) for k in watcher.seen if k[0] == sid}
            fig = figures[sid]
            fps = [f.get("fps") for _, f in fig if f.get("fps") is not None]
            drops = [f.get("dropped_frames") for _, f in fig if f.get("dropped_frames") is not None]
            streams.append({"id": sid, "rungs": rungs, "publisher_alive": proc not in died,
                            "states": sorted({st for st, _ in fig if st}),
                            "input_fps_median": statistics.median(fps) if fps else None,
                            "dropped_frames_growth": (drops[-1] - drops[0]) if len(drops) > 1 else None})
        pub_cpu = sum(cpu[p.pid] for p in procs)
        return streams, wall, cpu[server.pid], pub_cpu, busy
    finally:
        for p in procs:
            children.stop(p, timeout=5)
        for sid in sids:
            delete_stream(b, server, sid)


def run_ffmpeg_step(b, a, children, clip, n, rungs, work, audio_kbps=None):
    refs, pubs, outs, urls = [], [], [], []
    os.makedirs(work, exist_ok=True)
    step = tempfile.mkdtemp(prefix=f"ffmpeg-{n}-", dir=work)  # a folder of its own: nothing of an earlier try
    try:
        for i in range(n):
            out = os.path.join(step, str(i))
            os.makedirs(out, exist_ok=True)
            outs.append(out)
            url = f"rtsp://127.0.0.1:{b.free_port()}/live/ref{i}"
            urls.append(url)
            log = open(os.path.join(step, f"ref{i}.log"), "wb")
            refs.append(children.start(ffmpeg_ladder_cmd(url, rungs, out, audio_kbps), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=log))
            log.close()
            time.sleep(1.0)  # listening (a test connection would be taken as its publisher)
            pubs.append(children.start(publisher_cmd(clip, url), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        watcher = Watcher()
        for i, out in enumerate(outs):
            for j, r in enumerate(rungs):
                watcher.add(i, f"{r['height']}p", os.path.join(out, f"{j}.m3u8"))
        deadline = time.monotonic() + 60
        tries = [1] * n
        while not all(os.path.exists(os.path.join(out, "master.m3u8")) for out in outs):
            for i, p in enumerate(pubs):
                if p.poll() is not None and refs[i].poll() is None and tries[i] < 4:
                    # It came before its listener was up: again.
                    tries[i] += 1
                    time.sleep(1.0)
                    pubs[i] = children.start(publisher_cmd(clip, urls[i]), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for p in refs + pubs:
                if p.poll() is not None:
                    raise b.BenchError(f"an ffmpeg of the reference ended ({p.returncode}) before its first segment; "
                                       f"logs in {step} (--keep DIR keeps them)")
            if time.monotonic() > deadline:
                raise b.BenchError(f"the ffmpeg reference made no segment in 60 s (logs in {step})")
            time.sleep(0.25)
        t0, t1, wall, cpu, busy, died = watch_window(b, a, watcher, refs + pubs, [p.pid for p in refs + pubs])
        streams = []
        for i in range(n):
            st = {"id": f"ffmpeg-{i}", "publisher_alive": pubs[i] not in died and refs[i] not in died,
                  "rungs": {k[1]: watcher.rung_speed(k, t0, t1, outs[i]) for k in watcher.seen if k[0] == i}}
            streams.append(st)
        return streams, wall, sum(cpu[p.pid] for p in refs), sum(cpu[p.pid] for p in pubs), busy
    finally:
        for p in pubs + refs:
            children.stop(p, timeout=5)
        if not a.keep:
            shutil.rmtree(step, ignore_errors=True)


def report_step(b, side, n, streams, wall, cpu, pub_cpu, busy, min_speed, rungs_count):
    all_rungs = [r for s in streams for r in s["rungs"].values()]
    worst, ok = judge(all_rungs, min_speed)
    ok = ok and all(s["publisher_alive"] and len(s["rungs"]) == rungs_count for s in streams)
    per = cpu / (n * wall) if wall > 0 else float("nan")
    # CPU per second of media each stream really produced (its slowest rung): what a stream costs even when the
    # machine is too busy to give it all it needs; cores / that is how many an idle machine would keep up with.
    made = 0.0
    for s in streams:
        w = judge(list(s["rungs"].values()), 0)[0]
        made += 0.0 if math.isnan(w) else w
    made = made if made == made and made > 0 else float("nan")
    per_media = cpu / (made * wall) if wall > 0 else float("nan")
    cores = os.cpu_count() or 1
    b.say(f"{side:7s} N={n}: worst speed {worst:5.3f} -> {'real time' if ok else 'NOT real time'}; "
          f"CPU {cpu:6.1f} s in {wall:4.0f} s = {per:4.2f} core/stream (publishers {pub_cpu:4.1f} s); "
          f"machine busy {busy * 100:3.0f}%")
    b.say(f"    CPU per second of media made: {per_media:4.2f} core -> an idle {cores}-core machine: about "
          f"{cores / per_media if per_media == per_media else float('nan'):3.1f} streams")
    for s in streams:
        parts = []
        for name, r in sorted(s["rungs"].items()):
            d = r.get("ready_delay_s")
            parts.append(f"{name}: {r['frame_speed']:5.3f} frames, {r['media_speed']:5.3f} media, "
                         f"{r['segments']} seg, lag swing {r.get('lag_swing_s', float('nan')):4.2f} s"
                         + (f", listed {d:4.2f} s after its end" if d is not None else ""))
        extra = ""
        if "input_fps_median" in s:
            extra = (f"; input {s['input_fps_median']} fps, dropped +{s['dropped_frames_growth']}, "
                     f"states {s['states']}")
        if not s["publisher_alive"]:
            extra += "; a process of this stream DIED"
        b.say(f"    {s['id']}: " + "; ".join(parts) + extra)
    return {"streams_count": n, "realtime": ok, "worst_speed": worst, "wall_s": wall, "cpu_s": cpu,
            "cpu_per_stream_second": per, "cpu_per_media_second": per_media,
            "idle_machine_streams_estimate": cores / per_media if per_media == per_media else None,
            "publisher_cpu_s": pub_cpu, "machine_busy": busy, "streams": streams}


def run_capacity(b, a, children, work, out):
    say = b.say
    say("== capacity ==")
    clip = os.path.join(work, "input-720p30.mp4")
    t = time.monotonic()
    make_clip(b, clip)
    say(f"input: 720p30 H.264 4 Mbit/s + AAC clip made in {time.monotonic() - t:.1f} s, looped by each publisher")
    window = min(3600, a.warmup + a.seconds + 120)  # every segment of a step stays listed and on disk
    server = live_server(b, children, a.sluice, os.path.join(work, "capacity"), window)
    cores = os.cpu_count() or 1
    res = {"steps": {"sluice": [], "ffmpeg": []}, "ladder": a.ladder, "min_speed": a.min_speed}
    held = {"sluice": 0, "ffmpeg": 0}
    failed = {"sluice": False, "ffmpeg": False}
    rungs = None
    try:
        for n in range(a.min_streams, a.max_streams + 1):
            if failed["sluice"] and failed["ffmpeg"]:
                break
            def step(side, run_step):
                for attempt in range(1, a.tries + 1):
                    streams, wall, cpu, pub_cpu, busy = run_step()
                    st = report_step(b, side, n, streams, wall, cpu, pub_cpu, busy, a.min_speed,
                                     len(a.ladder.split(",")))
                    st["try"] = attempt
                    res["steps"][side].append(st)
                    if st["realtime"]:
                        held[side] = n
                        return
                    if attempt < a.tries:
                        say(f"{side} N={n}: not real time; again (try {attempt + 1} of {a.tries})")
                failed[side] = True

            if not failed["sluice"]:
                step("sluice", lambda: run_sluice_step(b, a, children, server, clip, n, work))
            if rungs is None:
                with open(server.log_path, errors="replace") as f:
                    log_text = f.read()
                rungs = read_ladder_settings(log_text)
                audio_kbps = read_audio_setting(log_text)
                res["ffmpeg_audio"] = f"AAC {audio_kbps} kbit/s" if audio_kbps else "copied"
                if rungs:
                    res["ffmpeg_settings_from"] = "the server's log of the ladder it built"
                else:
                    rungs = fallback_settings(a.ladder, cores)
                    res["ffmpeg_settings_from"] = "built-in numbers (the server's log showed no ladder)"
                    b.warn("the server's log shows no ladder: ffmpeg uses the built-in settings")
                res["ffmpeg_rungs"] = rungs
                say("ffmpeg reference settings (" + res["ffmpeg_settings_from"] + "): " + "; ".join(
                    f"{r['width']}x{r['height']} {r['bitrate']} kbit/s gop {r['gop']} {r['preset']} {r['tune']} "
                    f"threads {r['threads']} {r['options']}" for r in rungs) + "; audio " + res["ffmpeg_audio"])
            if not failed["ffmpeg"]:
                step("ffmpeg", lambda: run_ffmpeg_step(b, a, children, clip, n, rungs, work, audio_kbps))
    finally:
        server.stop()
    say("")
    for side in ("sluice", "ffmpeg"):
        steps = res["steps"][side]
        best = next((s for s in steps if s["streams_count"] == held[side] and s["realtime"]), None)
        capped = held[side] == a.max_streams
        est = [x["idle_machine_streams_estimate"] for x in steps if x["idle_machine_streams_estimate"]]
        first = f" (none from --min-streams {a.min_streams} on)" if held[side] == 0 and a.min_streams > 1 else ""
        say(f"{side:7s}: {held[side]} stream(s) in real time" + (" (the --max-streams cap)" if capped else "") + first
            + (f", {best['cpu_per_stream_second']:.2f} core/stream at N={held[side]}" if best else "")
            + (f"; CPU per second of media made {statistics.median(x['cpu_per_media_second'] for x in steps):.2f} "
               f"core (median of the steps), i.e. about {statistics.median(est):.1f} streams on an idle machine"
               if est else ""))
    res["max_realtime_streams"] = held
    out["capacity"] = res
    return held


def add_args(p):
    p.add_argument("--seconds", type=int, default=60, metavar="S",
                   help="capacity: seconds each step is watched, after the warm-up (default 60)")
    p.add_argument("--max-streams", type=int, default=4, metavar="N", help="capacity: the largest N tried (default 4)")
    p.add_argument("--min-streams", type=int, default=1, metavar="N",
                   help="capacity: the first N tried (default 1; a later run can go on where one stopped)")
    p.add_argument("--latency-seconds", type=int, default=30, metavar="S",
                   help="latency: seconds each client is measured (default 30)")
    p.add_argument("--warmup", type=int, default=10, metavar="S",
                   help="seconds after going live before measuring (default 10)")
    p.add_argument("--ladder", default="720p,360p", help="the streams' ladder (default 720p,360p)")
    p.add_argument("--tries", type=int, default=1, metavar="N",
                   help="capacity: runs of a step before it counts as failed (default 1; on a shared machine 2 "
                        "tells a burst of someone else's load from a real limit)")
    p.add_argument("--min-speed", type=float, default=0.99, metavar="X",
                   help="capacity: the speed every rung must hold to count as real time (default 0.99)")
    p.add_argument("--skip", action="append", default=[], choices=["latency", "capacity"],
                   help="leave out one half (repeatable)")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep the data, segments and logs")
    p.add_argument("--sluice", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    "build", "src", "sluice"),
                   metavar="PATH", help="the sluice binary (default build/src/sluice of this checkout)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': stdout)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a latency goal is not met")


def run(a, b):
    if (a.seconds < 10 or a.max_streams < 1 or a.latency_seconds < 5 or a.warmup < 0 or a.tries < 1
            or not 1 <= a.min_streams <= a.max_streams):
        raise b.UsageError("--seconds must be at least 10, --latency-seconds at least 5, --max-streams and --tries "
                           "at least 1, --min-streams 1 to --max-streams")
    if not re.fullmatch(r"\d+p(,\d+p)*", a.ladder.replace(" ", "")):
        raise b.UsageError("--ladder must look like 720p,360p")
    sluice = os.path.abspath(a.sluice)
    if not (os.path.isfile(sluice) and os.access(sluice, os.X_OK)):
        raise b.BenchError(f"no sluice binary at {a.sluice} (build it, or pass --sluice PATH)")
    a.sluice = sluice
    b.need_tool("ffmpeg")
    model, usable, total = b.machine_info()
    busy = b.cpu_busy()
    b.say(f"machine: {model}, {usable} of {total} CPUs usable; busy {busy * 100:.0f}% before the start, "
          f"load {b.load_avg():.1f}")
    b.say(f"sluice: {sluice}")
    if busy > 0.25:
        b.warn(f"the machine is {busy * 100:.0f}% busy before the start: latency and capacity figures are lower "
               "bounds of what an idle machine does")
    out = {"benchmark": "live", "machine": {"cpu": model, "cpus": usable, "busy_before": busy,
                                            "load_before": b.load_avg()},
           "sluice": sluice, "ffmpeg": b.ffmpeg_version(), "ladder": a.ladder}
    if a.keep:
        work = os.path.abspath(a.keep)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="sluice-bench-live-")
    children = b.Children()
    old = signal.signal(signal.SIGTERM, b._sigterm_to_interrupt)
    latency_ok = True
    try:
        if "latency" not in a.skip:
            latency_ok = run_latency(b, a, children, work, out)
            b.say("")
        if "capacity" not in a.skip:
            run_capacity(b, a, children, work, out)
    finally:
        children.stop_all()
        signal.signal(signal.SIGTERM, old)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        b.write_json(a.json, out)
    return 3 if a.strict and not latency_ok else 0


if __name__ == "__main__":
    sys.exit("run it as: tools/bench live [OPTIONS]")
