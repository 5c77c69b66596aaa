// SPDX-License-Identifier: LGPL-2.1-or-later
// The nesting check of ISO-BMFF files: boxes nested too deep for a demuxer are refused before one reads them.
#include "media/bmff.h"

#include "core/error.h"
#include "media/bmff_internal.h"

#include <gio/gio.h>
#include <glib.h>

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <sys/stat.h>
#include <unordered_map>

namespace sluice::media {

namespace {

using detail::Fd;
using detail::pread_all;
using detail::ReadFn;

// Reads a file (or bytes in memory) a block at a time: the nesting check reads many small box headers.
class Blocks {
public:
  Blocks(std::uint64_t size, ReadFn read) : size_(size), read_(std::move(read)) {}
  std::uint64_t size() const { return size_; }
  // The n bytes at off; false where they run past the end.
  bool get(std::uint64_t off, std::size_t n, std::uint8_t *out) {
    if (off > size_ || n > size_ - off)
      return false;
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t at = off + i;
      if (block_.empty() || at < block_off_ || at - block_off_ >= block_.size()) {
        block_off_ = at / kBlock * kBlock;
        block_ = read_(block_off_, static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, size_ - block_off_)));
      }
      out[i] = static_cast<std::uint8_t>(block_[static_cast<std::size_t>(at - block_off_)]);
    }
    return true;
  }
  std::string read(std::uint64_t off, std::size_t n) { return read_(off, n); }

private:
  static constexpr std::uint64_t kBlock = 64 * 1024;
  std::uint64_t size_;
  ReadFn read_;
  std::uint64_t block_off_ = 0;
  std::string block_;
};

// Why a file's boxes are not handed to a demuxer.
struct Refused {
  std::string why;
};

