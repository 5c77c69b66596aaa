// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: pipeline descriptions (pipelines/NAME.json) from JSON text. A description that loads must
// load again from what sluice prints of it (`sluice pipeline show`), validate its own defaults and render.
#include "core/error.h"
#include "core/json.h"
#include "pipeline/description.h"
#include "pipeline/encoders.h"
#include "pipeline/params.h"
#include "pipeline/render.h"

#include "fuzz.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace {

using sluice::Error;
using namespace sluice::pipeline;

EncoderTable encoders;

// The file form of a description from its printed form: "parameters" is an object by name there.
std::string file_form(const Description &d) {
  sluice::json::Node printed(description_to_json(d));
  JsonObject *o = json_node_get_object(printed.get());
  JsonArray *params = json_object_get_array_member(o, "parameters");
  JsonObject *by_name = json_object_new();
  for (guint i = 0; i < json_array_get_length(params); ++i) {
    JsonObject *p = json_array_get_object_element(params, i);
    std::string name = json_object_get_string_member(p, "name");
    JsonObject *copy = json_object_new();
    GList *members = json_object_get_members(p);
    for (GList *m = members; m; m = m->next) {
      auto *member = static_cast<const char *>(m->data);
      if (std::string(member) != "name")
        json_object_set_member(copy, member, json_node_copy(json_object_get_member(p, member)));
    }
    g_list_free(members);
    json_object_set_object_member(by_name, name.c_str(), copy);
  }
  json_object_set_object_member(o, "parameters", by_name);
  return sluice::json::to_string(printed.get(), false);
}

bool utf8(const Description &d) {
  std::vector<std::string> texts = {d.name, d.summary};
  for (const auto &p : d.params) {
    texts.insert(texts.end(), {p.description, p.default_value});
    texts.insert(texts.end(), p.values.begin(), p.values.end());
  }
  for (const auto &[name, text] : d.fragments)
    texts.push_back(text);
  for (const auto &t : texts)
    if (!g_utf8_validate(t.data(), static_cast<gssize>(t.size()), nullptr))
      return false;
  return true;
}

bool same_spec(const ParamSpec &a, const ParamSpec &b) {
  return a.name == b.name && a.type == b.type && a.description == b.description && a.default_value == b.default_value &&
         a.min == b.min && a.max == b.max && a.values == b.values;
}

RenderInput render_input(bool video, bool audio) {
  RenderInput in;
  in.input = "/media/in/clip.mp4";
  in.out = "/media/out/hls";
  in.has_video = video;
  in.has_audio = audio;
  in.framerate = 30.0;
  in.duration = 12.5;
  in.display_width = 1280;
  in.display_height = 720;
  in.renditions = {{"360p", 640, 360, 800, 0, 0}, {"720p", 1280, 720, 2800, 0, 0}};
  in.cpu_cores = 4;
  return in;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  encoders = EncoderTable::load_default();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  Description d;
  try {
    d = parse_description(sluice::fuzz::text_of(data, size), "fuzz.json");
  } catch (const Error &) {
    return 0;
  }
  Values defaults;
  for (const auto &p : d.params) {
    FUZZ_CHECK(validate_value(p, p.default_value) == p.default_value, "parameter '" + p.name + "': its default");
    defaults[p.name] = p.default_value;
  }
  FUZZ_CHECK(resolve(d.params, {}) == defaults, "resolve() without values is not the defaults");

  // json-glib reads a malformed \u escape ("\ud83\d") as bytes that are not UTF-8, and its output is then no
  // JSON (tests/fuzz/fuzz_json.cpp): only descriptions whose text is UTF-8 must print and load again.
  if (!utf8(d))
    return 0;
  std::string printed = file_form(d);
  Description again;
  try {
    again = parse_description(printed, "printed.json");
  } catch (const Error &e) {
    FUZZ_CHECK(false, std::string("the printed description does not load: ") + e.what() + "\n" + printed);
  }
  FUZZ_CHECK(again.name == d.name && again.summary == d.summary && again.output == d.output, "printed: " + printed);
  FUZZ_CHECK(again.fragments == d.fragments, "the fragments changed in print: " + printed);
  FUZZ_CHECK(again.params.size() == d.params.size(), "the parameters changed in print: " + printed);
  for (const auto &p : d.params) {
    const ParamSpec *q = again.find_param(p.name);
    FUZZ_CHECK(q && same_spec(p, *q), "parameter '" + p.name + "' changed in print: " + printed);
  }

  for (bool video : {true, false})
    for (bool audio : {true, false}) {
      try {
        std::string rendered = render(d, defaults, render_input(video, audio), encoders);
        FUZZ_CHECK(rendered.find('\n') == std::string::npos, "a rendered description spans lines");
      } catch (const Error &) {
      }
    }
  return 0;
}
