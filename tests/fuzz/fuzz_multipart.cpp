// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: the streaming multipart/form-data parser. Input: the Content-Type header's value, a newline,
// then the body. The body is parsed whole, byte by byte and in random chunks: the parts seen must not depend
// on how the body arrives.
#include "core/error.h"
#include "http/multipart.h"

#include "fuzz.h"

#include <cstdint>
#include <string>
#include <vector>

namespace {

using sluice::Error;
using sluice::http::MultipartHandler;
using sluice::http::MultipartParser;
using sluice::http::PartInfo;

struct Part {
  PartInfo info;
  std::string data;
  bool ended = false;
};

struct Outcome {
  std::vector<Part> parts;
  bool ok = false;
  std::string error;
};

bool same_info(const PartInfo &a, const PartInfo &b) {
  return a.name == b.name && a.filename == b.filename && a.content_type == b.content_type;
}

// chunking: 0 whole, 1 byte by byte, otherwise random chunk sizes from that seed.
Outcome parse(const std::string &boundary, const std::string &body, std::uint64_t chunking) {
  Outcome out;
  bool in_part = false;
  MultipartHandler h;
  h.begin = [&](const PartInfo &info) {
    FUZZ_CHECK(!in_part, "a part began inside another");
    FUZZ_CHECK(!info.name.empty(), "a part without a name was accepted");
    in_part = true;
    out.parts.push_back({info, "", false});
  };
  h.data = [&](const PartInfo &info, const char *data, std::size_t len) {
    FUZZ_CHECK(in_part, "data outside a part");
    FUZZ_CHECK(len > 0, "an empty data callback");
    FUZZ_CHECK(same_info(info, out.parts.back().info), "data of another part");
    out.parts.back().data.append(data, len);
  };
  h.end = [&](const PartInfo &info) {
    FUZZ_CHECK(in_part, "a part ended that had not begun");
    FUZZ_CHECK(same_info(info, out.parts.back().info), "the end of another part");
    in_part = false;
    out.parts.back().ended = true;
  };
  MultipartParser parser(boundary, h);
  sluice::fuzz::Rng rng(chunking);
  try {
    std::size_t pos = 0;
    while (pos < body.size()) {
      std::size_t n = body.size() - pos;
      if (chunking == 1)
        n = 1;
      else if (chunking > 1)
        n = 1 + rng.below(std::min<std::size_t>(n, boundary.size() + 8));
      parser.feed(body.data() + pos, n);
      pos += n;
    }
    parser.finish();
    out.ok = true;
  } catch (const Error &e) {
    out.error = e.what();
  }
  FUZZ_CHECK(out.ok == parser.complete(), "complete() disagrees with finish()");
  std::size_t data_bytes = 0;
  for (const auto &p : out.parts)
    data_bytes += p.data.size();
  FUZZ_CHECK(data_bytes <= body.size(), "more part data than body bytes");
  if (out.ok) {
    FUZZ_CHECK(!in_part, "finished inside a part");
    for (const auto &p : out.parts)
      FUZZ_CHECK(p.ended, "a part never ended");
  }
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  auto [content_type, body] = sluice::fuzz::first_line(sluice::fuzz::text_of(data, size));
  std::string boundary = "sluice-fuzz-boundary";
  try {
    boundary = MultipartParser::boundary_from_content_type(content_type);
    FUZZ_CHECK(!boundary.empty() && boundary.size() <= 70, "boundary length");
    for (char c : boundary)
      FUZZ_CHECK(c >= 0x20 && c <= 0x7e, "a boundary with a control or non-ASCII character");
  } catch (const Error &) {
    // Not a usable Content-Type: the body is still parsed, with a boundary of our own.
  }

  Outcome whole = parse(boundary, body, 0);
  for (std::uint64_t chunking : {std::uint64_t{1}, std::uint64_t{size + 2}}) {
    Outcome other = parse(boundary, body, chunking);
    FUZZ_CHECK(other.ok == whole.ok, "the outcome depends on the chunking: " + whole.error + " / " + other.error);
    FUZZ_CHECK(other.error == whole.error, "the error depends on the chunking: " + whole.error + " / " + other.error);
    if (!whole.ok)
      continue;
    FUZZ_CHECK(other.parts.size() == whole.parts.size(), "the number of parts depends on the chunking");
    for (std::size_t i = 0; i < whole.parts.size(); ++i) {
      FUZZ_CHECK(same_info(other.parts[i].info, whole.parts[i].info), "a part's headers depend on the chunking");
      FUZZ_CHECK(other.parts[i].data == whole.parts[i].data, "a part's data depends on the chunking");
    }
  }

  // A handler that refuses the first part (as the server does past its limits): the exception comes out of
  // feed(), and the parser takes no more input.
  MultipartHandler refusing;
  refusing.begin = [](const PartInfo &) { throw Error(sluice::ErrorCode::Invalid, "refused"); };
  MultipartParser parser(boundary, refusing);
  bool refused = false;
  try {
    parser.feed(body.data(), body.size());
  } catch (const Error &) {
    refused = true;
  }
  if (refused) {
    bool again = false;
    try {
      parser.feed("x", 1);
    } catch (const Error &) {
      again = true;
    }
    FUZZ_CHECK(again && !parser.complete(), "a failed parser accepted more input");
  }
  return 0;
}
