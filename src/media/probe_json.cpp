// SPDX-License-Identifier: LGPL-2.1-or-later
// probe_from_json: a stored probe (the catalog's probe_json of a video) read back into a ProbeResult.
#include "media/probe_json.h"

#include "core/error.h"
#include "core/json.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <tuple>
#include <utility>

namespace sluice::media {

namespace {

JsonNode *member(JsonObject *o, const char *name, const std::string &where) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n)
    throw Error(ErrorCode::Invalid, where + ": no '" + name + "'");
  return n;
}

std::int64_t integer(JsonObject *o, const char *name, const std::string &where) {
  JsonNode *n = member(o, name, where);
  if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64)
    return json_node_get_int(n);
  throw Error(ErrorCode::Invalid, where + ": '" + name + "' is not an integer");
}

int small_integer(JsonObject *o, const char *name, const std::string &where) {
  std::int64_t v = integer(o, name, where);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    throw Error(ErrorCode::Invalid, where + ": '" + name + "' is out of range");
  return static_cast<int>(v);
}

double number(JsonObject *o, const char *name, const std::string &where) {
  auto v = json::opt_number(o, name, where);
  if (!v)
    throw Error(ErrorCode::Invalid, where + ": no '" + name + "'");
  return *v;
}

bool boolean(JsonObject *o, const char *name, const std::string &where) {
  JsonNode *n = member(o, name, where);
  if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_BOOLEAN)
    return json_node_get_boolean(n);
  throw Error(ErrorCode::Invalid, where + ": '" + name + "' is not a boolean");
}

// "N<sep>D" (a ratio as probe_to_json writes it) -> {N, D}.
std::pair<int, int> ratio(JsonObject *o, const char *name, char sep, const std::string &where) {
  std::string text = json::get_string(o, name, where);
  int n = 0, d = 0;
  char s = 0, rest = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &n, &s, &d, &rest) != 3 || s != sep)
    throw Error(ErrorCode::Invalid, where + ": '" + name + "' is not of the form N" + sep + "D: " + text);
  return {n, d};
}

// The object member `name`, or nullptr when it is null (a stream the file does not have).
JsonObject *optional_object(JsonObject *o, const char *name, const std::string &where) {
  JsonNode *n = member(o, name, where);
  if (JSON_NODE_HOLDS_NULL(n))
    return nullptr;
  return json::require_object(n, where + ": '" + name + "'");
}

} // namespace

ProbeResult probe_from_json(JsonNode *node, const std::string &what) {
  JsonObject *o = json::require_object(node, what);
  ProbeResult r;
  r.path = json::get_string(o, "path", what);
  r.container = json::get_string(o, "container", what);
  r.duration_ns = integer(o, "duration_ns", what);
  r.size = integer(o, "size", what);
  r.video_streams = small_integer(o, "video_streams", what);
  r.audio_streams = small_integer(o, "audio_streams", what);
  r.subtitle_streams = small_integer(o, "subtitle_streams", what);
  if (JsonObject *vo = optional_object(o, "video", what)) {
    const std::string where = what + ": 'video'";
    VideoInfo v;
    v.codec = json::get_string(vo, "codec", where);
    v.caps = json::get_string(vo, "caps", where);
    v.width = small_integer(vo, "width", where);
    v.height = small_integer(vo, "height", where);
    v.display_width = small_integer(vo, "display_width", where);
    v.display_height = small_integer(vo, "display_height", where);
    std::tie(v.par_n, v.par_d) = ratio(vo, "pixel_aspect_ratio", ':', where);
    std::tie(v.fps_n, v.fps_d) = ratio(vo, "framerate", '/', where);
    v.fps = number(vo, "fps", where);
    v.bitrate = integer(vo, "bitrate", where);
    v.rotation = small_integer(vo, "rotation", where);
    v.mirrored = json_object_has_member(vo, "mirrored") && boolean(vo, "mirrored", where);
    v.interlaced = boolean(vo, "interlaced", where);
    r.video = v;
  }
  if (JsonObject *ao = optional_object(o, "audio", what)) {
    const std::string where = what + ": 'audio'";
    AudioInfo a;
    a.codec = json::get_string(ao, "codec", where);
    a.caps = json::get_string(ao, "caps", where);
    a.channels = small_integer(ao, "channels", where);
    a.sample_rate = small_integer(ao, "sample_rate", where);
    a.bitrate = integer(ao, "bitrate", where);
    r.audio = a;
  }
  return r;
}

ProbeResult probe_from_json(const std::string &json_text, const std::string &what) {
  json::Node node = json::parse(json_text, what);
  return probe_from_json(node.get(), what);
}

} // namespace sluice::media
