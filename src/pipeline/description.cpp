// SPDX-License-Identifier: LGPL-2.1-or-later
// Loading and checking pipeline descriptions: a description that loads can be rendered safely.
#include "pipeline/description.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/paths.h"
#include "pipeline/encoders.h"
#include "pipeline/template.h"

#include <algorithm>

namespace sluice::pipeline {

namespace {

// A description's "weight": "cores", or a whole number of cores from 1 to kMaxWeight; absent, a ladder's is "cores" and
// any other's 1.
int parse_weight(JsonObject *obj, const OutputInfo &out, const std::string &path) {
  JsonNode *n = json_object_get_member(obj, "weight");
  if (!n)
    return out.streaming || out.live ? Description::kAllCores : 1;
  if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING &&
      std::string(json_node_get_string(n)) == "cores")
    return Description::kAllCores;
  if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64) {
    const gint64 w = json_node_get_int(n);
    if (w >= 1 && w <= Description::kMaxWeight)
      return static_cast<int>(w);
  }
  throw Error(ErrorCode::Invalid, path + ": weight: expected \"cores\" or a whole number of cores from 1 to " +
                                      std::to_string(Description::kMaxWeight));
}

} // namespace

const ParamSpec *Description::find_param(const std::string &param) const {
  for (const auto &p : params)
    if (p.name == param)
      return &p;
  return nullptr;
}

bool is_description_name(const std::string &s) {
  // An identifier, or words of one joined by '-' ("live-hls"): it names a file and goes in URLs unquoted.
  if (s.empty() || s.size() > 64 || s.front() == '-' || s.back() == '-' || s.find("--") != std::string::npos)
    return false;
  for (char c : s)
    if (!(g_ascii_islower(c) || g_ascii_isdigit(c) || c == '_' || c == '-'))
      return false;
  return true;
}

std::vector<Builtin> builtins_for(const std::string &fragment) {
  // duration_s: the input's duration in whole seconds (at least 1); start_ns/end_ns: the clip of a
  // description with start_seconds and length_seconds, fitted into the input.
  std::vector<Builtin> b = {{"input", true},      {"out", true},         {"audio_channels", false}, {"gop", false},
                            {"framerate", false}, {"duration_s", false}, {"start_ns", false},       {"end_ns", false}};
  if (fragment == "video") {
    b.push_back({"video_progress", false});
    b.push_back({"orient", false}); // "videoflip video-direction=auto ! " for a rotated source, else ""
    // Outputs without a ladder: the picture fitted into max_width x max_height, never enlarged.
    b.push_back({"width", false});
    b.push_back({"height", false});
    b.push_back({"encoder", false}); // video_bitrate, preset and the keyframe cadence of the parameters
  }
  if (fragment == "audio")
    b.push_back({"audio_progress", false});
  if (fragment == "video_rendition")
    for (const char *n : {"rendition", "sink", "width", "height", "bitrate", "encoder", "scale_from"})
      b.push_back({n, false});
  if (fragment == "audio_rendition" || fragment == "sink" || fragment == "audio_output")
    for (const char *n : {"rendition", "sink"})
      b.push_back({n, false});
  // The frame rate as caps spell it ("30/1", "30000/1001"), and the threads each encoder may take (the machine's
  // cores spread over the renditions): for descriptions that write their encoder themselves (the live ones).
  b.push_back({"fps", false});
  b.push_back({"threads", false});
  return b;
}

static void check_fragment(const Description &d, const std::string &frag, const std::string &text) {
  const std::string where = d.name + ": fragment '" + frag + "'";
  if (text.find('\n') != std::string::npos || text.find('\r') != std::string::npos)
    throw Error(ErrorCode::Invalid, where + " must be one line");
  size_t quotes = std::count(text.begin(), text.end(), '"');
  if (quotes % 2)
    throw Error(ErrorCode::Invalid, where + " has an unbalanced double quote");
  auto builtins = builtins_for(frag);
  for (const auto &ph : scan_placeholders(text)) {
    bool string_valued = false;
    bool known = false;
    for (const auto &b : builtins)
      if (ph.name == b.name) {
        known = true;
        string_valued = b.string;
      }
    if (const ParamSpec *p = d.find_param(ph.name)) {
      known = true;
      string_valued = p->type == ParamType::String;
    }
    if (!known)
      throw Error(ErrorCode::Invalid, where + ": unknown placeholder {" + ph.name + "}");
    if (string_valued && !ph.quoted)
      throw Error(ErrorCode::Invalid, where + ": string placeholder {" + ph.name + "} must be inside double quotes");
  }
}

