// SPDX-License-Identifier: LGPL-2.1-or-later
// Finishing CMAF packages, posters, storyboards and previews.
#include "jobs/outputs.h"

#include "core/fs.h"
#include "core/gobj.h"
#include "media/bmff.h"
#include "media/dash.h"
#include "media/hls.h"

#include <gst/gst.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace sluice::jobs {

namespace {

using pipeline::output_info;
using pipeline::OutputKind;

// What a finished output of `kind` is fetched by, and the role a client knows the file by (the kind's name).
std::string artifact(OutputKind kind) {
  return std::string(output_info(kind).artifact_file);
}
std::string role(OutputKind kind) {
  return std::string(output_info(kind).name);
}

double probed_seconds(const TranscodePlan &plan) {
  return plan.probe.duration_ns > 0 ? plan.probe.duration_ns / 1e9 : 0.0;
}

int int_param(const TranscodePlan &plan, const char *name, int fallback) {
  return pipeline::int_value(plan.values, name, fallback);
}

std::pair<int, int> picture_size(const TranscodePlan &plan) {
  return pipeline::picture_size(plan.values, plan.render);
}

struct Track {
  std::string name;
  media::FragmentedMp4 mp4;
};

// A track's media playlist: its init segment, then its segments in order.
media::MediaPlaylist cmaf_playlist(const std::string &name, const media::FragmentedMp4 &mp4) {
  media::MediaPlaylist pl;
  pl.map_uri = name + "/init.mp4";
  for (std::size_t i = 0; i < mp4.fragments.size(); ++i)
    pl.segments.push_back({name + "/" + media::segment_name(i + 1), mp4.seconds(mp4.fragments[i].duration), -1});
  return pl;
}

// The earliest start of the named tracks (Runner::track_starts() keys them by file: NAME.mp4), or
// nothing while one of them has not begun.
std::optional<std::int64_t> earliest_start(const std::map<std::string, std::int64_t> &starts,
                                           const std::vector<std::string> &names) {
  std::optional<std::int64_t> earliest;
  for (const auto &n : names) {
    auto it = starts.find(n + ".mp4");
    if (it == starts.end())
      return std::nullopt;
    earliest = earliest ? std::min(*earliest, it->second) : it->second;
  }
  return earliest;
}

// How far (in the track's timescale) a track began after the earliest one: mp4mux starts every
// fragmented track at 0, and this puts it back in its place.
std::uint64_t start_shift(const std::map<std::string, std::int64_t> &starts, const std::string &name,
                          std::int64_t earliest, std::uint32_t timescale) {
  std::int64_t late = starts.at(name + ".mp4") - earliest;
  return static_cast<std::uint64_t>(std::llround(late / 1e9 * timescale));
}

// What the master playlist says of one track.
struct MasterEntry {
  std::string name;
  const media::Mp4Track *track;
  std::int64_t bandwidth, average_bandwidth; // average 0: unknown
};

// The HLS master of a CMAF package: one variant per video track, the audio as an alternative rendition
// every variant plays with (or the only variant of an audio-only package).
std::string cmaf_master(const std::vector<MasterEntry> &video, const std::optional<MasterEntry> &audio,
                        double frame_rate) {
  std::vector<media::Variant> variants;
  std::vector<media::MediaRendition> media;
  for (const auto &e : video) {
    media::Variant v;
    v.uri = e.name + ".m3u8";
    v.bandwidth = e.bandwidth + (audio ? audio->bandwidth : 0);
    v.average_bandwidth = e.average_bandwidth && (!audio || audio->average_bandwidth)
                              ? e.average_bandwidth + (audio ? audio->average_bandwidth : 0)
                              : 0;
    v.width = e.track->width;
    v.height = e.track->height;
    v.frame_rate = frame_rate;
    v.codecs = e.track->codecs + (audio ? "," + audio->track->codecs : "");
    v.audio_group = audio ? "audio" : "";
    variants.push_back(v);
  }
  if (audio && video.empty()) {
    media::Variant v;
    v.uri = audio->name + ".m3u8";
    v.bandwidth = audio->bandwidth;
    v.average_bandwidth = audio->average_bandwidth;
    v.codecs = audio->track->codecs;
    variants.push_back(v);
  } else if (audio) {
    media::MediaRendition m;
    m.group_id = "audio";
    m.name = "Audio";
    m.uri = audio->name + ".m3u8";
    m.channels = audio->track->channels;
    media.push_back(m);
  }
  return media::write_master_playlist(variants, media, 7);
}

RenditionResult track_result(const Track &t, int width, int height) {
  RenditionResult rr;
  rr.name = t.name;
  rr.playlist = t.name + ".m3u8";
  rr.width = width;
  rr.height = height;
  rr.codecs = t.mp4.track.codecs;
  rr.stats.peak_bps = media::peak_bandwidth(t.mp4);
  rr.stats.average_bps = media::average_bandwidth(t.mp4);
  rr.stats.duration = t.mp4.seconds(t.mp4.duration());
  for (const auto &f : t.mp4.fragments)
    rr.stats.bytes += static_cast<std::int64_t>(f.size);
  rr.segments = static_cast<int>(t.mp4.fragments.size());
  rr.start = t.mp4.seconds(t.mp4.fragments.front().decode_time);
  rr.end = t.mp4.seconds(t.mp4.end_time());
  return rr;
}

} // namespace

