// SPDX-License-Identifier: LGPL-2.1-or-later
// A small ISO-BMFF box walker: enough of ISO/IEC 14496-12 to read what mp4mux writes in fragmented mode.
#include "media/bmff.h"

#include "core/error.h"
#include "core/fs.h"

#include <gio/gio.h>
#include <glib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>

namespace sluice::media {

namespace {

// A bounds-checked big-endian reader over a byte range.
class Reader {
public:
  Reader(const std::uint8_t *p, std::size_t n, std::string what) : p_(p), n_(n), what_(std::move(what)) {}
  std::size_t left() const { return n_ - pos_; }
  std::size_t pos() const { return pos_; }
  void need(std::size_t k) const {
    if (left() < k)
      throw Error(ErrorCode::Invalid, "MP4: " + what_ + " is cut short");
  }
  void skip(std::size_t k) {
    need(k);
    pos_ += k;
  }
  std::uint64_t uint(int bytes) {
    need(bytes);
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
      v = (v << 8) | p_[pos_++];
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(uint(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(uint(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(uint(4)); }
  std::uint64_t u64() { return uint(8); }
  const std::uint8_t *here() const { return p_ + pos_; }

private:
  const std::uint8_t *p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  std::string what_;
};

struct Child {
  std::string type;
  const std::uint8_t *body;
  std::size_t size; // of the body
};

// The boxes inside a byte range (a box's body).
std::vector<Child> children(const std::uint8_t *p, std::size_t n, const std::string &what) {
  std::vector<Child> out;
  Reader r(p, n, what);
  while (r.left() >= 8) {
    std::size_t start = r.pos();
    std::uint64_t size = r.u32();
    std::string type(reinterpret_cast<const char *>(r.here()), 4);
    r.skip(4);
    std::size_t header = 8;
    if (size == 1) {
      size = r.u64();
      header = 16;
    } else if (size == 0) {
      size = n - start;
    }
    if (size < header || size > n - start)
      throw Error(ErrorCode::Invalid, "MP4: box '" + type + "' in " + what + " has a bad size");
    out.push_back({type, p + start + header, static_cast<std::size_t>(size - header)});
    r.skip(static_cast<std::size_t>(size - header));
  }
  return out;
}

std::optional<Child> find(const std::vector<Child> &boxes, const char *type) {
  for (const auto &b : boxes)
    if (b.type == type)
      return b;
  return std::nullopt;
}

Child require(const std::vector<Child> &boxes, const char *type, const std::string &where) {
  auto b = find(boxes, type);
  if (!b)
    throw Error(ErrorCode::Invalid, std::string("MP4: no '") + type + "' box in " + where);
  return *b;
}

std::vector<Child> inside(const Child &c) {
  return children(c.body, c.size, c.type);
}

// ISO/IEC 14496-1 descriptor length: up to four bytes of 7 bits.
std::size_t descriptor_length(Reader &r) {
  std::size_t len = 0;
  for (int i = 0; i < 4; ++i) {
    std::uint8_t b = r.u8();
    len = (len << 7) | (b & 0x7f);
    if (!(b & 0x80))
      break;
  }
  return len;
}

// "mp4a.40.2" from an esds box (ES_Descriptor > DecoderConfigDescriptor > DecoderSpecificInfo).
std::string mp4a_codec(const Child &esds) {
  Reader r(esds.body, esds.size, "esds");
  r.skip(4); // version, flags
  if (r.u8() != 0x03)
    throw Error(ErrorCode::Invalid, "MP4: esds without an ES descriptor");
  descriptor_length(r);
  r.skip(2);
  std::uint8_t flags = r.u8();
  if (flags & 0x80)
    r.skip(2);
  if (flags & 0x40)
    r.skip(r.u8());
  if (flags & 0x20)
    r.skip(2);
  if (r.u8() != 0x04)
    throw Error(ErrorCode::Invalid, "MP4: esds without a decoder configuration");
  descriptor_length(r);
  std::uint8_t oti = r.u8();
  r.skip(12);
  char buf[32];
  if (r.left() >= 3 && r.u8() == 0x05) {
    std::size_t len = descriptor_length(r);
    if (len >= 1) {
      std::uint8_t b0 = r.u8();
      int aot = b0 >> 3;
      if (aot == 31 && len >= 2) {
        std::uint8_t b1 = r.u8();
        aot = 32 + (((b0 & 0x07) << 3) | (b1 >> 5));
      }
      std::snprintf(buf, sizeof buf, "mp4a.%02x.%d", oti, aot);
      return buf;
    }
  }
  std::snprintf(buf, sizeof buf, "mp4a.%02x", oti);
  return buf;
}

struct TrackDefaults {
  std::uint32_t duration = 0, size = 0, flags = 0;
};

void parse_moov(const std::uint8_t *p, std::size_t n, Mp4Track &track, TrackDefaults &defaults) {
  auto moov = children(p, n, "moov");
  int traks = 0;
  for (const auto &c : moov)
    traks += c.type == "trak";
  if (traks != 1)
    throw Error(ErrorCode::Invalid, "MP4: expected one track, found " + std::to_string(traks));
  auto trak = inside(require(moov, "trak", "moov"));
  {
    auto tkhd = require(trak, "tkhd", "trak");
    Reader r(tkhd.body, tkhd.size, "tkhd");
    int version = r.u8();
    r.skip(3);
    r.skip(version == 1 ? 16 : 8);
    track.id = r.u32();
  }
  auto mdia = inside(require(trak, "mdia", "trak"));
  {
    auto mdhd = require(mdia, "mdhd", "mdia");
    Reader r(mdhd.body, mdhd.size, "mdhd");
    int version = r.u8();
    r.skip(3);
    r.skip(version == 1 ? 16 : 8);
    track.timescale = r.u32();
    if (track.timescale == 0)
      throw Error(ErrorCode::Invalid, "MP4: the track's timescale is 0");
  }
  {
    auto hdlr = require(mdia, "hdlr", "mdia");
    Reader r(hdlr.body, hdlr.size, "hdlr");
    r.skip(8);
    r.need(4);
    track.handler.assign(reinterpret_cast<const char *>(r.here()), 4);
  }
  auto stbl = inside(require(inside(require(mdia, "minf", "mdia")), "stbl", "minf"));
  auto stsd = require(stbl, "stsd", "stbl");
  Reader r(stsd.body, stsd.size, "stsd");
  r.skip(4);
  if (r.u32() < 1)
    throw Error(ErrorCode::Invalid, "MP4: no sample description");
  std::size_t entry_start = r.pos();
  std::uint32_t entry_size = r.u32();
  r.need(4);
  track.sample_entry.assign(reinterpret_cast<const char *>(r.here()), 4);
  r.skip(4);
  if (entry_size < 8 || entry_size - 8 > r.left())
    throw Error(ErrorCode::Invalid, "MP4: bad sample entry");
  Reader e(stsd.body + r.pos(), entry_size - 8, track.sample_entry);
  (void)entry_start;
  track.codecs = track.sample_entry;
  if (track.handler == "vide") {
    e.skip(6 + 2 + 16);
    track.width = e.u16();
    track.height = e.u16();
    e.skip(4 + 4 + 4 + 2 + 32 + 2 + 2);
    auto boxes = children(e.here(), e.left(), track.sample_entry);
    if (auto avcc = find(boxes, "avcC")) {
      Reader a(avcc->body, avcc->size, "avcC");
      a.skip(1);
      std::uint8_t profile = a.u8(), compat = a.u8(), level = a.u8();
      char buf[32];
      std::snprintf(buf, sizeof buf, "%s.%02x%02x%02x", track.sample_entry.c_str(), profile, compat, level);
      track.codecs = buf;
    }
  } else if (track.handler == "soun") {
    e.skip(6 + 2 + 8);
    track.channels = e.u16();
    e.skip(2 + 4);
    track.sample_rate = static_cast<int>(e.u32() >> 16);
    auto boxes = children(e.here(), e.left(), track.sample_entry);
    if (auto esds = find(boxes, "esds"))
      track.codecs = mp4a_codec(*esds);
  }
  if (auto mvex = find(moov, "mvex"))
    if (auto trex = find(inside(*mvex), "trex")) {
      Reader t(trex->body, trex->size, "trex");
      t.skip(4 + 4 + 4);
      defaults.duration = t.u32();
      defaults.size = t.u32();
      defaults.flags = t.u32();
    }
}

bool is_sync(std::uint32_t sample_flags) {
  return !(sample_flags & 0x00010000); // sample_is_non_sync_sample
}

// The most samples one fragment may hold: far beyond any real fragment (a minute of 48 kHz audio
// frames or of video at 1000 fps is under 100,000), and it keeps every sum below 64 bits.
constexpr std::uint64_t kMaxFragmentSamples = 1u << 24;

// `body_offset`: where p starts in the file. Returns how many bytes of media data its samples claim
// (checked against the mdat that follows).
std::uint64_t parse_moof(const std::uint8_t *p, std::size_t n, std::uint64_t body_offset, const Mp4Track &track,
                         const TrackDefaults &trex, Mp4Fragment &f) {
  std::uint64_t data_bytes = 0;
  auto moof = children(p, n, "moof");
  int trafs = 0;
  bool first = true;
  for (const auto &box : moof) {
    if (box.type != "traf")
      continue;
    ++trafs;
    auto traf = inside(box);
    auto tfhd = require(traf, "tfhd", "traf");
    Reader h(tfhd.body, tfhd.size, "tfhd");
    h.skip(1);
    std::uint32_t flags = static_cast<std::uint32_t>(h.uint(3));
    if (h.u32() != track.id)
      throw Error(ErrorCode::Invalid, "MP4: a fragment of another track");
    TrackDefaults d = trex;
    if (flags & 0x01)
      h.skip(8);
    if (flags & 0x02)
      h.skip(4);
    if (flags & 0x08)
      d.duration = h.u32();
    if (flags & 0x10)
      d.size = h.u32();
    if (flags & 0x20)
      d.flags = h.u32();
    if (auto tfdt = find(traf, "tfdt")) {
      Reader t(tfdt->body, tfdt->size, "tfdt");
      int version = t.u8();
      t.skip(3);
      f.tfdt_value_offset = body_offset + static_cast<std::uint64_t>(tfdt->body - p) + 4;
      f.tfdt_value_size = version == 1 ? 8 : 4;
      f.decode_time = version == 1 ? t.u64() : t.u32();
    } else {
      throw Error(ErrorCode::Invalid, "MP4: a fragment without a decode time (tfdt)");
    }
    std::uint64_t dts = 0;
    for (const auto &tr : traf) {
      if (tr.type != "trun")
        continue;
      Reader t(tr.body, tr.size, "trun");
      int version = t.u8();
      std::uint32_t tflags = static_cast<std::uint32_t>(t.uint(3));
      std::uint32_t count = t.u32();
      if (tflags & 0x001)
        t.skip(4);
      std::optional<std::uint32_t> first_flags;
      if (tflags & 0x004)
        first_flags = t.u32();
      // The count is bounded by what the box holds: 4 bytes per field each sample carries. A run of
      // samples that carry nothing (all defaults) holds no bytes per sample: bounded by the fragment's
      // limit here, and by its mdat once that is read (data_bytes).
      const std::size_t entry = 4u * static_cast<std::size_t>(((tflags >> 8) & 1) + ((tflags >> 9) & 1) +
                                                              ((tflags >> 10) & 1) + ((tflags >> 11) & 1));
      if (entry && count > t.left() / entry)
        throw Error(ErrorCode::Invalid, "MP4: a track run claims " + std::to_string(count) +
                                            " samples; its box holds at most " + std::to_string(t.left() / entry));
      if (f.samples + static_cast<std::uint64_t>(count) > kMaxFragmentSamples)
        throw Error(ErrorCode::Invalid,
                    "MP4: a fragment claims more than " + std::to_string(kMaxFragmentSamples) + " samples");
      for (std::uint32_t i = 0; i < count; ++i) {
        if (!entry && i == 1) {
          // The rest of a run of default samples, at once: the same duration, size and flags, no
          // composition offset (so the earliest of them is the first).
          const std::uint64_t rest = count - 1;
          std::int64_t cts = static_cast<std::int64_t>(f.decode_time + dts);
          f.earliest_composition = std::min(f.earliest_composition, cts);
          f.sync_samples += is_sync(d.flags) ? static_cast<std::uint32_t>(rest) : 0;
          f.samples += static_cast<std::uint32_t>(rest);
          dts += rest * d.duration;
          data_bytes += rest * d.size;
          break;
        }
        std::uint32_t dur = tflags & 0x100 ? t.u32() : d.duration;
        data_bytes += tflags & 0x200 ? t.u32() : d.size;
        std::uint32_t sflags = tflags & 0x400 ? t.u32() : d.flags;
        if (i == 0 && first_flags)
          sflags = *first_flags;
        std::int64_t cto = 0;
        if (tflags & 0x800) {
          std::uint32_t raw = t.u32();
          cto =
              version == 0 ? static_cast<std::int64_t>(raw) : static_cast<std::int64_t>(static_cast<std::int32_t>(raw));
        }
        std::int64_t cts = static_cast<std::int64_t>(f.decode_time + dts) + cto;
        if (first) {
          f.starts_with_sync = is_sync(sflags);
          f.first_composition = cts;
          f.earliest_composition = cts;
          first = false;
        }
        f.earliest_composition = std::min(f.earliest_composition, cts);
        f.sync_samples += is_sync(sflags);
        ++f.samples;
        dts += dur;
      }
    }
    f.duration += dts;
  }
  if (trafs != 1)
    throw Error(ErrorCode::Invalid, "MP4: expected one track fragment per moof, found " + std::to_string(trafs));
  return data_bytes;
}

// Walks the top-level boxes: `read(offset, size)` returns those bytes.
using ReadFn = std::function<std::string(std::uint64_t, std::size_t)>;

// Walks the top-level boxes from `off` (updated) to file_size: `read(offset, size)` returns those bytes.
// growing: the file is still being written; an incomplete last box (or a moof whose mdat is not
// complete yet) ends the walk quietly, and `off` stays where the next walk resumes.
void walk_from(FragmentedMp4 &mp4, TrackDefaults &defaults, std::uint64_t &off, std::uint64_t file_size,
               const ReadFn &read, bool growing) {
  std::optional<Mp4Fragment> pending; // a moof waiting for its mdat
  std::uint64_t pending_bytes = 0;    // the media data its samples claim
  while (off < file_size) {
    if (file_size - off < 8) {
      if (growing)
        break;
      throw Error(ErrorCode::Invalid, "MP4: trailing bytes after the last box");
    }
    std::string head = read(off, static_cast<std::size_t>(std::min<std::uint64_t>(16, file_size - off)));
    Reader r(reinterpret_cast<const std::uint8_t *>(head.data()), head.size(), "box header");
    std::uint64_t size = r.u32();
    std::string type = head.substr(4, 4);
    std::uint64_t header = 8;
    if (size == 1) {
      if (head.size() < 16)
        break;
      size = r.u64();
      header = 16;
    } else if (size == 0) {
      if (growing)
        break; // "up to the end of the file": not known yet
      size = file_size - off;
    }
    if (growing && size >= header && size > file_size - off)
      break;
    if (size < header || size > file_size - off)
      throw Error(ErrorCode::Invalid, "MP4: top-level box '" + type + "' at " + std::to_string(off) +
                                          " has a bad size (the file may be cut short)");
    if (type == "ftyp") {
      mp4.ftyp_offset = off;
      mp4.ftyp_size = size;
    } else if (type == "moov") {
      if (size > (64u << 20))
        throw Error(ErrorCode::Invalid, "MP4: moov box too large");
      std::string body = read(off + header, static_cast<std::size_t>(size - header));
      parse_moov(reinterpret_cast<const std::uint8_t *>(body.data()), body.size(), mp4.track, defaults);
      mp4.moov_offset = off;
      mp4.moov_size = size;
    } else if (type == "moof") {
      if (!mp4.moov_size)
        throw Error(ErrorCode::Invalid, "MP4: a fragment before the movie header");
      if (pending)
        throw Error(ErrorCode::Invalid, "MP4: a fragment without media data");
      if (size > (64u << 20))
        throw Error(ErrorCode::Invalid, "MP4: moof box too large");
      std::string body = read(off + header, static_cast<std::size_t>(size - header));
      Mp4Fragment f;
      f.offset = off;
      f.size = size;
      pending_bytes = parse_moof(reinterpret_cast<const std::uint8_t *>(body.data()), body.size(), off + header,
                                 mp4.track, defaults, f);
      pending = f;
    } else if (type == "mdat") {
      if (pending) {
        if (pending->offset + pending->size != off)
          throw Error(ErrorCode::Invalid, "MP4: media data does not follow its fragment");
        if (pending_bytes > size - header)
          throw Error(ErrorCode::Invalid, "MP4: the samples of the fragment at " + std::to_string(pending->offset) +
                                              " claim " + std::to_string(pending_bytes) +
                                              " bytes; its media data holds " + std::to_string(size - header));
        pending->size += size;
        mp4.fragments.push_back(*pending);
        pending.reset();
      }
    }
    off += size;
  }
  if (pending) {
    if (!growing)
      throw Error(ErrorCode::Invalid, "MP4: the last fragment has no media data (the file is cut short)");
    off = pending->offset; // read again, with its mdat, next time
  }
}

FragmentedMp4 walk(std::uint64_t file_size, const ReadFn &read) {
  FragmentedMp4 mp4;
  TrackDefaults defaults;
  std::uint64_t off = 0;
  walk_from(mp4, defaults, off, file_size, read, false);
  if (!mp4.ftyp_size || !mp4.moov_size)
    throw Error(ErrorCode::Invalid, "MP4: no ftyp or moov box");
  if (mp4.fragments.empty())
    throw Error(ErrorCode::Invalid, "MP4: the file is not fragmented (no moof box)");
  return mp4;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0)
      close(fd);
  }
};

std::string pread_all(int fd, std::uint64_t off, std::size_t n, const std::string &path) {
  std::string buf(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    ssize_t k = pread(fd, buf.data() + got, n - got, static_cast<off_t>(off + got));
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      throw Error(ErrorCode::Io,
                  "cannot read " + path + (k < 0 ? std::string(": ") + g_strerror(errno) : ": cut short"));
    got += static_cast<std::size_t>(k);
  }
  return buf;
}

} // namespace

std::uint64_t FragmentedMp4::duration() const {
  return fragments.empty() ? 0 : end_time() - fragments.front().decode_time;
}

std::uint64_t FragmentedMp4::end_time() const {
  return fragments.empty() ? 0 : fragments.back().decode_time + fragments.back().duration;
}

void FragmentedMp4::shift(std::uint64_t ticks) {
  for (auto &f : fragments) {
    if (f.tfdt_value_size == 4 && f.decode_time + ticks > 0xffffffffULL)
      throw Error(ErrorCode::Invalid, "MP4: a 32-bit decode time cannot be moved that far");
    f.decode_time += ticks;
  }
}

std::uint64_t FragmentedMp4::samples() const {
  std::uint64_t n = 0;
  for (const auto &f : fragments)
    n += f.samples;
  return n;
}

FragmentedMp4 read_fragmented_mp4(const std::string &path) {
  Fd f;
  f.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0)
    throw Error(ErrorCode::Io, "cannot open " + path + ": " + g_strerror(errno));
  off_t size = lseek(f.fd, 0, SEEK_END);
  if (size < 0)
    throw Error(ErrorCode::Io, "cannot read " + path + ": " + g_strerror(errno));
  auto mp4 = walk(static_cast<std::uint64_t>(size),
                  [&](std::uint64_t off, std::size_t n) { return pread_all(f.fd, off, n, path); });
  mp4.path = path;
  return mp4;
}

FragmentedMp4 parse_fragmented_mp4(const std::string &bytes) {
  return walk(bytes.size(), [&](std::uint64_t off, std::size_t n) { return bytes.substr(off, n); });
}

struct GrowingMp4::State {
  Fd file;
  TrackDefaults defaults;
  std::uint64_t off = 0;
  std::uint64_t seen_size = 0;
};

GrowingMp4::GrowingMp4(std::string path) : state_(std::make_unique<State>()) {
  mp4_.path = std::move(path);
}

GrowingMp4::~GrowingMp4() = default;

std::size_t GrowingMp4::update() {
  if (state_->file.fd < 0) {
    state_->file.fd = open(mp4_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (state_->file.fd < 0)
      return 0; // not created yet
  }
  struct stat st;
  if (fstat(state_->file.fd, &st) != 0)
    throw Error(ErrorCode::Io, "cannot read " + mp4_.path + ": " + g_strerror(errno));
  auto size = static_cast<std::uint64_t>(st.st_size);
  if (size == state_->seen_size)
    return 0;
  state_->seen_size = size;
  std::size_t before = mp4_.fragments.size();
  int fd = state_->file.fd;
  walk_from(
      mp4_, state_->defaults, state_->off, size,
      [&](std::uint64_t off, std::size_t n) { return pread_all(fd, off, n, mp4_.path); }, true);
  return mp4_.fragments.size() - before;
}

bool GrowingMp4::has_header() const {
  return mp4_.ftyp_size && mp4_.moov_size;
}

std::string mp4_unplayable_reason(const std::string &path) {
  Fd f;
  f.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0)
    return "";
  struct stat st;
  if (fstat(f.fd, &st) != 0 || st.st_size < 16)
    return "";
  const auto size = static_cast<std::uint64_t>(st.st_size);
  std::uint64_t off = 0;
  bool first = true;
  for (int boxes = 0; off + 8 <= size && boxes < 100000; ++boxes) {
    std::uint8_t h[16] = {};
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(16, size - off));
    if (pread(f.fd, h, n, static_cast<off_t>(off)) != static_cast<ssize_t>(n))
      return "";
    std::string type(reinterpret_cast<const char *>(h + 4), 4);
    if (first && type != "ftyp")
      return ""; // not ISO-BMFF: the probe decides
    first = false;
    if (type == "moov" || type == "moof")
      return "";
    std::uint64_t box = (std::uint64_t(h[0]) << 24) | (h[1] << 16) | (h[2] << 8) | h[3];
    if (box == 1 && n == 16) {
      box = 0;
      for (int i = 8; i < 16; ++i)
        box = (box << 8) | h[i];
    } else if (box == 0) {
      box = size - off;
    }
    if (box < 8)
      return "its box '" + type + "' at byte " + std::to_string(off) + " is damaged";
    if (box > size - off) {
      char msg[200];
      std::snprintf(msg, sizeof msg,
                    "it is cut short: its '%s' box needs %llu bytes from byte %llu, the file ends at %llu, and the "
                    "movie header (moov) never came",
                    type.c_str(), static_cast<unsigned long long>(box), static_cast<unsigned long long>(off),
                    static_cast<unsigned long long>(size));
      return msg;
    }
    off += box;
  }
  return "it has no movie header (moov): the recording was never finished";
}

namespace {

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
    GError *err = nullptr;
    GConverterResult r = g_converter_convert(G_CONVERTER(z), in.data() + read_pos, in.size() - read_pos, buf,
                                             sizeof buf, G_CONVERTER_INPUT_AT_END, &used, &written, &err);
    if (r == G_CONVERTER_ERROR) {
      g_clear_error(&err);
      return ""; // qtdemux cannot inflate it either
    }
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

std::string segment_name(std::size_t number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "seg_%05zu.m4s", number);
  return buf;
}

namespace {

// Writes a whole file (no fsync: the whole folder is synced once before it is published).
void write_file(const std::string &path, const std::string &data) {
  Fd out;
  out.fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out.fd < 0)
    throw Error(ErrorCode::Io, "cannot create " + path + ": " + g_strerror(errno));
  for (std::size_t done = 0; done < data.size();) {
    ssize_t k = write(out.fd, data.data() + done, data.size() - done);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      throw Error(ErrorCode::Io, "cannot write " + path + ": " + g_strerror(errno));
    done += static_cast<std::size_t>(k);
  }
}

} // namespace

