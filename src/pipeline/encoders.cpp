// SPDX-License-Identifier: LGPL-2.1-or-later
// Encoder profiles: one table, so that swapping x264 for a hardware encoder is configuration only.
#include "pipeline/encoders.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/paths.h"
#include "pipeline/params.h"
#include "pipeline/template.h"

#include <gst/gst.h>

#include <algorithm>
#include <mutex>

GST_DEBUG_CATEGORY_STATIC(sluice_encoders_debug);
#define GST_CAT_DEFAULT sluice_encoders_debug

namespace sluice::pipeline {

namespace {
const std::vector<std::string> kEncoderPlaceholders = {"bitrate", "bitrate_bps", "maxrate", "maxrate_bps",
                                                       "bufsize", "vbv_ms",      "gop",     "preset",
                                                       "threads", "rate_control"};
// A rate control's own fragment: the same values, and the quality of capped-crf; never itself.
const std::vector<std::string> kRateControlPlaceholders = {
    "bitrate", "bitrate_bps", "maxrate", "maxrate_bps", "bufsize", "vbv_ms", "gop", "preset", "threads", "crf"};

void check_placeholders(const std::string &fragment, const std::vector<std::string> &known, const std::string &where) {
  for (const auto &ph : scan_placeholders(fragment))
    if (std::find(known.begin(), known.end(), ph.name) == known.end())
      throw Error(ErrorCode::Invalid, where + ": unknown placeholder {" + ph.name + "}");
}

void init_debug() {
  static std::once_flag once;
  std::call_once(
      once, [] { GST_DEBUG_CATEGORY_INIT(sluice_encoders_debug, "sluice-encoders", 0, "sluice encoder selection"); });
}
} // namespace

EncoderTable EncoderTable::load(const std::string &path) {
  auto root = json::parse_file(path);
  JsonObject *obj = json::require_object(root.get(), path);
  EncoderTable t;
  t.order_ = json::string_list(obj, "order", path);
  JsonObject *encs = json::require_object(json_object_get_member(obj, "encoders"), path + ": 'encoders'");
  g_autoptr(GList) names = json_object_get_members(encs); // freed on every throw below too
  for (GList *l = names; l; l = l->next) {
    std::string name = static_cast<const char *>(l->data);
    const std::string where = path + ": encoder '" + name + "'";
    JsonObject *e = json::require_object(json_object_get_member(encs, name.c_str()), where);
    EncoderProfile p;
    p.name = name;
    if (!is_identifier(name))
      throw Error(ErrorCode::Invalid, where + ": names use a-z, 0-9 and _");
    p.element = json::get_string(e, "element", where);
    p.summary = json::opt_string(e, "summary", where).value_or("");
    p.fragment = json::get_string(e, "fragment", where);
    JsonNode *hw = json_object_get_member(e, "hardware");
    p.hardware = hw && JSON_NODE_HOLDS_VALUE(hw) && json_node_get_boolean(hw);
    JsonObject *presets = json::require_object(json_object_get_member(e, "presets"), where + ": 'presets'");
    for (const auto &gp : kPresets) {
      auto v = json::opt_string(presets, gp.c_str(), where + ": 'presets'");
      if (!v)
        throw Error(ErrorCode::Invalid, where + ": preset '" + gp + "' is not mapped");
      for (char c : *v)
        if (!(g_ascii_isalnum(c) || c == '-' || c == '_'))
          throw Error(ErrorCode::Invalid, where + ": preset value '" + *v + "' must be a plain word");
      p.presets[gp] = *v;
    }
    check_placeholders(p.fragment, kEncoderPlaceholders, where);
    if (JsonNode *rc = json_object_get_member(e, "rate_controls")) {
      JsonObject *rco = json::require_object(rc, where + ": 'rate_controls'");
      g_autoptr(GList) rcs = json_object_get_members(rco);
      for (GList *r = rcs; r; r = r->next) {
        std::string rname = static_cast<const char *>(r->data);
        if (std::find(kRateControls.begin(), kRateControls.end(), rname) == kRateControls.end())
          throw Error(ErrorCode::Invalid, where + ": unknown rate control '" + rname + "' (known: cbr, capped-crf)");
        std::string frag = json::get_string(rco, rname.c_str(), where + ": 'rate_controls'");
        check_placeholders(frag, kRateControlPlaceholders, where + ": rate control '" + rname + "'");
        p.rate_controls[rname] = frag;
      }
    }
    // Either the fragment places {rate_control} and the table says what cbr is, or it spells cbr itself.
    const bool places = p.fragment.find("{rate_control}") != std::string::npos;
    if (places && !p.rate_controls.count("cbr"))
      throw Error(ErrorCode::Invalid, where + ": the fragment places {rate_control}: 'rate_controls' must map cbr");
    if (!places && !p.rate_controls.empty())
      throw Error(ErrorCode::Invalid, where + ": 'rate_controls' needs {rate_control} in the fragment");
    t.profiles_.push_back(std::move(p));
  }
  for (const auto &o : t.order_)
    if (!t.find(o))
      throw Error(ErrorCode::Invalid, path + ": 'order' names unknown encoder '" + o + "'");
  return t;
}

EncoderTable EncoderTable::load_default() {
  return load(fs::join(paths::pipelines_dir(), kEncoderTableFile));
}

const EncoderProfile *EncoderTable::find(const std::string &name) const {
  for (const auto &p : profiles_)
    if (p.name == name)
      return &p;
  return nullptr;
}

std::string EncoderTable::render(const EncoderProfile &p, const EncoderSettings &s) const {
  auto preset = p.presets.find(s.preset);
  if (preset == p.presets.end())
    throw Error(ErrorCode::Invalid, "unknown preset '" + s.preset + "'");
  int vbv_ms = s.bitrate_kbps > 0 ? static_cast<int>(1000.0 * s.bufsize_kbit / s.bitrate_kbps) : 1000;
  std::map<std::string, std::string> vars = {
      {"bitrate", std::to_string(s.bitrate_kbps)},
      {"bitrate_bps", std::to_string(static_cast<long long>(s.bitrate_kbps) * 1000)},
      {"maxrate", std::to_string(s.maxrate_kbps)},
      {"maxrate_bps", std::to_string(static_cast<long long>(s.maxrate_kbps) * 1000)},
      {"bufsize", std::to_string(s.bufsize_kbit)},
      {"vbv_ms", std::to_string(vbv_ms)},
      {"gop", std::to_string(s.gop)},
      {"preset", preset->second},
      {"threads", std::to_string(std::max(0, s.threads))},
      {"crf", std::to_string(std::clamp(s.crf, 1, 51))}, // 0 is lossless, which High profile refuses
  };
  if (!p.offers(s.rate_control))
    throw Error(ErrorCode::Invalid, "encoder '" + p.name + "' has no rate control '" + s.rate_control + "'");
  if (auto rc = p.rate_controls.find(s.rate_control); rc != p.rate_controls.end())
    vars["rate_control"] = substitute(rc->second, vars, "encoder '" + p.name + "', rate control " + rc->first);
  return substitute(p.fragment, vars, "encoder '" + p.name + "'");
}

EncoderStatus EncoderTable::check(const std::string &name) const {
  init_debug();
  static std::mutex mutex;
  static std::map<std::string, EncoderStatus> cache;
  const EncoderProfile *p = find(name);
  EncoderStatus st;
  st.name = name;
  if (!p) {
    st.reason = "unknown encoder";
    return st;
  }
  std::string key = name + "\n" + p->fragment;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = cache.find(key); it != cache.end())
      return it->second;
  }
  GstElementFactory *factory = gst_element_factory_find(p->element.c_str());
  st.exists = factory != nullptr;
  if (factory)
    gst_object_unref(factory);
  if (!st.exists) {
    st.reason = "element " + p->element + " is not installed";
  } else {
    // Hardware elements often exist without the hardware: encode a few frames to find out.
    EncoderSettings s{1000, 1100, 1500, 10, "veryfast"};
    std::string launch = "videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! " +
                         render(*p, s) + " ! fakesink";
    GError *err = nullptr;
    GstElement *pipeline = gst_parse_launch_full(launch.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
    if (!pipeline) {
      st.reason = err ? err->message : "cannot build a test pipeline";
      g_clear_error(&err);
    } else {
      g_clear_error(&err);
      gst_object_ref_sink(pipeline);
      GstBus *bus = gst_element_get_bus(pipeline);
      if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE)
        st.reason = "cannot start " + p->element;
      GstMessage *msg = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND,
                                                   static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
      if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
        st.runs = st.reason.empty();
      } else if (msg) {
        GError *e = nullptr;
        gst_message_parse_error(msg, &e, nullptr);
        st.reason = std::string(p->element) + " failed: " + (e ? e->message : "unknown error");
        g_clear_error(&e);
      } else if (st.reason.empty()) {
        st.reason = p->element + " did not finish a test encode in 10 s";
      }
      if (msg)
        gst_message_unref(msg);
      gst_element_set_state(pipeline, GST_STATE_NULL);
      gst_object_unref(bus);
      gst_object_unref(pipeline);
    }
  }
  GST_INFO("encoder %s: exists=%d runs=%d %s", name.c_str(), st.exists, st.runs, st.reason.c_str());
  std::lock_guard<std::mutex> lock(mutex);
  cache[key] = st;
  return st;
}

