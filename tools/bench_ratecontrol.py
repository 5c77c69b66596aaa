# SPDX-License-Identifier: LGPL-2.1-or-later
# `tools/bench ratecontrol`: the ladder's bytes and quality with rate_control=cbr against capped-crf, on a noisy
# test pattern and on a simple input (slides), per rung.
"""The `ratecontrol` benchmark of tools/bench (which imports this file and passes itself as `b` for its helpers)."""

import os
import shutil
import tempfile

SHORT = "rate control cbr vs capped-crf: bytes, PSNR and SSIM per rung on a noisy and a simple (slides) input"

HELP = """\
Compare the two rate controls of the hls pipeline (the `rate_control` parameter) on two inputs:

  noisy   testsrc2 with temporal noise (the transcode benchmark's input): hard to compress, every rung
          needs its whole bitrate;
  slides  a slide deck: two still slides with text (a title bar, lines of text), the second from
          half-way, as a recorded lecture shows them.

Each input is 1920x1080, 30 fps, with a sine tone, made with ffmpeg. Each is transcoded by
`sluice transcode` with --encoder x264 and the same ladder, preset and segment length, once with
rate_control=cbr and once with rate_control=capped-crf (crf --crf). Reported per rung: the video's bytes
(ffprobe, the video packets only), its average kbit/s, PSNR (average of the planes) and SSIM against the
source, the rendition upscaled bicubic to the source's size (as `tools/bench transcode` measures).

Goal (issue): on the simple input, capped-crf at least 30% fewer bytes than cbr, at no more than 0.2 dB
lower PSNR.
"""

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SLUICE = os.path.join(REPO, "build", "src", "sluice")
MODES = ("cbr", "capped-crf")


def add_args(p):
    p.add_argument("--seconds", type=int, default=10, metavar="S", help="length of each input (default 10)")
    p.add_argument("--ladder", default="360p,480p,720p", metavar="LIST", help="renditions (default 360p,480p,720p)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    p.add_argument("--crf", type=int, default=None, metavar="N",
                   help="capped-crf's quality (default: the pipeline's own default)")
    p.add_argument("--sluice", default=DEFAULT_SLUICE, metavar="PATH", help="the sluice binary")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep the inputs and outputs")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': stdout)")