TranscodeResult finalize_output(const TranscodePlan &plan, const std::string &dir,
                                const std::map<std::string, std::int64_t> &track_starts) {
  const OutputKind kind = plan.description.output;
  TranscodeResult res;
  switch (kind) {
  case OutputKind::Hls:
    res = finalize_hls(plan, dir);
    res.files["hls"] = res.master;
    break;
  case OutputKind::Cmaf: res = finalize_cmaf(plan, dir, track_starts); break;
  case OutputKind::Poster: res = finalize_poster(plan, dir); break;
  case OutputKind::Storyboard: res = finalize_storyboard(plan, dir); break;
  case OutputKind::Preview: res = finalize_preview(plan, dir); break;
  case OutputKind::LiveHls:
  case OutputKind::LiveCmaf: // refused before a job runs (jobs::plan_transcode)
    throw Error(ErrorCode::Invalid, "pipeline '" + plan.description.name + "' is a live stream's, not a job's");
  }
  res.output = kind;
  return res;
}

TranscodeResult finalize_cmaf(const TranscodePlan &plan, const std::string &dir,
                              const std::map<std::string, std::int64_t> &track_starts) {
  TranscodeResult res;
  res.out = dir;
  const double probed = probed_seconds(plan);
  std::vector<Track> video;
  std::optional<Track> audio;
  auto read_track = [&](const std::string &name, const char *handler) {
    std::string path = fs::join(dir, name + ".mp4");
    if (!fs::exists(path))
      throw Error(ErrorCode::Pipeline, "the pipeline wrote no track for rendition " + name);
    Track t{name, media::read_fragmented_mp4(path)};
    if (t.mp4.track.handler != handler)
      throw Error(ErrorCode::Pipeline, "rendition " + name + " holds a '" + t.mp4.track.handler + "' track");
    check_output_length("rendition " + name, t.mp4.seconds(t.mp4.duration()), probed);
    return t;
  };
  if (plan.render.has_video)
    for (const auto &r : plan.render.renditions) {
      Track t = read_track(r.name, "vide");
      // Every segment must start with a keyframe: players switch renditions and seek there.
      for (std::size_t i = 0; i < t.mp4.fragments.size(); ++i) {
        const auto &f = t.mp4.fragments[i];
        if (!f.starts_with_sync)
          throw Error(ErrorCode::Pipeline, "rendition " + r.name + ": segment " + std::to_string(i + 1) +
                                               " does not start with a keyframe (the encoder did not keep the "
                                               "keyframe cadence)");
        if (f.earliest_composition < f.first_composition)
          throw Error(ErrorCode::Pipeline, "rendition " + r.name + ": segment " + std::to_string(i + 1) +
                                               " is an open GOP (a frame is shown before its keyframe)");
      }
      video.push_back(std::move(t));
    }
  if (plan.render.has_audio)
    audio = read_track("audio", "soun");

  std::vector<Track *> tracks;
  std::vector<std::string> names;
  for (auto &t : video)
    tracks.push_back(&t);
  if (audio)
    tracks.push_back(&*audio);
  for (auto *t : tracks)
    names.push_back(t->name);

  // Put the tracks back where they began against each other (mp4mux started each at 0).
  if (auto earliest = earliest_start(track_starts, names); earliest && !tracks.empty())
    for (auto *t : tracks)
      if (auto ticks = start_shift(track_starts, t->name, *earliest, t->mp4.track.timescale))
        t->mp4.shift(ticks);

  // Renditions whose segments start at the same instants let players switch between them anywhere.
  bool aligned = true;
  for (const auto &t : video) {
    const auto &a = video.front().mp4, &b = t.mp4;
    aligned = aligned && a.fragments.size() == b.fragments.size();
    for (std::size_t i = 0; aligned && i < a.fragments.size(); ++i)
      aligned = std::llabs(static_cast<long long>(a.fragments[i].decode_time) * b.track.timescale -
                           static_cast<long long>(b.fragments[i].decode_time) * a.track.timescale) <
                static_cast<long long>(a.track.timescale) * b.track.timescale / 1000;
  }

  double longest_segment = 0;
  for (auto *t : tracks) {
    media::split_fragmented_mp4(t->mp4, fs::join(dir, t->name));
    fs::remove_all(fs::join(dir, t->name + ".mp4"));
    fs::write_atomic(fs::join(dir, t->name + ".m3u8"),
                     media::write_media_playlist(cmaf_playlist(t->name, t->mp4), "VOD"));
    for (const auto &f : t->mp4.fragments)
      longest_segment = std::max(longest_segment, t->mp4.seconds(f.duration));
    res.duration = std::max(res.duration, t->mp4.seconds(t->mp4.end_time()));
  }

  // HLS: one variant per video rendition, audio as an alternative rendition all of them use.
  std::vector<MasterEntry> entries;
  std::optional<MasterEntry> audio_entry;
  std::optional<RenditionResult> audio_result;
  if (audio) {
    audio_result = track_result(*audio, 0, 0);
    audio_entry =
        MasterEntry{audio->name, &audio->mp4.track, audio_result->stats.peak_bps, audio_result->stats.average_bps};
  }
  for (std::size_t i = 0; i < video.size(); ++i) {
    const auto &spec = plan.render.renditions[i];
    RenditionResult rr = track_result(video[i], spec.width, spec.height);
    rr.frames = static_cast<std::int64_t>(video[i].mp4.samples());
    entries.push_back({video[i].name, &video[i].mp4.track, rr.stats.peak_bps, rr.stats.average_bps});
    res.renditions.push_back(rr);
  }
  if (audio_result)
    res.renditions.push_back(*audio_result);
  res.master = output_info(OutputKind::Cmaf).master;
  fs::write_atomic(fs::join(dir, res.master), cmaf_master(entries, audio_entry, plan.render.framerate));

  // DASH over the same files.
  const double min_buffer = std::max(1.0, std::ceil(longest_segment));
  std::vector<media::DashAdaptationSet> sets;
  if (!video.empty()) {
    media::DashAdaptationSet vs;
    vs.content_type = "video";
    vs.segment_alignment = aligned;
    for (const auto &t : video)
      vs.representations.push_back({t.name, &t.mp4, media::constant_bandwidth(t.mp4, min_buffer),
                                    media::frame_rate_string(plan.render.framerate)});
    sets.push_back(vs);
  }
  if (audio) {
    media::DashAdaptationSet as;
    as.content_type = "audio";
    as.representations.push_back({audio->name, &audio->mp4, media::constant_bandwidth(audio->mp4, min_buffer), ""});
    sets.push_back(as);
  }
  const std::string manifest(output_info(OutputKind::Cmaf).manifest);
  fs::write_atomic(fs::join(dir, manifest), media::write_mpd(sets, res.duration, min_buffer));
  res.files["hls"] = res.master;
  res.files["dash"] = manifest;
  return res;
}