std::string EncoderTable::resolve(const std::string &requested, const std::vector<std::string> &order,
                                  const std::string &rate_control) const {
  auto offering = [&] {
    std::string s;
    for (const auto &p : profiles_)
      if (p.offers(rate_control))
        s += (s.empty() ? "" : ", ") + p.name;
    return s.empty() ? std::string("none") : s;
  };
  auto runnable_list = [&] {
    std::string s;
    for (const auto &p : profiles_)
      if (check(p.name).runs)
        s += (s.empty() ? "" : ", ") + p.name;
    return s.empty() ? std::string("none") : s;
  };
  if (requested.empty() || requested == "auto") {
    const auto &ord = order.empty() ? order_ : order;
    for (const auto &name : ord) {
      if (!find(name))
        throw Error(ErrorCode::Invalid, "encoder order names unknown encoder '" + name + "'");
      if (find(name)->offers(rate_control) && check(name).runs)
        return name;
    }
    if (rate_control != "cbr")
      throw Error(ErrorCode::Unavailable, "no H.264 encoder in the order that can run here has rate control '" +
                                              rate_control + "' (runnable: " + runnable_list() +
                                              "; with it: " + offering() + ")");
    throw Error(ErrorCode::Unavailable,
                "no H.264 encoder in the order can run here (runnable: " + runnable_list() + ")");
  }
  if (!find(requested)) {
    std::string known;
    for (const auto &p : profiles_)
      known += (known.empty() ? "" : ", ") + p.name;
    throw Error(ErrorCode::Invalid, "unknown encoder '" + requested + "' (known: auto, " + known + ")");
  }
  if (!find(requested)->offers(rate_control))
    throw Error(ErrorCode::Invalid, "encoder '" + requested + "' has no rate control '" + rate_control +
                                        "' (encoders with it: " + offering() + ")");
  EncoderStatus st = check(requested);
  if (!st.runs)
    throw Error(ErrorCode::Unavailable, "encoder '" + requested + "' cannot run here: " + st.reason +
                                            " (encoders that can: " + runnable_list() + ")");
  return requested;
}