def _make_input(b, kind, seconds, path):
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000"]
    if kind == "noisy":
        video = ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=4:allf=t"]
        vf = []
    else:
        # Two slides: a dark title bar and lines of text on a light page; the second slide from half-way.
        half = seconds / 2

        def text(t, y, size, colour, when):
            return (f"drawtext=text='{t}':fontcolor={colour}:fontsize={size}:x=120:y={y}"
                    f":enable='{when}'")
        first, second = f"lt(t,{half})", f"gte(t,{half})"
        lines = [
            "drawbox=x=0:y=0:w=1920:h=170:color=0x203060:t=fill",
            text("Lecture 3 - Adaptive streaming", 45, 78, "white", first),
            text("Segments and playlists", 300, 60, "0x202020", first),
            text("A keyframe starts every segment", 410, 60, "0x202020", first),
            text("Players switch renditions between segments", 520, 60, "0x202020", first),
            text("Lecture 3 - Bitrate ladders", 45, 78, "white", second),
            text("One picture, several sizes and bitrates", 300, 60, "0x202020", second),
            text("Constant quality spends bits where they show", 410, 60, "0x202020", second),
            "drawbox=x=120:y=640:w=900:h=300:color=0x3070c0:t=fill",
        ]
        video = ["-f", "lavfi", "-i", "color=c=0xf4f1ea:size=1920x1080:rate=30"]
        vf = ["-vf", ",".join(lines)]
    cmd = (["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"] + video + audio + vf +
           ["-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-profile:v", "high",
            "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
            "-color_range", "tv", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000", path])
    b.run_quiet(cmd)


def _video_bytes(b, m3u8):
    sizes = b.run_quiet(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size",
                         "-of", "default=noprint_wrappers=1:nokey=1", m3u8]).stdout.split()
    return sum(int(x) for x in sizes if x.isdigit())


def _transcode(a, b, src, out, mode):
    cmd = [a.sluice, "transcode", src, "--out", out, "--encoder", "x264", "--ladder", a.ladder,
           "--set", f"preset={a.preset}", "--set", "segment_seconds=4", "--set", f"rate_control={mode}"]
    if mode == "capped-crf" and a.crf is not None:
        cmd += ["--set", f"crf={a.crf}"]
    b.run_quiet(cmd)


def run(a, b):
    if a.seconds < 4:
        raise b.UsageError("--seconds must be at least 4")
    sluice = os.path.abspath(a.sluice)
    if not (os.path.isfile(sluice) and os.access(sluice, os.X_OK)):
        raise b.BenchError(f"no sluice binary at {a.sluice} (build it, or pass --sluice PATH)")
    a.sluice = sluice
    for t in ("ffmpeg", "ffprobe"):
        b.need_tool(t)
    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="sluice-bench-rc-")
    os.makedirs(work, exist_ok=True)
    results = {"ladder": a.ladder, "preset": a.preset, "crf": a.crf, "seconds": a.seconds, "inputs": {}}
    try:
        b.say(f"ratecontrol: {a.seconds} s 1080p inputs, ladder {a.ladder}, preset {a.preset}, "
              f"capped-crf crf {a.crf if a.crf is not None else '(default)'}")
        for kind in ("noisy", "slides"):
            src = os.path.join(work, f"{kind}.mp4")
            if not os.path.isfile(src):
                _make_input(b, kind, a.seconds, src)
            duration = b.media_duration(src)
            rungs = {}
            for mode in MODES:
                out = os.path.join(work, f"{kind}-{mode}")
                shutil.rmtree(out, ignore_errors=True)
                _transcode(a, b, src, out, mode)
                for name in a.ladder.split(","):
                    pl = os.path.join(out, f"{name}.m3u8")
                    if not os.path.isfile(pl):
                        raise b.BenchError(f"{kind} {mode}: rendition {name} is missing")
                    q = b.TranscodeBench.quality(pl, src, 1920, 1080, out, name)
                    vb = _video_bytes(b, pl)
                    rungs.setdefault(name, {})[mode] = {"bytes": vb, "kbps": round(vb * 8 / 1000 / duration, 1),
                                                        "psnr": round(q["psnr"], 3), "ssim": round(q["ssim"], 5)}
            results["inputs"][kind] = rungs
            b.say(f"\n{kind}:")
            b.say(f"  {'rung':<6} {'cbr kbit/s':>10} {'PSNR':>7} {'SSIM':>7}   {'crf kbit/s':>10} {'PSNR':>7} "
                  f"{'SSIM':>7}   {'bytes':>7} {'PSNR':>7}")
            for name, r in rungs.items():
                c, f = r["cbr"], r["capped-crf"]
                r["bytes_change"] = round(f["bytes"] / c["bytes"] - 1, 4) if c["bytes"] else None
                r["psnr_change"] = round(f["psnr"] - c["psnr"], 3)
                b.say(f"  {name:<6} {c['kbps']:>10.0f} {c['psnr']:>7.2f} {c['ssim']:>7.4f}   {f['kbps']:>10.0f} "
                      f"{f['psnr']:>7.2f} {f['ssim']:>7.4f}   {100 * r['bytes_change']:>+6.1f}% "
                      f"{r['psnr_change']:>+7.2f}")
        slides = results["inputs"]["slides"]
        total_c = sum(r["cbr"]["bytes"] for r in slides.values())
        total_f = sum(r["capped-crf"]["bytes"] for r in slides.values())
        worst = min(r["psnr_change"] for r in slides.values())
        results["goal"] = {"slides_bytes_change": round(total_f / total_c - 1, 4), "slides_worst_psnr_change": worst,
                           "met": total_f <= 0.7 * total_c and worst >= -0.2}
        b.say(f"\ngoal (slides: at least 30% fewer bytes, at most 0.2 dB lower PSNR at every rung): bytes "
              f"{100 * (total_f / total_c - 1):+.1f}%, worst PSNR change {worst:+.2f} dB: "
              f"{'met' if results['goal']['met'] else 'NOT met'}")
        if a.json:
            b.write_json(a.json, results)
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
