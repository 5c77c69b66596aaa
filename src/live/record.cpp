// SPDX-License-Identifier: LGPL-2.1-or-later
// The recording of a live stream: its top rung's segments (and, for CMAF, the audio's) kept during the event, then
// joined into one MPEG-TS file and ingested as a video.
#include "core/error.h"
#include "core/fs.h"
#include "core/mainloop.h"
#include "live/engine_internal.h"
#include "store/executor.h"

#include <glib/gstdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

constexpr const char *kPrefix = "rec-";
// CMAF (live-cmaf): "cmaf-PART-TRACK-NUMBER.m4s" and "cmaf-PART-TRACK-init.mp4", PART numbering the publisher
// sessions of the event (6 digits), TRACK "video" or "audio", NUMBER 6 digits.
constexpr const char *kCmafPrefix = "cmaf-";

// "cmaf-000002-video-000007.m4s" -> {2, "video", 7}; the init segment has number 0. Nothing for another name.
struct CmafName {
  int part = -1;
  std::string track;
  int number = -1;
};
CmafName cmaf_name(const std::string &name) {
  CmafName n;
  gchar **f = g_strsplit(name.c_str(), "-", 4);
  auto digits = [](const char *s, std::size_t len) {
    return s && std::strlen(s) == len && std::strspn(s, "0123456789") == len;
  };
  if (g_strv_length(f) == 4 && g_str_equal(f[0], "cmaf") && digits(f[1], 6) &&
      (g_str_equal(f[2], "video") || g_str_equal(f[2], "audio"))) {
    if (g_str_equal(f[3], "init.mp4"))
      n = {std::atoi(f[1]), f[2], 0};
    else if (g_str_has_suffix(f[3], ".m4s") && std::strlen(f[3]) == 10 && digits(std::string(f[3], 6).c_str(), 6))
      n = {std::atoi(f[1]), f[2], std::atoi(std::string(f[3], 6).c_str())};
  }
  g_strfreev(f);
  return n;
}

// "rec-000042.ts" -> 42 (-1: not a kept segment).
int kept_number(const std::string &name) {
  if (!g_str_has_prefix(name.c_str(), kPrefix) || !g_str_has_suffix(name.c_str(), ".ts"))
    return -1;
  const std::string digits = name.substr(4, name.size() - 7);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9)
    return -1;
  return std::stoi(digits);
}

// Appends the kept segments of `parts` (in their order) to one new file `out`; throws Error (Io).
std::int64_t concatenate(const std::string &parts, const std::string &out) {
  FILE *o = std::fopen(out.c_str(), "wbe");
  if (!o)
    throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(errno));
  std::int64_t total = 0;
  std::vector<char> buf(1 << 20);
  try {
    for (const auto &name : fs::list_dir(parts)) {
      if (kept_number(name) < 0)
        continue;
      const std::string path = fs::join(parts, name);
      FILE *in = std::fopen(path.c_str(), "rbe");
      if (!in)
        throw Error(ErrorCode::Io, "cannot read " + path + ": " + g_strerror(errno));
      std::size_t n;
      while ((n = std::fread(buf.data(), 1, buf.size(), in)) > 0) {
        if (std::fwrite(buf.data(), 1, n, o) != n) {
          const int e = errno;
          std::fclose(in);
          throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(e));
        }
        total += static_cast<std::int64_t>(n);
      }
      const bool bad = std::ferror(in);
      std::fclose(in);
      if (bad)
        throw Error(ErrorCode::Io, "cannot read " + path);
    }
    if (std::fflush(o) != 0 || fsync(fileno(o)) != 0)
      throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(errno));
  } catch (...) {
    std::fclose(o);
    g_unlink(out.c_str());
    throw;
  }
  std::fclose(o);
  return total;
}

// Appends the files `names` of folder `dir` to `out` (created); throws Error (Io).
void append_files(const std::string &dir, const std::vector<std::string> &names, const std::string &out) {
  FILE *o = std::fopen(out.c_str(), "wbe");
  if (!o)
    throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(errno));
  std::vector<char> buf(1 << 20);
  for (const auto &name : names) {
    const std::string path = fs::join(dir, name);
    FILE *in = std::fopen(path.c_str(), "rbe");
    if (!in) {
      std::fclose(o);
      throw Error(ErrorCode::Io, "cannot read " + path + ": " + g_strerror(errno));
    }
    std::size_t n;
    bool bad = false;
    while ((n = std::fread(buf.data(), 1, buf.size(), in)) > 0)
      if (std::fwrite(buf.data(), 1, n, o) != n) {
        bad = true;
        break;
      }
    bad = bad || std::ferror(in);
    std::fclose(in);
    if (bad) {
      std::fclose(o);
      throw Error(ErrorCode::Io, "cannot copy " + path + " into " + out);
    }
  }
  if (std::fclose(o) != 0)
    throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(errno));
}

