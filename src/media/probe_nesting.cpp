// SPDX-License-Identifier: LGPL-2.1-or-later
// The nesting guard of the probe: Matroska/WebM chapters and tags and FLV metadata nested too deep for a demuxer.
#include "media/probe.h"

#include "core/error.h"
#include "media/bmff.h"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <set>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace sluice::media {

namespace {

// Reads a file a block at a time: the nesting checks read many small headers.
class FileBytes {
public:
  FileBytes(int fd, std::uint64_t size, std::size_t block) : fd_(fd), size_(size), block_size_(block) {}
  std::uint64_t size() const { return size_; }
  // The n bytes at off; false where they run past the end (or cannot be read).
  bool get(std::uint64_t off, std::size_t n, std::uint8_t *out) {
    if (off > size_ || n > size_ - off)
      return false;
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t at = off + i;
      if (at < block_off_ || at - block_off_ >= block_.size()) {
        block_off_ = at / block_size_ * block_size_;
        block_.resize(static_cast<std::size_t>(std::min<std::uint64_t>(block_size_, size_ - block_off_)));
        if (pread(fd_, block_.data(), block_.size(), static_cast<off_t>(block_off_)) !=
            static_cast<ssize_t>(block_.size())) {
          block_.clear();
          return false;
        }
      }
      out[i] = block_[static_cast<std::size_t>(at - block_off_)];
    }
    return true;
  }

private:
  int fd_;
  std::uint64_t size_;
  std::size_t block_size_;
  std::uint64_t block_off_ = 0;
  std::vector<std::uint8_t> block_;
};

std::string too_deep(const char *what, std::uint64_t at) {
  return std::string(what) + " nested more than " + std::to_string(kMaxNesting) + " deep (at byte " +
         std::to_string(at) + ")";
}

// --- Matroska / WebM (EBML) -------------------------------------------------------------------------
// matroskademux reads chapters (a ChapterAtom may hold ChapterAtoms) and tags (a SimpleTag may hold
// SimpleTags) recursively. They are found by walking the segment's top-level elements, and where a
// SeekHead points.

constexpr std::uint32_t kEbmlHeader = 0x1A45DFA3, kSegment = 0x18538067, kSeekHead = 0x114D9B74, kSeek = 0x4DBB,
                        kSeekId = 0x53AB, kSeekPosition = 0x53AC, kChapters = 0x1043A770, kEditionEntry = 0x45B9,
                        kChapterAtom = 0xB6, kTags = 0x1254C367, kTag = 0x7373, kSimpleTag = 0x67C8;

struct Element {
  std::uint32_t id = 0;
  std::uint64_t data = 0; // where its body starts
  std::uint64_t end = 0;  // where it ends, within its parent
  bool unknown_size = false;
};

// The element at `off`, inside a parent that ends at `parent_end`; nullopt where it cannot be read.
std::optional<Element> ebml_element(FileBytes &f, std::uint64_t off, std::uint64_t parent_end) {
  std::uint8_t b[8];
  if (off >= parent_end || !f.get(off, 1, b) || b[0] < 0x10)
    return std::nullopt; // an ID is 1 to 4 bytes
  int id_len = b[0] >= 0x80 ? 1 : b[0] >= 0x40 ? 2 : b[0] >= 0x20 ? 3 : 4;
  if (!f.get(off, static_cast<std::size_t>(id_len), b))
    return std::nullopt;
  Element e;
  for (int i = 0; i < id_len; ++i)
    e.id = (e.id << 8) | b[i];
  std::uint64_t at = off + static_cast<std::uint64_t>(id_len);
  if (!f.get(at, 1, b) || b[0] == 0)
    return std::nullopt; // a size is 1 to 8 bytes
  int size_len = 1;
  while (!(b[0] & (0x80 >> (size_len - 1))))
    ++size_len;
  if (!f.get(at, static_cast<std::size_t>(size_len), b))
    return std::nullopt;
  std::uint64_t size = b[0] & (0xff >> size_len);
  bool all_ones = size == (0xffu >> size_len);
  for (int i = 1; i < size_len; ++i) {
    size = (size << 8) | b[i];
    all_ones = all_ones && b[i] == 0xff;
  }
  e.data = at + static_cast<std::uint64_t>(size_len);
  e.unknown_size = all_ones;
  e.end = e.unknown_size || size > parent_end - std::min(parent_end, e.data) ? parent_end : e.data + size;
  if (e.data > parent_end)
    return std::nullopt;
  return e;
}