JsonNode *EncoderTable::to_json(bool with_status) const {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "order");
  json_builder_begin_array(b);
  for (const auto &o : order_)
    json_builder_add_string_value(b, o.c_str());
  json_builder_end_array(b);
  json_builder_set_member_name(b, "encoders");
  json_builder_begin_array(b);
  for (const auto &p : profiles_) {
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, p.name.c_str());
    json_builder_set_member_name(b, "element");
    json_builder_add_string_value(b, p.element.c_str());
    json_builder_set_member_name(b, "summary");
    json_builder_add_string_value(b, p.summary.c_str());
    json_builder_set_member_name(b, "hardware");
    json_builder_add_boolean_value(b, p.hardware);
    json_builder_set_member_name(b, "rate_controls");
    json_builder_begin_array(b);
    for (const auto &rc : kRateControls)
      if (p.offers(rc))
        json_builder_add_string_value(b, rc.c_str());
    json_builder_end_array(b);
    if (with_status) {
      EncoderStatus st = check(p.name);
      json_builder_set_member_name(b, "available");
      json_builder_add_boolean_value(b, st.exists);
      json_builder_set_member_name(b, "runs");
      json_builder_add_boolean_value(b, st.runs);
      if (!st.runs) {
        json_builder_set_member_name(b, "reason");
        json_builder_add_string_value(b, st.reason.c_str());
      }
    }
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  return json_builder_get_root(b);
}

} // namespace sluice::pipeline
