// SPDX-License-Identifier: LGPL-2.1-or-later
// Sources and finished packages in object storage ([storage] url): their keys, publishing, versions and fetching.
#pragma once

#include "core/config.h"
#include "jobs/transcode.h"
#include "storage/storage.h"
#include "store/store.h"

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::jobs {

// The storage [storage] names when it is not the data folder (nullptr: files stay in the data folder, served from
// there). Throws sluice::Error (Invalid) naming a missing or bad key, never a secret's value.
std::unique_ptr<storage::Storage> open_storage(const ServerConfig &config);

// Every object of a video is under "videos/ID/".
std::string video_prefix(const std::string &video_id);
// The extension a source file is kept under, from the client's file name: its last one, lower case, when it is 1 to 8
// letters and digits, else "bin" (the local file and the object are named alike).
std::string source_extension(const std::string &filename);
// The key of a video's source: "videos/ID/source.EXT" (ext "" gives "videos/ID/source").
std::string source_key(const std::string &video_id, const std::string &ext);
// A package's versioned prefix: "videos/ID/PIPELINE/vVERSION/". The version is the claim's fencing token, so
// that every attempt writes a prefix of its own.
std::string package_prefix(const std::string &video_id, const std::string &pipeline, std::int64_t version);
// "vN" when prefix is a package prefix of that video and pipeline, else "".
std::string package_version(const std::string &prefix, const std::string &video_id, const std::string &pipeline);

// Uploads a finished package folder under package_prefix() with publish_dir (playlists and manifests last) and
// returns the prefix. On a failure what was written is removed and the error is thrown as Io (the job's retry
// policy applies, as for a pipeline error).
std::string publish_package(storage::Storage &storage, const std::string &dir, const std::string &video_id,
                            const std::string &pipeline, std::int64_t version);
// Once `current` is recorded as the pipeline's package: removes the pipeline's other versions (earlier packages,
// attempts that died or lost their lease). Returns how many objects went. Never throws (logs).
std::size_t remove_other_versions(storage::Storage &storage, const std::string &video_id, const std::string &pipeline,
                                  const std::string &current) noexcept;

// Uploads a video's source file (multipart in bounded parts above one part). Throws sluice::Error.
void upload_source(storage::Storage &storage, const std::string &path, const std::string &video_id,
                   const std::string &ext);
// The source of a video as a local file: fetched from storage into video_dir (as source.EXT, through a temporary
// name) when it is not there. "" when storage has none either. Throws sluice::Error when the fetch fails.
std::string fetch_source(storage::Storage &storage, const std::string &video_dir, const std::string &video_id);

// The package prefix a job's result records ("storage_prefix"), "" when none.
std::string stored_prefix(const std::string &result_json);

// What the scheduler hands its runs (the storage must outlive them):
// the Publisher of a claimed job: its package goes under package_prefix(video, pipeline, the claim's token).
Transcode::Publisher package_publisher(storage::Storage &storage, const store::Job &job);
// TranscodeRequest::fetch_input for a video whose source is not in video_dir.
std::function<std::string()> source_fetcher(storage::Storage &storage, const std::string &video_dir,
                                            const std::string &video_id);
// After a job's success was written: the other versions of its package go, on a thread.
void drop_other_versions_later(storage::Storage &storage, const store::Job &job);
// A package this process published but may not record (its lease was lost): removed, on a thread.
void discard_package_later(storage::Storage &storage, const std::string &prefix);
// A deleted video's objects (everything under videos/ID/) go, on a thread.
void remove_video_later(storage::Storage &storage, const std::string &video_id);

} // namespace sluice::jobs
