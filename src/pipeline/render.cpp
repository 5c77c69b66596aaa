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

std::string render(const Description &d, const Values &values, const RenderInput &in, const EncoderTable &encoders) {
  check_safe_string("input path", in.input);
  check_safe_string("output folder", in.out);
  // hlssink2 runs its segment location through printf: a '%' in the folder would become a conversion.
  if (in.out.find('%') != std::string::npos)
    throw Error(ErrorCode::Invalid, "output folder must not contain '%'");
  if (!in.has_video && !in.has_audio)
    throw Error(ErrorCode::NotMedia, "the input has neither audio nor video");
  if (in.has_video && in.renditions.empty())
    throw Error(ErrorCode::Invalid, "no video rendition to encode");
  if (in.has_audio && !d.fragments.count("audio"))
    throw Error(ErrorCode::Invalid, "pipeline '" + d.name + "' has no audio fragment");

  int segment_seconds = 2;
  if (auto it = values.find("segment_seconds"); it != values.end())
    segment_seconds = std::atoi(it->second.c_str());
  const int gop = gop_frames(in.framerate, segment_seconds);
  std::string preset = "veryfast";
  if (auto it = values.find("preset"); it != values.end())
    preset = it->second;

  std::map<std::string, std::string> vars(values.begin(), values.end());
  vars["input"] = in.input;
  vars["out"] = in.out;
  vars["audio_channels"] = std::to_string(in.audio_channels);
  vars["gop"] = std::to_string(gop);
  char fr[32];
  g_ascii_formatd(fr, sizeof fr, "%.3f", in.framerate);
  vars["framerate"] = fr;
  const char *progress = "sluiceprogress name=progress ! ";
  vars["video_progress"] = in.has_video ? progress : "";
  vars["audio_progress"] = in.has_video ? "" : progress;

  auto frag = [&](const std::string &name, const std::map<std::string, std::string> &v) {
    auto it = d.fragments.find(name);
    if (it == d.fragments.end())
      return std::string();
    return substitute(it->second, v, d.name + ": fragment '" + name + "'");
  };

  std::string out = frag("source", vars);
  if (in.has_audio)
    out += "  " + frag("audio", vars);
  if (in.has_video) {
    out += "  " + frag("video", vars);
    const EncoderProfile *enc = encoders.find(in.encoder);
    if (!enc)
      throw Error(ErrorCode::Invalid, "unknown encoder '" + in.encoder + "'");
    const int threads = encoder_threads(in.cpu_cores, static_cast<int>(in.renditions.size()));
    for (const auto &r : in.renditions) {
      if (!is_identifier(r.name))
        throw Error(ErrorCode::Invalid, "rendition name '" + r.name + "' must use a-z, 0-9 and _");
      if (r.width <= 0 || r.height <= 0 || r.width % 2 || r.height % 2 || r.bitrate_kbps <= 0)
        throw Error(ErrorCode::Invalid, "rendition '" + r.name + "' needs even positive sizes and a bitrate");
      auto rv = vars;
      rv["rendition"] = r.name;
      rv["sink"] = "hls_" + r.name;
      rv["width"] = std::to_string(r.width);
      rv["height"] = std::to_string(r.height);
      rv["bitrate"] = std::to_string(r.bitrate_kbps);
      EncoderSettings s{r.bitrate_kbps, r.maxrate_kbps > 0 ? r.maxrate_kbps : r.bitrate_kbps,
                        r.bufsize_kbit > 0 ? r.bufsize_kbit : r.bitrate_kbps * 2, gop, preset, threads};
      rv["encoder"] = encoders.render(*enc, s);
      out += "  " + frag("video_rendition", rv);
      if (in.has_audio)
        out += "  " + frag("audio_rendition", rv);
      out += "  " + frag("sink", rv);
    }
  } else {
    auto rv = vars;
    rv["rendition"] = "audio";
    rv["sink"] = "hls_audio";
    out += "  " + frag("audio_rendition", rv);
    out += "  " + frag("sink", rv);
  }
  return out;
}

std::string launch_command(const std::string &description) {
  return "gst-launch-1.0 -e " + shell_quote_description(description);
}

} // namespace sluice::pipeline