Description parse_description(const std::string &json_text, const std::string &path) {
  auto root = json::parse(json_text, path);
  JsonObject *obj = json::require_object(root.get(), path);
  Description d;
  d.path = path;
  d.name = json::get_string(obj, "name", path);
  if (!is_description_name(d.name))
    throw Error(ErrorCode::Invalid, path + ": name '" + d.name + "' must use a-z, 0-9, _ and -");
  d.summary = json::opt_string(obj, "summary", path).value_or("");
  const std::string output = json::opt_string(obj, "output", path).value_or(output_name(OutputKind::Hls));
  if (auto kind = parse_output_kind(output))
    d.output = *kind;
  else
    throw Error(ErrorCode::Invalid, path + ": output '" + output + "' is not supported (" + output_names() + ")");
  const OutputInfo &out = output_info(d.output);
  d.weight = parse_weight(obj, out, path);
  JsonNode *params = json_object_get_member(obj, "parameters");
  if (params) {
    JsonObject *pobj = json::require_object(params, path + ": 'parameters'");
    g_autoptr(GList) names = json_object_get_members(pobj);
    for (GList *l = names; l; l = l->next) {
      const char *pname = static_cast<const char *>(l->data);
      d.params.push_back(parse_param_spec(
          pname, json::require_object(json_object_get_member(pobj, pname), "parameter '" + std::string(pname) + "'")));
    }
  }
  for (const auto &p : d.params)
    for (const auto &frag : kFragmentNames)
      for (const auto &b : builtins_for(frag))
        if (p.name == b.name)
          throw Error(ErrorCode::Invalid, path + ": parameter '" + p.name + "' shadows a built-in placeholder");
  JsonObject *frags = json::require_object(json_object_get_member(obj, "fragments"), path + ": 'fragments'");
  g_autoptr(GList) fnames = json_object_get_members(frags);
  for (GList *l = fnames; l; l = l->next) {
    std::string fname = static_cast<const char *>(l->data);
    if (std::find(kFragmentNames.begin(), kFragmentNames.end(), fname) == kFragmentNames.end())
      throw Error(ErrorCode::Invalid, path + ": unknown fragment '" + fname + "'");
    d.fragments[fname] = json::get_string(frags, fname.c_str(), path + ": 'fragments'");
  }
  std::vector<const char *> required = {"source", "sink", out.streaming || out.live ? "video_rendition" : "video"};
  // A live ladder: its own appsrc per input stream (`v`, `a`) in `source` and `audio`, the decoded video every rung
  // branches from in `video`, and the audio of every rung (live-hls) or as a track set of its own (live-cmaf).
  if (out.live)
    for (const char *f : {"video", "audio", d.output == OutputKind::LiveCmaf ? "audio_output" : "audio_rendition"})
      required.push_back(f);
  for (const char *req : required)
    if (!d.fragments.count(req))
      throw Error(ErrorCode::Invalid, path + ": missing fragment '" + req + "'");
  if (d.fragments.count("audio_output") && d.fragments.count("audio_rendition"))
    throw Error(ErrorCode::Invalid, path + ": a description has audio_output or audio_rendition, not both");
  if (out.needs_picture)
    for (const char *p : {"max_width", "max_height"})
      if (!d.find_param(p) || d.find_param(p)->type != ParamType::Integer)
        throw Error(ErrorCode::Invalid,
                    path + ": output '" + output + "' needs integer parameters max_width and max_height");
  for (const auto &[fname, text] : d.fragments)
    check_fragment(d, fname, text);
  return d;
}

Description load_description(const std::string &path) {
  std::string text;
  try {
    text = fs::read_file(path);
  } catch (const Error &) {
    throw Error(ErrorCode::NotFound, "cannot read pipeline description " + path);
  }
  return parse_description(text, path);
}

Description find_description(const std::string &name) {
  if (!is_description_name(name))
    throw Error(ErrorCode::NotFound, "unknown pipeline '" + name + "'");
  std::string path = fs::join(paths::pipelines_dir(), name + ".json");
  if (name + ".json" == kEncoderTableFile || !fs::exists(path)) {
    std::string known;
    for (const auto &d : list_descriptions())
      known += (known.empty() ? "" : ", ") + d.name;
    throw Error(ErrorCode::NotFound, "unknown pipeline '" + name + "' (available: " + known + ")");
  }
  return load_description(path);
}

std::vector<Description> list_descriptions() {
  std::vector<Description> out;
  std::string dir = paths::pipelines_dir();
  for (const auto &f : fs::list_dir(dir)) {
    if (f.size() < 6 || f.substr(f.size() - 5) != ".json" || f == kEncoderTableFile)
      continue;
    out.push_back(load_description(fs::join(dir, f)));
  }
  return out;
}

JsonNode *description_to_json(const Description &d) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "name");
  json_builder_add_string_value(b, d.name.c_str());
  json_builder_set_member_name(b, "summary");
  json_builder_add_string_value(b, d.summary.c_str());
  json_builder_set_member_name(b, "output");
  json_builder_add_string_value(b, output_name(d.output).c_str());
  json_builder_set_member_name(b, "weight");
  if (d.weight == Description::kAllCores)
    json_builder_add_string_value(b, "cores");
  else
    json_builder_add_int_value(b, d.weight);
  json_builder_set_member_name(b, "parameters");
  json_builder_begin_array(b);
  for (const auto &p : d.params)
    json_builder_add_value(b, param_spec_to_json(p));
  json_builder_end_array(b);
  json_builder_set_member_name(b, "fragments");
  json_builder_begin_object(b);
  for (const auto &f : kFragmentNames)
    if (d.fragments.count(f)) {
      json_builder_set_member_name(b, f.c_str());
      json_builder_add_string_value(b, d.fragments.at(f).c_str());
    }
  json_builder_end_object(b);
  json_builder_end_object(b);
  return json_builder_get_root(b);
}

} // namespace sluice::pipeline
