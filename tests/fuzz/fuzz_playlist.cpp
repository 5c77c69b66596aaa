// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: the playlist and manifest rewriting the server does when it serves a package. The input is
// read as an HLS media playlist, rewritten as VOD, EVENT and as it was (what a reader takes from the rewrite is
// what it took from the original, and rewriting is stable), and as an MPD whose segment URLs get a version
// query.
#include "core/error.h"
#include "media/dash.h"
#include "media/hls.h"

#include "fuzz.h"

#include <cmath>
#include <cstdint>
#include <string>

namespace {

using sluice::Error;
using namespace sluice::media;

int count(const std::string &haystack, const std::string &needle) {
  int n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + needle.size()))
    n++;
  return n;
}

bool same_duration(double a, double b) {
  if (std::isnan(a) || std::isnan(b))
    return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b))
    return a == b;
  return std::fabs(a - b) <= 1e-6 + std::fabs(a) * 1e-12;
}

// What the writer can carry: a URI line that ends in CR loses it to the reader (CRLF line ends), and
// "%.6f" has room for durations below 1e20 only. Playlists sluice serves come from hlssink2 and the split.
bool writable(const MediaPlaylist &pl) {
  for (const auto &s : pl.segments)
    if (s.uri.back() == '\r' || (std::isfinite(s.duration) && std::fabs(s.duration) >= 1e20))
      return false;
  return true;
}

void check_playlist(const std::string &text) {
  MediaPlaylist pl;
  try {
    pl = parse_media_playlist(text);
  } catch (const Error &) {
    return;
  }
  for (const auto &s : pl.segments)
    FUZZ_CHECK(!s.uri.empty() && s.uri[0] != '#', "a segment URI '" + s.uri + "'");
  (void)pl.total_duration();
  const bool check = writable(pl);
  for (const char *type : {"VOD", "EVENT", ""}) {
    std::string written = write_media_playlist(pl, type);
    MediaPlaylist again;
    try {
      again = parse_media_playlist(written);
    } catch (const Error &e) {
      FUZZ_CHECK(false, "a rewritten playlist does not read back: " + std::string(e.what()) + "\n" + written);
    }
    FUZZ_CHECK(again.playlist_type == type, "the playlist type of the rewrite");
    FUZZ_CHECK(again.endlist == (std::string(type) == "VOD" || (!*type && pl.endlist)), "ENDLIST of the rewrite");
    if (!check)
      continue;
    FUZZ_CHECK(again.segments.size() == pl.segments.size(), "the rewrite has other segments:\n" + written);
    FUZZ_CHECK(again.map_uri == pl.map_uri && again.media_sequence == pl.media_sequence, "the rewrite's header");
    for (std::size_t i = 0; i < pl.segments.size(); ++i) {
      FUZZ_CHECK(again.segments[i].uri == pl.segments[i].uri, "segment URI " + pl.segments[i].uri);
      FUZZ_CHECK(same_duration(again.segments[i].duration, pl.segments[i].duration),
                 "segment duration " + std::to_string(pl.segments[i].duration));
    }
    FUZZ_CHECK(write_media_playlist(again, type) == written, "rewriting is not stable:\n" + written);
  }
}

void check_mpd(const std::string &text) {
  const std::string query = "v=0123abcd";
  std::string out = version_mpd_urls(text, query);
  if (text.find(" media=\"") == std::string::npos && text.find(" initialization=\"") == std::string::npos)
    FUZZ_CHECK(out == text, "an MPD without templates changed");
  if (text.find(query) != std::string::npos)
    return;
  // It only inserts the version: without it, the MPD is the original.
  std::string removed = out;
  for (const std::string &added : {"&amp;" + query, "?" + query})
    for (auto pos = removed.find(added); pos != std::string::npos; pos = removed.find(added, pos))
      removed.erase(pos, added.size());
  FUZZ_CHECK(removed == text, "the MPD changed beyond its URLs:\n" + out);
  FUZZ_CHECK(count(out, query) <= count(text, " media=\"") + count(text, " initialization=\""),
             "more versions than templates");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string text = sluice::fuzz::text_of(data, size);
  check_playlist(text);
  check_mpd(text);
  return 0;
}
