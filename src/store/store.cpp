// SPDX-License-Identifier: LGPL-2.1-or-later
// The store's backend-independent parts: job state names, lists of names and random ids.
#include "store/store.h"

#include <glib.h>

#include <cstdio>

namespace sluice::store {

const char *job_state_name(JobState s) {
  switch (s) {
  case JobState::Queued: return "queued";
  case JobState::Running: return "running";
  case JobState::Succeeded: return "succeeded";
  case JobState::Failed: return "failed";
  case JobState::Canceled: return "canceled";
  }
  return "queued";
}

std::optional<JobState> parse_job_state(const std::string &name) {
  for (JobState s : {JobState::Queued, JobState::Running, JobState::Succeeded, JobState::Failed, JobState::Canceled})
    if (name == job_state_name(s))
      return s;
  return std::nullopt;
}

bool is_terminal(JobState s) {
  return s == JobState::Succeeded || s == JobState::Failed || s == JobState::Canceled;
}

std::string join_names(const std::vector<std::string> &names) {
  std::string out;
  for (const auto &n : names)
    out += (out.empty() ? "" : ",") + n;
  return out;
}

std::vector<std::string> split_names(const std::string &list) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < list.size()) {
    std::size_t comma = list.find(',', at);
    if (comma == std::string::npos)
      comma = list.size();
    if (comma > at)
      out.push_back(list.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

std::string new_id() {
  // GLib's global generator is seeded from /dev/urandom and is thread safe.
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", static_cast<unsigned>(g_random_int()),
                static_cast<unsigned>(g_random_int()));
  return std::string(buf, 16);
}

std::string encode_parts(const std::vector<UploadPart> &parts) {
  std::string out;
  for (const auto &p : parts)
    out += std::to_string(p.size) + " " + p.etag + "\n";
  return out;
}

std::vector<UploadPart> decode_parts(const std::string &text) {
  std::vector<UploadPart> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos)
      end = text.size();
    const std::string line = text.substr(at, end - at);
    if (auto space = line.find(' '); space != std::string::npos)
      out.push_back(UploadPart{g_ascii_strtoll(line.c_str(), nullptr, 10), line.substr(space + 1)});
    at = end + 1;
  }
  return out;
}

std::int64_t parts_bytes(const std::vector<UploadPart> &parts) {
  std::int64_t n = 0;
  for (const auto &p : parts)
    n += p.size;
  return n;
}

bool is_id(const std::string &s) {
  if (s.size() != 16)
    return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

} // namespace sluice::store