// The chapters or tags element `top`: its masters nested at most kMaxNesting deep.
void check_ebml_depth(FileBytes &f, const Element &top) {
  std::vector<std::uint64_t> ends{top.end};
  std::uint64_t pos = top.data;
  while (!ends.empty()) {
    if (pos >= ends.back()) {
      ends.pop_back();
      continue;
    }
    auto e = ebml_element(f, pos, ends.back());
    if (!e)
      return; // damaged: the demuxer stops there too
    switch (e->id) {
    case kEditionEntry:
    case kChapterAtom:
    case kTag:
    case kSimpleTag:
      if (ends.size() + 1 > static_cast<std::size_t>(kMaxNesting))
        throw Error(ErrorCode::NotMedia, too_deep("its chapters or tags are", pos));
      ends.push_back(e->end);
      pos = e->data;
      break;
    default: pos = std::max(e->end, e->data); break;
    }
  }
}

// Where a SeekHead points to chapters, tags or another SeekHead: those positions (absolute) are added to `targets`.
void read_seek_head(FileBytes &f, const Element &seekhead, std::uint64_t segment_data,
                    std::vector<std::uint64_t> &targets) {
  for (std::uint64_t p = seekhead.data; p < seekhead.end;) {
    auto seek = ebml_element(f, p, seekhead.end);
    if (!seek)
      break;
    if (seek->id == kSeek) {
      std::uint32_t id = 0;
      std::uint64_t position = 0;
      for (std::uint64_t q = seek->data; q < seek->end;) {
        auto field = ebml_element(f, q, seek->end);
        if (!field)
          break;
        std::uint8_t v[8];
        std::uint64_t n = field->end - field->data;
        if (n >= 1 && n <= 8 && f.get(field->data, static_cast<std::size_t>(n), v)) {
          std::uint64_t value = 0;
          for (std::uint64_t i = 0; i < n; ++i)
            value = (value << 8) | v[i];
          if (field->id == kSeekId)
            id = static_cast<std::uint32_t>(value);
          else if (field->id == kSeekPosition)
            position = value;
        }
        q = std::max(field->end, field->data);
      }
      if ((id == kChapters || id == kTags || id == kSeekHead) && position < f.size() - segment_data)
        targets.push_back(segment_data + position);
    }
    p = std::max(seek->end, seek->data);
  }
}

