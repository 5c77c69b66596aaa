// SPDX-License-Identifier: LGPL-2.1-or-later
// HLS playlist reading and writing (RFC 8216).
#include "media/hls.h"

#include "media/h264.h"

#include "core/error.h"
#include "core/fs.h"

#include <glib.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace sluice::media {

double MediaPlaylist::total_duration() const {
  double t = 0.0;
  for (const auto &s : segments)
    t += s.duration;
  return t;
}

static bool starts_with(const std::string &s, const char *p) {
  return s.rfind(p, 0) == 0;
}

MediaPlaylist parse_media_playlist(const std::string &text) {
  MediaPlaylist pl;
  std::istringstream in(text);
  std::string line;
  bool first = true;
  double pending = -1.0;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (first) {
      if (line != "#EXTM3U")
        throw Error(ErrorCode::Invalid, "not an HLS playlist (no #EXTM3U)");
      first = false;
      continue;
    }
    if (line.empty())
      continue;
    if (starts_with(line, "#EXT-X-VERSION:"))
      pl.version = std::atoi(line.c_str() + 15);
    else if (starts_with(line, "#EXT-X-TARGETDURATION:"))
      pl.target_duration = std::atoi(line.c_str() + 22);
    else if (starts_with(line, "#EXT-X-MEDIA-SEQUENCE:"))
      pl.media_sequence = g_ascii_strtoll(line.c_str() + 22, nullptr, 10);
    else if (starts_with(line, "#EXT-X-PLAYLIST-TYPE:"))
      pl.playlist_type = line.substr(21);
    else if (line == "#EXT-X-ENDLIST")
      pl.endlist = true;
    else if (starts_with(line, "#EXT-X-MAP:")) {
      auto at = line.find("URI=\"");
      auto end = at == std::string::npos ? at : line.find('"', at + 5);
      if (end == std::string::npos)
        throw Error(ErrorCode::Invalid, "EXT-X-MAP without a URI");
      pl.map_uri = line.substr(at + 5, end - at - 5);
    } else if (starts_with(line, "#EXTINF:"))
      pending = g_ascii_strtod(line.c_str() + 8, nullptr);
    else if (line[0] == '#')
      continue;
    else {
      if (pending < 0)
        throw Error(ErrorCode::Invalid, "playlist entry '" + line + "' has no #EXTINF");
      pl.segments.push_back({line, pending, -1});
      pending = -1.0;
    }
  }
  if (first)
    throw Error(ErrorCode::Invalid, "empty playlist");
  return pl;
}

void complete_last_segment(MediaPlaylist &pl, const std::string &dir) {
  if (pl.segments.empty() || !pl.map_uri.empty())
    return; // fMP4 (CMAF) playlists are written by sluice from the fragments: exact already
  Segment &last = pl.segments.back();
  if (last.uri.find('/') != std::string::npos || last.uri.find("..") != std::string::npos)
    return;
  std::string data;
  try {
    data = fs::read_file(fs::join(dir, last.uri));
  } catch (const Error &) {
    return; // measure() says it is missing
  }
  auto span = ts_presentation_span(data);
  if (!span || span->frames < 2)
    return;
  double measured = span->end - span->start;
  if (measured > 0 && std::fabs(measured - last.duration) <= 0.5)
    last.duration = measured;
}

std::string write_media_playlist(const MediaPlaylist &pl, const std::string &type) {
  double longest = 0.0;
  for (const auto &s : pl.segments)
    longest = std::max(longest, s.duration);
  // RFC 8216 4.3.3.1: every EXTINF, rounded to the nearest integer, is at most the target duration.
  int target = std::max({1, pl.target_duration, static_cast<int>(std::lround(longest))});
  std::ostringstream o;
  o.imbue(std::locale::classic());
  // EXT-X-MAP on a playlist without I-frames only needs version 6; CMAF packages declare 7.
  o << "#EXTM3U\n#EXT-X-VERSION:" << (pl.map_uri.empty() ? 3 : 7) << "\n#EXT-X-TARGETDURATION:" << target
    << "\n#EXT-X-MEDIA-SEQUENCE:" << pl.media_sequence << "\n";
  if (!type.empty())
    o << "#EXT-X-PLAYLIST-TYPE:" << type << "\n";
  o << "#EXT-X-INDEPENDENT-SEGMENTS\n";
  if (!pl.map_uri.empty())
    o << "#EXT-X-MAP:URI=\"" << pl.map_uri << "\"\n";
  for (const auto &s : pl.segments) {
    char d[G_ASCII_DTOSTR_BUF_SIZE];
    g_ascii_formatd(d, sizeof d, "%.6f", s.duration);
    o << "#EXTINF:" << d << ",\n" << s.uri << "\n";
  }
  if (type == "VOD" || (type.empty() && pl.endlist))
    o << "#EXT-X-ENDLIST\n";
  return o.str();
}

