// SPDX-License-Identifier: LGPL-2.1-or-later
// GstDiscoverer-based probe with clear errors for files that are not media.
#include "media/probe.h"

#include "media/bmff.h"

#include "core/error.h"
#include "core/fs.h"

#include <gst/pbutils/pbutils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(sluice_probe_debug);
#define GST_CAT_DEFAULT sluice_probe_debug

// --- errors that decodebin2 throws away -------------------------------------------------------------------
// decodebin2 (GStreamer 1.22, still so upstream) filters the error messages of an element it tries from
// the moment it sets it to PAUSED until it has sent it its sticky events, and then drops what it
// filtered. A demuxer that reads in its own thread (qtdemux, pulling) starts reading at PAUSED: on a
// small file whose sample tables are damaged it fails within microseconds, sometimes inside that window.
// Its error is lost, it adds no pad, and GstDiscoverer waits for its whole timeout (20 s). A tracer hook
// sees every message an element posts before any bin does: the errors of the elements of a discoverer
// that is probing are kept, and one whose element is still in place a moment later, the discovery not
// finished, is posted again on the discoverer's own bus, where the discoverer ends with it.

struct SluiceProbeTracer {
  GstTracer parent;
};

struct SluiceProbeTracerClass {
  GstTracerClass parent_class;
};

GType sluice_probe_tracer_get_type();

G_DEFINE_TYPE(SluiceProbeTracer, sluice_probe_tracer, GST_TYPE_TRACER)

namespace sluice::media {

namespace {

// A discovery in progress: its pipeline, and the errors its elements posted.
struct ErrorWatch {
  GstObject *pipeline = nullptr; // owned by the discoverer, which outlives the watch
  std::mutex m;
  std::condition_variable cv;
  std::vector<GstMessage *> errors;
  bool done = false;
};

std::mutex g_watches_mutex;
std::vector<ErrorWatch *> g_watches;

// The outermost bin `o` is in (itself when in none); a new reference.
GstObject *top_of(GstObject *o) {
  gst_object_ref(o);
  while (GstObject *parent = gst_object_get_parent(o)) {
    gst_object_unref(o);
    o = parent;
  }
  return o;
}

void on_post_message(GObject *, GstClockTime, GstElement *element, GstMessage *msg) {
  if (GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ERROR || !element)
    return;
  std::lock_guard lock(g_watches_mutex);
  if (g_watches.empty())
    return;
  GstObject *top = top_of(GST_OBJECT(element));
  for (ErrorWatch *w : g_watches)
    if (w->pipeline == top) {
      std::lock_guard wl(w->m);
      w->errors.push_back(gst_message_ref(msg));
      w->cv.notify_all();
    }
  gst_object_unref(top);
}

} // namespace
} // namespace sluice::media

static void sluice_probe_tracer_class_init(SluiceProbeTracerClass *) {}

static void sluice_probe_tracer_init(SluiceProbeTracer *self) {
  gst_tracing_register_hook(GST_TRACER(self), "element-post-message-pre", G_CALLBACK(sluice::media::on_post_message));
}

namespace sluice::media {

namespace {

// Watches one discovery (from its source-setup signal until stop()): errors that no bin passed on are
// posted again on the discoverer's bus.
class LostErrors {
public:
  LostErrors() {
    static std::once_flag once;
    std::call_once(once, [] {
      // Lives as long as the process: its hook stays registered.
      g_object_new(sluice_probe_tracer_get_type(), nullptr);
    });
  }
  ~LostErrors() { stop(); }
  LostErrors(const LostErrors &) = delete;
  LostErrors &operator=(const LostErrors &) = delete;

  // The "source-setup" signal of GstDiscoverer: the source is in the discoverer's pipeline.
  static void on_source_setup(GstDiscoverer *, GstElement *source, gpointer self) {
    static_cast<LostErrors *>(self)->start(GST_OBJECT(source));
  }

  void stop() {
    {
      std::lock_guard lock(g_watches_mutex);
      g_watches.erase(std::remove(g_watches.begin(), g_watches.end(), &watch_), g_watches.end());
    }
    {
      std::lock_guard wl(watch_.m);
      watch_.done = true;
      watch_.cv.notify_all();
    }
    if (thread_.joinable())
      thread_.join();
    for (GstMessage *m : watch_.errors)
      gst_message_unref(m);
    watch_.errors.clear();
  }

private:
  // How long the bins get to pass an error on, or to take the failed element out and try another.
  static constexpr std::chrono::milliseconds kGrace{300};