void split_fragmented_mp4(const FragmentedMp4 &mp4, const std::string &dir, std::size_t from) {
  Fd in;
  in.fd = open(mp4.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in.fd < 0)
    throw Error(ErrorCode::Io, "cannot open " + mp4.path + ": " + g_strerror(errno));
  fs::make_dirs(dir);
  if (mp4.moov_size > (64u << 20))
    throw Error(ErrorCode::Invalid, "MP4: moov box too large");
  // Files already there from the live split have the same bytes: they are left alone, so that a player
  // that is fetching one never sees it rewritten.
  std::string init = fs::join(dir, "init.mp4");
  if (fs::file_size(init) != static_cast<std::int64_t>(mp4.ftyp_size + mp4.moov_size))
    write_file(init, pread_all(in.fd, mp4.ftyp_offset, static_cast<std::size_t>(mp4.ftyp_size), mp4.path) +
                         pread_all(in.fd, mp4.moov_offset, static_cast<std::size_t>(mp4.moov_size), mp4.path));
  for (std::size_t i = from; i < mp4.fragments.size(); ++i) {
    const auto &f = mp4.fragments[i];
    std::string path = fs::join(dir, segment_name(i + 1));
    if (fs::file_size(path) == static_cast<std::int64_t>(f.size))
      continue;
    if (f.size > (512ULL << 20))
      throw Error(ErrorCode::Invalid, "MP4: a fragment larger than 512 MiB");
    std::string data = pread_all(in.fd, f.offset, static_cast<std::size_t>(f.size), mp4.path);
    // The decode time, possibly moved (shift()).
    if (f.tfdt_value_size && f.tfdt_value_offset >= f.offset &&
        f.tfdt_value_offset - f.offset + f.tfdt_value_size <= f.size) {
      std::size_t at = static_cast<std::size_t>(f.tfdt_value_offset - f.offset);
      for (int b = 0; b < f.tfdt_value_size; ++b)
        data[at + b] = static_cast<char>((f.decode_time >> (8 * (f.tfdt_value_size - 1 - b))) & 0xff);
    }
    write_file(path, data);
  }
}

