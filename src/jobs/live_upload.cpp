// SPDX-License-Identifier: LGPL-2.1-or-later
// A running job's live playlists in object storage, mirrored from its working folder by a thread.
#include "jobs/live_upload.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "jobs/stored.h"
#include "media/hls.h"

#include <glib.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <vector>

namespace sluice::jobs {

namespace {

log::Category *cat() {
  return log::category("sluice-storage", "sluice object storage");
}

constexpr const char *kLive = "live-";

} // namespace

std::string live_prefix(const std::string &video_id, const std::string &pipeline, const std::string &job_id,
                        std::int64_t token) {
  return video_prefix(video_id) + pipeline + "/" + kLive + job_id + "-" + std::to_string(token) + "/";
}

struct LiveUpload::State {
  State(storage::Storage &st) : storage(st) {}
  storage::Storage &storage;
  std::string work, master, video_id, pipeline, job_id, prefix;
  std::mutex mutex;
  std::condition_variable wake;
  bool dirty = false, stopped = false, ended = false;
  // Only the thread touches these.
  std::set<std::string> uploaded;               // segment URIs (relative to the working folder) in storage
  std::map<std::string, std::string> playlists; // media playlist name -> the text in storage
  std::string master_text;

  bool halted() {
    std::lock_guard lock(mutex);
    return stopped || ended;
  }
};

namespace {

using State = LiveUpload::State;

// Uploads a listed segment once; false while it is not in storage (not uploaded now, or halted).
bool put_once(State &s, const std::string &uri) {
  if (s.uploaded.count(uri))
    return true;
  if (s.halted())
    return false;
  const std::string key = s.prefix + uri;
  try {
    storage::check_key(key); // a listed name that is not a clean relative path is never read or uploaded
    s.storage.put_file(key, fs::join(s.work, uri), storage::content_type_for(key));
  } catch (const Error &e) {
    if (!s.halted())
      SLUICE_LOG(cat(), Warning, "job %s: cannot upload the live segment %s: %s", s.job_id.c_str(), uri.c_str(),
                 e.what());
    return false;
  }
  s.uploaded.insert(uri);
  return true;
}

// A media playlist: its segments first, in order, then the playlist listing those that are in storage.
void sync_playlist(State &s, const std::string &name) {
  media::MediaPlaylist pl;
  try {
    pl = media::parse_media_playlist(fs::read_file(fs::join(s.work, name)));
  } catch (const Error &) {
    return; // gone, or being written: the next look finds it
  }
  if (!pl.map_uri.empty() && !put_once(s, pl.map_uri))
    return;
  std::vector<media::Segment> stored;
  for (const auto &seg : pl.segments) {
    if (!put_once(s, seg.uri))
      break;
    stored.push_back(seg);
  }
  if (stored.empty())
    return;
  pl.segments = std::move(stored);
  pl.endlist = false;
  std::string text = media::write_media_playlist(pl, "EVENT");
  std::string &in_storage = s.playlists[name];
  if (in_storage == text || s.halted())
    return;
  try {
    s.storage.put_bytes(s.prefix + name, text, storage::content_type_for(name));
    in_storage = std::move(text);
  } catch (const Error &e) {
    SLUICE_LOG(cat(), Warning, "job %s: cannot upload the live playlist %s: %s", s.job_id.c_str(), name.c_str(),
               e.what());
  }
}

// The playlists a master names: its URI lines and URI="..." attributes.
std::vector<std::string> named_playlists(const std::string &master) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < master.size()) {
    std::size_t end = master.find('\n', pos);
    if (end == std::string::npos)
      end = master.size();
    std::string line = master.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.empty())
      continue;
    if (line[0] != '#') {
      out.push_back(line);
      continue;
    }
    for (auto at = line.find("URI=\""); at != std::string::npos; at = line.find("URI=\"", at + 5)) {
      auto close = line.find('"', at + 5);
      if (close == std::string::npos)
        break;
      out.push_back(line.substr(at + 5, close - at - 5));
    }
  }
  return out;
}

