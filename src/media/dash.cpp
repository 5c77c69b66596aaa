// SPDX-License-Identifier: LGPL-2.1-or-later
// The MPD writer.
#include "media/dash.h"

#include <glib.h>

#include <cmath>
#include <locale>
#include <numeric>
#include <sstream>

namespace sluice::media {

std::string iso_duration(double seconds) {
  if (!(seconds > 0) || !std::isfinite(seconds))
    seconds = 0;
  long long ms = std::llround(seconds * 1000.0);
  long long h = ms / 3600000, m = ms / 60000 % 60;
  double s = (ms % 60000) / 1000.0;
  std::ostringstream o;
  o.imbue(std::locale::classic());
  o << "PT";
  if (h)
    o << h << "H";
  if (m)
    o << m << "M";
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd(buf, sizeof buf, "%.3f", s);
  o << buf << "S";
  return o.str();
}

std::string frame_rate_string(double fps) {
  if (!(fps > 0) || !std::isfinite(fps))
    return "";
  long long whole = std::llround(fps);
  if (std::fabs(fps - whole) < 0.001)
    return std::to_string(whole);
  // NTSC rates: N * 1000 / 1001
  long long ntsc = std::llround(fps * 1001.0 / 1000.0);
  if (std::fabs(fps - ntsc * 1000.0 / 1001.0) < 0.001)
    return std::to_string(ntsc * 1000) + "/1001";
  long long milli = std::llround(fps * 1000.0);
  long long g = std::gcd(milli, 1000LL);
  return std::to_string(milli / g) + "/" + std::to_string(1000 / g);
}

namespace {

std::string xml_escape(const std::string &s) {
  g_autofree char *e = g_markup_escape_text(s.c_str(), -1);
  return e;
}

void write_timeline(std::ostringstream &o, const FragmentedMp4 &mp4, const char *indent) {
  o << indent << "<SegmentTimeline>\n";
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < mp4.fragments.size();) {
    const auto &f = mp4.fragments[i];
    std::size_t j = i + 1;
    // A run of segments of the same duration that follow one another: one S with a repeat count.
    while (j < mp4.fragments.size() && mp4.fragments[j].duration == f.duration &&
           mp4.fragments[j].decode_time == mp4.fragments[j - 1].decode_time + mp4.fragments[j - 1].duration)
      ++j;
    o << indent << "  <S";
    if (i == 0 || f.decode_time != expected)
      o << " t=\"" << f.decode_time << "\"";
    o << " d=\"" << f.duration << "\"";
    if (j - i > 1)
      o << " r=\"" << (j - i - 1) << "\"";
    o << "/>\n";
    expected = mp4.fragments[j - 1].decode_time + mp4.fragments[j - 1].duration;
    i = j;
  }
  o << indent << "</SegmentTimeline>\n";
}

} // namespace

std::string version_mpd_urls(const std::string &mpd, const std::string &query) {
  std::string out;
  out.reserve(mpd.size() + 256);
  std::size_t pos = 0;
  while (true) {
    std::size_t a = mpd.find(" initialization=\"", pos), b = mpd.find(" media=\"", pos);
    std::size_t at = std::min(a, b);
    if (at == std::string::npos)
      break;
    std::size_t value = mpd.find('"', at) + 1;
    std::size_t end = mpd.find('"', value);
    if (end == std::string::npos)
      break;
    std::string uri = mpd.substr(value, end - value);
    out.append(mpd, pos, value - pos);
    // '&' is written as an entity inside an XML attribute.
    out += uri + (uri.find('?') == std::string::npos ? "?" : "&amp;") + query;
    pos = end;
  }
  out.append(mpd, pos, std::string::npos);
  return out;
}

std::string write_mpd(const std::vector<DashAdaptationSet> &sets, double duration, double min_buffer) {
  std::ostringstream o;
  o.imbue(std::locale::classic());
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" "
       "type=\"static\" mediaPresentationDuration=\""
    << iso_duration(duration) << "\" minBufferTime=\"" << iso_duration(min_buffer) << "\">\n"
    << "  <Period id=\"0\" start=\"PT0S\">\n";
  int set_id = 0;
  for (const auto &set : sets) {
    bool video = set.content_type == "video";
    o << "    <AdaptationSet id=\"" << set_id++ << "\" contentType=\"" << set.content_type << "\" mimeType=\""
      << (video ? "video/mp4" : "audio/mp4") << "\" segmentAlignment=\"" << (set.segment_alignment ? "true" : "false")
      << "\" startWithSAP=\"1\"";
    if (video) {
      int max_w = 0, max_h = 0;
      for (const auto &r : set.representations) {
        max_w = std::max(max_w, r.mp4->track.width);
        max_h = std::max(max_h, r.mp4->track.height);
      }
      o << " maxWidth=\"" << max_w << "\" maxHeight=\"" << max_h << "\"";
      if (!set.representations.empty() && !set.representations.front().frame_rate.empty())
        o << " frameRate=\"" << set.representations.front().frame_rate << "\"";
    }
    if (!set.language.empty())
      o << " lang=\"" << xml_escape(set.language) << "\"";
    o << ">\n";
    for (const auto &r : set.representations) {
      const auto &t = r.mp4->track;
      o << "      <Representation id=\"" << xml_escape(r.id) << "\" bandwidth=\"" << r.bandwidth << "\" codecs=\""
        << xml_escape(t.codecs) << "\"";
      if (video)
        o << " width=\"" << t.width << "\" height=\"" << t.height << "\" sar=\"1:1\"";
      else
        o << " audioSamplingRate=\"" << t.sample_rate << "\"";
      o << ">\n";
      if (!video && t.channels > 0)
        o << "        <AudioChannelConfiguration "
             "schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\""
          << t.channels << "\"/>\n";
      o << "        <SegmentTemplate timescale=\"" << t.timescale
        << "\" initialization=\"$RepresentationID$/init.mp4\" media=\"$RepresentationID$/seg_$Number%05d$.m4s\" "
           "startNumber=\"1\"";
      o << ">\n";
      write_timeline(o, *r.mp4, "          ");
      o << "        </SegmentTemplate>\n      </Representation>\n";
    }
    o << "    </AdaptationSet>\n";
  }
  o << "  </Period>\n</MPD>\n";
  return o.str();
}

} // namespace sluice::media