  void start(GstObject *source) {
    if (watch_.pipeline)
      return;
    GstObject *top = top_of(source);
    watch_.pipeline = top; // the discoverer keeps it
    gst_object_unref(top);
    {
      std::lock_guard lock(g_watches_mutex);
      g_watches.push_back(&watch_);
    }
    thread_ = std::thread([this] { run(); });
  }

  // No lock is held while the bins are looked at or the bus is posted to.
  void run() {
    while (true) {
      std::vector<GstMessage *> errors;
      {
        std::unique_lock lk(watch_.m);
        watch_.cv.wait(lk, [&] { return watch_.done || !watch_.errors.empty(); });
        if (watch_.done || watch_.cv.wait_for(lk, kGrace, [&] { return watch_.done; }))
          return;
        errors.swap(watch_.errors);
      }
      GstMessage *lost = nullptr;
      for (GstMessage *m : errors) {
        GstObject *top = top_of(GST_MESSAGE_SRC(m));
        if (!lost && top == watch_.pipeline)
          lost = gst_message_ref(m);
        gst_object_unref(top);
        gst_message_unref(m);
      }
      if (lost) {
        GST_INFO_OBJECT(GST_MESSAGE_SRC(lost), "posting again an error no bin passed on");
        GstBus *bus = gst_element_get_bus(GST_ELEMENT(watch_.pipeline));
        gst_bus_post(bus, gst_message_copy(lost));
        gst_object_unref(bus);
        gst_message_unref(lost);
        return;
      }
    }
  }

  ErrorWatch watch_;
  std::thread thread_;
};

std::string codec_description(GstCaps *caps) {
  if (!caps)
    return "";
  gchar *d = gst_pb_utils_get_codec_description(caps);
  std::string s = d ? d : "";
  g_free(d);
  return s;
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

int tag_rotation(const GstTagList *tags) {
  gchar *o = nullptr;
  int rot = 0;
  if (tags && gst_tag_list_get_string(tags, GST_TAG_IMAGE_ORIENTATION, &o) && o) {
    std::string s = o;
    if (s == "rotate-90" || s == "flip-rotate-90")
      rot = 90;
    else if (s == "rotate-180" || s == "flip-rotate-180")
      rot = 180;
    else if (s == "rotate-270" || s == "flip-rotate-270")
      rot = 270;
  }
  g_free(o);
  return rot;
}

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
        for (std::uint64_t p = e.data; p < e.end;) {
          auto seek = ebml_element(f, p, e.end);
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
              seek_targets.push_back(segment_data + position);
          }
          p = std::max(seek->end, seek->data);
        }
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

ProbeResult probe(const std::string &path, int timeout_s) {
  static std::once_flag once;
  std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(sluice_probe_debug, "sluice-probe", 0, "sluice media probe"); });

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
    throw Error(ErrorCode::NotMedia, path + " is not a media file sluice can read: " + why);
  // Demuxers read some nested structures recursively, without a limit: a file nested deep enough
  // overflows the stack of the thread that reads it, and the whole process goes. Refused before.
  if (std::string why = nesting_problem(r.path); !why.empty())
    throw Error(ErrorCode::NotMedia, path + " is not a media file sluice can read: " + why);

