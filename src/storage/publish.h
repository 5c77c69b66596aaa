// SPDX-License-Identifier: LGPL-2.1-or-later
// Publishing a finished package folder to storage: every file, the playlists and manifests last.
#pragma once

#include "storage/storage.h"

#include <string>
#include <vector>

namespace sluice::storage {

// Uploads every regular file under local_dir to prefix + its relative path ("videos/ID/hls-v2/" +
// "720p/seg-00001.ts"), playlists and manifests (.m3u8, .mpd) after every other file, the top folder's own ones
// (master.m3u8, manifest.mpd) last of all, so that a reader who finds a playlist finds every file it lists. prefix is
// "" or ends with '/'. Returns the keys written, in the order they were written. Throws on the first failure (what
// was written stays: the caller removes the prefix).
std::vector<std::string> publish_dir(Storage &storage, const std::string &local_dir, const std::string &prefix);

} // namespace sluice::storage