std::uint32_t be32(const std::uint8_t *p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

// A four-character code a demuxer may know: printable ASCII or '©' (QuickTime metadata).
bool plausible_type(const std::uint8_t *t) {
  for (int i = 0; i < 4; ++i)
    if (!((t[i] >= 0x20 && t[i] < 0x7f) || t[i] == 0xa9))
      return false;
  return true;
}

// Where qtdemux (GStreamer 1.22) looks for boxes inside a box's body: right at the start (containers),
// after the version and flags of a full box (meta), after those and an entry count (stsd, mp4s), after
// the fields of a sound sample entry of version 0, 1 or 2 (mp4a, enca, in24 and the like: 28, 44, 64;
// 52 and 72 where an MS-style entry carries a wave box), of a visual sample entry (78) and of XiTh (90).
// Every box is looked into at all of them, whatever its type: a superset of what the demuxer reads.
constexpr std::uint64_t kChildOffsets[] = {0, 4, 8, 28, 44, 52, 64, 72, 78, 90};

// Boxes looked at per top-level box before the check gives up (a real movie header has a few hundred).
constexpr std::size_t kMaxCheckedBoxes = 1u << 21;

class Nesting {
public:
  explicit Nesting(Blocks &blocks) : b_(blocks) {}

  // How many levels of boxes the box at `start` holds (0: none), when it sits at `depth` (1: top
  // level). Throws Refused once a box would sit deeper than kMaxBoxDepth. Its own recursion is
  // bounded by that depth; each box is looked into once.
  int height(std::uint64_t start, std::uint64_t size, int depth) {
    if (depth > kMaxBoxDepth)
      throw Refused{"its boxes are nested more than " + std::to_string(kMaxBoxDepth) + " deep (at byte " +
                    std::to_string(start) + ")"};
    if (auto known = memo_.find(start); known != memo_.end()) {
      if (depth + known->second > kMaxBoxDepth)
        return height_past_limit(start);
      return known->second;
    }
    if (++boxes_ > kMaxCheckedBoxes)
      throw Refused{"it holds too many boxes to check"};
    int h = 0;
    std::uint8_t head[8];
    if (size > 8 && b_.get(start + 4, 4, head) && plausible_type(head)) {
      const std::uint64_t end = start + size;
      for (std::uint64_t k : kChildOffsets) {
        std::uint64_t pos = start + 8 + k;
        while (pos < end && end - pos >= 8 && b_.get(pos, 8, head)) {
          std::uint32_t len = be32(head);
          if (len < 8 || len > end - pos)
            break; // where qtdemux stops reading children too
          h = std::max(h, 1 + height(pos, len, depth + 1));
          pos += len;
        }
      }
    }
    memo_[start] = h;
    return h;
  }

private:
  [[noreturn]] int height_past_limit(std::uint64_t start) {
    throw Refused{"its boxes are nested more than " + std::to_string(kMaxBoxDepth) + " deep (under byte " +
                  std::to_string(start) + ")"};
  }
  Blocks &b_;
  std::unordered_map<std::uint64_t, int> memo_;
  std::size_t boxes_ = 0;
};

// The biggest movie header (inflated or not) the check reads whole.
constexpr std::size_t kMaxCompressedHeader = 64u << 20;

// qtdemux inflates a compressed movie header (moov > cmov > dcom 'zlib' + cmvd) and reads the boxes in
// it: the same check on them. "" when there is none or it does not inflate (the demuxer refuses it).
std::string inflate_cmov(Blocks &b, std::uint64_t moov, std::uint64_t size) {
  auto child = [&](std::uint64_t start, std::uint64_t end,
                   const char *type) -> std::optional<std::pair<std::uint64_t, std::uint64_t>> {
    std::uint8_t h[8];
    for (std::uint64_t pos = start; pos < end && end - pos >= 8 && b.get(pos, 8, h);) {
      std::uint32_t len = be32(h);
      if (len < 8 || len > end - pos)
        break;
      if (std::memcmp(h + 4, type, 4) == 0)
        return std::make_pair(pos, std::uint64_t(len));
      pos += len;
    }
    return std::nullopt;
  };
  auto cmov = child(moov + 8, moov + size, "cmov");
  if (!cmov)
    return "";
  auto dcom = child(cmov->first + 8, cmov->first + cmov->second, "dcom");
  auto cmvd = child(cmov->first + 8, cmov->first + cmov->second, "cmvd");
  std::uint8_t method[4];
  if (!dcom || !cmvd || dcom->second < 12 || cmvd->second < 12 || !b.get(dcom->first + 8, 4, method) ||
      std::memcmp(method, "zlib", 4) != 0)
    return "";
  if (cmvd->second - 12 > kMaxCompressedHeader)
    throw Refused{"its compressed movie header is larger than 64 MiB"};
  std::string in = b.read(cmvd->first + 12, static_cast<std::size_t>(cmvd->second - 12));
  g_autoptr(GZlibDecompressor) z = g_zlib_decompressor_new(G_ZLIB_COMPRESSOR_FORMAT_ZLIB);
  std::string out;
  std::size_t read_pos = 0;
  char buf[64 * 1024];
  while (true) {
    gsize used = 0, written = 0;
    g_autoptr(GError) err = nullptr;
    GConverterResult r = g_converter_convert(G_CONVERTER(z), in.data() + read_pos, in.size() - read_pos, buf,
                                             sizeof buf, G_CONVERTER_INPUT_AT_END, &used, &written, &err);
    if (r == G_CONVERTER_ERROR)
      return ""; // qtdemux cannot inflate it either
    read_pos += used;
    out.append(buf, written);
    if (out.size() > kMaxCompressedHeader)
      throw Refused{"its compressed movie header inflates to more than 64 MiB"};
    if (r == G_CONVERTER_FINISHED || (used == 0 && written == 0))
      break;
  }
  Blocks inflated(out.size(), [&](std::uint64_t off, std::size_t n) { return out.substr(off, n); });
  std::uint8_t h[8];
  if (!inflated.get(0, 8, h) || be32(h) < 8 || be32(h) > out.size())
    return "";
  Nesting(inflated).height(0, be32(h), 1);
  return "";
}

std::string nesting_problem(Blocks &b) {
  std::uint8_t h[16];
  if (!b.get(0, 8, h) || !plausible_type(h + 4))
    return ""; // not ISO-BMFF
  try {
    for (std::uint64_t off = 0; off < b.size() && b.size() - off >= 8 && b.get(off, 8, h);) {
      std::uint64_t size = be32(h);
      std::uint64_t header = 8;
      if (size == 1) {
        if (!b.get(off, 16, h))
          break;
        size = 0;
        for (int i = 8; i < 16; ++i)
          size = (size << 8) | h[i];
        header = 16;
      } else if (size == 0) {
        size = b.size() - off;
      }
      if (size < header || size > b.size() - off)
        break; // a damaged or cut file: the demuxer reads no further either
      // The media data is never read as boxes; everything else may be (moov, moof, meta, ...). A box
      // with a 64-bit size is looked into from its 8th byte too (qtdemux reads 32-bit sizes only).
      if (std::memcmp(h + 4, "mdat", 4) != 0) {
        Nesting(b).height(off, size, 1);
        if (std::memcmp(h + 4, "moov", 4) == 0)
          inflate_cmov(b, off, size);
      }
      off += size;
    }
  } catch (const Refused &r) {
    return r.why;
  }
  return "";
}

} // namespace

std::string mp4_nesting_problem(const std::string &path) {
  Fd f;
  f.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0)
    return "";
  struct stat st;
  if (fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode))
    return "";
  try {
    Blocks b(static_cast<std::uint64_t>(st.st_size),
             [&](std::uint64_t off, std::size_t n) { return pread_all(f.fd, off, n, path); });
    return nesting_problem(b);
  } catch (const Error &) {
    return ""; // unreadable: the probe says so
  }
}

std::string mp4_nesting_problem_of(const std::string &bytes) {
  Blocks b(bytes.size(), [&](std::uint64_t off, std::size_t n) { return bytes.substr(off, n); });
  return nesting_problem(b);
}

} // namespace sluice::media
