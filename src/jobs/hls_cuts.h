// SPDX-License-Identifier: LGPL-2.1-or-later
// A job's HLS segments cut at the video keyframes as they come: each hlssink2 of a job's pipeline runs as mpegtsmux
// into an appsink, and a segment is written and listed as soon as the next keyframe reaches the muxer.
#pragma once

#include <gst/gst.h>

#include <string>

namespace sluice::jobs {

// The element message an appsink posts once a segment is written and its media playlist lists it (fields:
// "location", the segment's file; "playlist"; "index"; "duration", seconds).
inline constexpr const char *kSegmentClosed = "sluice-segment-closed";

// Replaces, in a pipeline that has not started, every hlssink2 that takes video by an mpegtsmux of the same name
// into an appsink, linked to the branches that fed it. The appsink cuts the muxer's bytes right before each video
// keyframe (media::TsCutter: the latest PAT and PMT in front of every segment), once the segment lasts at least
// half of target-duration, and writes what hlssink2 would have written: the segment at hlssink2's `location`
// (numbered from 0), then its media playlist at `playlist-location` (EVENT, TARGETDURATION `target-duration`), and
// posts kSegmentClosed. hlssink2's inner splitmuxsink closed a segment only once the GOP after it was complete,
// one segment late. An hlssink2 without video (audio only) is left as it is. Returns how many were replaced;
// throws sluice::Error (Pipeline) when one cannot be.
int cut_hls_sinks(GstElement *pipeline);

// hlssink2's segment location with its number: the pattern's one printf integer conversion ("%05d", "%d"; "%%" is
// a '%') applied to `index`, without printf. Throws sluice::Error (Invalid) for any other conversion.
std::string segment_location(const std::string &pattern, int index);

} // namespace sluice::jobs
