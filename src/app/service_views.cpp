// SPDX-License-Identifier: LGPL-2.1-or-later
// The service layer: the views of videos and health, media files, and signed playback.
#include "app/service.h"

#include "app/service_internal.h"
#include "core/fs.h"
#include "jobs/live_upload.h"
#include "jobs/stored.h"
#include "media/hls.h"
#include "pipeline/outputs.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace sluice::app {

using namespace detail;

namespace {

std::string media_key(const std::string &video_id, const std::string &folder, const std::vector<std::string> &inside) {
  std::string key = video_id + "/" + folder;
  for (const auto &s : inside)
    key += "/" + s;
  return key;
}

// The version of a finished package: its folder, renamed into place when it was published.
std::string folder_version(const std::string &dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0)
    return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llx%llx%lx", static_cast<unsigned long long>(st.st_ino),
                static_cast<unsigned long long>(st.st_mtim.tv_sec), static_cast<long>(st.st_mtim.tv_nsec));
  return buf;
}

// Per pipeline, the package prefix in storage of its newest succeeded job that recorded one (jobs newest first).
std::map<std::string, std::string> stored_prefixes(const std::vector<store::Job> &jobs) {
  std::map<std::string, std::string> out;
  for (const auto &j : jobs)
    if (j.state == store::JobState::Succeeded && !out.count(j.pipeline))
      if (std::string prefix = jobs::stored_prefix(j.result_json); !prefix.empty())
        out.emplace(j.pipeline, prefix);
  return out;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Views

std::optional<VideoView> Service::video(const std::string &video_id) {
  auto v = store::is_id(video_id) ? store_.video(video_id) : std::nullopt;
  if (!v)
    return std::nullopt;
  return view(*v);
}

std::vector<VideoView> Service::videos() {
  std::vector<VideoView> out;
  for (const auto &v : store_.videos())
    out.push_back(view(v));
  return out;
}

VideoView Service::view(const store::Video &v) {
  store::JobFilter f;
  f.video_id = v.id;
  return view(v, store_.jobs(f));
}

VideoView Service::view(const store::Video &v, std::vector<store::Job> jobs) {
  VideoView out;
  out.video = v;
  out.jobs = std::move(jobs);
  // The video's state is that of its latest streaming job (hls, cmaf): posters and the like do not
  // make a video playable.
  out.state = "uploaded";
  for (const auto &j : out.jobs) {
    auto kind = scheduler_.output_kind(j.pipeline);
    if (kind && !pipeline::output_info(*kind).streaming)
      continue;
    switch (j.state) {
    case store::JobState::Queued: out.state = "queued"; break;
    case store::JobState::Running: out.state = "processing"; break;
    case store::JobState::Succeeded: out.state = "ready"; break;
    case store::JobState::Failed: out.state = "failed"; break;
    case store::JobState::Canceled: out.state = "canceled"; break;
    }
    break;
  }
  // What can be fetched, newest job first, one package per pipeline.
  std::set<std::string> seen;
  const auto stored = scheduler_.storage() ? stored_prefixes(out.jobs) : std::map<std::string, std::string>{};
  for (const auto &j : out.jobs) {
    const std::string &p = j.pipeline;
    if (!seen.insert(p).second)
      continue;
    Package pkg;
    pkg.pipeline = p;
    pkg.kind = scheduler_.output_kind(p);
    std::string dir = scheduler_.layout().output_dir(v.id, p);
    // A description that is gone is taken for a streaming package (what its folder most likely holds).
    const auto &info = pipeline::output_info(pkg.kind.value_or(pipeline::OutputKind::Hls));
    if (info.streaming) {
      // A running job is served from its working folder (playable once its master exists: every
      // rendition has a first segment), else the finished package. (A cmaf job that replaces a
      // finished package has no working folder served: see Scheduler::live_dir.)
      const std::string master(info.master), manifest(info.manifest);
      auto work = scheduler_.live_dir(v.id, p);
      const bool in_storage = !work && stored.count(p); // every streaming package has its master (and cmaf its MPD)
      pkg.growing = work && fs::exists(fs::join(*work, master));
      if (pkg.growing || in_storage || (!work && fs::exists(fs::join(dir, master))))
        pkg.hls = master;
      // DASH: the MPD of a finished package that has one.
      if (!manifest.empty() && !work && (in_storage || fs::exists(fs::join(dir, manifest))))
        pkg.dash = manifest;
    } else if (const std::string file(info.artifact_file); stored.count(p) || fs::exists(fs::join(dir, file))) {
      pkg.artifact = file;
    }
    out.packages.push_back(std::move(pkg));
  }
  return out;
}

HealthView Service::health() {
  HealthView h;
  try {
    h.readable = store_.ping();
  } catch (const Error &) {
  }
  // Reads go on when the catalog cannot be written (read-only, immutable, full): a real write tells, at most one
  // every few seconds, else the outcome of the latest write, so that health stays cheap however often it is asked.
  h.writable = h.readable && store_.writable();
  h.unsaved_jobs = scheduler_.unsaved_count();
  h.free_bytes = scheduler_.free_space();
  h.min_free_bytes = config_.min_free_space;
  h.accepting = accepting_;
  if (h.readable) {
    h.queued = store_.count_jobs(store::JobState::Queued);
    h.running = scheduler_.running_count();
  }
  h.slots = config_.slots();
  return h;
}

// ---------------------------------------------------------------------------------------------
// Media files

namespace {

// A versioned URL's version ("vN"): its package's prefix is known without the catalog.
bool is_version(const std::string &pinned) {
  return pinned.size() > 1 && pinned[0] == 'v' &&
         std::all_of(pinned.begin() + 1, pinned.end(), [](char c) { return g_ascii_isdigit(c); });
}

std::string key_under(const std::string &prefix, const std::vector<std::string> &inside) {
  std::string key = prefix;
  for (std::size_t i = 0; i < inside.size(); ++i)
    key += (i ? "/" : "") + inside[i];
  return key;
}

Failure no_file(const char *what = "no such file") {
  return refused(Refusal::NotFound, what);
}

} // namespace

std::optional<Result<MediaFile>> Service::media_file_now(const std::string &video_id, const std::string &folder,
                                                         const std::vector<std::string> &inside, bool want_version,
                                                         const std::string &pinned) {
  // Only files inside an output folder: no listing, no upload, no working or old folders by name.
  // (No catalog lookup: a deleted video's row goes before its folder, and without the folder there is
  // nothing to serve.)
  if (inside.empty() || !pipeline::is_identifier(folder) || folder == "source")
    return no_file();
  const std::string videos = scheduler_.layout().videos_dir();
  MediaFile out;
  if (auto live = scheduler_.live_dir(video_id, folder)) {
    // A running job: its playlists are EVENT playlists, and only listed segments exist yet.
    auto path = fs::resolve_under(*live, inside, videos);
    if (!path)
      return no_file();
    out.path = *path;
    out.running = true;
    const std::string &name = inside.back();
    if (!g_str_has_suffix(name.c_str(), ".m3u8")) {
      std::string rel;
      for (std::size_t i = 0; i < inside.size(); ++i)
        rel += (i ? "/" : "") + inside[i];
      bool listed = false;
      for (const auto &f : fs::list_dir(*live)) {
        if (!g_str_has_suffix(f.c_str(), ".m3u8") || f == "master.m3u8")
          continue;
        try {
          auto pl = media::parse_media_playlist(fs::read_file(fs::join(*live, f)));
          for (const auto &s : pl.segments)
            listed = listed || s.uri == rel;
          listed = listed || (!pl.map_uri.empty() && pl.map_uri == rel); // a CMAF init segment
        } catch (const Error &) {
        }
        if (listed)
          break;
      }
      if (!listed)
        return no_file("no such file (yet)");
    }
    return out;
  }
  if (scheduler_.storage()) {
    // A finished package in storage: the version a versioned URL names (no catalog), else the one the catalog
    // records (media_file_of, with the video's jobs). (The segments were checked by split_path: safe names, so the
    // key is a storage key.)
    if (!is_version(pinned))
      return std::nullopt;
    const std::string prefix = jobs::video_prefix(video_id) + folder + "/" + pinned + "/";
    out.key = key_under(prefix, inside);
    out.version = jobs::package_version(prefix, video_id, folder);
    return out;
  }
  return local_media_file(video_id, folder, inside, want_version);
}

Result<MediaFile> Service::media_file_of(const std::string &video_id, const std::string &folder,
                                         const std::vector<std::string> &inside, bool want_version,
                                         const std::vector<store::Job> &jobs) {
  MediaFile out;
  auto stored = stored_prefixes(jobs);
  // A streaming job of this pipeline running in another process: the live playlists its attempt uploads
  // (jobs/live_upload.h: only uploaded segments are listed). As with live_dir, a cmaf job that replaces a
  // finished package leaves that one served.
  const auto kind = scheduler_.output_kind(folder);
  const store::Job *running = nullptr;
  if (kind && pipeline::output_info(*kind).streaming && !(*kind == pipeline::OutputKind::Cmaf && stored.count(folder)))
    for (const auto &j : jobs)
      if (j.pipeline == folder && j.state == store::JobState::Running && j.token > 0) {
        running = &j;
        break;
      }
  std::string prefix;
  if (running) {
    prefix = jobs::live_prefix(video_id, folder, running->id, running->token);
    out.running = true;
  } else if (auto it = stored.find(folder); it != stored.end()) {
    prefix = it->second;
  }
  if (prefix.empty()) // none recorded: a package made before [storage] was set is served from the data folder
    return local_media_file(video_id, folder, inside, want_version);
  out.key = key_under(prefix, inside);
  if (!out.running)
    out.version = jobs::package_version(prefix, video_id, folder);
  return out;
}

Result<MediaFile> Service::local_media_file(const std::string &video_id, const std::string &folder,
                                            const std::vector<std::string> &inside, bool want_version) {
  // A finished package: the folder may not lead out of the videos folder (a link to /etc serves nothing).
  // What was found is remembered (serving checks the file itself again every time).
  MediaFile out;
  const std::string dir = scheduler_.layout().output_dir(video_id, folder);
  const std::string key = media_key(video_id, folder, inside);
  if (auto it = resolved_.find(key); it != resolved_.end()) {
    out.path = it->second;
  } else {
    auto path = fs::resolve_under(dir, inside, scheduler_.layout().videos_dir());
    if (!path)
      return no_file();
    if (resolved_.size() > 50000)
      resolved_.clear();
    resolved_.emplace(key, *path);
    out.path = *path;
  }
  if (want_version)
    out.version = folder_version(dir);
  return out;
}

Result<MediaFile> Service::media_file_from_catalog(const std::string &video_id, const std::string &folder,
                                                   const std::vector<std::string> &inside, bool want_version) {
  store::JobFilter f;
  f.video_id = video_id;
  return media_file_of(video_id, folder, inside, want_version, store_.jobs(f));
}

void Service::media_file_later(const std::string &video_id, const std::string &folder,
                               const std::vector<std::string> &inside, bool want_version,
                               std::function<void(Result<MediaFile>)> done) {
  // The video's jobs on the executor (a store call never blocks the loop), the file named from them on the loop.
  executor().run(
      [video_id](store::Store &s) {
        store::JobFilter f;
        f.video_id = video_id;
        return s.jobs(f);
      },
      [this, alive = alive_, video_id, folder, inside, want_version,
       done = std::move(done)](store::Outcome<std::vector<store::Job>> &o) {
        if (!*alive)
          return done(shutting_down());
        if (!o.ok())
          return done(failure_of(*o.error));
        done(media_file_of(video_id, folder, inside, want_version, *o.value));
      });
}

void Service::set_playback_policy(const std::string &video_id, const std::string &policy,
                                  std::function<void(Result<VideoView>)> done) {
  if (!accepting_)
    return done(shutting_down());
  if (policy != "public" && policy != "signed")
    return done(
        refused(Refusal::InvalidParameter, "field 'playback_policy': expected public or signed", "playback_policy"));
  // Written, then the video read back, on the executor; remembered and announced on the loop.
  using Row = std::optional<std::pair<store::Video, std::vector<store::Job>>>;
  executor().run(
      [video_id, policy](store::Store &s) -> std::pair<bool, Row> {
        if (!store::is_id(video_id) || !s.set_playback_policy(video_id, policy))
          return {false, std::nullopt};
        auto v = s.video(video_id);
        if (!v)
          return {true, std::nullopt};
        store::JobFilter f;
        f.video_id = video_id;
        return {true, std::make_pair(std::move(*v), s.jobs(f))};
      },
      [this, alive = alive_, video_id, policy, done](store::Outcome<std::pair<bool, Row>> &o) {
        if (!*alive)
          return done(shutting_down());
        if (!o.ok())
          return done(failure_of(*o.error));
        auto &[written, row] = *o.value;
        if (!written)
          return done(refused(Refusal::NotFound, "no video " + video_id));
        signed_[video_id] = policy == "signed";
        SLUICE_LOG(app_log(), Info, "video %s: playback policy %s", video_id.c_str(), policy.c_str());
        publish_video_event(events_, video_id, "updated");
        if (!row)
          return done(refused(Refusal::NotFound, "no video " + video_id));
        done(view(row->first, std::move(row->second)));
      });
}

Result<PlaybackToken> Service::playback_token(const std::string &video_id, std::int64_t ttl_s) {
  if (ttl_s < 1 || ttl_s > 86400)
    return refused(Refusal::InvalidParameter, "field 'ttl': expected seconds from 1 to 86400", "ttl");
  PlaybackToken t;
  t.expires_s = g_get_real_time() / G_USEC_PER_SEC + ttl_s;
  t.token = playback_keys_.sign(video_id, t.expires_s);
  return t;
}

Playback Service::playback(const std::string &video_id, const std::string &token) {
  auto it = signed_.find(video_id);
  if (it == signed_.end()) {
    auto v = store_.video(video_id);
    if (!v)
      return Playback::NoVideo;
    if (signed_.size() > 100000)
      signed_.clear();
    it = signed_.emplace(video_id, v->playback_policy == "signed").first;
  }
  if (!it->second)
    return Playback::Open;
  return !token.empty() && playback_keys_.verify(token, video_id, g_get_real_time() / G_USEC_PER_SEC)
             ? Playback::Signed
             : Playback::Forbidden;
}

void Service::forget_media_file(const std::string &video_id, const std::string &folder,
                                const std::vector<std::string> &inside) {
  resolved_.erase(media_key(video_id, folder, inside));
}

} // namespace sluice::app
