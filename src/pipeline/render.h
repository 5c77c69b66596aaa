// SPDX-License-Identifier: LGPL-2.1-or-later
// Rendering a description + validated parameters + a ladder into ONE gst-launch description.
#pragma once

#include "pipeline/description.h"
#include "pipeline/encoders.h"

#include <string>
#include <vector>

namespace sluice::pipeline {

struct RenditionSpec {
  std::string name; // identifier, e.g. "720p"
  int width = 0;
  int height = 0;
  int bitrate_kbps = 0;
  int maxrate_kbps = 0;
  int bufsize_kbit = 0;
};

struct RenderInput {
  std::string input; // absolute path of the source file
  std::string out;   // absolute path of the output directory
  bool has_video = true;
  bool has_audio = true;
  int audio_channels = 2;
  double framerate = 30.0;                   // of the source, for the keyframe cadence
  std::string fps;                           // the same as a fraction ("30000/1001"); "" derives it from framerate
  double duration = 0.0;                     // of the source in seconds (0: unknown)
  int display_width = 0, display_height = 0; // of the source's picture, rotation applied
  int rotation = 0;                          // degrees clockwise (the image-orientation tag)
  bool mirrored = false;                     // the tag flips it too: {orient} turns the picture only in these cases
  std::vector<RenditionSpec> renditions;
  std::string encoder = "x264"; // resolved encoder name
  int cpu_cores = 0;            // 0: this machine's; spreads encoder threads over the renditions
};

// Threads per encoder when `renditions` encoders run side by side on `cores` cores: the branches
// already run in parallel, and every extra frame thread keeps more frames in flight (memory).
int encoder_threads(int cores, int renditions);

// Frame threads for the video decoder of a ladder (in.renditions) encoded in software (an encoder of `encoders` that
// is not `hardware`): the cores the decoder's share of the work would take, at least 1; 0 (the decoder's own choice)
// for a hardware or unknown encoder, an unknown source size or no rungs. The share counts pixels: x264 veryfast costs
// about 1.7 times H.264 decoding per pixel (perf, 1080p into 720p/480p/360p). Each frame thread keeps one more decoded
// frame and a copy of the decoder's state: avdec_h264 at 1080p on 2 cores, 1 thread instead of 2 saved 17 MiB peak RSS
// at the same wall time, as the three encoders had the second core.
int decoder_threads(const RenderInput &in, const EncoderTable &encoders);

// The rung rendition `i` is scaled from (cascaded scaling): the smallest rung at least twice as tall, or -1 for the
// decoded picture. Measured with sluicescale's Lanczos-3 (1080p source, tools/bench transcode): 360p from 720p is
// 0.03 dB PSNR above ffmpeg's 360p from 1080p at a fraction of the taps; 480p from 720p (1.5 times) was 0.02 dB
// and 0.0003 SSIM below 480p from 1080p, so a rung less than twice as tall is not used.
int scale_source(const std::vector<RenditionSpec> &renditions, size_t i);

// The keyframe interval in frames for a frame rate and segment length.
int gop_frames(double framerate, int segment_seconds);

// A frame rate as a caps fraction: 30 -> "30/1", 29.97 -> "30000/1001".
std::string fps_fraction(double framerate);

// The element name `{sink}` takes for a rendition ("hls_720p"; the audio track set of CMAF: "hls_audio").
std::string sink_name(const std::string &rendition);

// Renders the description. Throws sluice::Error when a value cannot be placed safely.
std::string render(const Description &d, const Values &values, const RenderInput &in, const EncoderTable &encoders);

// The largest even size with the source's aspect ratio inside max_w x max_h, never larger than the source.
std::pair<int, int> fit_size(int src_w, int src_h, int max_w, int max_h);

// The clip [start, end) in ns for start/length in seconds inside an input of `duration` seconds: it ends
// with the input, and a start past the end is moved back to give the last `length` seconds.
std::pair<std::int64_t, std::int64_t> clip_range(double duration, int start_s, int length_s);

// The picture size of an output without a ladder (its max_width x max_height, fitted to the input) and
// the clip of its start_seconds + length_seconds: what render() substitutes, and what finishing the
// output expects.
std::pair<int, int> picture_size(const Values &values, const RenderInput &in);
std::pair<std::int64_t, std::int64_t> clip_of(const Values &values, const RenderInput &in);

// "gst-launch-1.0 -e ..." ready to paste into a shell.
std::string launch_command(const std::string &description);

} // namespace sluice::pipeline