VariantStats measure(MediaPlaylist &pl, const std::string &dir) {
  VariantStats st;
  double longest = 0.0;
  for (const auto &s : pl.segments)
    longest = std::max(longest, s.duration);
  for (auto &s : pl.segments) {
    if (s.uri.find('/') != std::string::npos || s.uri.find("..") != std::string::npos)
      throw Error(ErrorCode::Invalid, "unexpected segment URI " + s.uri);
    s.size = fs::file_size(fs::join(dir, s.uri));
    if (s.size < 0)
      throw Error(ErrorCode::Io, "segment " + s.uri + " is missing");
    st.bytes += s.size;
    st.duration += s.duration;
    // A very short last segment (a keyframe and little else) would give a meaningless peak: segments
    // count from one second or half the longest one, whichever is less, or when there is nothing else.
    if (s.duration > 0 && (s.duration >= std::min(1.0, longest / 2) || pl.segments.size() == 1))
      st.peak_bps = std::max(st.peak_bps, static_cast<std::int64_t>(std::ceil(s.size * 8.0 / s.duration)));
  }
  if (st.duration > 0)
    st.average_bps = static_cast<std::int64_t>(std::ceil(st.bytes * 8.0 / st.duration));
  st.peak_bps = std::max(st.peak_bps, st.average_bps);
  return st;
}

std::string write_master_playlist(const std::vector<Variant> &variants, const std::vector<MediaRendition> &media,
                                  int version) {
  std::ostringstream o;
  o.imbue(std::locale::classic());
  o << "#EXTM3U\n#EXT-X-VERSION:" << version << "\n#EXT-X-INDEPENDENT-SEGMENTS\n";
  for (const auto &m : media) {
    o << "#EXT-X-MEDIA:TYPE=" << m.type << ",GROUP-ID=\"" << m.group_id << "\",NAME=\"" << m.name << "\"";
    if (!m.language.empty())
      o << ",LANGUAGE=\"" << m.language << "\"";
    o << ",DEFAULT=" << (m.is_default ? "YES" : "NO") << ",AUTOSELECT=YES";
    if (m.channels > 0)
      o << ",CHANNELS=\"" << m.channels << "\"";
    o << ",URI=\"" << m.uri << "\"\n";
  }
  auto sorted = variants;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Variant &a, const Variant &b) { return a.bandwidth < b.bandwidth; });
  for (const auto &v : sorted) {
    // AVERAGE-BANDWIDTH and CODECS are left out while unknown (the master of a running job).
    o << "#EXT-X-STREAM-INF:BANDWIDTH=" << v.bandwidth;
    if (v.average_bandwidth > 0)
      o << ",AVERAGE-BANDWIDTH=" << v.average_bandwidth;
    if (v.width > 0 && v.height > 0)
      o << ",RESOLUTION=" << v.width << "x" << v.height;
    if (v.frame_rate > 0) {
      char fr[G_ASCII_DTOSTR_BUF_SIZE];
      g_ascii_formatd(fr, sizeof fr, "%.3f", v.frame_rate);
      o << ",FRAME-RATE=" << fr;
    }
    if (!v.codecs.empty())
      o << ",CODECS=\"" << v.codecs << "\"";
    if (!v.audio_group.empty())
      o << ",AUDIO=\"" << v.audio_group << "\"";
    o << "\n" << v.uri << "\n";
  }
  return o.str();
}

} // namespace sluice::media
