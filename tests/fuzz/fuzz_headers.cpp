// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: what the server reads from request lines and fields. The input is read as a Range header
// (against files of several sizes), as the path of a media URL and as a ladder ("360p,540p:2000"), each with
// its own invariants: a range inside the file, no path segment that climbs or hides a separator, a ladder
// within its bounds that never plans a rendition larger than the source.
#include "core/error.h"
#include "http/files.h"
#include "media/ladder.h"
#include "pipeline/params.h"

#include "fuzz.h"

#include <cstdint>
#include <string>

namespace {

using sluice::Error;
using namespace sluice::http;
using namespace sluice::media;

void check_range(const std::string &header) {
  for (std::int64_t size :
       {std::int64_t{0}, std::int64_t{1}, std::int64_t{2}, std::int64_t{1000}, std::int64_t{1} << 33, INT64_MAX}) {
    ByteRange r{-7, -7};
    RangeKind kind = parse_range(header, size, r);
    if (kind == RangeKind::Satisfiable)
      FUZZ_CHECK(r.start >= 0 && r.start <= r.end && r.end < size, "'" + header + "' on " + std::to_string(size) +
                                                                       " bytes gave " + std::to_string(r.start) + "-" +
                                                                       std::to_string(r.end));
    else
      FUZZ_CHECK(r.start == -7 && r.end == -7, "a range that is not served was written out");
  }
}

void check_path(const std::string &encoded) {
  auto segments = split_path(encoded);
  if (!segments)
    return;
  FUZZ_CHECK(!segments->empty(), "no segment");
  std::string joined;
  for (const auto &s : *segments) {
    FUZZ_CHECK(!s.empty() && s != "." && s != "..", "a segment '" + s + "' from '" + encoded + "'");
    FUZZ_CHECK(s.find_first_of(std::string("/\\\0", 3)) == std::string::npos,
               "a segment with a separator or NUL from '" + encoded + "'");
    joined += (joined.empty() ? "" : "/") + s;
    (void)mime_type_for(s);
  }
  if (encoded.find('%') == std::string::npos)
    FUZZ_CHECK(joined == encoded, "a path without escapes changed: '" + encoded + "' -> '" + joined + "'");
}

void check_ladder(const std::string &spec) {
  std::vector<Rung> rungs;
  try {
    rungs = parse_ladder(spec);
  } catch (const Error &) {
    return;
  }
  FUZZ_CHECK(!rungs.empty() && rungs.size() <= kMaxRungs,
             "'" + spec + "' gave " + std::to_string(rungs.size()) + " rungs");
  int last = 0;
  for (const auto &r : rungs) {
    FUZZ_CHECK(r.short_side > last, "rungs out of order or repeated");
    last = r.short_side;
    FUZZ_CHECK(r.short_side >= 16 && r.short_side <= 4320 && r.short_side % 2 == 0, "a rung's size: " + r.name);
    FUZZ_CHECK(r.video_kbps >= 50 && r.video_kbps <= 100000, "a rung's bitrate: " + r.name);
    FUZZ_CHECK(sluice::pipeline::is_identifier(r.name), "a rung's name: " + r.name);
  }
  for (auto [w, h] :
       {std::pair{1920, 1080}, std::pair{1080, 1920}, std::pair{641, 359}, std::pair{100, 50}, std::pair{2, 2}}) {
    auto plan = plan_ladder(rungs, w, h);
    FUZZ_CHECK(!plan.empty() && plan.size() <= rungs.size(), "the plan's size");
    for (const auto &p : plan) {
      FUZZ_CHECK(p.width >= 2 && p.height >= 2 && p.width % 2 == 0 && p.height % 2 == 0,
                 p.name + ": " + std::to_string(p.width) + "x" + std::to_string(p.height));
      FUZZ_CHECK(p.width <= w && p.height <= h, p.name + " is larger than its source");
      FUZZ_CHECK(p.bitrate_kbps > 0 && sluice::pipeline::is_identifier(p.name), p.name);
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string text = sluice::fuzz::text_of(data, size);
  check_range(text);
  check_path(text);
  check_ladder(text);
  return 0;
}
