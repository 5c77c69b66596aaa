// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the streaming multipart/form-data parser: any chunking, binary data, limits and errors.

#include "core/error.h"
#include "http/multipart.h"

#include <gtest/gtest.h>

#include "check.h"

#include <algorithm>
#include <cstddef>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using sluice::Error;
using sluice::ErrorCode;
using sluice::http::MultipartHandler;
using sluice::http::MultipartParser;
using sluice::http::PartInfo;
using sluice::test::contains;
using sluice::test::expect_error;

struct Part {
  PartInfo info;
  std::string data;
  bool ended = false;
  bool operator==(const Part &o) const {
    return info.name == o.info.name && info.filename == o.info.filename && info.content_type == o.info.content_type &&
           data == o.data && ended == o.ended;
  }
};

// Records parts and checks that the callbacks come in begin, data*, end order with the same PartInfo.
struct Collector {
  std::vector<Part> parts;
  std::size_t data_calls = 0;
  std::size_t largest_data_call = 0;

  MultipartHandler handler() {
    MultipartHandler h;
    h.begin = [this](const PartInfo &info) {
      EXPECT_TRUE(parts.empty() || parts.back().ended) << "begin before the previous part ended";
      parts.push_back({info, "", false});
    };
    h.data = [this](const PartInfo &info, const char *data, std::size_t len) {
      EXPECT_FALSE(parts.empty());
      EXPECT_FALSE(parts.back().ended);
      EXPECT_EQ(info.name, parts.back().info.name);
      EXPECT_GT(len, 0u) << "empty data callback";
      parts.back().data.append(data, len);
      data_calls++;
      largest_data_call = std::max(largest_data_call, len);
    };
    h.end = [this](const PartInfo &info) {
      EXPECT_FALSE(parts.empty());
      EXPECT_EQ(info.name, parts.back().info.name);
      parts.back().ended = true;
    };
    return h;
  }
};

// Parses body fed in the given chunk sizes (the rest in one chunk) and finishes.
std::vector<Part> parse(const std::string &boundary, const std::string &body, const std::vector<std::size_t> &sizes) {
  Collector c;
  MultipartParser parser(boundary, c.handler());
  std::size_t pos = 0;
  for (std::size_t n : sizes) {
    n = std::min(n, body.size() - pos);
    parser.feed(body.data() + pos, n);
    pos += n;
  }
  parser.feed(body.data() + pos, body.size() - pos);
  parser.finish();
  EXPECT_TRUE(parser.complete());
  return c.parts;
}

std::vector<Part> parse_whole(const std::string &boundary, const std::string &body) {
  return parse(boundary, body, {});
}

// Parses body and returns the error thrown by feed() or finish().
Error parse_error(const std::string &boundary, const std::string &body, std::size_t max_header = 16 * 1024) {
  return expect_error([&] {
    Collector c;
    MultipartParser parser(boundary, c.handler(), max_header);
    parser.feed(body.data(), body.size());
    parser.finish();
  });
}

const std::string kBoundary = "----sluiceBoundary7MA4YWxk";

std::string field(const std::string &name, const std::string &value) {
  return "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n";
}

std::string file_part(const std::string &name, const std::string &filename, const std::string &type,
                      const std::string &data) {
  return "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"; filename=\"" + filename +
         "\"\r\nContent-Type: " + type + "\r\n\r\n" + data + "\r\n";
}

std::string closing() {
  return "--" + kBoundary + "--\r\n";
}

// Binary data full of near-misses: CR, LF, CRLF, "--", and prefixes of the delimiter cut at every length.
std::string tricky_data() {
  std::string d = "\r\n\r\n--\r\r\n-\n--" + kBoundary.substr(0, 5) + std::string("\0\xff", 2);
  d += "\n--" + kBoundary + "\r--" + kBoundary; // a boundary after a bare LF or CR is data
  std::string delim = "\r\n--" + kBoundary;
  for (std::size_t n = 1; n < delim.size(); n++)
    d += delim.substr(0, n) + std::string(1, static_cast<char>(n)) + "x";
  d += std::string("\0\0\r", 3) + "--" + kBoundary; // "--boundary" not preceded by CRLF is data
  d += "\r\n-";
  return d;
}

std::string sample_body() {
  return "preamble to ignore\r\n" + field("title", "A \"quoted\" title") +
         file_part("file", "clip.mp4", "video/mp4", tricky_data()) + file_part("empty", "zero.bin", "", "") +
         field("note", "") + closing() + "epilogue\r\n--" + kBoundary + "\r\nignored";
}