struct CmafLive::Track {
  std::string name;
  bool video = false;
  int bitrate_kbps = 0; // nominal, for the interim master
  media::GrowingMp4 file;
  std::size_t written = 0;
  std::optional<std::uint64_t> shift;
  Track(std::string n, bool v, int kbps, const std::string &path)
      : name(std::move(n)), video(v), bitrate_kbps(kbps), file(path) {}
};

CmafLive::CmafLive(const TranscodePlan &plan, std::string dir) : plan_(plan), dir_(std::move(dir)) {
  const int audio_kbps = int_param(plan, "audio_bitrate", 128);
  if (plan.render.has_video)
    for (const auto &r : plan.render.renditions)
      tracks_.push_back(std::make_unique<Track>(r.name, true, r.bitrate_kbps, fs::join(dir_, r.name + ".mp4")));
  if (plan.render.has_audio)
    tracks_.push_back(std::make_unique<Track>("audio", false, audio_kbps, fs::join(dir_, "audio.mp4")));
}

CmafLive::~CmafLive() = default;

bool CmafLive::update(const std::map<std::string, std::int64_t> &track_starts) {
  // The tracks are placed against each other (see finalize_cmaf): wait until every one has begun.
  std::vector<std::string> names;
  for (const auto &t : tracks_)
    names.push_back(t->name);
  auto earliest = earliest_start(track_starts, names);
  if (!earliest || tracks_.empty())
    return master_;
  bool all_have_segments = true;
  for (auto &t : tracks_) {
    auto &mp4 = t->file.mp4();
    std::size_t before = mp4.fragments.size();
    if (t->file.update() > 0 && t->file.has_header()) {
      if (!t->shift)
        t->shift = start_shift(track_starts, t->name, *earliest, mp4.track.timescale);
      for (std::size_t i = before; i < mp4.fragments.size(); ++i)
        mp4.fragments[i].decode_time += *t->shift;
      media::split_fragmented_mp4(mp4, fs::join(dir_, t->name), t->written);
      t->written = mp4.fragments.size();
      fs::write_atomic(fs::join(dir_, t->name + ".m3u8"),
                       media::write_media_playlist(cmaf_playlist(t->name, mp4), "EVENT"));
    }
    all_have_segments = all_have_segments && t->written > 0;
  }
  if (!master_ && all_have_segments) {
    // Nominal bandwidths: the finished package measures them.
    std::vector<MasterEntry> video;
    std::optional<MasterEntry> audio;
    for (const auto &t : tracks_) {
      MasterEntry e{t->name, &t->file.mp4().track, static_cast<std::int64_t>(t->bitrate_kbps) * 1000, 0};
      if (t->video)
        video.push_back(e);
      else
        audio = e;
    }
    fs::write_atomic(fs::join(dir_, std::string(output_info(OutputKind::Cmaf).master)),
                     cmaf_master(video, audio, plan_.render.framerate));
    master_ = true;
  }
  return master_;
}

