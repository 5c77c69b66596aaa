// SPDX-License-Identifier: LGPL-2.1-or-later
// The renderer: expands fragments into one gst-launch description, substituting only validated values.
#include "pipeline/render.h"

#include "core/error.h"
#include "pipeline/template.h"

#include <cmath>

namespace sluice::pipeline {

int gop_frames(double framerate, int segment_seconds) {
  if (!(framerate > 0.0) || !std::isfinite(framerate))
    framerate = 30.0;
  return std::max(1, static_cast<int>(std::lround(framerate * segment_seconds)));
}

int encoder_threads(int cores, int renditions) {
  if (cores <= 0)
    cores = static_cast<int>(g_get_num_processors());
  return std::max(1, cores / std::max(1, renditions));
}

int decoder_threads(const RenderInput &in, const EncoderTable &encoders) {
  const EncoderProfile *enc = encoders.find(in.encoder);
  if (in.renditions.empty() || in.display_width <= 0 || in.display_height <= 0 || !enc || enc->hardware)
    return 0;
  const int cores = in.cpu_cores > 0 ? in.cpu_cores : static_cast<int>(g_get_num_processors());
  const double decode = static_cast<double>(in.display_width) * in.display_height;
  double encode = 0;
  for (const RenditionSpec &r : in.renditions)
    encode += 1.7 * r.width * r.height;
  return std::clamp(static_cast<int>(std::lround(cores * decode / (decode + encode))), 1, cores);
}

int scale_source(const std::vector<RenditionSpec> &renditions, size_t i) {
  int best = -1;
  const RenditionSpec &r = renditions.at(i);
  for (size_t j = 0; j < renditions.size(); j++) {
    const RenditionSpec &c = renditions[j];
    if (j == i || c.height < 2 * r.height || c.width < r.width)
      continue;
    if (best < 0 || c.height < renditions[best].height)
      best = static_cast<int>(j);
  }
  return best;
}

std::pair<int, int> fit_size(int src_w, int src_h, int max_w, int max_h) {
  if (src_w <= 0 || src_h <= 0)
    return {std::max(2, max_w - max_w % 2), std::max(2, max_h - max_h % 2)};
  double scale = std::min({1.0, static_cast<double>(max_w) / src_w, static_cast<double>(max_h) / src_h});
  int w = static_cast<int>(std::lround(src_w * scale)), h = static_cast<int>(std::lround(src_h * scale));
  w = std::max(2, w - w % 2);
  h = std::max(2, h - h % 2);
  return {w, h};
}

std::pair<std::int64_t, std::int64_t> clip_range(double duration, int start_s, int length_s) {
  const std::int64_t s = 1000000000;
  std::int64_t start = static_cast<std::int64_t>(std::max(0, start_s)) * s;
  std::int64_t length = static_cast<std::int64_t>(std::max(1, length_s)) * s;
  if (duration > 0) {
    auto total = static_cast<std::int64_t>(std::llround(duration * 1e9));
    if (start >= total)
      start = std::max<std::int64_t>(0, total - length);
    return {start, std::min(start + length, total)};
  }
  return {start, start + length};
}

std::pair<int, int> picture_size(const Values &values, const RenderInput &in) {
  return fit_size(in.display_width, in.display_height, int_value(values, "max_width", 1280),
                  int_value(values, "max_height", 720));
}

std::pair<std::int64_t, std::int64_t> clip_of(const Values &values, const RenderInput &in) {
  return clip_range(in.duration, int_value(values, "start_seconds", 0), int_value(values, "length_seconds", 30));
}

std::string fps_fraction(double framerate) {
  if (!(framerate > 0.0) || !std::isfinite(framerate))
    framerate = 30.0;
  const long long whole = std::llround(framerate);
  if (std::fabs(framerate - whole) < 0.001)
    return std::to_string(whole) + "/1";
  const long long ntsc = std::llround(framerate * 1001.0 / 1000.0);
  if (std::fabs(framerate - ntsc * 1000.0 / 1001.0) < 0.001)
    return std::to_string(ntsc * 1000) + "/1001";
  return std::to_string(std::llround(framerate * 1000.0)) + "/1000";
}

std::string sink_name(const std::string &rendition) {
  return "hls_" + rendition;
}

std::string render(const Description &d, const Values &values, const RenderInput &in, const EncoderTable &encoders) {
  check_safe_string("input path", in.input);
  check_safe_string("output folder", in.out);
  // hlssink2 runs its segment location through printf: a '%' in the folder would become a conversion.
  if (in.out.find('%') != std::string::npos)
    throw Error(ErrorCode::Invalid, "output folder must not contain '%'");
  if (!in.has_video && !in.has_audio)
    throw Error(ErrorCode::NotMedia, "the input has neither audio nor video");
  const OutputInfo &output = output_info(d.output);
  const bool ladder = output.streaming || output.live;
  if (output.needs_picture && !in.has_video)
    throw Error(ErrorCode::Invalid, "pipeline '" + d.name + "' makes a " + std::string(output.name) +
                                        " from the picture, and the input has no video");
  if (ladder && in.has_video && in.renditions.empty())
    throw Error(ErrorCode::Invalid, "no video rendition to encode");
  if (in.has_audio && ladder && !d.fragments.count("audio"))
    throw Error(ErrorCode::Invalid, "pipeline '" + d.name + "' has no audio fragment");

  const int gop = gop_frames(in.framerate, int_value(values, "segment_seconds", 2));
  std::string preset = "veryfast";
  if (auto it = values.find("preset"); it != values.end())
    preset = it->second;
  // Rate control: a description that declares neither parameter encodes cbr.
  const std::string rate_control = rate_control_of(values);
  const int crf = int_value(values, "crf", 23);

  std::map<std::string, std::string> vars(values.begin(), values.end());
  vars["input"] = in.input;
  vars["out"] = in.out;
  vars["audio_channels"] = std::to_string(in.audio_channels);
  vars["gop"] = std::to_string(gop);
  char fr[32];
  g_ascii_formatd(fr, sizeof fr, "%.3f", in.framerate);
  vars["framerate"] = fr;
  vars["fps"] = in.fps.empty() ? fps_fraction(in.framerate) : in.fps;
  vars["threads"] = std::to_string(encoder_threads(in.cpu_cores, std::max(1, static_cast<int>(in.renditions.size()))));
  vars["duration_s"] = std::to_string(std::max(1L, std::lround(std::ceil(in.duration))));
  auto [clip_start, clip_end] = clip_of(values, in);
  vars["start_ns"] = std::to_string(clip_start);
  vars["end_ns"] = std::to_string(clip_end);
  const char *progress = "sluiceprogress name=progress ! ";
  vars["video_progress"] = in.has_video ? progress : "";
  vars["audio_progress"] = in.has_video ? "" : progress;
  // videoflip copies every frame even when it has nothing to turn (GStreamer 1.22): only a rotated source gets one.
  vars["orient"] = in.rotation % 360 != 0 || in.mirrored ? "videoflip video-direction=auto ! " : "";

  auto frag = [&](const std::string &name, const std::map<std::string, std::string> &v) {
    auto it = d.fragments.find(name);
    if (it == d.fragments.end())
      return std::string();
    return substitute(it->second, v, d.name + ": fragment '" + name + "'");
  };

  std::string out = frag("source", vars);
  if (!ladder) {
    // One artifact from the picture (and the sound, where the description takes it).
    auto [w, h] = picture_size(values, in);
    vars["width"] = std::to_string(w);
    vars["height"] = std::to_string(h);
    if (d.fragments.at("video").find("{encoder}") != std::string::npos) {
      const EncoderProfile *enc = encoders.find(in.encoder);
      if (!enc)
        throw Error(ErrorCode::Invalid, "unknown encoder '" + in.encoder + "'");
      int kbps = int_value(values, "video_bitrate", 1500);
      EncoderSettings es{kbps, kbps, kbps * 2, gop, preset, encoder_threads(in.cpu_cores, 1), rate_control, crf};
      vars["encoder"] = encoders.render(*enc, es);
    }
    if (in.has_audio && d.fragments.count("audio"))
      out += "  " + frag("audio", vars);
    // The sink follows the picture: `video ! sink`.
    auto rv = vars;
    rv["rendition"] = output.name;
    rv["sink"] = output.name;
    out += "  " + frag("video", vars) + " ! " + frag("sink", rv);
    return out;
  }
  if (in.has_audio)
    out += "  " + frag("audio", vars);
  if (in.has_audio && d.fragments.count("audio_output")) {
    auto av = vars;
    av["rendition"] = "audio";
    av["sink"] = sink_name("audio");
    out += "  " + frag("audio_output", av);
  }
  if (in.has_video) {
    out += "  " + frag("video", vars);
    // Only a description that places {encoder} needs one (the live ones write x264enc themselves).
    const bool places_encoder = d.fragments.at("video_rendition").find("{encoder}") != std::string::npos;
    const EncoderProfile *enc = places_encoder ? encoders.find(in.encoder) : nullptr;
    if (places_encoder && !enc)
      throw Error(ErrorCode::Invalid, "unknown encoder '" + in.encoder + "'");
    const int threads = encoder_threads(in.cpu_cores, static_cast<int>(in.renditions.size()));
    for (size_t i = 0; i < in.renditions.size(); i++) {
      const RenditionSpec &r = in.renditions[i];
      if (!is_identifier(r.name))
        throw Error(ErrorCode::Invalid, "rendition name '" + r.name + "' must use a-z, 0-9 and _");
      if (r.width <= 0 || r.height <= 0 || r.width % 2 || r.height % 2 || r.bitrate_kbps <= 0)
        throw Error(ErrorCode::Invalid, "rendition '" + r.name + "' needs even positive sizes and a bitrate");
      auto rv = vars;
      rv["rendition"] = r.name;
      rv["sink"] = sink_name(r.name);
      rv["width"] = std::to_string(r.width);
      rv["height"] = std::to_string(r.height);
      rv["bitrate"] = std::to_string(r.bitrate_kbps);
      // A description that names each rung's tee `vt_{rendition}` scales a rung from a larger one.
      const int from = scale_source(in.renditions, i);
      rv["scale_from"] = from < 0 ? "vt" : "vt_" + in.renditions[from].name;
      EncoderSettings s{r.bitrate_kbps,
                        r.maxrate_kbps > 0 ? r.maxrate_kbps : r.bitrate_kbps,
                        r.bufsize_kbit > 0 ? r.bufsize_kbit : r.bitrate_kbps * 2,
                        gop,
                        preset,
                        threads,
                        rate_control,
                        crf};
      if (enc)
        rv["encoder"] = encoders.render(*enc, s);
      out += "  " + frag("video_rendition", rv);
      if (in.has_audio)
        out += "  " + frag("audio_rendition", rv);
      out += "  " + frag("sink", rv);
    }
  } else if (!d.fragments.count("audio_output")) {
    auto rv = vars;
    rv["rendition"] = "audio";
    rv["sink"] = sink_name("audio");
    out += "  " + frag("audio_rendition", rv);
    out += "  " + frag("sink", rv);
  }
  return out;
}

std::string launch_command(const std::string &description) {
  return "gst-launch-1.0 -e " + shell_quote_description(description);
}

} // namespace sluice::pipeline
