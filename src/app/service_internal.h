// SPDX-License-Identifier: LGPL-2.1-or-later
// What the service layer's source files share (app/service*.cpp only).
#pragma once

#include "app/service.h"
#include "core/json.h"
#include "core/log.h"

#include <string>

namespace sluice::app::detail {

inline log::Category *app_log() {
  static log::Category *c = log::category("sluice-app", "sluice service layer");
  return c;
}

inline Failure refused(Refusal r, std::string message, std::string field = "") {
  return Failure{r, std::move(message), std::move(field)};
}

inline Failure shutting_down() {
  return refused(Refusal::Unavailable, "the server is shutting down");
}

inline void publish_video_event(jobs::EventHub &events, const std::string &video_id, const char *action) {
  JsonObject *vo = json_object_new();
  json_object_set_string_member(vo, "id", video_id.c_str());
  json_object_set_string_member(vo, "action", action);
  json::Node n(json::object_node(vo));
  events.publish("video", "", video_id, json::to_string(n.get(), false));
}

} // namespace sluice::app::detail
