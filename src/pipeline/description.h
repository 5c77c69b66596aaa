// SPDX-License-Identifier: LGPL-2.1-or-later
// Declarative pipeline descriptions (pipelines/NAME.json): loading and validation.
#pragma once

#include "pipeline/outputs.h"
#include "pipeline/params.h"

#include <map>
#include <string>
#include <vector>

namespace sluice::pipeline {

// The fragments a description may define, in the order they are rendered.
//  source           once: reads and decodes the input (must name its decoder `dec`)
//  audio            once, when the input has audio: decodes/encodes audio once for all renditions
//  video            once, when the input has video: the decoded video every rendition branches from
//  video_rendition  per video rendition
//  audio_rendition  per rendition, when the input has audio
//  audio_output     once, when the input has audio: audio as a track set of its own (CMAF); a description
//                   with it has no audio_rendition
//  sink             per rendition (once for outputs without a ladder)
inline const std::vector<std::string> kFragmentNames = {"source",          "audio",        "video", "video_rendition",
                                                        "audio_rendition", "audio_output", "sink"};

// What a description produces (its "output"): see pipeline/outputs.h.
//  hls, cmaf                  a streaming package from the rendition ladder (video_rendition per rung)
//  poster, storyboard, preview  one artifact from the picture: no ladder, `video` and `sink` once
//  live-hls, live-cmaf        the ladder of a live stream, fed by appsrcs `v` and `a` (never a job's pipeline)

struct Description {
  std::string name;
  std::string summary;
  std::string path;
  OutputKind output = OutputKind::Hls; // what it produces; read from the description when it is loaded
  // "weight": the cores a job of it keeps busy, which the scheduler's capacity counts (jobs::Scheduler). kAllCores
  // ("cores"): every core, as a ladder's encoders spread their threads over all of them (the default of ladders);
  // otherwise 1 to kMaxWeight (default 1).
  static constexpr int kAllCores = 0;
  static constexpr int kMaxWeight = 1024;
  int weight = 1;
  std::vector<ParamSpec> params;
  std::map<std::string, std::string> fragments;

  const ParamSpec *find_param(const std::string &param) const;
};

// Built-in placeholders allowed in a fragment (besides the description's parameters).
// `quoted` ones are free-form strings and must sit inside double quotes.
struct Builtin {
  const char *name;
  bool string;
};
std::vector<Builtin> builtins_for(const std::string &fragment);

// A description's name: a-z, 0-9, _ and single inner '-' ("live-hls").
bool is_description_name(const std::string &s);

Description load_description(const std::string &path);
Description parse_description(const std::string &json_text, const std::string &path);
// Finds NAME.json in the pipelines directory; the name is validated first.
Description find_description(const std::string &name);
std::vector<Description> list_descriptions();

JsonNode *description_to_json(const Description &d);

} // namespace sluice::pipeline