  GError *err = nullptr;
  gchar *uri = gst_filename_to_uri(r.path.c_str(), &err);
  if (!uri)
    throw Error::from_gerror(ErrorCode::NotFound, "bad file name " + path, err);
  GstDiscoverer *disc = gst_discoverer_new(static_cast<GstClockTime>(timeout_s) * GST_SECOND, &err);
  if (!disc) {
    g_free(uri);
    throw Error::from_gerror(ErrorCode::Internal, "cannot create a discoverer", err);
  }
  LostErrors lost;
  g_signal_connect(disc, "source-setup", G_CALLBACK(LostErrors::on_source_setup), &lost);
  GstDiscovererInfo *info = gst_discoverer_discover_uri(disc, uri, &err);
  lost.stop();
  g_free(uri);
  GstDiscovererResult res = info ? gst_discoverer_info_get_result(info) : GST_DISCOVERER_ERROR;
  std::string reason = err ? err->message : "";
  g_clear_error(&err);
  auto fail = [&](const std::string &msg) {
    if (info)
      gst_discoverer_info_unref(info);
    g_object_unref(disc);
    throw Error(ErrorCode::NotMedia, path + " is not a media file sluice can read: " + msg);
  };
  switch (res) {
  case GST_DISCOVERER_OK: break;
  case GST_DISCOVERER_URI_INVALID: fail("invalid location"); break;
  case GST_DISCOVERER_TIMEOUT: fail("probing timed out after " + std::to_string(timeout_s) + " s"); break;
  case GST_DISCOVERER_BUSY: fail("discoverer busy"); break;
  case GST_DISCOVERER_MISSING_PLUGINS: {
    std::string missing;
    if (info)
      if (const gchar **details = gst_discoverer_info_get_missing_elements_installer_details(info))
        for (const gchar **d = details; *d; d++)
          missing += std::string(missing.empty() ? "" : ", ") + *d;
    fail("a GStreamer plugin is missing" +
         (missing.empty() ? reason.empty() ? "" : " (" + reason + ")" : " (" + missing + ")"));
    break;
  }
  case GST_DISCOVERER_ERROR:
  default: fail(reason.empty() ? "unknown error" : reason); break;
  }

  GstClockTime dur = gst_discoverer_info_get_duration(info);
  r.duration_ns = GST_CLOCK_TIME_IS_VALID(dur) ? static_cast<std::int64_t>(dur) : -1;

  if (GstDiscovererStreamInfo *top = gst_discoverer_info_get_stream_info(info)) {
    if (GST_IS_DISCOVERER_CONTAINER_INFO(top)) {
      GstCaps *caps = gst_discoverer_stream_info_get_caps(top);
      r.container = codec_description(caps);
      if (caps)
        gst_caps_unref(caps);
    }
    gst_discoverer_stream_info_unref(top);
  }

  GList *videos = gst_discoverer_info_get_video_streams(info);
  GList *audios = gst_discoverer_info_get_audio_streams(info);
  GList *subs = gst_discoverer_info_get_subtitle_streams(info);
  r.video_streams = static_cast<int>(g_list_length(videos));
  r.audio_streams = static_cast<int>(g_list_length(audios));
  r.subtitle_streams = static_cast<int>(g_list_length(subs));

  // Cover art (a single still image in audio files) is not a video stream we transcode.
  for (GList *l = videos; l; l = l->next) {
    auto *v = GST_DISCOVERER_VIDEO_INFO(l->data);
    if (gst_discoverer_video_info_is_image(v))
      continue;
    VideoInfo vi;
    GstCaps *caps = gst_discoverer_stream_info_get_caps(GST_DISCOVERER_STREAM_INFO(v));
    vi.codec = codec_description(caps);
    vi.caps = caps_name(caps);
    if (caps)
      gst_caps_unref(caps);
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
    vi.rotation = tag_rotation(tags);
    if (vi.rotation == 0)
      vi.rotation = tag_rotation(gst_discoverer_info_get_tags(info));
    vi.display_width = static_cast<int>(std::lround(static_cast<double>(vi.width) * vi.par_n / vi.par_d));
    vi.display_height = vi.height;
    if (vi.rotation == 90 || vi.rotation == 270)
      std::swap(vi.display_width, vi.display_height);
    if (vi.width > 0 && vi.height > 0) {
      r.video = vi;
      break;
    }
  }
  if (audios) {
    auto *a = GST_DISCOVERER_AUDIO_INFO(audios->data);
    AudioInfo ai;
    GstCaps *caps = gst_discoverer_stream_info_get_caps(GST_DISCOVERER_STREAM_INFO(a));
    ai.codec = codec_description(caps);
    ai.caps = caps_name(caps);
    if (caps)
      gst_caps_unref(caps);
    ai.channels = static_cast<int>(gst_discoverer_audio_info_get_channels(a));
    ai.sample_rate = static_cast<int>(gst_discoverer_audio_info_get_sample_rate(a));
    ai.bitrate = gst_discoverer_audio_info_get_bitrate(a);
    if (!ai.bitrate)
      ai.bitrate = tag_bitrate(gst_discoverer_stream_info_get_tags(GST_DISCOVERER_STREAM_INFO(a)));
    r.audio = ai;
  }
  gst_discoverer_stream_info_list_free(videos);
  gst_discoverer_stream_info_list_free(audios);
  gst_discoverer_stream_info_list_free(subs);
  gst_discoverer_info_unref(info);
  g_object_unref(disc);

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