TEST(MultipartBoundary, FromContentType) {
  EXPECT_EQ(MultipartParser::boundary_from_content_type("multipart/form-data; boundary=abc"), "abc");
  EXPECT_EQ(MultipartParser::boundary_from_content_type("Multipart/Form-Data;BOUNDARY=\"a b:c?\""), "a b:c?");
  EXPECT_EQ(MultipartParser::boundary_from_content_type(
                "multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            "----WebKitFormBoundary7MA4YWxkTrZu0gW");
  EXPECT_EQ(MultipartParser::boundary_from_content_type("  multipart/form-data ; boundary = x1 ; foo=bar"), "x1");
  EXPECT_EQ(MultipartParser::boundary_from_content_type("multipart/form-data; boundary=" + std::string(70, 'b')),
            std::string(70, 'b'));
}

TEST(MultipartBoundary, Rejected) {
  auto e = expect_error([] { MultipartParser::boundary_from_content_type("application/json"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "expected multipart/form-data")) << e.what();
  e = expect_error([] { MultipartParser::boundary_from_content_type(""); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  e = expect_error([] { MultipartParser::boundary_from_content_type("multipart/mixed; boundary=abc"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  e = expect_error([] { MultipartParser::boundary_from_content_type("multipart/form-data"); });
  EXPECT_TRUE(contains(e.what(), "no boundary")) << e.what();
  e = expect_error([] { MultipartParser::boundary_from_content_type("multipart/form-data; charset=utf-8"); });
  EXPECT_TRUE(contains(e.what(), "no boundary")) << e.what();
  e = expect_error(
      [] { MultipartParser::boundary_from_content_type("multipart/form-data; boundary=" + std::string(71, 'b')); });
  EXPECT_TRUE(contains(e.what(), "at most 70")) << e.what();
  e = expect_error([] { MultipartParser::boundary_from_content_type("multipart/form-data; boundary=\"\""); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  e = expect_error([] { MultipartParser::boundary_from_content_type("multipart/form-data; boundary=\"abc"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  e = expect_error([] { MultipartParser::boundary_from_content_type("multipart/form-data; boundary=\"a\rb\""); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  e = expect_error([] { MultipartParser::boundary_from_content_type("multipart/form-data; boundary=\"ab \""); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  // The constructor checks the boundary too.
  e = expect_error([] { MultipartParser("a\r\nb", MultipartHandler{}); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
}

TEST(Multipart, FieldsAndFiles) {
  auto parts = parse_whole(kBoundary, sample_body());
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[0].info.name, "title");
  EXPECT_EQ(parts[0].info.filename, "");
  EXPECT_EQ(parts[0].info.content_type, "");
  EXPECT_EQ(parts[0].data, "A \"quoted\" title");
  EXPECT_EQ(parts[1].info.name, "file");
  EXPECT_EQ(parts[1].info.filename, "clip.mp4");
  EXPECT_EQ(parts[1].info.content_type, "video/mp4");
  EXPECT_EQ(parts[1].data, tricky_data());
  EXPECT_EQ(parts[2].info.name, "empty");
  EXPECT_EQ(parts[2].info.filename, "zero.bin");
  EXPECT_EQ(parts[2].data, "");
  EXPECT_EQ(parts[3].info.name, "note");
  EXPECT_EQ(parts[3].data, "");
  for (const auto &p : parts)
    EXPECT_TRUE(p.ended);
}

TEST(Multipart, EverySplitPointGivesTheSameParts) {
  const std::string body = sample_body();
  const auto expected = parse_whole(kBoundary, body);
  for (std::size_t i = 0; i <= body.size(); i++)
    ASSERT_EQ(parse(kBoundary, body, {i}), expected) << "split at " << i;
  // Three chunks: every pair of split points around the file part's data.
  std::size_t from = body.find("clip.mp4"), to = from + 120;
  for (std::size_t i = from; i < to; i++)
    for (std::size_t j = 1; j < 90; j++)
      ASSERT_EQ(parse(kBoundary, body, {i, j}), expected) << "splits at " << i << " and " << i + j;
  // One byte at a time.
  ASSERT_EQ(parse(kBoundary, body, std::vector<std::size_t>(body.size(), 1)), expected);
}

TEST(Multipart, RandomChunkSizesGiveTheSameParts) {
  std::mt19937 rng(20240611);
  std::string big(300 * 1024, '\0');
  for (auto &c : big)
    c = static_cast<char>(rng() % 4 == 0 ? "\r\n-"[rng() % 3] : rng());
  // Sprinkle delimiter prefixes of every length through the data.
  const std::string delim = "\r\n--" + kBoundary;
  for (std::size_t pos = 100, n = 1; pos + delim.size() < big.size(); pos += 997, n = n % (delim.size() - 1) + 1)
    big.replace(pos, n, delim.substr(0, n));
  const std::string body =
      field("a", "1") + file_part("upload", "big.bin", "application/octet-stream", big) + field("b", "2") + closing();
  const auto expected = parse_whole(kBoundary, body);
  ASSERT_EQ(expected.size(), 3u);
  ASSERT_EQ(expected[1].data, big);
  for (int round = 0; round < 60; round++) {
    std::vector<std::size_t> sizes;
    std::size_t total = 0;
    std::size_t max = round % 3 == 0 ? 8 : round % 3 == 1 ? 200 : 70000;
    while (total < body.size()) {
      sizes.push_back(rng() % max + 1);
      total += sizes.back();
    }
    ASSERT_EQ(parse(kBoundary, body, sizes), expected) << "round " << round;
  }
}

TEST(Multipart, DataStreamsWithoutBeingAccumulated) {
  const std::size_t chunk = 64 * 1024;
  const std::string head =
      "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n\r\n";
  Collector c;
  std::size_t first_data_at_feed = 0, feeds = 0;
  MultipartHandler h = c.handler();
  auto data = h.data;
  h.data = [&](const PartInfo &info, const char *d, std::size_t len) {
    if (c.data_calls == 0)
      first_data_at_feed = feeds;
    data(info, d, len);
  };
  MultipartParser parser(kBoundary, h);
  parser.feed(head.data(), head.size());
  std::string block(chunk, 'x');
  const std::size_t blocks = 128; // 8 MiB
  for (std::size_t i = 0; i < blocks; i++) {
    feeds++;
    block[i % chunk] = '\r'; // a CR somewhere in each block
    parser.feed(block.data(), block.size());
  }
  const std::string tail = "\r\n" + closing();
  parser.feed(tail.data(), tail.size());
  parser.finish();
  ASSERT_EQ(c.parts.size(), 1u);
  EXPECT_EQ(c.parts[0].data.size(), chunk * blocks);
  EXPECT_EQ(first_data_at_feed, 1u) << "data must be delivered as it arrives";
  EXPECT_LE(c.largest_data_call, chunk);
  EXPECT_GE(c.data_calls, blocks);
}

TEST(Multipart, HeaderDetails) {
  const std::string body = "--" + kBoundary + " \t\r\n" + // transport padding after the boundary
                           "content-disposition:form-data;name=plain;FILENAME=\"a \\\"q\\\" \\\\ b.txt\"\r\n"
                           "CONTENT-TYPE:  text/plain; charset=utf-8  \r\n"
                           "X-Other: ignored\r\n\r\n"
                           "one\r\n--" +
                           kBoundary +
                           "\r\nContent-Disposition: form-data; name=\"win\"; filename=\"C:\\dir\\f.txt\"\r\n"
                           "Content-Type:\r\n text/csv\r\n\r\n" // obsolete line folding
                           "two\r\n--" +
                           kBoundary + "--";
  auto parts = parse_whole(kBoundary, body);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].info.name, "plain");
  EXPECT_EQ(parts[0].info.filename, "a \"q\" \\ b.txt");
  EXPECT_EQ(parts[0].info.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(parts[0].data, "one");
  EXPECT_EQ(parts[1].info.filename, "C:\\dir\\f.txt");
  EXPECT_EQ(parts[1].info.content_type, "text/csv");
  EXPECT_EQ(parts[1].data, "two");
}

TEST(Multipart, NoPartsAndNoPreamble) {
  EXPECT_TRUE(parse_whole(kBoundary, closing()).empty());
  auto parts = parse_whole("x", "--x\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n--x\r\n--x--");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "--x");
}

TEST(Multipart, MissingClosingBoundary) {
  const std::string body = field("a", "1") + file_part("f", "f.bin", "", "partial data");
  for (const std::string &cut :
       {body, body.substr(0, body.size() - 5), body + "--" + kBoundary, body + "--" + kBoundary + "-"}) {
    Collector c;
    MultipartParser parser(kBoundary, c.handler());
    parser.feed(cut.data(), cut.size());
    EXPECT_FALSE(parser.complete());
    auto e = expect_error([&] { parser.finish(); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid);
    EXPECT_TRUE(contains(e.what(), "multipart body")) << e.what();
    EXPECT_TRUE(contains(e.what(), "ended") || contains(e.what(), "closing")) << e.what();
  }
  auto e = parse_error(kBoundary, "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"a\"\r\n");
  EXPECT_TRUE(contains(e.what(), "ended in the headers of part 1")) << e.what();
  e = parse_error(kBoundary, field("a", "1") + file_part("file", "f.bin", "", "data"));
  EXPECT_TRUE(contains(e.what(), "before the closing boundary")) << e.what();
}

TEST(Multipart, Garbage) {
  auto e = parse_error(kBoundary, "this is not multipart at all\r\n");
  EXPECT_TRUE(contains(e.what(), "no boundary line found")) << e.what();
  e = parse_error(kBoundary, "");
  EXPECT_TRUE(contains(e.what(), "no boundary line found")) << e.what();
  e = parse_error(kBoundary, "--" + kBoundary + "garbage\r\n");
  EXPECT_TRUE(contains(e.what(), "unexpected bytes")) << e.what();
  e = parse_error(kBoundary, "--" + kBoundary + "\n" + "Content-Disposition: form-data; name=a\n\nx\n--" + kBoundary +
                                 "--\n"); // LF-only line ends
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  e = parse_error(kBoundary, "--" + kBoundary + "\r\nnot a header\r\n\r\n");
  EXPECT_TRUE(contains(e.what(), "header line without a name")) << e.what();
  e = parse_error(kBoundary, "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"a\r\n\r\n");
  EXPECT_TRUE(contains(e.what(), "malformed Content-Disposition")) << e.what();
  e = parse_error(kBoundary, field("a", "1") + "--" + kBoundary + "-x");
  EXPECT_TRUE(contains(e.what(), "single '-'")) << e.what();
  e = parse_error(kBoundary,
                  "--" + kBoundary + "\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n" + closing());
  EXPECT_TRUE(contains(e.what(), "expected form-data")) << e.what();
}

TEST(Multipart, HeaderTooLong) {
  const std::string body = "--" + kBoundary +
                           "\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Long: " + std::string(300, 'h') +
                           "\r\n\r\nx\r\n" + closing();
  auto e = parse_error(kBoundary, body, 256);
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "headers of part 1 are longer than 256 bytes")) << e.what();
  EXPECT_EQ(parse_error(kBoundary, "--" + kBoundary + "\r\n" + std::string(100000, 'h'), 256).code(),
            ErrorCode::Invalid);
  EXPECT_EQ(parse(kBoundary, body, {}).size(), 1u); // fine with the default limit
}

TEST(Multipart, NoName) {
  const std::string no_name = "--" + kBoundary + "\r\nContent-Disposition: form-data; filename=\"x.bin\"\r\n\r\nx\r\n";
  auto e = parse_error(kBoundary, field("first", "ok") + no_name + closing());
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_STREQ(e.what(), "multipart body: part 2 has no Content-Disposition name");
  e = parse_error(kBoundary, "--" + kBoundary + "\r\nContent-Type: text/plain\r\n\r\nx\r\n" + closing());
  EXPECT_TRUE(contains(e.what(), "part 1 has no Content-Disposition")) << e.what();
  e = parse_error(kBoundary, "--" + kBoundary + "\r\n\r\nx\r\n" + closing());
  EXPECT_TRUE(contains(e.what(), "part 1 has no Content-Disposition")) << e.what();
  e = parse_error(kBoundary, field("", "x") + closing());
  EXPECT_TRUE(contains(e.what(), "no Content-Disposition name")) << e.what();
}

TEST(Multipart, HandlerExceptionPropagates) {
  int ends = 0;
  MultipartHandler h;
  h.data = [](const PartInfo &info, const char *, std::size_t) {
    if (info.name == "file")
      throw std::runtime_error("disk full");
  };
  h.end = [&](const PartInfo &) { ends++; };
  MultipartParser parser(kBoundary, h);
  const std::string body = field("a", "1") + file_part("file", "f.bin", "", "data") + closing();
  try {
    parser.feed(body.data(), body.size());
    FAIL() << "no exception";
  } catch (const std::runtime_error &e) {
    EXPECT_STREQ(e.what(), "disk full");
  }
  EXPECT_EQ(ends, 1);
  EXPECT_FALSE(parser.complete());
  // The parser refuses further input rather than resuming mid-part.
  auto e = expect_error([&] { parser.feed("x", 1); });
  EXPECT_TRUE(contains(e.what(), "already failed")) << e.what();
  EXPECT_EQ(expect_error([&] { parser.finish(); }).code(), ErrorCode::Invalid);

  MultipartHandler begin_throws;
  begin_throws.begin = [](const PartInfo &) { throw Error(ErrorCode::Io, "no space"); };
  MultipartParser p2(kBoundary, begin_throws);
  auto e2 = expect_error([&] { p2.feed(body.data(), body.size()); });
  EXPECT_EQ(e2.code(), ErrorCode::Io);
}

TEST(Multipart, EmptyCallbacksAreAllowed) {
  MultipartParser parser(kBoundary, MultipartHandler{});
  const std::string body = sample_body();
  parser.feed(body.data(), body.size());
  parser.finish();
  EXPECT_TRUE(parser.complete());
}

} // namespace