TranscodeResult finalize_poster(const TranscodePlan &plan, const std::string &dir) {
  TranscodeResult res;
  res.out = dir;
  // The candidates are spread evenly; the most detailed one (the largest JPEG at one quality) is the
  // poster: black, faded or blank frames compress to almost nothing.
  std::vector<std::string> candidates;
  for (const auto &f : fs::list_dir(dir))
    if (g_str_has_prefix(f.c_str(), "candidate_") && g_str_has_suffix(f.c_str(), ".jpg"))
      candidates.push_back(f);
  if (candidates.empty())
    throw Error(ErrorCode::Pipeline, "the pipeline wrote no poster candidate (no picture was decoded)");
  std::size_t best = 0;
  std::int64_t best_size = -1;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    std::int64_t size = fs::file_size(fs::join(dir, candidates[i]));
    if (size > best_size) {
      best = i;
      best_size = size;
    }
  }
  if (best_size <= 0)
    throw Error(ErrorCode::Pipeline, "the poster candidates are empty");
  if (rename(fs::join(dir, candidates[best]).c_str(), fs::join(dir, artifact(OutputKind::Poster)).c_str()) != 0)
    throw Error(ErrorCode::Io, "cannot rename the poster: " + std::string(g_strerror(errno)));
  for (std::size_t i = 0; i < candidates.size(); ++i)
    if (i != best)
      fs::remove_all(fs::join(dir, candidates[i]));
  auto [w, h] = picture_size(plan);
  res.width = w;
  res.height = h;
  const int count = int_param(plan, "candidates", 10);
  const double duration_s = std::max(1.0, std::ceil(plan.render.duration));
  res.time = best * duration_s / count;
  res.duration = probed_seconds(plan);
  res.files[role(OutputKind::Poster)] = artifact(OutputKind::Poster);
  return res;
}

