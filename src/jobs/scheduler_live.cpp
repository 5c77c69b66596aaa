// SPDX-License-Identifier: LGPL-2.1-or-later
// A running streaming job watched live: its progress events, its interim master playlist, the playable event.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"
#include "core/json.h"
#include "media/hls.h"
#include "media/ladder.h"

#include <algorithm>

#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

// An EVENT master playlist for a job that is still running: bandwidths are the encoder's maximum
// rates; the finished package replaces it with measured ones and the real codecs.
std::string interim_master(const TranscodePlan &plan) {
  std::vector<media::Variant> variants;
  int audio_bps = plan.render.has_audio ? media::kDefaultAudioKbps * 1000 : 0;
  if (plan.render.has_video) {
    for (const auto &r : plan.render.renditions) {
      media::Variant v;
      v.uri = r.name + ".m3u8";
      v.bandwidth = static_cast<std::int64_t>(std::max(r.maxrate_kbps, r.bitrate_kbps)) * 1000 + audio_bps;
      v.width = r.width;
      v.height = r.height;
      v.frame_rate = plan.render.framerate;
      variants.push_back(v);
    }
  } else {
    media::Variant v;
    v.uri = "audio.m3u8";
    v.bandwidth = audio_bps;
    variants.push_back(v);
  }
  return media::write_master_playlist(variants);
}

} // namespace

void Scheduler::progressed(const std::string &job_id, const Progress &p) {
  auto i = active_.find(job_id);
  if (i == active_.end())
    return;
  i->second->progress = p;
  write_live_master(*i->second);
  i->second->live_changed();
  g_autoptr(JsonObject) o = json_object_new();
  json_object_set_string_member(o, "job", job_id.c_str());
  json_object_set_string_member(o, "video", i->second->job.video_id.c_str());
  detail::set_progress_members(o, p);
  json::Node n(json::object_node(static_cast<JsonObject *>(g_steal_pointer(&o))));
  events_.publish("progress", job_id, i->second->job.video_id, json::to_string(n.get(), false));
}

void Scheduler::announce_playable(const Active &a) {
  // Tell pages and players that the video can be watched now, while it is still being transcoded.
  g_autoptr(JsonObject) o = json_object_new();
  json_object_set_string_member(o, "id", a.job.video_id.c_str());
  json_object_set_string_member(o, "action", "playable");
  json_object_set_string_member(o, "job", a.job.id.c_str());
  if (url_speller_) {
    const std::string master(pipeline::output_info(a.transcode->plan().description.output).master);
    json_object_set_string_member(o, "hls", url_speller_(a.job.video_id, a.job.pipeline, master).c_str());
  }
  json::Node n(json::object_node(static_cast<JsonObject *>(g_steal_pointer(&o))));
  // A video event: streams filtered to the video get it, streams filtered to a job do not.
  events_.publish("video", "", a.job.video_id, json::to_string(n.get(), false));
}

void Scheduler::write_live_master(Active &a) {
  // The master of a running job appears once every media playlist it lists exists (each has its
  // first segment): a player that finds the master never meets a 404 for a rendition.
  if (a.master_written || !a.transcode || a.transcode->finishing())
    return;
  const auto &plan = a.transcode->plan();
  const pipeline::OutputInfo &output = pipeline::output_info(plan.description.output);
  const std::string master(output.master);
  if (output.kind == pipeline::OutputKind::Cmaf) {
    // The transcode splits what is complete and writes the master itself; not while a finished
    // package is still what is served (see live_dir()).
    if (fs::exists(fs::join(a.out, master)))
      return;
    if (a.transcode->update_live()) {
      a.master_written = true;
      announce_playable(a);
    }
    return;
  }
  if (output.kind != pipeline::OutputKind::Hls)
    return;
  std::vector<std::string> names;
  if (plan.render.has_video)
    for (const auto &r : plan.render.renditions)
      names.push_back(r.name);
  else
    names.push_back("audio");
  for (const auto &n : names)
    if (!fs::exists(fs::join(a.work, n + ".m3u8")))
      return;
  try {
    fs::write_atomic(fs::join(a.work, master), interim_master(plan));
    a.master_written = true;
    announce_playable(a);
  } catch (const Error &e) {
    GST_WARNING("cannot write the live master playlist of job %s: %s", a.job.id.c_str(), e.what());
  }
}

std::optional<std::string> Scheduler::live_dir(const std::string &video_id, const std::string &pipeline) const {
  for (const auto &[id, a] : active_)
    if (a->job.video_id == video_id && a->job.pipeline == pipeline && a->transcode) {
      // Streaming outputs (hls, cmaf) can be watched while they are written; others are shown once finished.
      // A cmaf job that replaces a finished package leaves that one served (HLS and DASH) until the new
      // one is done.
      const pipeline::OutputInfo &output = pipeline::output_info(a->transcode->plan().description.output);
      if (!output.streaming)
        return std::nullopt;
      if (output.kind == pipeline::OutputKind::Cmaf && fs::exists(fs::join(a->out, std::string(output.master))))
        return std::nullopt;
      // Being finished: served from the working folder until it is renamed into place.
      if (a->transcode->finishing() && !fs::exists(a->work))
        return std::nullopt;
      return a->work;
    }
  return std::nullopt;
}

} // namespace sluice::jobs
