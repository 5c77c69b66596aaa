// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: user values of pipeline parameters (`--set key=value`, a job's "params") against the
// descriptions in pipelines/. Input: "name=value" lines. Accepted values are canonical (validating them
// again gives them back) and safe inside quotes, and rendering with them gives a gst-launch description of
// the same shape as with the defaults: no value adds elements, properties or quotes.
#include "core/error.h"
#include "pipeline/description.h"
#include "pipeline/encoders.h"
#include "pipeline/params.h"
#include "pipeline/render.h"

#include "fuzz.h"

#include <glib.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace {

using sluice::Error;
using namespace sluice::pipeline;

struct Known {
  Description d;
  std::string shape; // of the description rendered with its defaults
};
std::vector<Known> known;
EncoderTable encoders;

RenderInput render_input() {
  RenderInput in;
  in.input = "/media/in/clip.mp4";
  in.out = "/media/out/x";
  in.framerate = 30.0;
  in.duration = 75.0;
  in.display_width = 1920;
  in.display_height = 1080;
  in.renditions = {{"360p", 640, 360, 800, 0, 0}, {"720p", 1280, 720, 2800, 0, 0}};
  in.cpu_cores = 2;
  return in;
}

// The structure of a gst-launch description: what is outside double quotes, with every run of word
// characters (names, numbers, enum words) as one 'w', and each quoted value as "".
std::string shape(const std::string &launch) {
  std::string out;
  bool quoted = false, word = false;
  for (char c : launch) {
    if (c == '"') {
      quoted = !quoted;
      out += c;
      word = false;
    } else if (quoted) {
      continue;
    } else if (g_ascii_isalnum(c) || c == '_' || c == '.' || c == '-' || c == '+') {
      if (!word)
        out += 'w';
      word = true;
    } else {
      out += c;
      word = false;
    }
  }
  return out;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  encoders = EncoderTable::load_default();
  for (auto &d : list_descriptions()) {
    Values defaults = resolve(d.params, {});
    known.push_back({d, shape(render(d, defaults, render_input(), encoders))});
  }
  FUZZ_CHECK(!known.empty(), "no pipeline description found (SLUICE_PIPELINES_DIR)");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  std::map<std::string, std::string> user;
  for (const auto &line : sluice::fuzz::lines(sluice::fuzz::text_of(data, size))) {
    try {
      auto [name, value] = split_assignment(line);
      FUZZ_CHECK(!name.empty() && name + "=" + value == line, "split_assignment lost bytes");
      user[name] = value;
    } catch (const Error &) {
    }
  }
  for (const auto &[d, default_shape] : known) {
    std::map<std::string, std::string> mine;
    for (const auto &[name, value] : user)
      if (d.find_param(name))
        mine[name] = value;
    // With every name, known or not: unknown ones are refused.
    try {
      (void)resolve(d.params, user);
    } catch (const Error &) {
    }
    Values values;
    try {
      values = resolve(d.params, mine);
    } catch (const Error &) {
      continue;
    }
    FUZZ_CHECK(values.size() == d.params.size(), "resolve() left a parameter out");
    for (const auto &[name, v] : values) {
      const ParamSpec *spec = d.find_param(name);
      FUZZ_CHECK(spec, "resolve() made up parameter " + name);
      FUZZ_CHECK(validate_value(*spec, v) == v, "parameter '" + name + "': '" + v + "' is not canonical");
      try {
        check_safe_string(name, v);
      } catch (const Error &e) {
        FUZZ_CHECK(false, "an accepted value is not safe inside quotes: " + std::string(e.what()));
      }
    }
    std::string rendered;
    try {
      rendered = render(d, values, render_input(), encoders);
    } catch (const Error &e) {
      FUZZ_CHECK(false, d.name + ": accepted values do not render: " + std::string(e.what()));
    }
    FUZZ_CHECK(shape(rendered) == default_shape, d.name + ": values changed the shape of the pipeline:\n" + rendered);
  }
  return 0;
}
