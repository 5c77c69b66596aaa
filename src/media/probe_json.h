// SPDX-License-Identifier: LGPL-2.1-or-later
// Reading back a stored probe: the inverse of media::probe_to_json.
#pragma once

#include "media/probe.h"

#include <string>

namespace sluice::media {

// The ProbeResult that probe_to_json(r) wrote: probe_from_json(probe_to_json(r)) == r, member for member.
// Throws sluice::Error (Invalid) naming `what` when the JSON is not such a document.
ProbeResult probe_from_json(JsonNode *node, const std::string &what = "stored probe");
ProbeResult probe_from_json(const std::string &json_text, const std::string &what = "stored probe");

} // namespace sluice::media