std::size_t i420_size(int width, int height) {
  auto up4 = [](std::size_t v) { return (v + 3) & ~std::size_t(3); };
  std::size_t sy = up4(width), sc = up4((width + 1) / 2);
  std::size_t h2 = (height + 1) / 2;
  return sy * ((height + 1) & ~1) + 2 * sc * h2;
}

void write_jpeg_i420(const std::string &path, const std::string &i420, int width, int height, int quality) {
  auto pipeline = adopt_floating(gst_pipeline_new(nullptr));
  auto src = adopt_floating(gst_element_factory_make("appsrc", nullptr));
  auto enc = adopt_floating(gst_element_factory_make("jpegenc", nullptr));
  auto sink = adopt_floating(gst_element_factory_make("filesink", nullptr));
  if (!pipeline || !src || !enc || !sink)
    throw Error(ErrorCode::Pipeline, "appsrc, jpegenc or filesink is missing");
  {
    g_autoptr(GstCaps) caps = gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, "I420", "width", G_TYPE_INT,
                                                  width, "height", G_TYPE_INT, height, "framerate", GST_TYPE_FRACTION,
                                                  0, 1, "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, nullptr);
    g_object_set(src.get(), "caps", caps, "format", GST_FORMAT_TIME, nullptr);
  }
  g_object_set(enc.get(), "quality", quality, nullptr);
  g_object_set(sink.get(), "location", path.c_str(), nullptr);
  gst_bin_add_many(GST_BIN(pipeline.get()), src.get(), enc.get(), sink.get(), nullptr);
  gst_element_link_many(src.get(), enc.get(), sink.get(), nullptr);
  gst_element_set_state(pipeline.get(), GST_STATE_PLAYING);
  GstFlowReturn flow;
  {
    g_autoptr(GstBuffer) buf = gst_buffer_new_memdup(i420.data(), i420.size());
    GST_BUFFER_PTS(buf) = 0;
    g_signal_emit_by_name(src.get(), "push-buffer", buf, &flow);
  }
  g_signal_emit_by_name(src.get(), "end-of-stream", &flow);
  std::string error;
  {
    g_autoptr(GstBus) bus = gst_element_get_bus(pipeline.get());
    g_autoptr(GstMessage) m = gst_bus_timed_pop_filtered(
        bus, 30 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    if (!m) {
      error = "the JPEG encoder did not finish";
    } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
      g_autoptr(GError) e = nullptr;
      gst_message_parse_error(m, &e, nullptr);
      error = e ? e->message : "error";
    }
  }
  gst_element_set_state(pipeline.get(), GST_STATE_NULL);
  if (!error.empty())
    throw Error(ErrorCode::Pipeline, "cannot write " + path + ": " + error);
}

std::string vtt_time(double seconds) {
  long long ms = std::llround(std::max(0.0, seconds) * 1000.0);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld.%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60,
                ms % 1000);
  return buf;
}

