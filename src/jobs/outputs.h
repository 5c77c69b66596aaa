// SPDX-License-Identifier: LGPL-2.1-or-later
// Finishing what a pipeline wrote, per kind of output: CMAF packages (HLS + DASH over the same segments),
// posters, storyboards and preview clips. Each checks the output against the probed input.
#pragma once

#include "jobs/transcode.h"

#include <memory>

namespace sluice::jobs {

// Dispatches on the description's output kind (hls, cmaf, poster, storyboard, preview).
// track_starts: Runner::track_starts() of the run (where each MP4 track began on the timeline).
TranscodeResult finalize_output(const TranscodePlan &plan, const std::string &dir,
                                const std::map<std::string, std::int64_t> &track_starts = {});

// The tracks keep their places against each other: mp4mux starts each at 0, and a track that began
// later (audio after video, say) is moved back by the difference, so that A/V sync survives.
TranscodeResult finalize_cmaf(const TranscodePlan &plan, const std::string &dir,
                              const std::map<std::string, std::int64_t> &track_starts = {});
// A CMAF job's output while it runs: the fragments each muxer has completed are split as they come,
// with EVENT media playlists, and a master playlist once every track has a segment (nominal
// bandwidths; the finished package measures them). The finishing step later keeps those files.
class CmafLive {
public:
  CmafLive(const TranscodePlan &plan, std::string dir);
  ~CmafLive();
  // Reads what the muxers wrote since the last call; true once master.m3u8 exists. Throws sluice::Error.
  bool update(const std::map<std::string, std::int64_t> &track_starts);

private:
  struct Track;
  const TranscodePlan &plan_;
  std::string dir_;
  std::vector<std::unique_ptr<Track>> tracks_;
  bool master_ = false;
};

TranscodeResult finalize_poster(const TranscodePlan &plan, const std::string &dir);
TranscodeResult finalize_storyboard(const TranscodePlan &plan, const std::string &dir);
TranscodeResult finalize_preview(const TranscodePlan &plan, const std::string &dir);

// Encodes one I420 picture (GStreamer's default strides) as a JPEG file with jpegenc.
void write_jpeg_i420(const std::string &path, const std::string &i420, int width, int height, int quality);

// The size of an I420 picture with GStreamer's default strides.
std::size_t i420_size(int width, int height);

// "00:01:02.500"
std::string vtt_time(double seconds);

} // namespace sluice::jobs
