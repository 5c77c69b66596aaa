// SPDX-License-Identifier: LGPL-2.1-or-later
// The boxes of a fragmented MP4 that sluice reads: the movie header (moov) of its one track and its movie fragments.
#include "media/bmff_internal.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <vector>

namespace sluice::media::detail {

namespace {

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

// The track's id (tkhd).
std::uint32_t read_track_id(const std::vector<Child> &trak) {
  auto tkhd = require(trak, "tkhd", "trak");
  Reader r(tkhd.body, tkhd.size, "tkhd");
  int version = r.u8();
  r.skip(3);
  r.skip(version == 1 ? 16 : 8);
  return r.u32();
}

// The track's timescale (mdhd) and handler (hdlr).
void read_media_headers(const std::vector<Child> &mdia, Mp4Track &track) {
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
}

// The first sample entry of the stsd box: the codec, and the picture size or the audio format.
void read_sample_entry(const Child &stsd, Mp4Track &track) {
  Reader r(stsd.body, stsd.size, "stsd");
  r.skip(4);
  if (r.u32() < 1)
    throw Error(ErrorCode::Invalid, "MP4: no sample description");
  std::uint32_t entry_size = r.u32();
  r.need(4);
  track.sample_entry.assign(reinterpret_cast<const char *>(r.here()), 4);
  r.skip(4);
  if (entry_size < 8 || entry_size - 8 > r.left())
    throw Error(ErrorCode::Invalid, "MP4: bad sample entry");
  Reader e(stsd.body + r.pos(), entry_size - 8, track.sample_entry);
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
}

bool is_sync(std::uint32_t sample_flags) {
  return !(sample_flags & 0x00010000); // sample_is_non_sync_sample
}

// The most samples one fragment may hold: far beyond any real fragment (a minute of 48 kHz audio
// frames or of video at 1000 fps is under 100,000), and it keeps every sum below 64 bits.
constexpr std::uint64_t kMaxFragmentSamples = 1u << 24;

// The sample defaults of a track fragment (tfhd), which must be of the track.
TrackDefaults read_tfhd(const std::vector<Child> &traf, const Mp4Track &track, const TrackDefaults &trex) {
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
  return d;
}

// The decode time of a track fragment (tfdt), and where its value sits in the file (moof body p at body_offset).
void read_tfdt(const std::vector<Child> &traf, const std::uint8_t *p, std::uint64_t body_offset, Mp4Fragment &f) {
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
}

// One track run (trun): its samples are counted into f and their durations added to dts; `first` is true until the
// fragment's first sample is read. Returns how many bytes of media data the samples claim.
std::uint64_t parse_trun(const Child &trun, const TrackDefaults &d, Mp4Fragment &f, bool &first, std::uint64_t &dts) {
  std::uint64_t data_bytes = 0;
  Reader t(trun.body, trun.size, "trun");
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
      cto = version == 0 ? static_cast<std::int64_t>(raw) : static_cast<std::int64_t>(static_cast<std::int32_t>(raw));
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
  return data_bytes;
}

} // namespace

void parse_moov(const std::uint8_t *p, std::size_t n, Mp4Track &track, TrackDefaults &defaults) {
  auto moov = children(p, n, "moov");
  int traks = 0;
  for (const auto &c : moov)
    traks += c.type == "trak";
  if (traks != 1)
    throw Error(ErrorCode::Invalid, "MP4: expected one track, found " + std::to_string(traks));
  auto trak = inside(require(moov, "trak", "moov"));
  track.id = read_track_id(trak);
  auto mdia = inside(require(trak, "mdia", "trak"));
  read_media_headers(mdia, track);
  auto stbl = inside(require(inside(require(mdia, "minf", "mdia")), "stbl", "minf"));
  read_sample_entry(require(stbl, "stsd", "stbl"), track);
  if (auto mvex = find(moov, "mvex"))
    if (auto trex = find(inside(*mvex), "trex")) {
      Reader t(trex->body, trex->size, "trex");
      t.skip(4 + 4 + 4);
      defaults.duration = t.u32();
      defaults.size = t.u32();
      defaults.flags = t.u32();
    }
}

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
    TrackDefaults d = read_tfhd(traf, track, trex);
    read_tfdt(traf, p, body_offset, f);
    std::uint64_t dts = 0;
    for (const auto &tr : traf)
      if (tr.type == "trun")
        data_bytes += parse_trun(tr, d, f, first, dts);
    f.duration += dts;
  }
  if (trafs != 1)
    throw Error(ErrorCode::Invalid, "MP4: expected one track fragment per moof, found " + std::to_string(trafs));
  return data_bytes;
}

} // namespace sluice::media::detail