std::string ebml_nesting_problem(FileBytes &f) {
  auto head = ebml_element(f, 0, f.size());
  if (!head || head->id != kEbmlHeader)
    return "";
  try {
    std::vector<std::uint64_t> seek_targets; // SeekHead positions, absolute
    std::size_t seekheads = 0;
    auto visit = [&](const Element &e, std::uint64_t segment_data) {
      if (e.id == kChapters || e.id == kTags) {
        check_ebml_depth(f, e);
      } else if (e.id == kSeekHead && ++seekheads <= 64) {
        read_seek_head(f, e, segment_data, seek_targets);
      }
    };
    for (std::uint64_t off = head->end; off < f.size();) {
      auto seg = ebml_element(f, off, f.size());
      if (!seg)
        break;
      if (seg->id == kSegment) {
        // The segment's elements in order; an element of unknown size (a live Cluster) is walked
        // through, its children skipped one by one.
        for (std::uint64_t p = seg->data; p < seg->end;) {
          auto e = ebml_element(f, p, seg->end);
          if (!e)
            break;
          visit(*e, seg->data);
          p = e->unknown_size && e->id != kChapters && e->id != kTags ? e->data : std::max(e->end, e->data);
        }
        std::set<std::uint64_t> seen;
        while (!seek_targets.empty()) {
          std::uint64_t at = seek_targets.back();
          seek_targets.pop_back();
          if (!seen.insert(at).second || seen.size() > 256)
            continue;
          if (auto e = ebml_element(f, at, f.size()))
            visit(*e, seg->data);
        }
      }
      off = std::max(seg->end, seg->data);
    }
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

// --- FLV ------------------------------------------------------------------------------------------------
// flvdemux reads the objects and ECMA arrays of a script tag's metadata (AMF0) recursively.

void check_amf_depth(const std::uint8_t *d, std::size_t n, std::uint64_t at) {
  std::size_t pos = 0;
  auto need = [&](std::size_t k) { return pos <= n && n - pos >= k; };
  auto u16 = [&] { return static_cast<std::size_t>((d[pos] << 8) | d[pos + 1]); };
  auto u32 = [&] {
    return (static_cast<std::size_t>(d[pos]) << 24) | (static_cast<std::size_t>(d[pos + 1]) << 16) |
           (static_cast<std::size_t>(d[pos + 2]) << 8) | d[pos + 3];
  };
  // The function name ("onMetaData"): a string value.
  if (!need(3) || d[0] != 2)
    return;
  pos = 1;
  pos += 2 + u16();
  int depth = 0;
  bool in_array = false; // reading the items of an object or ECMA array: each has a name first
  while (pos < n) {
    if (in_array) {
      if (!need(2))
        return;
      pos += 2 + u16(); // the item's name
    }
    if (!need(1))
      return;
    std::uint8_t type = d[pos++];
    // Numbers, booleans, strings, long strings, dates, null and undefined, references; then the
    // ECMA array (a count, then items) and the object (items up to an end marker).
    switch (type) {
    case 0: pos += 8; break;
    case 1: pos += 1; break;
    case 2:
      if (!need(2))
        return;
      pos += 2 + u16();
      break;
    case 12:
      if (!need(4))
        return;
      pos += 4 + u32();
      break;
    case 11: pos += 10; break;
    case 5:
    case 6: break;
    case 7: pos += 2; break;
    case 8: pos += 4; [[fallthrough]];
    case 3:
      if (++depth > kMaxNesting)
        throw Error(ErrorCode::NotMedia, too_deep("its metadata objects are", at + pos));
      in_array = true;
      break;
    case 9: // the end of an object
      if (--depth <= 0)
        return;
      break;
    case 10: { // strict array: flvdemux reads numbers only
      if (!need(4))
        return;
      std::size_t count = u32();
      pos += 4;
      for (std::size_t i = 0; i < count && need(1); ++i) {
        if (d[pos] != 0)
          return;
        pos += 9;
      }
      break;
    }
    default: return; // the demuxer stops at what it does not know
    }
    if (!in_array)
      return; // a single value
  }
}

std::string flv_nesting_problem(FileBytes &f) {
  std::uint8_t h[16];
  if (!f.get(0, 9, h) || std::memcmp(h, "FLV", 3) != 0)
    return "";
  std::uint64_t off = ((std::uint64_t(h[5]) << 24) | (h[6] << 16) | (h[7] << 8) | h[8]) + 4;
  try {
    while (f.get(off, 11, h)) {
      std::uint64_t size = (std::uint64_t(h[1]) << 16) | (h[2] << 8) | h[3];
      if ((h[0] & 0x1f) == 18 && size > 0) {
        std::vector<std::uint8_t> data(static_cast<std::size_t>(size));
        if (!f.get(off + 11, data.size(), data.data()))
          break;
        check_amf_depth(data.data(), data.size(), off + 11);
      }
      off += 11 + size + 4;
    }
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

} // namespace

std::string nesting_problem(const std::string &path) {
  if (std::string why = mp4_nesting_problem(path); !why.empty())
    return why;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return "";
  struct stat st;
  std::string why;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    FileBytes f(fd, static_cast<std::uint64_t>(st.st_size), 64 * 1024);
    why = ebml_nesting_problem(f);
    if (why.empty()) {
      FileBytes tags(fd, static_cast<std::uint64_t>(st.st_size), 4096);
      why = flv_nesting_problem(tags);
    }
  }
  close(fd);
  return why;
}

} // namespace sluice::media