TranscodeResult finalize_storyboard(const TranscodePlan &plan, const std::string &dir) {
  TranscodeResult res;
  res.out = dir;
  auto [w, h] = picture_size(plan);
  const int interval = std::max(1, int_param(plan, "interval_seconds", 5));
  const int columns = std::max(1, int_param(plan, "columns", 10));
  const int rows = std::max(1, int_param(plan, "rows", 10));
  const int quality = int_param(plan, "quality", 80);
  const double duration = plan.render.duration > 0 ? plan.render.duration : 0.0;
  std::vector<std::string> tiles;
  for (const auto &f : fs::list_dir(dir))
    if (g_str_has_prefix(f.c_str(), "tile_") && g_str_has_suffix(f.c_str(), ".yuv"))
      tiles.push_back(f);
  // One tile per interval that starts inside the video (videorate may repeat the last frame).
  std::size_t wanted = duration > 0 ? static_cast<std::size_t>(std::ceil(duration / interval - 1e-6)) : tiles.size();
  if (tiles.size() > wanted)
    tiles.resize(std::max<std::size_t>(1, wanted));
  if (tiles.empty())
    throw Error(ErrorCode::Pipeline, "the pipeline wrote no storyboard tile (no picture was decoded)");
  if (tiles.size() + 1 < wanted)
    check_output_length("the storyboard", static_cast<double>(tiles.size()) * interval, duration);
  const std::size_t tile_bytes = i420_size(w, h);
  const std::size_t per_sheet = static_cast<std::size_t>(columns) * rows;
  auto up4 = [](std::size_t v) { return (v + 3) & ~std::size_t(3); };
  std::string vtt = "WEBVTT\n\n";
  for (std::size_t first = 0, sheet = 1; first < tiles.size(); first += per_sheet, ++sheet) {
    std::size_t count = std::min(per_sheet, tiles.size() - first);
    int cols = static_cast<int>(std::min<std::size_t>(count, columns));
    int rws = static_cast<int>((count + columns - 1) / columns);
    int sw = cols * w, sh = rws * h;
    std::size_t sy = up4(sw), sc = up4(sw / 2);
    std::string img(i420_size(sw, sh), '\0');
    std::memset(img.data(), 16, sy * sh);                         // black
    std::memset(img.data() + sy * sh, 128, img.size() - sy * sh); // no colour
    const std::size_t ty = up4(w), tc = up4(w / 2);
    char name[32];
    std::snprintf(name, sizeof name, "sheet_%03zu.jpg", sheet);
    for (std::size_t i = 0; i < count; ++i) {
      std::string tile = fs::read_file(fs::join(dir, tiles[first + i]));
      if (tile.size() != tile_bytes)
        throw Error(ErrorCode::Pipeline, "storyboard tile " + tiles[first + i] + " has " + std::to_string(tile.size()) +
                                             " bytes, expected " + std::to_string(tile_bytes));
      int cx = static_cast<int>(i % columns) * w, cy = static_cast<int>(i / columns) * h;
      for (int y = 0; y < h; ++y)
        std::memcpy(img.data() + (cy + y) * sy + cx, tile.data() + y * ty, w);
      for (int p = 0; p < 2; ++p) {
        const char *src = tile.data() + ty * h + p * tc * (h / 2);
        char *dst = img.data() + sy * sh + p * sc * (sh / 2);
        for (int y = 0; y < h / 2; ++y)
          std::memcpy(dst + (cy / 2 + y) * sc + cx / 2, src + y * tc, w / 2);
      }
      std::size_t k = first + i;
      double start = static_cast<double>(k) * interval;
      double end = std::min(start + interval, duration > 0 ? duration : start + interval);
      if (end <= start)
        end = start + 0.001;
      vtt += vtt_time(start) + " --> " + vtt_time(end) + "\n" + name + "#xywh=" + std::to_string(cx) + "," +
             std::to_string(cy) + "," + std::to_string(w) + "," + std::to_string(h) + "\n\n";
    }
    write_jpeg_i420(fs::join(dir, name), img, sw, sh, quality);
  }
  for (const auto &f : fs::list_dir(dir))
    if (g_str_has_prefix(f.c_str(), "tile_"))
      fs::remove_all(fs::join(dir, f));
  fs::write_atomic(fs::join(dir, artifact(OutputKind::Storyboard)), vtt);
  res.width = w;
  res.height = h;
  res.tiles = static_cast<int>(tiles.size());
  res.duration = duration;
  res.files[role(OutputKind::Storyboard)] = artifact(OutputKind::Storyboard);
  return res;
}

TranscodeResult finalize_preview(const TranscodePlan &plan, const std::string &dir) {
  TranscodeResult res;
  res.out = dir;
  std::string path = fs::join(dir, artifact(OutputKind::Preview));
  if (fs::file_size(path) <= 0)
    throw Error(ErrorCode::Pipeline, "the pipeline wrote no preview");
  auto [start, end] = pipeline::clip_of(plan.values, plan.render);
  double expected = (std::min<double>(end, plan.render.duration > 0 ? plan.render.duration * 1e9 : end) - start) / 1e9;
  auto p = media::probe(path);
  double got = p.duration_ns > 0 ? p.duration_ns / 1e9 : 0.0;
  check_output_length("the preview", got, expected);
  auto [w, h] = picture_size(plan);
  res.width = w;
  res.height = h;
  res.time = start / 1e9;
  res.duration = got;
  res.files[role(OutputKind::Preview)] = artifact(OutputKind::Preview);
  return res;
}

} // namespace sluice::jobs
