// SPDX-License-Identifier: LGPL-2.1-or-later
// The sluice command line: transcode, probe, pipeline list/show/print/validate, encoders; serve and keys are
// in cli/serve.cpp, upload in cli/upload.cpp.
#include "cli/common.h"
#include "cli/serve.h"
#include "cli/upload.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/gobj.h"
#include "core/json.h"
#include "core/paths.h"
#include "jobs/transcode.h"
#include "live/ladder.h"
#include "media/ladder.h"
#include "media/probe.h"
#include "pipeline/description.h"
#include "pipeline/encoders.h"
#include "pipeline/render.h"
#include "sluice-config.h"

#include <gst/gst.h>

#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace sluice;
using namespace sluice::cli;

namespace {

constexpr int kExitCanceled = 130;

const char *kMainHelp =
    "Usage: sluice COMMAND [OPTIONS]\n"
    "\n"
    "A GStreamer pipeline server: transcode videos into adaptive HLS.\n"
    "\n"
    "Commands:\n"
    "  serve [--listen ADDR:PORT]  run the server: REST upload, job queue, live progress, HLS serving\n"
    "  transcode INPUT --out DIR   transcode a file into an HLS package (master.m3u8 + renditions)\n"
    "  probe FILE                  print what a media file contains, as JSON\n"
    "  pipeline list               list the pipeline descriptions\n"
    "  pipeline show NAME          show a description and its parameters, as JSON\n"
    "  pipeline print NAME ...     print the exact gst-launch-1.0 command a transcode (or a live ladder) runs\n"
    "  pipeline validate FILE      check a description file\n"
    "  encoders                    list the H.264 encoders and whether they can run here\n"
    "  keys create|list|revoke     manage the API keys of a data folder ([auth] mode=keys)\n"
    "  upload FILE --server URL    upload a file to a server, resumably (tus); --wait follows its job\n"
    "\n"
    "Options:\n"
    "  -h, --help      show this help (COMMAND --help shows a command's help)\n"
    "  -V, --version   print the version\n";

// Common options of transcode and pipeline print.
struct JobOptions {
  gchar *out = nullptr;
  gchar *input = nullptr;
  gchar *pipeline = nullptr;
  gchar *encoder = nullptr;
  gchar *ladder = nullptr;
  gchar *input_caps = nullptr;
  gchar **sets = nullptr;
  gboolean json = FALSE;
  ~JobOptions() {
    g_free(input_caps);
    g_free(out);
    g_free(input);
    g_free(pipeline);
    g_free(encoder);
    g_free(ladder);
    g_strfreev(sets);
  }
};

jobs::TranscodeRequest request_from(const JobOptions &o, const std::string &input) {
  jobs::TranscodeRequest req;
  req.input = input;
  if (o.pipeline)
    req.pipeline = o.pipeline;
  if (o.encoder)
    req.encoder = o.encoder;
  if (o.ladder)
    req.ladder = o.ladder;
  if (const char *order = g_getenv("SLUICE_ENCODER_ORDER"); order && *order) {
    gchar **parts = g_strsplit(order, ",", -1);
    for (gchar **p = parts; *p; p++)
      if (**p)
        req.encoder_order.emplace_back(g_strstrip(*p));
    g_strfreev(parts);
  }
  for (gchar **s = o.sets; s && *s; s++) {
    auto [k, v] = pipeline::split_assignment(*s);
    req.params[k] = v;
  }
  return req;
}

std::string format_eta(std::int64_t ns) {
  if (ns < 0)
    return "--:--";
  std::int64_t s = ns / 1000000000;
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

GOptionEntry job_entries(JobOptions &o, const char *long_name, gchar **target, const char *desc, const char *arg) {
  (void)o;
  return GOptionEntry{long_name, 0, 0, G_OPTION_ARG_STRING, target, desc, arg};
}

int cmd_transcode(int argc, char **argv) {
  JobOptions o;
  GOptionEntry entries[] = {
      job_entries(o, "out", &o.out, "Output folder (must not exist or be empty)", "DIR"),
      job_entries(o, "pipeline", &o.pipeline, "Pipeline description (default: hls)", "NAME"),
      job_entries(o, "encoder", &o.encoder, "H.264 encoder: auto (default), x264, openh264, vaapi, va, nvenc", "NAME"),
      job_entries(o, "ladder", &o.ladder,
                  "Renditions, e.g. 360p,720p or 540p:2000 (default: the full ladder, never upscaled)", "LIST"),
      {"set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.sets, "Set a pipeline parameter (repeatable)", "KEY=VALUE"},
      {"json", 0, 0, G_OPTION_ARG_NONE, &o.json, "Print the result as JSON", nullptr},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  if (!parse_options(argc, argv, "INPUT --out DIR", "Transcode INPUT into an adaptive HLS package in DIR.", entries))
    return kExitUsage;
  if (argc != 2 || !o.out) {
    std::fprintf(stderr, "sluice transcode: need one INPUT and --out DIR (see sluice transcode --help)\n");
    return kExitUsage;
  }
  if (!paths::ensure_plugin()) {
    std::fprintf(stderr, "sluice: error: the sluiceprogress element (libgstsluice.so) is not installed\n");
    return kExitFailed;
  }
  const bool tty = isatty(STDERR_FILENO);
  bool printed_progress = false;
  auto on_progress = [&](const jobs::Progress &p) {
    if (!tty)
      return;
    char pct[16];
    if (p.percent >= 0)
      std::snprintf(pct, sizeof pct, "%3d%%", p.percent);
    else
      std::snprintf(pct, sizeof pct, " ?%%");
    std::fprintf(stderr, "\r  %s  %7.1f fps  %5.2fx  ETA %s   ", pct, p.fps, p.speed, format_eta(p.eta_ns).c_str());
    std::fflush(stderr);
    printed_progress = true;
  };
  try {
    auto req = request_from(o, argv[1]);
    auto res = jobs::transcode_sync(req, o.out, on_progress);
    if (printed_progress)
      std::fprintf(stderr, "\n");
    if (o.json) {
      JsonNode *n = jobs::result_to_json(res);
      std::printf("%s\n", json::to_string(n, true).c_str());
      json_node_unref(n);
    } else {
      std::printf("HLS output: %s\n", fs::join(res.out, res.master).c_str());
      for (const auto &r : res.renditions)
        std::printf("  %-6s %4dx%-4d  %6lld kbit/s peak  %6lld kbit/s average  %s\n", r.name.c_str(), r.width, r.height,
                    static_cast<long long>(r.stats.peak_bps / 1000), static_cast<long long>(r.stats.average_bps / 1000),
                    r.codecs.c_str());
    }
    return kExitOk;
  } catch (const Error &e) {
    if (printed_progress)
      std::fprintf(stderr, "\n");
    if (e.code() == ErrorCode::Canceled) {
      std::fprintf(stderr, "sluice: canceled; partial output removed\n");
      return kExitCanceled;
    }
    print_error(e);
    return kExitFailed;
  }
}

int cmd_probe(int argc, char **argv) {
  GOptionEntry entries[] = {{nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  if (!parse_options(argc, argv, "FILE", "Probe a media file and print its streams as JSON.", entries))
    return kExitUsage;
  if (argc != 2) {
    std::fprintf(stderr, "sluice probe: need one FILE (see sluice probe --help)\n");
    return kExitUsage;
  }
  try {
    auto r = media::probe(argv[1]);
    JsonNode *n = media::probe_to_json(r);
    std::printf("%s\n", json::to_string(n, true).c_str());
    json_node_unref(n);
    return kExitOk;
  } catch (const Error &e) {
    print_error(e);
    return kExitFailed;
  }
}

// A stand-in plan for rendering a description without an input: 2 renditions with audio.
pipeline::RenderInput sample_render_input(const std::string &input, const std::string &out) {
  pipeline::RenderInput in;
  in.input = input;
  in.out = out;
  in.renditions = media::plan_ladder(media::parse_ladder("360p,720p"), 1280, 720);
  in.encoder = "x264";
  return in;
}

// The input a live description is printed and checked with: "WIDTHxHEIGHT@FPS" (FPS a number or N/D), as the
// caps of a publisher's video; its audio is AAC.
struct CapsUnref {
  void operator()(GstCaps *c) const { gst_caps_unref(c); }
};
struct LiveInputCaps {
  std::unique_ptr<GstCaps, CapsUnref> video, audio;
};
LiveInputCaps live_input_caps(const std::string &text) {
  int w = 0, h = 0, fn = 0, fd = 1;
  char tail = 0;
  const bool ok = std::sscanf(text.c_str(), "%dx%d@%d/%d%c", &w, &h, &fn, &fd, &tail) == 4 ||
                  (fd = 1, std::sscanf(text.c_str(), "%dx%d@%d%c", &w, &h, &fn, &tail) == 3);
  if (!ok || w < 2 || h < 2 || w > 16384 || h > 16384 || fn < 1 || fd < 1 || fn / fd > 120)
    throw Error(ErrorCode::Invalid,
                "--input-caps: expected WIDTHxHEIGHT@FPS (e.g. 1280x720@30 or 1920x1080@30000/1001), "
                "not '" +
                    text + "'");
  LiveInputCaps c;
  c.video.reset(gst_caps_new_simple("video/x-h264", "width", G_TYPE_INT, w, "height", G_TYPE_INT, h, "framerate",
                                    GST_TYPE_FRACTION, fn, fd, nullptr));
  c.audio.reset(gst_caps_new_simple("audio/mpeg", "mpegversion", G_TYPE_INT, 4, "rate", G_TYPE_INT, 48000, "channels",
                                    G_TYPE_INT, 2, nullptr));
  return c;
}

// A live description (pipelines/live-*.json) with its parameters, as the live engine plans it for an input.
live::LadderPlan live_plan(const pipeline::Description &d, const std::map<std::string, std::string> &params,
                           const std::string &caps, const std::string &ladder, const std::string &out) {
  live::LiveDescription ld;
  ld.description = d;
  ld.values = pipeline::resolve(d.params, params);
  ld.segment_seconds = pipeline::int_value(ld.values, "segment_seconds", live::kSegmentSeconds);
  auto c = live_input_caps(caps);
  return live::plan_ladder(ld, ladder, out, 1, c.video.get(), c.audio.get());
}

int pipeline_validate(const std::string &file) {
  try {
    auto d = pipeline::load_description(file);
    if (pipeline::output_info(d.output).live) {
      // Rendered as the live engine would for a 720p30 publisher with audio, built, and its appsrcs and sinks found.
      auto plan = live_plan(d, {}, "1280x720@30", "360p,720p", "/nonexistent/stream");
      GError *err = nullptr;
      GstElement *p = gst_parse_launch_full(plan.launch.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
      if (!p)
        throw Error::from_gerror(ErrorCode::Invalid, file + ": the rendered pipeline does not build", err);
      g_clear_error(&err);
      GstPtr<GstElement> pipeline = adopt_floating(p);
      if (const std::string why = live::check_ladder_elements(p, plan); !why.empty())
        throw Error(ErrorCode::Invalid, file + ": the live engine cannot run it: " + why);
      std::printf("%s: valid pipeline description '%s' (%zu parameters)\n", file.c_str(), d.name.c_str(),
                  d.params.size());
      return kExitOk;
    }
    auto encoders = pipeline::EncoderTable::load_default();
    auto values = pipeline::resolve(d.params, {});
    auto in = sample_render_input("/nonexistent/input.mp4", "/nonexistent/out");
    in.encoder = encoders.profiles().front().name;
    std::string launch = pipeline::render(d, values, in, encoders);
    paths::ensure_plugin();
    GError *err = nullptr;
    GstElement *p = gst_parse_launch_full(launch.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
    if (!p)
      throw Error::from_gerror(ErrorCode::Invalid, file + ": the rendered pipeline does not build", err);
    g_clear_error(&err);
    gst_object_unref(gst_object_ref_sink(p));
    std::printf("%s: valid pipeline description '%s' (%zu parameters)\n", file.c_str(), d.name.c_str(),
                d.params.size());
    return kExitOk;
  } catch (const Error &e) {
    print_error(e);
    return kExitFailed;
  }
}

int cmd_pipeline(int argc, char **argv) {
  JobOptions o;
  GOptionEntry entries[] = {
      job_entries(o, "input", &o.input, "Input file (print)", "FILE"),
      job_entries(o, "out", &o.out, "Output folder (print)", "DIR"),
      job_entries(o, "encoder", &o.encoder, "H.264 encoder (print; default auto)", "NAME"),
      job_entries(o, "ladder", &o.ladder, "Renditions (print), e.g. 360p,720p", "LIST"),
      job_entries(o, "input-caps", &o.input_caps,
                  "A live pipeline's input (print): WIDTHxHEIGHT@FPS (default 1280x720@30, with audio)", "CAPS"),
      {"set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.sets, "Set a pipeline parameter (print; repeatable)", "KEY=VALUE"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  if (!parse_options(argc, argv,
                     "list | show NAME | print NAME --input FILE --out DIR | print LIVE-NAME [--input-caps CAPS] | "
                     "validate FILE",
                     "Inspect pipeline descriptions (the pipelines/ folder).\n\n"
                     "print renders the exact gst-launch-1.0 command that `sluice transcode` runs for FILE;\n"
                     "run it by hand (mkdir -p DIR first) to debug a pipeline. For a live pipeline (live-hls,\n"
                     "live-cmaf) it renders the ladder the live engine runs for a publisher of --input-caps:\n"
                     "its appsrcs `v` and `a` are fed by the engine, which also names the segment files.",
                     entries))
    return kExitUsage;
  if (argc < 2) {
    std::fprintf(stderr, "sluice pipeline: need a subcommand: list, show, print or validate\n");
    return kExitUsage;
  }
  std::string sub = argv[1];
  try {
    if (sub == "list" && argc == 2) {
      for (const auto &d : pipeline::list_descriptions())
        std::printf("%-12s %s\n", d.name.c_str(), d.summary.c_str());
      return kExitOk;
    }
    if (sub == "show" && argc == 3) {
      auto d = pipeline::find_description(argv[2]);
      JsonNode *n = pipeline::description_to_json(d);
      std::printf("%s\n", json::to_string(n, true).c_str());
      json_node_unref(n);
      return kExitOk;
    }
    if (sub == "validate" && argc == 3)
      return pipeline_validate(argv[2]);
    std::optional<pipeline::Description> live; // a live ladder (live-hls, live-cmaf) is printed for --input-caps
    if (sub == "print" && argc == 3 && pipeline::is_description_name(argv[2])) {
      try {
        if (auto d = pipeline::find_description(argv[2]); pipeline::output_info(d.output).live)
          live = std::move(d);
      } catch (const Error &) {
        // not one: what follows says why
      }
    }
    if (live) {
      const auto &d = *live;
      if (o.input) {
        std::fprintf(stderr, "sluice pipeline print: %s is a live pipeline: it takes --input-caps, not --input\n",
                     argv[2]);
        return kExitUsage;
      }
      std::map<std::string, std::string> params;
      for (gchar **set = o.sets; set && *set; set++) {
        auto [k, v] = pipeline::split_assignment(*set);
        params[k] = v;
      }
      auto plan = live_plan(d, params, o.input_caps ? o.input_caps : "1280x720@30", o.ladder ? o.ladder : "",
                            o.out ? fs::absolute(o.out) : fs::absolute("."));
      std::printf("%s\n", pipeline::launch_command(plan.launch).c_str());
      return kExitOk;
    }
    if (sub == "print" && argc == 3) {
      if (!o.input || !o.out) {
        std::fprintf(stderr, "sluice pipeline print: need --input FILE and --out DIR\n");
        return kExitUsage;
      }
      paths::ensure_plugin();
      o.pipeline = g_strdup(argv[2]);
      auto req = request_from(o, o.input);
      auto encoders = pipeline::EncoderTable::load_default();
      auto plan = jobs::plan_transcode(req, o.out, encoders);
      std::printf("%s\n", pipeline::launch_command(plan.launch).c_str());
      return kExitOk;
    }
  } catch (const Error &e) {
    print_error(e);
    return kExitFailed;
  }
  std::fprintf(stderr, "sluice pipeline: bad subcommand or arguments (see sluice pipeline --help)\n");
  return kExitUsage;
}

int cmd_encoders(int argc, char **argv) {
  GOptionEntry entries[] = {{nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  if (!parse_options(argc, argv, "",
                     "List the H.264 encoders of pipelines/encoders.json and whether each can run here.", entries))
    return kExitUsage;
  try {
    auto encoders = pipeline::EncoderTable::load_default();
    JsonNode *n = encoders.to_json(true);
    std::printf("%s\n", json::to_string(n, true).c_str());
    json_node_unref(n);
    std::string chosen;
    try {
      chosen = encoders.resolve("auto");
    } catch (const Error &e) {
      chosen = std::string("none (") + e.what() + ")";
    }
    std::fprintf(stderr, "auto picks: %s\n", chosen.c_str());
    return kExitOk;
  } catch (const Error &e) {
    print_error(e);
    return kExitFailed;
  }
}

// glibc gives threads up to 8 malloc arenas per core, and a pipeline's streaming threads (a dozen for a ladder) each
// keep what they freed in their own: `sluice transcode` of a 1080p ladder on 2 cores peaked 8 MiB lower with 2
// arenas per core, at the same speed. MALLOC_ARENA_MAX, when set, still decides.
void limit_malloc_arenas() {
  if (!g_getenv("MALLOC_ARENA_MAX"))
    mallopt(M_ARENA_MAX, 2 * static_cast<int>(std::max(1u, g_get_num_processors())));
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fputs(kMainHelp, stderr);
    return kExitUsage;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::fputs(kMainHelp, stdout);
    return kExitOk;
  }
  if (cmd == "-V" || cmd == "--version") {
    std::printf("sluice %s (GStreamer %s)\n", SLUICE_VERSION, gst_version_string());
    return kExitOk;
  }
  limit_malloc_arenas();
  gst_init(nullptr, nullptr);
  // Subcommands see their own name as argv[0].
  int sub_argc = argc - 1;
  char **sub_argv = argv + 1;
  if (cmd == "serve")
    return cmd_serve(sub_argc, sub_argv);
  if (cmd == "transcode")
    return cmd_transcode(sub_argc, sub_argv);
  if (cmd == "probe")
    return cmd_probe(sub_argc, sub_argv);
  if (cmd == "pipeline")
    return cmd_pipeline(sub_argc, sub_argv);
  if (cmd == "encoders")
    return cmd_encoders(sub_argc, sub_argv);
  if (cmd == "keys")
    return cmd_keys(sub_argc, sub_argv);
  if (cmd == "upload")
    return cli::cmd_upload(sub_argc, sub_argv);
  std::fprintf(stderr, "sluice: unknown command '%s'\n\n%s", cmd.c_str(), kMainHelp);
  return kExitUsage;
}
