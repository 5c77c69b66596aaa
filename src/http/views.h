// SPDX-License-Identifier: LGPL-2.1-or-later
// The JSON of videos and jobs, with the URLs where their files are served.
#pragma once

#include "app/service.h"

#include <json-glib/json-glib.h>

namespace sluice::http {

JsonNode *video_json(app::Service &service, const app::VideoView &view);
JsonNode *job_json(app::Service &service, const store::Job &job);
// {"jobs": [...]}, newest first.
JsonNode *jobs_json(app::Service &service, const std::vector<store::Job> &jobs);
// The URL of a video's output file: /videos/ID/PIPELINE/FILE.
std::string media_url(const std::string &video_id, const std::string &pipeline, const std::string &file);

} // namespace sluice::http
