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
  bool spec_checked = false; // the job it asks for was checked already (create() sets it when it comes back)
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
  // finish; then a sweep every minute (or more often for a short [uploads] resumable-expiry). On the main loop:
  // nothing is served yet.
  void start();
  // Removes every expired upload and expired direct uploads: the rows on the executor, then the files.
  void sweep();
  std::string folder() const;
  std::string file_of(const std::string &id) const;
  std::int64_t max_size() const;

  // Every catalog call below runs on the service's executor (with PostgreSQL the main loop does not wait for it; with
  // SQLite it runs at once) and `done` is called on the main loop.

  // The row of upload `id` as the catalog has it (any thread, with the caller's Store; none for a malformed id).
  static std::optional<store::ResumableUpload> row(store::Store &store, const std::string &id);
  // [storage] in a bucket, on the executor with row(): the row as this process may go on with it. An upload whose bytes
  // after its parts another process holds is taken over here (compare-and-set in the catalog; its offset becomes the
  // bytes in the bucket) for a HEAD (`patch_at` none) or a PATCH at that offset; as it is otherwise, or when another
  // request changed it first (read again). Any thread: it reads only what start() set.
  std::optional<store::ResumableUpload> held(store::Store &store, std::optional<store::ResumableUpload> row,
                                             std::optional<std::int64_t> patch_at) const;
  // What a request about upload `id` makes of that row: NotFound, Gone (expired), or the upload.
  Result<store::ResumableUpload> found(const std::string &id, const std::optional<store::ResumableUpload> &row) const;
  // found() of the row read on the executor.
  void find(const std::string &id, std::function<void(Result<store::ResumableUpload>)> done);

  // A new upload: its file, then its row (with a direct upload's claim in the same call). A final concatenation:
  // its parts read (in a bucket, those this process lacks whole fetched from their objects), joined, then ingested;
  // `done` once that is over.
  void create(const UploadRequest &request, std::function<void(Result<store::ResumableUpload>)> done);
  // Termination: the row, then the file (Locked while a PATCH writes it; Conflict while it is processed).
  void terminate(const std::string &id, std::function<void(std::optional<Failure>)> done);

  // One PATCH. begin_patch() checks the offset, the length and the lock before any byte; write() takes the body as it
  // arrives; finish() makes it durable and records the new offset (a body cut short keeps what came, unless it had a
  // checksum). The lock goes once that offset is recorded.
  class Patch : public std::enable_shared_from_this<Patch> {
  public:
    ~Patch();
    Patch(const Patch &) = delete;
    Patch &operator=(const Patch &) = delete;
    void write(const char *data, std::size_t len);
    // complete: the whole body arrived. The bytes are synced, then the offset recorded on the executor (with the
    // last byte of a whole upload, its hand-over to ingest: state processing and the video id it will make; of a
    // partial one, completed: in a bucket, once its object is complete); `done` with the row as recorded, or why the
    // PATCH's bytes were dropped.
    void finish(bool complete, std::function<void(Result<store::ResumableUpload>)> done);
    std::int64_t received() const { return written_; }

  private:
    friend class Uploads;
    Patch(Uploads &owner, store::ResumableUpload upload, std::optional<Checksum> checksum);
    void commit(std::int64_t offset);
    // [storage] in a bucket (uploads_bucket.cpp): every whole part of what is synced goes there, one at a time, each
    // recorded in the row as it is back; then() once none is in flight and (unless only_inflight) none is left.
    void send_parts();
    void after_parts(bool only_inflight, std::function<void()> then);
    // The end of finish(): the offset (and the hand-over of a last byte) recorded, then unlock, then done.
    void record(std::int64_t accepted, bool complete, std::function<void(std::function<void()>)> unlock,
                std::function<void(Result<store::ResumableUpload>)> done);

    Uploads *owner_;
    std::shared_ptr<bool> alive_;
    store::ResumableUpload upload_;
    std::int64_t start_ = 0, written_ = 0, synced_ = 0, flushed_ = 0;
    std::optional<Checksum> checksum_;
    GChecksum *sum_ = nullptr;
    int fd_ = -1;
    std::optional<Failure> error_;
    bool finished_ = false;
    bool sending_ = false;                          // a part is in flight
    std::optional<Failure> part_error_;             // the last part's failure (the bytes stay local)
    std::vector<std::function<void()>> parts_done_; // after_parts()' waiting
    bool only_inflight_ = false;
  };
  // On the main loop, with the upload's row read on the executor (row()).
  Result<std::shared_ptr<Patch>> begin_patch(const std::string &id, const std::optional<store::ResumableUpload> &row,
                                             std::int64_t offset, std::optional<std::int64_t> new_length,
                                             std::optional<std::int64_t> content_length,
                                             std::optional<Checksum> checksum);
  // After a PATCH that brought the last byte (its row as finish() recorded it): a whole upload goes through ingest
  // (`done` with the row as it ends: completed with its video, or failed with the reason); any other is done.
  void complete(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done);

  // Direct uploads.
  void create_direct(std::int64_t max_size, std::int64_t ttl_s, const std::map<std::string, std::string> &metadata,
                     const std::string &origin, std::function<void(Result<DirectGrant>)> done,
                     bool spec_checked = false);
  // The direct upload of a token, unless unknown or expired (any thread, with the caller's Store).
  static std::optional<store::DirectUpload> direct_for_token(store::Store &store, const std::string &token);
  // Whether a token could be one (its form alone: no catalog).
  static bool direct_token_form(const std::string &token);