// The kept CMAF segments of `parts` as one MPEG-TS file `out`: per publisher session, the init segment and the
// media segments of each track make one fragmented MP4 (a valid one); GStreamer demuxes them, joins the sessions
// one after the other (concat) and muxes video and audio into MPEG-TS, without decoding. Throws Error.
std::int64_t join_cmaf(const std::string &parts, const std::string &out) {
  struct Part {
    std::map<std::string, std::vector<std::string>> files; // track -> init, then the segments in order
  };
  std::map<int, Part> by_part;
  for (const auto &name : fs::list_dir(parts)) { // sorted: a track's segments in their order
    const CmafName n = cmaf_name(name);
    if (n.part < 0)
      continue;
    auto &files = by_part[n.part].files[n.track];
    if (n.number == 0)
      files.insert(files.begin(), name);
    else
      files.push_back(name);
  }
  // A session counts with a video init segment and a media segment; audio only if every session has it.
  std::vector<std::pair<std::string, std::string>> sessions; // video file, audio file ("": none)
  bool audio = true;
  for (auto &entry : by_part) {
    const auto part = entry.first;
    auto &p = entry.second; // a name of its own: clang 14 cannot capture a structured binding
    auto has = [&p](const char *track) {
      auto it = p.files.find(track);
      return it != p.files.end() && it->second.size() >= 2 && cmaf_name(it->second.front()).number == 0;
    };
    if (!has("video"))
      continue;
    audio = audio && has("audio");
    const std::string v = fs::join(parts, "part-" + std::to_string(part) + "-video.mp4");
    append_files(parts, p.files["video"], v);
    std::string a;
    if (has("audio")) {
      a = fs::join(parts, "part-" + std::to_string(part) + "-audio.mp4");
      append_files(parts, p.files["audio"], a);
    }
    sessions.emplace_back(v, a);
  }
  if (sessions.empty())
    throw Error(ErrorCode::Invalid, "no recorded segment of the video");
  // Locations are set on the elements, not written into the text.
  std::string launch = "concat name=vc ! queue ! mpegtsmux name=mux ! filesink name=out";
  if (audio)
    launch += "  concat name=ac ! queue ! mux.";
  for (std::size_t i = 0; i < sessions.size(); i++) {
    launch += "  filesrc name=v" + std::to_string(i) +
              " ! qtdemux ! h264parse ! video/x-h264,stream-format=byte-stream,alignment=au ! vc.";
    if (audio)
      launch += "  filesrc name=a" + std::to_string(i) + " ! qtdemux ! aacparse ! ac.";
  }
  g_autoptr(GError) err = nullptr;
  GstElement *raw = gst_parse_launch(launch.c_str(), &err);
  if (!raw || err) {
    if (raw)
      gst_object_unref(raw);
    throw Error(ErrorCode::Pipeline, std::string("cannot join the recording: ") + (err ? err->message : "?"));
  }
  GstPtr<GstElement> p = adopt_floating(raw);
  auto set_location = [&](const std::string &name, const std::string &path) {
    GstPtr<GstElement> e(gst_bin_get_by_name(GST_BIN(p.get()), name.c_str()));
    g_object_set(e.get(), "location", path.c_str(), nullptr);
  };
  set_location("out", out);
  for (std::size_t i = 0; i < sessions.size(); i++) {
    set_location("v" + std::to_string(i), sessions[i].first);
    if (audio)
      set_location("a" + std::to_string(i), sessions[i].second);
  }
  std::string error;
  if (gst_element_set_state(p.get(), GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE)
    error = "the joining pipeline does not start";
  GstPtr<GstBus> bus(gst_pipeline_get_bus(GST_PIPELINE(p.get())));
  while (error.empty()) {
    GstMessage *msg = gst_bus_timed_pop_filtered(bus.get(), 600 * GST_SECOND,
                                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    if (!msg) {
      error = "joining the recording took more than 10 minutes";
      break;
    }
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
      g_autoptr(GError) e = nullptr;
      gst_message_parse_error(msg, &e, nullptr);
      error = std::string("cannot join the recording: ") + (e ? e->message : "?");
    }
    gst_message_unref(msg);
    break;
  }
  gst_element_set_state(p.get(), GST_STATE_NULL);
  if (!error.empty()) {
    g_unlink(out.c_str());
    throw Error(ErrorCode::Pipeline, error);
  }
  return fs::file_size(out);
}

// A joined recording on its way into the library: what Service::ingest needs, and how long to wait before the next
// try when the catalog could not take its row.
struct Saving {
  std::string id, out;
  std::int64_t size = 0;
  app::Metadata meta;
  Recorder::DoneFn done;
  guint delay_ms = 0; // 0: the first try
  int tries = 0;      // ingests that failed as Unavailable although the catalog had answered a ping
};

// An ingest that fails as Unavailable right after the catalog answered fails for another reason (the disk, the
// bucket): tried this many times, not forever.
constexpr int kMaxTries = 3;

// Waits between tries while the catalog is away: doubled from the first to the last.
constexpr guint kRetryFirstMs = 2000, kRetryLastMs = 60000;

void save(app::Service &service, Saving s);

// The catalog was away: the file stays in uploads/ and its video row is written once the catalog answers again (a
// ping on the executor, then the ingest). The main loop never waits: the ping runs on the executor, and the ingest
// starts only once it came back. A restart before then loses it, as it loses a recording being joined (startup
// empties uploads/).
void save_later(app::Service &service, Saving s);

// The catalog is pinged on the executor, and the recording saved once it answers (else later).
void try_again(app::Service &service, Saving s) {
  if (!service.accepting()) { // shutting down
    g_unlink(s.out.c_str());
    s.done("", "the server stopped before the recording was saved");
    return;
  }
  service.executor().run([](store::Store &st) { return st.ping(); },
                         [&service, s = std::move(s)](store::Outcome<bool> &o) mutable {
                           if (o.ok() && *o.value)
                             save(service, std::move(s));
                           else
                             save_later(service, std::move(s));
                         });
}

void save_later(app::Service &service, Saving s) {
  s.delay_ms = s.delay_ms == 0 ? kRetryFirstMs : std::min(s.delay_ms * 2, kRetryLastMs);
  GST_INFO("stream %s: the recording is saved once the catalog answers (next try in %u ms)", s.id.c_str(), s.delay_ms);
  struct Wait {
    app::Service &service;
    Saving saving;
  };
  const guint delay = s.delay_ms;
  g_timeout_add_full(
      G_PRIORITY_DEFAULT, delay,
      [](gpointer d) -> gboolean {
        auto *w = static_cast<Wait *>(d);
        try { // a GLib callback: nothing crosses it
          try_again(w->service, std::move(w->saving));
        } catch (const std::exception &e) {
          GST_ERROR("live engine: %s", e.what());
        }
        return G_SOURCE_REMOVE;
      },
      new Wait{service, std::move(s)}, [](gpointer d) { delete static_cast<Wait *>(d); });
}

void save(app::Service &service, Saving s) {
  app::IncomingFile file;
  file.path = s.out;
  file.filename = "live-" + s.id + ".ts";
  file.size = s.size;
  // A second name, not a move: the joined file stays until its row is written, so that a catalog that could not take
  // the row costs the recording nothing (it is tried again). Both names are in the data folder.
  file.keep = [out = s.out](const std::string &dest) {
    if (link(out.c_str(), dest.c_str()) != 0)
      throw Error(ErrorCode::Io, "cannot link " + out + " to " + dest + ": " + g_strerror(errno));
  };
  file.discard = [] {}; // decided below, once the outcome is known
  const app::Metadata meta = s.meta;
  service.ingest(std::move(file), meta, [&service, s = std::move(s)](app::Result<app::Ingested> r) mutable {
    if (auto *f = std::get_if<app::Failure>(&r)) {
      if (f->refusal == app::Refusal::Unavailable && service.accepting() && ++s.tries < kMaxTries) {
        GST_WARNING("stream %s: the recording could not be saved yet: %s", s.id.c_str(), f->message.c_str());
        return save_later(service, std::move(s));
      }
      g_unlink(s.out.c_str());
      GST_WARNING("stream %s: the recording was refused: %s", s.id.c_str(), f->message.c_str());
      return s.done("", f->message);
    }
    g_unlink(s.out.c_str()); // the video's source is the other name
    const auto &v = std::get<app::Ingested>(r).video;
    GST_INFO("stream %s: recorded as video %s", s.id.c_str(), v.id.c_str());
    s.done(v.id, "");
  });
}

} // namespace

