// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads (the tus protocol's model, without HTTP): rows and files that survive restarts, written
// PATCH by PATCH, joined when they are parts, and handed to Service::ingest when their last byte is in.
#pragma once

#include "app/service.h"

#include <glib.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sluice::app {

// Upload-Metadata: "key base64,key base64" (a key alone has an empty value). nullopt when malformed: a key
// that is empty, repeated or has spaces, a value that is not base64 or not UTF-8 text without NULs.
std::optional<std::map<std::string, std::string>> parse_tus_metadata(const std::string &header);
std::string tus_metadata_header(const std::map<std::string, std::string> &keys);
// The metadata sluice reads from an upload's keys (filename, title, description, pipeline, encoder, ladder,
// priority, playback_policy, params as a JSON object); `filename` gets the client's file name. Unknown keys are
// ignored (clients add their own, e.g. filetype). A Failure for params that are not a JSON object of scalars.
Result<Metadata> metadata_from(const std::map<std::string, std::string> &keys, std::string &filename);

struct UploadRequest {
  std::optional<std::int64_t> length; // none: deferred (Upload-Defer-Length: 1)
  std::string metadata_header;        // as sent
  enum class Concat { None, Partial, Final } concat = Concat::None;
  std::vector<std::string> parts; // Final: the ids of the partial uploads, in order
  // Made through a direct upload: its id, its largest size, and the metadata that wins over the client's.
  std::string direct_id;
  std::int64_t max_size = -1;
  std::map<std::string, std::string> forced;
};

struct Checksum {
  GChecksumType type;
  std::string digest; // raw bytes
};
// "sha1", "md5", "sha256".
std::optional<GChecksumType> checksum_type(const std::string &name);

// A one-time permission to create one upload, and its token (shown once; the catalog keeps its hash).
struct DirectGrant {
  store::DirectUpload direct;
  std::string token;
};

class Uploads {
public:
  explicit Uploads(Service &service);
  ~Uploads();
  Uploads(const Uploads &) = delete;
  Uploads &operator=(const Uploads &) = delete;

  // Startup: files without rows and rows without files go, expired uploads go, uploads left processing
  // finish; then a sweep every minute (or more often for a short [uploads] resumable-expiry).
  void start();
  // Removes every expired upload (its row and file) and expired direct uploads.
  void sweep();
  std::string folder() const;
  std::string file_of(const std::string &id) const;
  std::int64_t max_size() const;

  // A new upload (with a final concatenation: its parts joined, then ingested; `done` once that is over).
  void create(const UploadRequest &request, std::function<void(Result<store::ResumableUpload>)> done);
  // An upload that exists (NotFound) and has not expired (Gone), with the bytes its PATCHes brought (some of them
  // perhaps not yet synced: see flush()).
  Result<store::ResumableUpload> find(const std::string &id);
  // Makes what the upload's PATCHes brought durable and records it (what a HEAD reports is on disk). A PATCH's
  // answer does not wait for this: its bytes are synced within a second (a partial upload's within
  // kPartialSyncWithinUs, unless a final joins them first), or when someone asks (HEAD, GET, the last byte), so that
  // PATCHes follow each other at the network's pace.
  std::optional<Failure> flush(const std::string &id);
  // Termination: the row and the file go (Locked while a PATCH writes it; Conflict while it is processed).
  std::optional<Failure> terminate(const std::string &id);

  // One PATCH. begin() checks the offset, the length and the lock before any byte; write() takes the body as
  // it arrives; finish() makes it durable and records the new offset (a body cut short keeps what came, unless
  // it had a checksum). The lock goes with the Patch.
  class Patch {
  public:
    ~Patch();
    Patch(const Patch &) = delete;
    Patch &operator=(const Patch &) = delete;
    void write(const char *data, std::size_t len);
    // complete: the whole body arrived. Returns the upload as recorded, or why the PATCH's bytes were dropped.
    Result<store::ResumableUpload> finish(bool complete);
    std::int64_t received() const { return written_; }

  private:
    friend class Uploads;
    Patch(Uploads &owner, store::ResumableUpload upload, std::int64_t durable, std::optional<Checksum> checksum);
    void commit(std::int64_t offset);
    void release();

    Uploads *owner_;
    std::shared_ptr<bool> alive_;
    store::ResumableUpload upload_;
    std::int64_t start_ = 0, written_ = 0, synced_ = 0, flushed_ = 0;
    std::int64_t durable_ = 0;  // what the catalog says is on disk
    bool length_set_ = false;   // this PATCH gave the deferred length
    bool partial_ = false;      // a partial upload: synced by time (sync_due_), not every 16 MiB
    std::int64_t sync_due_ = 0; // monotonic µs
    std::optional<Checksum> checksum_;
    GChecksum *sum_ = nullptr;
    int fd_ = -1;
    std::optional<Failure> error_;
    bool finished_ = false;
  };
  Result<std::shared_ptr<Patch>> begin_patch(const std::string &id, std::int64_t offset,
                                             std::optional<std::int64_t> new_length,
                                             std::optional<std::int64_t> content_length,
                                             std::optional<Checksum> checksum);
  // After a PATCH that brought the last byte: a partial upload is complete; any other goes through ingest
  // (`done` with the row as it ends: completed with its video, or failed with the reason).
  void complete(const std::string &id, std::function<void(Result<store::ResumableUpload>)> done);

  // Direct uploads.
  Result<DirectGrant> create_direct(std::int64_t max_size, std::int64_t ttl_s,
                                    const std::map<std::string, std::string> &metadata, const std::string &origin);
  // The direct upload of a token, unless unknown or expired.
  std::optional<store::DirectUpload> direct_for_token(const std::string &token);

private:
  void remove(const store::ResumableUpload &u);
  void recover();
  void ingest(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done);
  void join(store::ResumableUpload final_upload, std::vector<store::ResumableUpload> parts,
            std::function<void(Result<store::ResumableUpload>)> done);
  void publish(const store::ResumableUpload &u, const char *action);
  // Bytes accepted up to offset, to be synced by their due time (the first unsynced byte's, plus the bound).
  void mark_unsynced(const store::ResumableUpload &u, std::int64_t offset);
  void flush_soon();
  void flush_due(bool all);

  Service &service_;
  std::set<std::string> busy_; // uploads a PATCH writes or that are being joined or ingested
  struct Unsynced {
    std::int64_t offset = 0; // bytes accepted by PATCHes, not yet synced and recorded
    std::int64_t due = 0;    // when they are synced at the latest (monotonic µs)
  };
  std::map<std::string, Unsynced> unsynced_;
  guint flush_timer_ = 0;
  std::int64_t flush_at_ = 0; // when flush_timer_ fires (monotonic µs)
  guint sweep_timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace sluice::app