private:
  // Removes uploads: their rows on the executor, then their files (and what they have in the bucket).
  void remove(std::vector<store::ResumableUpload> rows);
  void recover();
  void ingest(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done);
  void ingest_recorded(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done);
  void create_row(store::ResumableUpload u, std::vector<store::ResumableUpload> parts, std::string direct_id,
                  std::function<void(Result<store::ResumableUpload>)> done);
  void join(store::ResumableUpload final_upload, std::vector<store::ResumableUpload> parts,
            std::function<void(Result<store::ResumableUpload>)> done);
  void publish(const store::ResumableUpload &u, const char *action);
  // [storage] in a bucket (uploads_bucket.cpp). Whether this upload's bytes go there.
  bool in_bucket(const store::ResumableUpload &u) const { return bucket_ && !u.holder.empty(); }
  // Aborts the multipart uploads of these (removed) uploads, and removes their partial uploads' objects, on a thread.
  void abort_multiparts(const std::vector<store::ResumableUpload> &rows);
  // The last part and the completion of u's multipart upload (its source object), on a thread; when this process
  // holds only the bytes after the parts, the object is fetched to the upload's file once complete. Then ingest
  // (file.streamed: the object), as ingest_recorded does.
  void ingest_bucket(store::ResumableUpload u, IncomingFile file, Metadata metadata,
                     std::function<void(Result<Ingested>)> done);
  // A partial upload's last byte: its object completed (the last part and the completion of its multipart upload, or
  // the whole file in one upload), on a thread; done on the main loop with nullopt once the object exists.
  void complete_partial(const store::ResumableUpload &u, std::function<void(std::optional<Failure>)> done);
  // Local files of uploads another process holds now, or whose rows are gone, not written since `before` (µs).
  void remove_leftovers(const std::vector<store::ResumableUpload> &rows, std::int64_t before);
  // Writes u's row on the executor, one write at a time per upload and in the order asked (a row asked for while one
  // is in flight waits for it; rows asked for in between are replaced by the newest: each is whole), then done.
  void save(const store::ResumableUpload &u, std::function<void(std::optional<Failure>)> done);
  // fn once no write of upload id is in flight (at once when none is).
  void after_writes(const std::string &id, std::function<void()> fn);

  Service &service_;
  std::set<std::string> busy_; // uploads a PATCH writes, being created, joined, ingested or terminated
  struct Writes {
    bool in_flight = false;
    std::optional<store::ResumableUpload> next;
    std::vector<std::function<void(std::optional<Failure>)>> waiting; // for next
    std::vector<std::function<void()>> idle;                          // for no write in flight
  };
  std::map<std::string, Writes> writes_;
  storage::Storage *storage_ = nullptr;
  storage::Multipart *bucket_ = nullptr; // set by start() with a bucket that has multipart uploads
  std::string holder_;                   // this process, as uploads' rows name it (the worker name)
  bool sweeping_ = false;
  guint sweep_timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace sluice::app