Recorder::Recorder(app::Streams &streams, std::string stream_id, std::string title)
    : streams_(streams), id_(std::move(stream_id)), title_(std::move(title)), dir_(streams.folder(id_) + ".rec") {
  // Segments kept before the server stopped belong to the same event (it has not ended).
  for (const auto &name : fs::list_dir(dir_)) {
    if (const CmafName c = cmaf_name(name); c.part >= 0) {
      count_++;
      part_ = std::max(part_, c.part + 1); // a later session of the same event goes on after them
      continue;
    }
    const int n = kept_number(name);
    if (n < 0)
      continue;
    count_++;
    next_ = std::max(next_, n + 1);
  }
  if (count_ > 0)
    GST_INFO("stream %s: %d recorded segments taken up", id_.c_str(), count_);
}

void Recorder::add(const std::string &segment_path) {
  try {
    fs::make_dirs(dir_);
  } catch (const Error &e) {
    GST_WARNING("stream %s: not recorded: %s", id_.c_str(), e.what());
    return;
  }
  char name[32];
  std::snprintf(name, sizeof name, "%s%06d.ts", kPrefix, next_);
  const std::string dest = fs::join(dir_, name);
  // A second name for the same file: the live window deletes its own name, the recording keeps this one.
  if (link(segment_path.c_str(), dest.c_str()) != 0) {
    GST_WARNING("stream %s: segment %s not recorded: %s", id_.c_str(), segment_path.c_str(), g_strerror(errno));
    return;
  }
  next_++;
  count_++;
}