// The master, once every playlist it names is in storage with a segment.
void sync_master(State &s) {
  std::string text;
  try {
    text = fs::read_file(fs::join(s.work, s.master));
  } catch (const Error &) {
    return;
  }
  if (text == s.master_text || text.find("#EXTM3U") != 0)
    return;
  for (const auto &uri : named_playlists(text))
    if (auto it = s.playlists.find(uri); it == s.playlists.end() || it->second.empty())
      return;
  if (s.halted())
    return;
  try {
    s.storage.put_bytes(s.prefix + s.master, text, storage::content_type_for(s.master));
    s.master_text = std::move(text);
    SLUICE_LOG(cat(), Info, "job %s: live playlists in %s%s", s.job_id.c_str(), s.storage.describe().c_str(),
               s.prefix.c_str());
  } catch (const Error &e) {
    SLUICE_LOG(cat(), Warning, "job %s: cannot upload the live master playlist: %s", s.job_id.c_str(), e.what());
  }
}

void scan(State &s) {
  std::vector<std::string> names;
  try {
    names = fs::list_dir(s.work);
  } catch (const Error &) {
    return;
  }
  for (const auto &name : names)
    if (g_str_has_suffix(name.c_str(), ".m3u8") && name != s.master)
      sync_playlist(s, name);
  sync_master(s);
}

// The prefixes of the job's earlier attempts (one that died, or lost its lease, leaves its own).
void remove_earlier(State &s) {
  const std::string folder = video_prefix(s.video_id) + s.pipeline + "/";
  try {
    std::set<std::string> earlier;
    for (const auto &o : s.storage.list(folder + kLive + s.job_id + "-")) {
      auto slash = o.key.find('/', folder.size());
      if (slash != std::string::npos && o.key.compare(0, s.prefix.size(), s.prefix) != 0)
        earlier.insert(o.key.substr(0, slash + 1));
    }
    for (const auto &p : earlier) {
      std::size_t n = s.storage.remove_prefix(p);
      SLUICE_LOG(cat(), Info, "job %s: %zu objects of an earlier attempt's live playlists removed (%s)",
                 s.job_id.c_str(), n, p.c_str());
    }
  } catch (const std::exception &e) {
    SLUICE_LOG(cat(), Warning, "job %s: cannot remove earlier live playlists: %s", s.job_id.c_str(), e.what());
  }
}

void run(const std::shared_ptr<State> &s) {
  remove_earlier(*s);
  for (;;) {
    {
      std::unique_lock lock(s->mutex);
      s->wake.wait(lock, [&] { return s->ended || (s->dirty && !s->stopped); });
      if (s->ended)
        break;
      s->dirty = false;
    }
    scan(*s);
  }
  if (s->uploaded.empty() && s->playlists.empty())
    return;
  try {
    std::size_t n = s->storage.remove_prefix(s->prefix);
    SLUICE_LOG(cat(), Info, "job %s: %zu objects of its live playlists removed", s->job_id.c_str(), n);
  } catch (const std::exception &e) {
    // Left for the next attempt, or the package's publishing (which removes the pipeline's other prefixes).
    SLUICE_LOG(cat(), Warning, "job %s: cannot remove its live playlists %s: %s", s->job_id.c_str(), s->prefix.c_str(),
               e.what());
  }
}

} // namespace

LiveUpload::LiveUpload(storage::Storage &storage, std::string work, std::string master, std::string video_id,
                       std::string pipeline, std::string job_id, std::int64_t token)
    : state_(std::make_shared<State>(storage)) {
  state_->prefix = live_prefix(video_id, pipeline, job_id, token);
  state_->work = std::move(work);
  state_->master = std::move(master);
  state_->video_id = std::move(video_id);
  state_->pipeline = std::move(pipeline);
  state_->job_id = std::move(job_id);
  try {
    std::thread([s = state_] { run(s); }).detach();
  } catch (const std::system_error &e) {
    // The job runs on; other processes cannot show it while it does.
    SLUICE_LOG(cat(), Warning, "job %s: cannot start the thread of its live playlists: %s", state_->job_id.c_str(),
               e.what());
  }
}

LiveUpload::~LiveUpload() {
  end();
}

void LiveUpload::poke() {
  std::lock_guard lock(state_->mutex);
  if (state_->dirty || state_->stopped || state_->ended)
    return;
  state_->dirty = true;
  state_->wake.notify_one();
}

void LiveUpload::stop() {
  std::lock_guard lock(state_->mutex);
  state_->stopped = true;
}

void LiveUpload::end() {
  std::lock_guard lock(state_->mutex);
  state_->stopped = state_->ended = true;
  state_->wake.notify_one();
}

const std::string &LiveUpload::prefix() const {
  return state_->prefix;
}

} // namespace sluice::jobs
