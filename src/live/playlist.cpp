// SPDX-License-Identifier: LGPL-2.1-or-later
// A live stream's HLS output: sliding media playlists, deletion of what left them, the master playlist.
#include "live/playlist.h"

#include "core/error.h"
#include "core/fs.h"
#include "media/h264.h"
#include "media/hls.h"
#include "media/ladder.h"

#include <gst/gst.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <locale>
#include <sstream>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

std::string format_date(std::int64_t unix_us) {
  GDateTime *t = g_date_time_new_from_unix_utc(unix_us / G_USEC_PER_SEC);
  if (!t)
    return "";
  gchar *s = g_date_time_format(t, "%Y-%m-%dT%H:%M:%S");
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03d", static_cast<int>((unix_us % G_USEC_PER_SEC) / 1000));
  std::string out = std::string(s ? s : "") + ms + "Z";
  g_free(s);
  g_date_time_unref(t);
  return out;
}

std::string write_live_playlist(const LivePlaylist &pl) {
  std::ostringstream o;
  o.imbue(std::locale::classic());
  o << "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:" << pl.target_duration
    << "\n#EXT-X-MEDIA-SEQUENCE:" << pl.media_sequence << "\n";
  if (pl.discontinuity_sequence > 0)
    o << "#EXT-X-DISCONTINUITY-SEQUENCE:" << pl.discontinuity_sequence << "\n";
  for (const auto &s : pl.segments) {
    if (s.discontinuity)
      o << "#EXT-X-DISCONTINUITY\n";
    if (s.date_us > 0)
      o << "#EXT-X-PROGRAM-DATE-TIME:" << format_date(s.date_us) << "\n";
    char d[G_ASCII_DTOSTR_BUF_SIZE];
    g_ascii_formatd(d, sizeof d, "%.3f", s.duration);
    o << "#EXTINF:" << d << ",\n" << s.uri << "\n";
  }
  if (pl.ended)
    o << "#EXT-X-ENDLIST\n";
  return o.str();
}

void write_replace(const std::string &path, const std::string &contents) {
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(ErrorCode::Io, "cannot write " + tmp + ": " + g_strerror(errno));
  const char *p = contents.data();
  std::size_t left = contents.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      const int e = errno;
      close(fd);
      unlink(tmp.c_str());
      throw Error(ErrorCode::Io, "cannot write " + tmp + ": " + g_strerror(e));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    throw Error(ErrorCode::Io, "cannot rename " + tmp + ": " + g_strerror(e));
  }
}

Output::Output(std::string dir, int window_segments, int keep_extra)
    : dir_(std::move(dir)), window_(static_cast<std::size_t>(std::max(3, window_segments))),
      keep_extra_(static_cast<std::size_t>(std::max(0, keep_extra))) {}

bool Output::has_segments() const {
  return std::any_of(renditions_.begin(), renditions_.end(),
                     [](const Rendition &r) { return !r.playlist.segments.empty(); });
}

void Output::clear() {
  for (const auto &name : fs::list_dir(dir_))
    fs::remove_all(fs::join(dir_, name));
  renditions_.clear();
  master_written_ = false;
  ended_ = false;
}

void Output::begin(const std::vector<pipeline::RenditionSpec> &renditions, double frame_rate, bool audio, int session) {
  bool same = !renditions_.empty() && renditions_.size() == renditions.size() && audio == audio_;
  for (std::size_t i = 0; same && i < renditions.size(); i++) {
    const auto &a = renditions_[i].spec;
    const auto &b = renditions[i];
    same = a.name == b.name && a.width == b.width && a.height == b.height && a.bitrate_kbps == b.bitrate_kbps;
  }
  ended_ = false;
  if (same) {
    for (auto &r : renditions_)
      r.playlist.ended = false;
    return;
  }
  // The first ladder since the server started, or another input size: a fresh output.
  clear();
  fs::make_dirs(dir_);
  for (const auto &spec : renditions) {
    Rendition r;
    r.spec = spec;
    renditions_.push_back(std::move(r));
  }
  frame_rate_ = frame_rate;
  audio_ = audio;
  first_session_ = session;
}

void Output::add(std::size_t index, int session, LiveSegment segment) {
  if (index >= renditions_.size() || session < first_session_ || session < renditions_[index].session) {
    // Late: a newer ladder of this rendition has been listed already.
    unlink(fs::join(dir_, segment.uri).c_str());
    return;
  }
  Rendition &r = renditions_[index];
  if (r.session != 0 && session != r.session)
    segment.discontinuity = true;
  r.session = session;
  r.playlist.target_duration = std::max(r.playlist.target_duration, static_cast<int>(std::lround(segment.duration)));
  r.playlist.segments.push_back(std::move(segment));
  while (r.playlist.segments.size() > window_) {
    if (r.playlist.segments.front().discontinuity)
      r.playlist.discontinuity_sequence++;
    r.stale.push_back(r.playlist.segments.front().uri);
    r.playlist.segments.pop_front();
    r.playlist.media_sequence++;
  }
  write_playlist(r);
  while (r.stale.size() > keep_extra_) {
    if (unlink(fs::join(dir_, r.stale.front()).c_str()) != 0 && errno != ENOENT)
      GST_WARNING("cannot delete %s: %s", r.stale.front().c_str(), g_strerror(errno));
    r.stale.pop_front();
  }
  if (!master_written_ && std::all_of(renditions_.begin(), renditions_.end(),
                                      [](const Rendition &x) { return !x.playlist.segments.empty(); }))
    write_master();
}

void Output::end() {
  if (!has_segments())
    return;
  ended_ = true;
  for (auto &r : renditions_) {
    r.playlist.ended = true;
    if (!r.playlist.segments.empty())
      write_playlist(r);
  }
}

void Output::write_playlist(const Rendition &r) const {
  write_replace(fs::join(dir_, r.spec.name + ".m3u8"), write_live_playlist(r.playlist));
}

void Output::write_master() {
  std::vector<media::Variant> variants;
  const std::int64_t audio_bps = audio_ ? media::kDefaultAudioKbps * 1000 : 0;
  for (const auto &r : renditions_) {
    media::Variant v;
    v.uri = r.spec.name + ".m3u8";
    v.bandwidth = static_cast<std::int64_t>(std::max(r.spec.maxrate_kbps, r.spec.bitrate_kbps)) * 1000 + audio_bps;
    v.width = r.spec.width;
    v.height = r.spec.height;
    v.frame_rate = frame_rate_;
    // The codec string of what the encoder really made (profile and level), read from the first segment.
    try {
      if (auto sps = media::find_sps_ts_file(fs::join(dir_, r.playlist.segments.front().uri)))
        v.codecs = media::avc1_codec(*sps) + (audio_ ? ",mp4a.40.2" : "");
    } catch (const Error &e) {
      GST_WARNING("cannot read %s: %s", r.playlist.segments.front().uri.c_str(), e.what());
    }
    variants.push_back(v);
  }
  write_replace(fs::join(dir_, "master.m3u8"), media::write_master_playlist(variants));
  master_written_ = true;
}

} // namespace sluice::live
