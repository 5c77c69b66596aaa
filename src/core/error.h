// SPDX-License-Identifier: LGPL-2.1-or-later
// The one error type of sluice: a message a person can act on, plus a machine-readable code.
#pragma once

#include <glib.h>

#include <stdexcept>
#include <string>

namespace sluice {

enum class ErrorCode {
  Invalid,     // bad parameter, bad description, bad request
  NotMedia,    // the input is not a media file we can read
  NotFound,    // a file, pipeline, encoder... does not exist
  Unavailable, // e.g. an encoder that exists but cannot run here
  Pipeline,    // GStreamer reported an error while running
  Truncated,   // the run ended but the output is shorter than the input
  BadInput,    // the input is media but cannot be demuxed or decoded (corrupt data)
  Canceled,    // stopped on request
  Io,          // file system
  NoSpace,     // the disk is full (ENOSPC): transient, goes away when space is freed
  Internal,
};

const char *error_code_name(ErrorCode code);

class Error : public std::runtime_error {
public:
  Error(ErrorCode code, const std::string &message) : std::runtime_error(message), code_(code) {}
  explicit Error(const std::string &message) : Error(ErrorCode::Invalid, message) {}
  ErrorCode code() const { return code_; }

  // Takes ownership of (and frees) err; prefix says what was being done.
  static Error from_gerror(ErrorCode code, const std::string &prefix, GError *err);

private:
  ErrorCode code_;
};

} // namespace sluice
