// SPDX-License-Identifier: LGPL-2.1-or-later
// A small ISO-BMFF box walker: enough of ISO/IEC 14496-12 to read what mp4mux writes in fragmented mode.
#include "media/bmff.h"

#include "core/error.h"
#include "core/fs.h"
#include "media/bmff_internal.h"

#include <glib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

namespace sluice::media {

namespace detail {

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

} // namespace detail

namespace {

using detail::Fd;
using detail::parse_moof;
using detail::parse_moov;
using detail::pread_all;
using detail::Reader;
using detail::ReadFn;
using detail::TrackDefaults;

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

struct Mp4Cutter::State {
  TrackDefaults defaults;
  std::string buf;        // the bytes from `base` on
  std::uint64_t base = 0; // their offset in the stream
  std::uint64_t off = 0;  // where the next walk resumes
  bool init_sent = false;
};

Mp4Cutter::Mp4Cutter() : state_(std::make_unique<State>()) {}

Mp4Cutter::~Mp4Cutter() = default;

std::vector<Mp4Cutter::Piece> Mp4Cutter::push(const void *data, std::size_t size) {
  State &st = *state_;
  st.buf.append(static_cast<const char *>(data), size);
  if (st.buf.size() > (600ULL << 20))
    throw Error(ErrorCode::Invalid, "MP4: more than 600 MiB without a complete fragment");
  const std::uint64_t base = st.base;
  const std::string &buf = st.buf;
  walk_from(
      mp4_, st.defaults, st.off, base + buf.size(),
      [&](std::uint64_t o, std::size_t n) { return buf.substr(static_cast<std::size_t>(o - base), n); }, true);
  std::vector<Piece> out;
  if (!st.init_sent && mp4_.ftyp_size && mp4_.moov_size) {
    if (mp4_.ftyp_offset < base || mp4_.moov_offset < base)
      throw Error(ErrorCode::Invalid, "MP4: the movie header came after media data");
    Piece init;
    init.init = true;
    init.bytes = buf.substr(static_cast<std::size_t>(mp4_.ftyp_offset - base), mp4_.ftyp_size) +
                 buf.substr(static_cast<std::size_t>(mp4_.moov_offset - base), mp4_.moov_size);
    out.push_back(std::move(init));
    st.init_sent = true;
  }
  for (const auto &f : mp4_.fragments) {
    if (!st.init_sent)
      throw Error(ErrorCode::Invalid, "MP4: a fragment before the movie header");
    Piece p;
    p.bytes = buf.substr(static_cast<std::size_t>(f.offset - base), static_cast<std::size_t>(f.size));
    p.fragment = f;
    p.fragment.offset = 0;
    p.fragment.tfdt_value_offset = f.tfdt_value_size ? f.tfdt_value_offset - f.offset : 0;
    out.push_back(std::move(p));
  }
  mp4_.fragments.clear();
  // What was walked is let go once the movie header is out (its bytes were needed until then).
  if (st.init_sent && st.off > base) {
    st.buf.erase(0, static_cast<std::size_t>(st.off - base));
    st.base = st.off;
  }
  return out;
}

void set_decode_time(std::string &bytes, const Mp4Fragment &f, std::uint64_t decode_time) {
  if (!f.tfdt_value_size || f.tfdt_value_offset + f.tfdt_value_size > bytes.size())
    throw Error(ErrorCode::Invalid, "MP4: the fragment has no decode time to set");
  if (f.tfdt_value_size == 4 && decode_time > 0xffffffffULL)
    throw Error(ErrorCode::Invalid, "MP4: a 32-bit decode time cannot hold " + std::to_string(decode_time));
  const auto at = static_cast<std::size_t>(f.tfdt_value_offset);
  for (int b = 0; b < f.tfdt_value_size; ++b)
    bytes[at + b] = static_cast<char>((decode_time >> (8 * (f.tfdt_value_size - 1 - b))) & 0xff);
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
