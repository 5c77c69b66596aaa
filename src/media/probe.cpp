// SPDX-License-Identifier: LGPL-2.1-or-later
// GstDiscoverer-based probe with clear errors for files that are not media.
#include "media/probe.h"

#include "media/bmff.h"
#include "media/probe_internal.h"

#include "core/error.h"
#include "core/fs.h"

#include <gst/pbutils/pbutils.h>

#include <cmath>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>

GST_DEBUG_CATEGORY(sluice_probe_debug);
#define GST_CAT_DEFAULT sluice_probe_debug

namespace sluice::media {

namespace {

using detail::LostErrors;

std::string codec_description(GstCaps *caps) {
  if (!caps)
    return "";
  g_autofree gchar *d = gst_pb_utils_get_codec_description(caps);
  return d ? d : "";
}

std::string caps_name(GstCaps *caps) {
  if (!caps || gst_caps_is_empty(caps) || gst_caps_is_any(caps))
    return "";
  return gst_structure_get_name(gst_caps_get_structure(caps, 0));
}

std::int64_t tag_bitrate(const GstTagList *tags) {
  guint br = 0;
  if (tags &&
      (gst_tag_list_get_uint(tags, GST_TAG_BITRATE, &br) || gst_tag_list_get_uint(tags, GST_TAG_NOMINAL_BITRATE, &br)))
    return br;
  return 0;
}

int tag_rotation(const GstTagList *tags, bool *mirrored = nullptr) {
  g_autofree gchar *o = nullptr;
  int rot = 0;
  if (tags && gst_tag_list_get_string(tags, GST_TAG_IMAGE_ORIENTATION, &o) && o) {
    std::string s = o;
    if (mirrored)
      *mirrored = g_str_has_prefix(o, "flip-rotate-");
    if (s == "rotate-90" || s == "flip-rotate-90")
      rot = 90;
    else if (s == "rotate-180" || s == "flip-rotate-180")
      rot = 180;
    else if (s == "rotate-270" || s == "flip-rotate-270")
      rot = 270;
  }
  return rot;
}

// The caps of a stream, described: its codec (for people) and its media type.
void describe_caps(GstDiscovererStreamInfo *stream, std::string &codec, std::string &media_type) {
  g_autoptr(GstCaps) caps = gst_discoverer_stream_info_get_caps(stream);
  codec = codec_description(caps);
  media_type = caps_name(caps);
}

[[noreturn]] void not_media(const std::string &path, const std::string &why) {
  throw Error(ErrorCode::NotMedia, path + " is not a media file sluice can read: " + why);
}

// The absolute path and size of a file the probe may hand to GstDiscoverer: it exists, is a file and not empty,
// and it is refused before (NotMedia) when it is an MP4 that cannot be played or nests too deep.
ProbeResult checked_file(const std::string &path) {
  ProbeResult r;
  r.path = fs::absolute(path);
  if (!fs::exists(r.path))
    throw Error(ErrorCode::NotFound, "no such file: " + path);
  if (fs::is_dir(r.path))
    throw Error(ErrorCode::NotMedia, path + " is a folder, not a media file");
  r.size = fs::file_size(r.path);
  if (r.size == 0)
    throw Error(ErrorCode::NotMedia, path + " is empty");
  // An MP4 without its movie header cannot be played at all; said at once (GstDiscoverer sometimes
  // waits for its whole timeout on such a file).
  if (std::string why = mp4_unplayable_reason(r.path); !why.empty())
    not_media(path, why);
  // Demuxers read some nested structures recursively, without a limit: a file nested deep enough
  // overflows the stack of the thread that reads it, and the whole process goes. Refused before.
  if (std::string why = nesting_problem(r.path); !why.empty())
    not_media(path, why);
  return r;
}

// Why the discoverer misses plugins: the installer details of the missing elements, or its error.
std::string missing_plugins(GstDiscovererInfo *info, const std::string &reason) {
  std::string missing;
  if (info)
    if (const gchar **details = gst_discoverer_info_get_missing_elements_installer_details(info))
      for (const gchar **d = details; *d; d++)
        missing += std::string(missing.empty() ? "" : ", ") + *d;
  return "a GStreamer plugin is missing" +
         (missing.empty() ? reason.empty() ? "" : " (" + reason + ")" : " (" + missing + ")");
}

// Runs the discoverer on the file at `uri`: what it found, or NotMedia with the reason.
GstDiscovererInfo *discover(GstDiscoverer *disc, const char *uri, const std::string &path, int timeout_s) {
  g_autoptr(GError) err = nullptr;
  LostErrors lost;
  gulong setup = g_signal_connect(disc, "source-setup", G_CALLBACK(LostErrors::on_source_setup), &lost);
  g_autoptr(GstDiscovererInfo) info = gst_discoverer_discover_uri(disc, uri, &err);
  lost.stop();
  g_signal_handler_disconnect(disc, setup);
  GstDiscovererResult res = info ? gst_discoverer_info_get_result(info) : GST_DISCOVERER_ERROR;
  std::string reason = err ? err->message : "";
  switch (res) {
  case GST_DISCOVERER_OK: return static_cast<GstDiscovererInfo *>(g_steal_pointer(&info));
  case GST_DISCOVERER_URI_INVALID: not_media(path, "invalid location");
  case GST_DISCOVERER_TIMEOUT: not_media(path, "probing timed out after " + std::to_string(timeout_s) + " s");
  case GST_DISCOVERER_BUSY: not_media(path, "discoverer busy");
  case GST_DISCOVERER_MISSING_PLUGINS: not_media(path, missing_plugins(info, reason));
  case GST_DISCOVERER_ERROR:
  default: not_media(path, reason.empty() ? "unknown error" : reason);
  }
}

// The description of the container, when the file has one.
std::string container_of(GstDiscovererInfo *info) {
  g_autoptr(GstDiscovererStreamInfo) top = gst_discoverer_info_get_stream_info(info);
  if (!top || !GST_IS_DISCOVERER_CONTAINER_INFO(top))
    return "";
  g_autoptr(GstCaps) caps = gst_discoverer_stream_info_get_caps(top);
  return codec_description(caps);
}

VideoInfo video_info(GstDiscovererVideoInfo *v, GstDiscovererInfo *info) {
  VideoInfo vi;
  describe_caps(GST_DISCOVERER_STREAM_INFO(v), vi.codec, vi.caps);
  vi.width = static_cast<int>(gst_discoverer_video_info_get_width(v));
  vi.height = static_cast<int>(gst_discoverer_video_info_get_height(v));
  vi.par_n = static_cast<int>(gst_discoverer_video_info_get_par_num(v));
  vi.par_d = static_cast<int>(gst_discoverer_video_info_get_par_denom(v));
  if (vi.par_n <= 0 || vi.par_d <= 0)
    vi.par_n = vi.par_d = 1;
  vi.fps_n = static_cast<int>(gst_discoverer_video_info_get_framerate_num(v));
  vi.fps_d = static_cast<int>(gst_discoverer_video_info_get_framerate_denom(v));
  vi.fps = vi.fps_d > 0 ? static_cast<double>(vi.fps_n) / vi.fps_d : 0.0;
  vi.bitrate = gst_discoverer_video_info_get_bitrate(v);
  if (!vi.bitrate)
    vi.bitrate = gst_discoverer_video_info_get_max_bitrate(v);
  vi.interlaced = gst_discoverer_video_info_is_interlaced(v);
  const GstTagList *tags = gst_discoverer_stream_info_get_tags(GST_DISCOVERER_STREAM_INFO(v));
  if (!vi.bitrate)
    vi.bitrate = tag_bitrate(tags);
  vi.rotation = tag_rotation(tags, &vi.mirrored);
  if (vi.rotation == 0 && !vi.mirrored)
    vi.rotation = tag_rotation(gst_discoverer_info_get_tags(info), &vi.mirrored);
  vi.display_width = static_cast<int>(std::lround(static_cast<double>(vi.width) * vi.par_n / vi.par_d));
  vi.display_height = vi.height;
  if (vi.rotation == 90 || vi.rotation == 270)
    std::swap(vi.display_width, vi.display_height);
  return vi;
}

AudioInfo audio_info(GstDiscovererAudioInfo *a) {
  AudioInfo ai;
  describe_caps(GST_DISCOVERER_STREAM_INFO(a), ai.codec, ai.caps);
  ai.channels = static_cast<int>(gst_discoverer_audio_info_get_channels(a));
  ai.sample_rate = static_cast<int>(gst_discoverer_audio_info_get_sample_rate(a));
  ai.bitrate = gst_discoverer_audio_info_get_bitrate(a);
  if (!ai.bitrate)
    ai.bitrate = tag_bitrate(gst_discoverer_stream_info_get_tags(GST_DISCOVERER_STREAM_INFO(a)));
  return ai;
}

// A list of streams of a discovery, freed with them.
struct StreamListFree {
  void operator()(GList *l) const { gst_discoverer_stream_info_list_free(l); }
};
using StreamList = std::unique_ptr<GList, StreamListFree>;

// The number of streams of each kind, the first video stream and the first audio stream.
void read_streams(GstDiscovererInfo *info, ProbeResult &r) {
  StreamList videos(gst_discoverer_info_get_video_streams(info));
  StreamList audios(gst_discoverer_info_get_audio_streams(info));
  StreamList subs(gst_discoverer_info_get_subtitle_streams(info));
  r.video_streams = static_cast<int>(g_list_length(videos.get()));
  r.audio_streams = static_cast<int>(g_list_length(audios.get()));
  r.subtitle_streams = static_cast<int>(g_list_length(subs.get()));

  // Cover art (a single still image in audio files) is not a video stream we transcode.
  for (GList *l = videos.get(); l; l = l->next) {
    auto *v = GST_DISCOVERER_VIDEO_INFO(l->data);
    if (gst_discoverer_video_info_is_image(v))
      continue;
    VideoInfo vi = video_info(v, info);
    if (vi.width > 0 && vi.height > 0) {
      r.video = vi;
      break;
    }
  }
  if (audios)
    r.audio = audio_info(GST_DISCOVERER_AUDIO_INFO(audios->data));
}

} // namespace

ProbeResult probe(const std::string &path, int timeout_s) {
  static std::once_flag once;
  std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(sluice_probe_debug, "sluice-probe", 0, "sluice media probe"); });

  ProbeResult r = checked_file(path);
  GError *err = nullptr;
  g_autofree gchar *uri = gst_filename_to_uri(r.path.c_str(), &err);
  if (!uri)
    throw Error::from_gerror(ErrorCode::NotFound, "bad file name " + path, err);
  g_autoptr(GstDiscoverer) disc = gst_discoverer_new(static_cast<GstClockTime>(timeout_s) * GST_SECOND, &err);
  if (!disc)
    throw Error::from_gerror(ErrorCode::Internal, "cannot create a discoverer", err);
  g_autoptr(GstDiscovererInfo) info = discover(disc, uri, path, timeout_s);

  GstClockTime dur = gst_discoverer_info_get_duration(info);
  r.duration_ns = GST_CLOCK_TIME_IS_VALID(dur) ? static_cast<std::int64_t>(dur) : -1;
  r.container = container_of(info);
  read_streams(info, r);

  if (!r.video && !r.audio)
    throw Error(ErrorCode::NotMedia, path + " has no audio or video stream");
  GST_INFO("probed %s: duration %" GST_TIME_FORMAT " video=%d audio=%d", r.path.c_str(),
           GST_TIME_ARGS(r.duration_ns >= 0 ? static_cast<GstClockTime>(r.duration_ns) : GST_CLOCK_TIME_NONE),
           r.video.has_value(), r.audio.has_value());
  return r;
}

