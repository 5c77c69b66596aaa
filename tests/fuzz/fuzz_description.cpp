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