void Recorder::add_cmaf(bool video, int session, const std::string &init_path, const std::string &segment_path,
                        int number) {
  try {
    fs::make_dirs(dir_);
  } catch (const Error &e) {
    GST_WARNING("stream %s: not recorded: %s", id_.c_str(), e.what());
    return;
  }
  auto part = parts_.find(session);
  if (part == parts_.end())
    part = parts_.emplace(session, part_++).first;
  char prefix[48];
  std::snprintf(prefix, sizeof prefix, "%s%06d-%s-", kCmafPrefix, part->second, video ? "video" : "audio");
  // Second names for the same files: the live window deletes its own, the recording keeps these.
  const std::string init = fs::join(dir_, std::string(prefix) + "init.mp4");
  if (!fs::exists(init) && link(init_path.c_str(), init.c_str()) != 0) {
    GST_WARNING("stream %s: %s not recorded: %s", id_.c_str(), init_path.c_str(), g_strerror(errno));
    return;
  }
  char name[64];
  std::snprintf(name, sizeof name, "%s%06d.m4s", prefix, number);
  if (link(segment_path.c_str(), fs::join(dir_, name).c_str()) != 0) {
    GST_WARNING("stream %s: segment %s not recorded: %s", id_.c_str(), segment_path.c_str(), g_strerror(errno));
    return;
  }
  count_++;
}

void Recorder::discard() {
  fs::remove_all(dir_);
  count_ = 0;
  next_ = 0;
  part_ = 0;
  parts_.clear();
}

void Recorder::finish(DoneFn done) {
  if (count_ == 0)
    return;
  // The kept segments leave the stream's hands at once (a publisher may start the next event right away): into
  // the uploads folder, which startup empties, so that nothing half made outlives a crash.
  app::Service &service = streams_.service();
  const std::string uploads = service.scheduler().layout().uploads_dir();
  const std::string stem = fs::join(uploads, "live-" + id_ + "-" + std::to_string(g_get_real_time()));
  const std::string parts = stem + ".parts", out = stem + ".ts";
  try {
    fs::make_dirs(uploads);
    if (g_rename(dir_.c_str(), parts.c_str()) != 0)
      throw Error(ErrorCode::Io, "cannot move " + dir_ + ": " + g_strerror(errno));
  } catch (const Error &e) {
    GST_WARNING("stream %s: the recording is not saved: %s", id_.c_str(), e.what());
    done("", e.what());
    return;
  }
  const int segments = count_;
  count_ = 0;
  next_ = 0;
  part_ = 0;
  parts_.clear();
  GST_INFO("stream %s: saving the recording (%d segments)", id_.c_str(), segments);
  app::Metadata meta;
  meta.title = title_.empty() ? "Recording of stream " + id_ : title_;
  // The copy runs on a thread of its own; the service is there as long as the main loop runs.
  std::thread([&service, id = id_, parts, out, meta, done = std::move(done)]() mutable {
    std::int64_t size = -1;
    std::string error;
    try {
      // CMAF segments (live-cmaf) are demuxed and joined; MPEG-TS segments (live-hls) are simply appended.
      const auto names = fs::list_dir(parts);
      const bool cmaf =
          std::any_of(names.begin(), names.end(), [](const std::string &n) { return cmaf_name(n).part >= 0; });
      size = cmaf ? join_cmaf(parts, out) : concatenate(parts, out);
    } catch (const Error &e) {
      error = e.what();
    }
    fs::remove_all(parts);
    post([&service, id, out, size, error, meta, done]() {
      if (!error.empty()) {
        GST_WARNING("stream %s: the recording is not saved: %s", id.c_str(), error.c_str());
        return done("", error);
      }
      // The catalog is asked whether it answers first, on the executor: while it does not, the file is neither probed
      // nor moved for nothing (with SQLite the ping runs at once).
      try_again(service, Saving{id, out, size, meta, done, 0});
    });
  }).detach();
}

} // namespace sluice::live
