# SPDX-License-Identifier: LGPL-2.1-or-later
# `tools/bench jobs`: a busy queue (8 uploads at once with the default job profile) against the same packages made
# by ffmpeg at its best concurrency, and the time from a job's start to its first playable output.
"""The `jobs` benchmark of tools/bench (which imports this file and passes itself as `b` for its helpers)."""

import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request

SHORT = "the job queue under load: 8 uploads with the default profile vs ffmpeg; time to first playable"

HELP = """\
How well the job queue uses the machine, and how soon a new video can be watched.

Part 1, the queue: --uploads uploads at once (raw bodies, curl) of a generated --seconds 720p30 clip
(testsrc2 + noise, sine audio) to `sluice serve` as shipped (data/sluice.conf: the hls ladder plus the
poster, storyboard and preview extras, [jobs] capacity at its default: the core count, a ladder weighing every
core and the other jobs 1 each), or with --jobs-config settings of [jobs] (e.g. concurrent=1 for one job at a
time, the slot of old; repeatable). Measured: the makespan from
the first upload to the last video `ready` and to the last job's end, and the machine's CPU use
(/proc/stat, every core) over that time and over the part of it while jobs were queued (goal: at
least 95% of every core busy while jobs are queued). The reference: the same packages made by ffmpeg
(the hls ladder in one pass with the settings `sluice pipeline print` renders, a poster JPEG, a
storyboard sprite sheet, a preview MP4), one process per package, run 1, 2, 3 and 4 at a time; the
best of those makespans is ffmpeg's.

Part 2, time to first playable: a generated --playable-seconds 1080p30 clip is uploaded (the server's
auto-transcode off, so that nothing else runs), then an hls job with segment_seconds=2 is asked for;
measured from the job's 202 to the `playable` event on the event stream, and the master playlist then
listed must have every rendition of the ladder (goal: at most 1.5 x segment_seconds; the probe is the
upload's, before its 201).

Run it on an idle machine: the CPU figures count every process.
"""

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SLUICE = os.path.join(REPO, "build", "src", "sluice")


def add_args(p):
    p.add_argument("--uploads", type=int, default=8, metavar="N", help="uploads at once (default 8)")
    p.add_argument("--seconds", type=int, default=10, metavar="S", help="length of each upload (default 10)")
    p.add_argument("--playable-seconds", type=int, default=60, metavar="S",
                   help="length of the 1080p clip of part 2 (default 60)")
    p.add_argument("--concurrency", default="1,2,3,4", metavar="LIST",
                   help="ffmpeg processes at a time to try (default 1,2,3,4)")
    p.add_argument("--skip", action="append", default=[], choices=["queue", "ffmpeg", "playable"],
                   help="skip a part (repeatable)")
    p.add_argument("--jobs-config", action="append", default=[], metavar="KEY=VALUE",
                   help="a [jobs] setting of the queue part's server, e.g. concurrent=1 or capacity=4 (repeatable)")
    p.add_argument("--sluice", default=DEFAULT_SLUICE, metavar="PATH", help="the sluice binary")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': stdout)")