JsonNode *probe_to_json(const ProbeResult &r) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  auto str = [&](const char *k, const std::string &v) {
    json_builder_set_member_name(b, k);
    json_builder_add_string_value(b, v.c_str());
  };
  auto num = [&](const char *k, std::int64_t v) {
    json_builder_set_member_name(b, k);
    json_builder_add_int_value(b, v);
  };
  auto dbl = [&](const char *k, double v) {
    json_builder_set_member_name(b, k);
    json_builder_add_double_value(b, v);
  };
  json_builder_begin_object(b);
  str("path", r.path);
  str("container", r.container);
  json_builder_set_member_name(b, "duration");
  if (r.duration_ns >= 0)
    json_builder_add_double_value(b, static_cast<double>(r.duration_ns) / 1e9);
  else
    json_builder_add_null_value(b);
  num("duration_ns", r.duration_ns);
  num("size", r.size);
  num("video_streams", r.video_streams);
  num("audio_streams", r.audio_streams);
  num("subtitle_streams", r.subtitle_streams);
  json_builder_set_member_name(b, "video");
  if (r.video) {
    const auto &v = *r.video;
    json_builder_begin_object(b);
    str("codec", v.codec);
    str("caps", v.caps);
    num("width", v.width);
    num("height", v.height);
    num("display_width", v.display_width);
    num("display_height", v.display_height);
    str("pixel_aspect_ratio", std::to_string(v.par_n) + ":" + std::to_string(v.par_d));
    str("display_aspect_ratio", [&] {
      int g = std::gcd(v.display_width, v.display_height);
      return g ? std::to_string(v.display_width / g) + ":" + std::to_string(v.display_height / g) : std::string("0:0");
    }());
    str("framerate", std::to_string(v.fps_n) + "/" + std::to_string(v.fps_d));
    dbl("fps", v.fps);
    num("bitrate", v.bitrate);
    num("rotation", v.rotation);
    if (v.mirrored) {
      json_builder_set_member_name(b, "mirrored");
      json_builder_add_boolean_value(b, true);
    }
    json_builder_set_member_name(b, "interlaced");
    json_builder_add_boolean_value(b, v.interlaced);
    json_builder_end_object(b);
  } else {
    json_builder_add_null_value(b);
  }
  json_builder_set_member_name(b, "audio");
  if (r.audio) {
    const auto &a = *r.audio;
    json_builder_begin_object(b);
    str("codec", a.codec);
    str("caps", a.caps);
    num("channels", a.channels);
    num("sample_rate", a.sample_rate);
    num("bitrate", a.bitrate);
    json_builder_end_object(b);
  } else {
    json_builder_add_null_value(b);
  }
  json_builder_end_object(b);
  return json_builder_get_root(b);
}

} // namespace sluice::media