std::int64_t constant_bandwidth(const FragmentedMp4 &mp4, double min_buffer) {
  if (mp4.fragments.empty() || !mp4.track.timescale)
    return 0;
  double bits = 0, need = 0;
  const double start = mp4.seconds(mp4.fragments.front().decode_time);
  for (const auto &f : mp4.fragments) {
    bits += f.size * 8.0;
    // Segment k must have arrived when its presentation starts: min_buffer + its start time.
    double deadline = min_buffer + (mp4.seconds(f.decode_time) - start);
    if (deadline > 0)
      need = std::max(need, bits / deadline);
  }
  return static_cast<std::int64_t>(std::ceil(need));
}

std::int64_t peak_bandwidth(const FragmentedMp4 &mp4) {
  double longest = 0;
  for (const auto &f : mp4.fragments)
    longest = std::max(longest, mp4.seconds(f.duration));
  double peak = 0;
  for (const auto &f : mp4.fragments) {
    double d = mp4.seconds(f.duration);
    if (d > 0 && (d >= std::min(1.0, longest / 2) || mp4.fragments.size() == 1))
      peak = std::max(peak, f.size * 8.0 / d);
  }
  return std::max<std::int64_t>(static_cast<std::int64_t>(std::ceil(peak)), average_bandwidth(mp4));
}

std::int64_t average_bandwidth(const FragmentedMp4 &mp4) {
  double bytes = 0;
  for (const auto &f : mp4.fragments)
    bytes += f.size;
  double d = mp4.seconds(mp4.duration());
  return d > 0 ? static_cast<std::int64_t>(std::ceil(bytes * 8.0 / d)) : 0;
}

} // namespace sluice::media