def _clip(b, path, w, h, seconds):
    b.run_quiet(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                 "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30,noise=alls=4:allf=t",
                 "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000", "-t", str(seconds),
                 "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                 "-c:a", "aac", "-b:a", "128k", "-ac", "2", path])


class CpuSampler(threading.Thread):
    """Busy and total jiffies of every core (/proc/stat) every `interval` s, with a flag per sample."""

    def __init__(self, interval=0.25, flag=None):
        super().__init__(daemon=True)
        self.interval, self.flag = interval, flag or (lambda: False)
        self.samples = []  # (monotonic, busy delta, total delta, flag)
        self._halt = threading.Event()

    @staticmethod
    def _read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        return sum(v) - idle, sum(v)

    def run(self):
        busy0, total0 = self._read()
        while not self._halt.wait(self.interval):
            busy, total = self._read()
            self.samples.append((time.monotonic(), busy - busy0, total - total0, self.flag()))
            busy0, total0 = busy, total

    def share(self, start, end, flagged=False):
        busy = total = 0
        for t, db, dt, f in self.samples:
            if start <= t <= end and (f or not flagged):
                busy, total = busy + db, total + dt
        return busy / total if total else float("nan")

    def stop(self):
        self._halt.set()
        self.join(5)


def _server(b, children, sluice, work, name, extra=None):
    config = {"server": {}, "jobs": {}}
    for section, keys in (extra or {}).items():
        config.setdefault(section, {}).update(keys)
    d = os.path.join(work, name)
    # A fresh server each run, also in a kept work folder: an earlier run's catalog would requeue its unfinished jobs
    # ahead of this one's.
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return b.SluiceServer(children, sluice, os.path.join(d, "data"), config, d).start()


def _jobs_config(a, b):
    keys = {}
    for kv in a.jobs_config:
        k, sep, v = kv.partition("=")
        if not sep or not k.strip():
            raise b.UsageError(f"--jobs-config wants KEY=VALUE, not {kv!r}")
        keys[k.strip()] = v.strip()
    return keys


def _process_cpu_s(pid):
    """CPU seconds (user + system, every thread) the process has used so far; sluice runs its pipelines in-process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _queue_part(a, b, children, work, clip):
    srv = _server(b, children, a.sluice, work, "queue", {"jobs": _jobs_config(a, b)})
    try:
        status, health = b.http_json("GET", srv.base + "/health")
        slots = (health or {}).get("jobs", {}).get("slots")
        status, workers = b.http_json("GET", srv.base + "/api/v1/workers")
        capacity = next(iter((workers or {}).get("workers", [])), {}).get("capacity")
        queued = {"n": 0}

        def poll_health():
            while not done.is_set():
                s, h = b.http_json("GET", srv.base + "/health", timeout=5)
                if s == 200 and h:
                    queued["n"] = h.get("jobs", {}).get("queued", 0) or 0
                done.wait(0.25)

        done = threading.Event()
        threading.Thread(target=poll_health, daemon=True).start()
        cpu = CpuSampler(flag=lambda: queued["n"] > 0)
        cpu.start()
        own0 = _process_cpu_s(srv.proc.pid)
        t0 = time.monotonic()
        ids, errors = [None] * a.uploads, []

        def upload(i):
            code, _, _, body = b.curl_upload(srv.base + "/api/v1/videos", clip, False, "video/mp4",
                                             filename=f"clip{i}.mp4", out_path=os.path.join(work, f"up{i}.json"))
            if code != 201:
                errors.append(f"upload {i}: HTTP {code} {body}")
            else:
                ids[i] = body["video"]["id"]

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(a.uploads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise b.BenchError("; ".join(errors))
        uploaded = time.monotonic() - t0
        ready_at, ended_at, jobs = {}, {}, {}
        deadline = time.monotonic() + 3600
        while len(ended_at) < len(ids):
            if time.monotonic() > deadline:
                raise b.BenchError("the jobs did not end within an hour")
            for vid in ids:
                if vid in ended_at:
                    continue
                s, v = b.http_json("GET", f"{srv.base}/api/v1/videos/{vid}")
                if s != 200:
                    continue
                now = time.monotonic()
                if v.get("state") == "ready" and vid not in ready_at:
                    ready_at[vid] = now
                js = v.get("jobs", [])
                if js and all(j.get("state") in ("succeeded", "failed", "canceled") for j in js):
                    ended_at[vid] = now
                    jobs[vid] = js
            time.sleep(0.25)
        done.set()
        cpu.stop()
        own = _process_cpu_s(srv.proc.pid) - own0
        end_ready, end_all = max(ready_at.values()) - t0, max(ended_at.values()) - t0
        failed = [j["id"] for js in jobs.values() for j in js if j.get("state") != "succeeded"]
        if failed:
            raise b.BenchError(f"jobs did not succeed: {failed} (log: {srv.log_path})")
        return {"slots": slots, "capacity": capacity, "jobs_config": _jobs_config(a, b), "uploads_s": round(uploaded, 2), "makespan_ready_s": round(end_ready, 2),
                "makespan_all_s": round(end_all, 2), "cpu_share": round(cpu.share(t0, t0 + end_all), 3),
                "cpu_share_queued": round(cpu.share(t0, t0 + end_all, flagged=True), 3),
                "jobs_per_video": len(next(iter(jobs.values()))),
                # On a shared machine the CPU shares above count the others too; what sluice itself kept busy:
                "sluice_cpu_s": round(own, 1), "sluice_cores": round(own / end_all, 2)}
    finally:
        srv.stop()


def _ffmpeg_tasks(a, b, work, clip):
    """One command per package of each upload: the hls ladder in one pass, poster, storyboard, preview."""
    plan = b.run_quiet([a.sluice, "pipeline", "print", "hls", "--input", clip, "--out", os.path.join(work, "p")])
    rends = b.parse_sluice_pipeline(plan.stdout)
    if not rends:
        raise b.BenchError("could not read the ladder from `sluice pipeline print hls`")
    gop = rends[0]["gop"]
    ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", clip]
    x264 = ["-c:v", "libx264", "-preset", rends[0]["preset"], "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0"]
    tasks = []
    for i in range(a.uploads):
        out = os.path.join(work, "ffmpeg", f"v{i}")
        os.makedirs(out, exist_ok=True)
        k = len(rends)
        graph = f"[0:v]split={k}" + "".join(f"[s{j}]" for j in range(k))
        for j, r in enumerate(rends):
            graph += f";[s{j}]scale={r['width']}:{r['height']}:flags=lanczos,setsar=1[v{j}]"
        cmd = ff + ["-filter_complex", graph]
        for j in range(k):
            cmd += ["-map", f"[v{j}]"]
        for j in range(k):
            cmd += ["-map", "0:a:0"]
        cmd += x264
        for j, r in enumerate(rends):
            cmd += [f"-b:v:{j}", f"{r['bitrate']}k", f"-maxrate:v:{j}", f"{r['maxrate']}k",
                    f"-bufsize:v:{j}", f"{r['bufsize']}k"]
        vmap = " ".join(f"v:{j},a:{j},name:{r['name']}" for j, r in enumerate(rends))
        cmd += ["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "hls", "-hls_time", "4",
                "-hls_playlist_type", "vod", "-master_pl_name", "master.m3u8", "-var_stream_map", vmap,
                "-hls_segment_filename", os.path.join(out, "%v_%05d.ts"), os.path.join(out, "%v.m3u8")]
        tasks.append(cmd)
        half = a.seconds / 2
        tasks.append(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss", f"{half:.2f}",
                      "-i", clip, "-frames:v", "1", "-q:v", "3", os.path.join(out, "poster.jpg")])
        tasks.append(ff + ["-vf", "fps=1/5,scale=160:90,tile=10x10", "-frames:v", "1", "-q:v", "5",
                           os.path.join(out, "sheet_001.jpg")])
        tasks.append(ff + ["-t", "30", "-vf", "scale=640:360,setsar=1"] + x264[:2] + ["-b:v", "800k"] +
                     ["-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", os.path.join(out, "preview.mp4")])
    return tasks


def _ffmpeg_part(a, b, work, clip):
    results = []
    for n in [int(x) for x in a.concurrency.split(",") if x.strip()]:
        shutil.rmtree(os.path.join(work, "ffmpeg"), ignore_errors=True)
        tasks = _ffmpeg_tasks(a, b, work, clip)
        lock, pending, errors = threading.Lock(), list(tasks), []

        def worker():
            while True:
                with lock:
                    if not pending:
                        return
                    cmd = pending.pop(0)
                try:
                    b.run_quiet(cmd)
                except b.BenchError as e:
                    errors.append(str(e))

        cpu = CpuSampler()
        cpu.start()
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - t0
        cpu.stop()
        if errors:
            raise b.BenchError(errors[0])
        results.append({"concurrency": n, "makespan_s": round(took, 2), "cpu_share": round(cpu.share(t0, t0 + took), 3)})
        b.say(f"  ffmpeg, {n} at a time: {took:6.2f} s, CPU {100 * results[-1]['cpu_share']:.0f}%")
    return results


def _playable_part(a, b, children, work, clip):
    srv = _server(b, children, a.sluice, work, "playable", {"uploads": {"auto-transcode": "false"}})
    try:
        code, took, _, body = b.curl_upload(srv.base + "/api/v1/videos", clip, False, "video/mp4",
                                            filename="long.mp4", out_path=os.path.join(work, "long.json"))
        if code != 201:
            raise b.BenchError(f"upload: HTTP {code} {body}")
        vid = body["video"]["id"]
        got = {}
        opened = threading.Event()

        def listen():
            with urllib.request.urlopen(f"{srv.base}/api/v1/events?video={vid}", timeout=600) as r:
                opened.set()
                event = None
                for raw in r:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "video":
                        data = json.loads(line[5:])
                        if data.get("action") == "playable":
                            got["at"], got["hls"] = time.monotonic(), data.get("hls")
                            return

        threading.Thread(target=listen, daemon=True).start()
        opened.wait(10)
        t0 = time.monotonic()
        status, job = b.http_json("POST", f"{srv.base}/api/v1/videos/{vid}/jobs",
                                  json.dumps({"pipeline": "hls", "params": {"segment_seconds": 2}}).encode(),
                                  {"Content-Type": "application/json"})
        t_job = time.monotonic()
        if status not in (201, 202):
            raise b.BenchError(f"job request: HTTP {status} {job}")
        deadline = time.monotonic() + 300
        while "at" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        if "at" not in got:
            raise b.BenchError("no playable event within 300 s")
        with urllib.request.urlopen(srv.base + got["hls"], timeout=30) as r:
            master = r.read().decode()
        listed = sum(1 for ln in master.splitlines() if ln and not ln.startswith("#"))
        plan = b.run_quiet([a.sluice, "pipeline", "print", "hls", "--input", clip, "--out", os.path.join(work, "pp")])
        expected = len(b.parse_sluice_pipeline(plan.stdout))
        return {"upload_s": round(took, 2), "playable_s": round(got["at"] - t_job, 2),
                "job_request_s": round(t_job - t0, 3), "renditions_listed": listed, "renditions": expected,
                "goal_s": 3.0}
    finally:
        srv.stop()


def run(a, b):
    if a.uploads < 1 or a.seconds < 2:
        raise b.UsageError("--uploads must be at least 1 and --seconds at least 2")
    a.sluice = os.path.abspath(a.sluice)
    if not (os.path.isfile(a.sluice) and os.access(a.sluice, os.X_OK)):
        raise b.BenchError(f"no sluice binary at {a.sluice} (build it, or pass --sluice PATH)")
    for t in ("ffmpeg", "ffprobe", "curl"):
        b.need_tool(t)
    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="sluice-bench-jobs-")
    os.makedirs(work, exist_ok=True)
    children = b.Children()
    out = {"cores": os.cpu_count(), "uploads": a.uploads, "seconds": a.seconds}
    try:
        clip = os.path.join(work, "clip720.mp4")
        if not os.path.isfile(clip):
            _clip(b, clip, 1280, 720, a.seconds)
        b.say(f"jobs: {a.uploads} uploads of a {a.seconds} s 720p30 clip, {os.cpu_count()} cores")
        if "queue" not in a.skip:
            q = out["sluice"] = _queue_part(a, b, children, work, clip)
            setting = ", ".join(f"{k}={v}" for k, v in q["jobs_config"].items()) or "defaults"
            b.say(f"  sluice ([jobs] {setting}: capacity {q['capacity']}, at most {q['slots']} job(s) at once, "
                  f"{q['jobs_per_video']} jobs per video): last ready after "
                  f"{q['makespan_ready_s']:.2f} s, last job ended after {q['makespan_all_s']:.2f} s; CPU "
                  f"{100 * q['cpu_share']:.0f}% of every core, {100 * q['cpu_share_queued']:.0f}% while jobs were "
                  f"queued (goal 95%); sluice itself used {q['sluice_cpu_s']:.1f} CPU-s, "
                  f"{q['sluice_cores']:.2f} cores on average")
        if "ffmpeg" not in a.skip:
            ff = out["ffmpeg"] = _ffmpeg_part(a, b, work, clip)
            best = min(ff, key=lambda r: r["makespan_s"])
            out["ffmpeg_best"] = best
            if "sluice" in out:
                out["ratio"] = round(out["sluice"]["makespan_all_s"] / best["makespan_s"], 3)
                b.say(f"  sluice's makespan / ffmpeg's best ({best['concurrency']} at a time): {out['ratio']:.2f}x")
        if "playable" not in a.skip:
            long_clip = os.path.join(work, "clip1080.mp4")
            if not os.path.isfile(long_clip):
                _clip(b, long_clip, 1920, 1080, a.playable_seconds)
            p = out["playable"] = _playable_part(a, b, children, work, long_clip)
            b.say(f"  time to first playable ({a.playable_seconds} s 1080p, 2 s segments): {p['playable_s']:.2f} s "
                  f"after the job's 202 (goal {p['goal_s']:.1f} s), master lists {p['renditions_listed']} of "
                  f"{p['renditions']} renditions; the upload took {p['upload_s']:.2f} s (probe included)")
        if a.json:
            b.write_json(a.json, out)
        return 0
    finally:
        children.stop_all()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
