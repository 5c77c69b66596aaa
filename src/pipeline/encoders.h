// SPDX-License-Identifier: LGPL-2.1-or-later
// H.264 encoder profiles (pipelines/encoders.json): rendering, runtime checks and `auto` resolution.
#pragma once

#include <json-glib/json-glib.h>

#include <map>
#include <string>
#include <vector>

namespace sluice::pipeline {

struct EncoderProfile {
  std::string name;
  std::string element; // the GStreamer element that must exist
  std::string summary;
  std::string fragment;
  bool hardware = false;
  std::map<std::string, std::string> presets; // generic preset -> this element's value
  // Rate control -> the fragment's {rate_control} (its own placeholders filled from the same values, and {crf}).
  // Empty: the fragment spells its rate control itself, which is then `cbr` (the only one it offers).
  std::map<std::string, std::string> rate_controls;
  bool offers(const std::string &rate_control) const {
    return rate_controls.empty() ? rate_control == "cbr" : rate_controls.count(rate_control) > 0;
  }
};

// The rate control of one rendition: kbit/s, and the VBV buffer in kbit.
struct EncoderSettings {
  int bitrate_kbps = 0;
  int maxrate_kbps = 0;
  int bufsize_kbit = 0;
  int gop = 0;
  std::string preset = "veryfast";
  int threads = 0; // encoder threads; 0 lets the encoder decide
  // "cbr": the rung's bitrate spent whatever the picture (the VBV keeps it at most maxrate); "capped-crf": constant
  // quality `crf` (x264's scale, 1-51, lower is better), the rung's bitrate as the VBV's ceiling, so that simple
  // pictures take fewer bits and hard ones no more than cbr's.
  std::string rate_control = "cbr";
  int crf = 23;
};

struct EncoderStatus {
  std::string name;
  bool exists = false;
  bool runs = false;
  std::string reason; // why it cannot run
};

class EncoderTable {
public:
  static EncoderTable load(const std::string &path);
  static EncoderTable load_default(); // encoders.json in the pipelines directory

  const std::vector<std::string> &order() const { return order_; }
  const std::vector<EncoderProfile> &profiles() const { return profiles_; }
  const EncoderProfile *find(const std::string &name) const;

  // The fragment with its placeholders filled; all values are numbers or validated preset words.
  std::string render(const EncoderProfile &p, const EncoderSettings &s) const;

  // Whether the element exists and encodes a few frames here (cached per process).
  EncoderStatus check(const std::string &name) const;

  // "auto" (first runnable in `order`, or in the table's order when empty, that offers `rate_control`) or a name.
  // Throws sluice::Error listing the runnable encoders when the request cannot run, and Invalid when the named
  // encoder has no such rate control.
  std::string resolve(const std::string &requested, const std::vector<std::string> &order = {},
                      const std::string &rate_control = "cbr") const;

  JsonNode *to_json(bool with_status) const;

private:
  std::vector<std::string> order_;
  std::vector<EncoderProfile> profiles_;
};

// The encoder table's file in the pipelines directory (it is not a pipeline description).
inline constexpr const char *kEncoderTableFile = "encoders.json";

// Rate controls a job may ask for (the `rate_control` parameter of the ladder pipelines); every encoder offers cbr.
inline const std::vector<std::string> kRateControls = {"cbr", "capped-crf"};

// Generic presets, fastest first.
inline const std::vector<std::string> kPresets = {"ultrafast", "superfast", "veryfast", "faster",  "fast",
                                                  "medium",    "slow",      "slower",   "veryslow"};

} // namespace sluice::pipeline
