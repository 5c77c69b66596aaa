// SPDX-License-Identifier: LGPL-2.1-or-later
// A live stream's HLS output: sliding media playlists, deletion of what left them, the master playlist.
#include "live/playlist.h"

#include "core/error.h"
#include "core/fs.h"
#include "media/dash.h"
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
#include <set>
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
  const bool fmp4 =
      std::any_of(pl.segments.begin(), pl.segments.end(), [](const LiveSegment &s) { return !s.map.empty(); });
  o << "#EXTM3U\n#EXT-X-VERSION:" << (fmp4 ? 7 : 3) << "\n#EXT-X-TARGETDURATION:" << pl.target_duration
    << "\n#EXT-X-MEDIA-SEQUENCE:" << pl.media_sequence << "\n";
  if (pl.discontinuity_sequence > 0)
    o << "#EXT-X-DISCONTINUITY-SEQUENCE:" << pl.discontinuity_sequence << "\n";
  const std::string *map = nullptr;
  for (const auto &s : pl.segments) {
    if (s.discontinuity)
      o << "#EXT-X-DISCONTINUITY\n";
    if (!s.map.empty() && (!map || *map != s.map))
      o << "#EXT-X-MAP:URI=\"" << s.map << "\"\n";
    map = &s.map;
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

namespace {

// How often players fetch a dynamic MPD again: half a segment, at least 1 s (at most a segment). A player learns of a
// segment only from the MPD (a SegmentTimeline), so the period adds to when it can fetch it; at a segment, a player
// near the live edge (dash.js joining a stream younger than the suggested delay plays from its first segment) can
// run dry waiting for the next refresh.
double update_period(double segment_s) { return std::min(segment_s, std::max(1.0, segment_s / 2)); }

double seconds(std::uint64_t ticks, std::uint32_t timescale) {
  return timescale ? static_cast<double>(ticks) / timescale : 0.0;
}

} // namespace

std::string write_live_mpd(const LiveMpd &m) {
  // Every listed segment by session: its start and end in seconds from availabilityStartTime.
  std::map<int, std::pair<double, double>> span; // session -> (earliest start, latest end)
  for (const auto &t : m.tracks)
    for (const auto &s : *t.segments) {
      auto at = m.session_start_us.find(s.session);
      if (at == m.session_start_us.end() || !s.timescale)
        continue;
      const double origin = static_cast<double>(at->second - m.availability_start_us) / G_USEC_PER_SEC;
      const double a = origin + seconds(s.decode_time, s.timescale), b = a + seconds(s.ticks, s.timescale);
      auto [it, fresh] = span.emplace(s.session, std::make_pair(a, b));
      if (!fresh)
        it->second = {std::min(it->second.first, a), std::max(it->second.second, b)};
    }
  // Where each Period starts (from availabilityStartTime): where its session's running time began, but never
  // before the end of the Period before it. A static MPD starts at its first listed segment.
  const double first = span.empty() ? 0.0 : span.begin()->second.first;
  std::map<int, double> start;
  double end = 0.0, previous_end = -1e300;
  for (const auto &[session, range] : span) {
    const double origin =
        static_cast<double>(m.session_start_us.at(session) - m.availability_start_us) / G_USEC_PER_SEC;
    double at = std::max(origin, previous_end);
    if (m.ended)
      at = std::max(at, first);
    start[session] = at;
    previous_end = range.second;
    end = std::max(end, range.second);
  }
  const double base = m.ended ? first : 0.0; // static Periods count from the first segment

  std::ostringstream o;
  o.imbue(std::locale::classic());
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"";
  if (m.ended)
    o << " type=\"static\" mediaPresentationDuration=\"" << media::iso_duration(end - base) << "\"";
  else
    o << " type=\"dynamic\" availabilityStartTime=\"" << format_date(m.availability_start_us) << "\" publishTime=\""
      << format_date(m.publish_us) << "\" minimumUpdatePeriod=\"" << media::iso_duration(update_period(m.segment_s))
      << "\" timeShiftBufferDepth=\"" << media::iso_duration(m.window_s) << "\" suggestedPresentationDelay=\""
      << media::iso_duration(3 * m.segment_s) << "\"";
  o << " minBufferTime=\"" << media::iso_duration(m.segment_s) << "\">\n";
  for (const auto &[session, at] : start) {
    const double origin =
        static_cast<double>(m.session_start_us.at(session) - m.availability_start_us) / G_USEC_PER_SEC;
    o << "  <Period id=\"s" << session << "\" start=\"" << media::iso_duration(std::max(0.0, at - base)) << "\">\n";
    int set_id = 0;
    for (const bool video : {true, false}) {
      std::ostringstream reps;
      int max_w = 0, max_h = 0;
      std::string frame_rate;
      for (const auto &t : m.tracks) {
        if (t.video != video)
          continue;
        std::vector<const LiveSegment *> segs;
        for (const auto &s : *t.segments)
          if (s.session == session && s.timescale)
            segs.push_back(&s);
        if (segs.empty())
          continue;
        const media::Mp4Track &track = segs.front()->track;
        const std::uint32_t ts = segs.front()->timescale;
        max_w = std::max(max_w, track.width);
        max_h = std::max(max_h, track.height);
        if (frame_rate.empty())
          frame_rate = t.frame_rate;
        // The media time at the Period's start.
        const auto pto = static_cast<std::uint64_t>(std::llround(std::max(0.0, at - origin) * ts));
        reps << "      <Representation id=\"" << t.id << "\" bandwidth=\"" << t.bandwidth << "\" codecs=\""
             << track.codecs << "\"";
        if (video)
          reps << " width=\"" << track.width << "\" height=\"" << track.height << "\" sar=\"1:1\"";
        else
          reps << " audioSamplingRate=\"" << track.sample_rate << "\"";
        reps << ">\n";
        if (!video && track.channels > 0)
          reps << "        <AudioChannelConfiguration "
                  "schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\""
               << track.channels << "\"/>\n";
        reps << "        <SegmentTemplate timescale=\"" << ts << "\" presentationTimeOffset=\"" << pto
             << "\" initialization=\"" << segs.front()->map << "\" media=\"" << t.id << "/" << session
             << "-$Number%05d$.m4s\" startNumber=\"" << segs.front()->number << "\">\n"
             << "          <SegmentTimeline>\n";
        std::uint64_t expected = 0;
        for (std::size_t i = 0; i < segs.size();) {
          std::size_t j = i + 1;
          // A run of segments of one duration that follow one another (numbers too): one S with a repeat count.
          while (j < segs.size() && segs[j]->ticks == segs[i]->ticks && segs[j]->number == segs[j - 1]->number + 1 &&
                 segs[j]->decode_time == segs[j - 1]->decode_time + segs[j - 1]->ticks)
            ++j;
          reps << "            <S";
          if (i == 0 || segs[i]->decode_time != expected)
            reps << " t=\"" << segs[i]->decode_time << "\"";
          reps << " d=\"" << segs[i]->ticks << "\"";
          if (j - i > 1)
            reps << " r=\"" << (j - i - 1) << "\"";
          reps << "/>\n";
          expected = segs[j - 1]->decode_time + segs[j - 1]->ticks;
          i = j;
        }
        reps << "          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n";
      }
      if (reps.tellp() == 0)
        continue;
      o << "    <AdaptationSet id=\"" << set_id++ << "\" contentType=\"" << (video ? "video" : "audio")
        << "\" mimeType=\"" << (video ? "video/mp4" : "audio/mp4") << "\" segmentAlignment=\"true\" startWithSAP=\"1\"";
      if (video) {
        o << " maxWidth=\"" << max_w << "\" maxHeight=\"" << max_h << "\"";
        if (!frame_rate.empty())
          o << " frameRate=\"" << frame_rate << "\"";
      }
      o << ">\n" << reps.str() << "    </AdaptationSet>\n";
    }
    o << "  </Period>\n";
  }
  if (!m.ended && !m.time_url.empty())
    o << "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"" << m.time_url << "\"/>\n";
  o << "</MPD>\n";
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
  session_start_us_.clear();
  availability_start_us_ = 0;
  master_written_ = false;
  ended_ = false;
}

void Output::begin(const std::vector<pipeline::RenditionSpec> &renditions_in, double frame_rate, bool audio,
                   int session, bool cmaf, int segment_seconds) {
  std::vector<pipeline::RenditionSpec> renditions = renditions_in;
  if (cmaf && audio) {
    pipeline::RenditionSpec a;
    a.name = "audio";
    a.bitrate_kbps = media::kDefaultAudioKbps;
    renditions.push_back(a);
  }
  bool same = !renditions_.empty() && renditions_.size() == renditions.size() && audio == audio_ && cmaf == cmaf_;
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
  cmaf_ = cmaf;
  segment_seconds_ = std::max(1, segment_seconds);
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
  segment.session = session;
  if (cmaf_ && segment.timescale && !session_start_us_.count(session) && segment.date_us > 0) {
    // The wall time of the session's running time 0, from its first segment; the first one starts the presentation.
    const std::int64_t start = segment.date_us - static_cast<std::int64_t>(static_cast<double>(segment.decode_time) *
                                                                           G_USEC_PER_SEC / segment.timescale);
    session_start_us_[session] = start;
    if (!availability_start_us_)
      availability_start_us_ = start;
  }
  if (!segment.map.empty() && (r.inits.empty() || r.inits.back() != segment.map))
    r.inits.push_back(segment.map);
  r.playlist.target_duration = std::max(r.playlist.target_duration, static_cast<int>(std::lround(segment.duration)));
  r.playlist.segments.push_back(std::move(segment));
  while (r.playlist.segments.size() > window_) {
    if (r.playlist.segments.front().discontinuity)
      r.playlist.discontinuity_sequence++;
    r.stale.push_back(std::move(r.playlist.segments.front()));
    r.playlist.segments.pop_front();
    r.playlist.media_sequence++;
  }
  write_playlist(r);
  while (r.stale.size() > keep_extra_) {
    if (unlink(fs::join(dir_, r.stale.front().uri).c_str()) != 0 && errno != ENOENT)
      GST_WARNING("cannot delete %s: %s", r.stale.front().uri.c_str(), g_strerror(errno));
    r.stale.pop_front();
  }
  forget_inits(r);
  if (!master_written_ && std::all_of(renditions_.begin(), renditions_.end(),
                                      [](const Rendition &x) { return !x.playlist.segments.empty(); })) {
    if (cmaf_)
      write_master_cmaf();
    else
      write_master();
  }
  if (cmaf_ && master_written_)
    write_mpd();
}

void Output::forget_inits(Rendition &r) {
  // An init segment goes once no segment on disk plays with it (the newest one stays).
  while (r.inits.size() > 1) {
    const std::string &init = r.inits.front();
    auto uses = [&init](const LiveSegment &s) { return s.map == init; };
    if (std::any_of(r.stale.begin(), r.stale.end(), uses) ||
        std::any_of(r.playlist.segments.begin(), r.playlist.segments.end(), uses))
      break;
    if (unlink(fs::join(dir_, init).c_str()) != 0 && errno != ENOENT)
      GST_WARNING("cannot delete %s: %s", init.c_str(), g_strerror(errno));
    r.inits.pop_front();
  }
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
  if (cmaf_ && master_written_)
    write_mpd(); // static now
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

void Output::write_master_cmaf() {
  // The audio as an alternative rendition every variant plays with; the codecs from the tracks' movie headers.
  const Rendition *audio = nullptr;
  for (const auto &r : renditions_)
    if (r.spec.name == "audio" && r.spec.width == 0)
      audio = &r;
  std::vector<media::Variant> variants;
  std::vector<media::MediaRendition> media;
  const std::int64_t audio_bps = audio ? static_cast<std::int64_t>(audio->spec.bitrate_kbps) * 1000 : 0;
  const std::string audio_codecs = audio ? audio->playlist.segments.front().track.codecs : "";
  for (const auto &r : renditions_) {
    if (&r == audio)
      continue;
    media::Variant v;
    v.uri = r.spec.name + ".m3u8";
    v.bandwidth = static_cast<std::int64_t>(std::max(r.spec.maxrate_kbps, r.spec.bitrate_kbps)) * 1000 + audio_bps;
    v.width = r.spec.width;
    v.height = r.spec.height;
    v.frame_rate = frame_rate_;
    v.codecs = r.playlist.segments.front().track.codecs;
    if (audio && !audio_codecs.empty())
      v.codecs += (v.codecs.empty() ? "" : ",") + audio_codecs;
    if (audio)
      v.audio_group = "audio";
    variants.push_back(v);
  }
  if (audio) {
    media::MediaRendition m;
    m.group_id = "audio";
    m.name = "audio";
    m.uri = "audio.m3u8";
    m.channels = audio->playlist.segments.front().track.channels;
    media.push_back(m);
  }
  write_replace(fs::join(dir_, "master.m3u8"), media::write_master_playlist(variants, media, 7));
  master_written_ = true;
}

void Output::write_mpd() {
  LiveMpd m;
  m.availability_start_us = availability_start_us_;
  m.publish_us = g_get_real_time();
  m.session_start_us = session_start_us_;
  m.segment_s = segment_seconds_;
  m.window_s = static_cast<double>(window_) * segment_seconds_;
  m.ended = ended_;
  m.time_url = time_url_;
  for (const auto &r : renditions_) {
    LiveMpdTrack t;
    t.id = r.spec.name;
    t.video = r.spec.width > 0;
    t.bandwidth = static_cast<std::int64_t>(std::max(r.spec.maxrate_kbps, r.spec.bitrate_kbps)) * 1000;
    t.frame_rate = t.video ? media::frame_rate_string(frame_rate_) : "";
    t.segments = &r.playlist.segments;
    m.tracks.push_back(t);
  }
  write_replace(fs::join(dir_, "manifest.mpd"), write_live_mpd(m));
}

} // namespace sluice::live
