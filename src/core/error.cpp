// SPDX-License-Identifier: LGPL-2.1-or-later
// The sluice error type: GError conversion and code names.
#include "core/error.h"

namespace sluice {

const char *error_code_name(ErrorCode code) {
  switch (code) {
  case ErrorCode::Invalid: return "invalid";
  case ErrorCode::NotMedia: return "not_media";
  case ErrorCode::NotFound: return "not_found";
  case ErrorCode::Unavailable: return "unavailable";
  case ErrorCode::Pipeline: return "pipeline_error";
  case ErrorCode::Truncated: return "truncated";
  case ErrorCode::BadInput: return "bad_input";
  case ErrorCode::Canceled: return "canceled";
  case ErrorCode::Io: return "io_error";
  case ErrorCode::NoSpace: return "no_space";
  case ErrorCode::Internal: return "internal";
  }
  return "internal";
}

Error Error::from_gerror(ErrorCode code, const std::string &prefix, GError *err) {
  std::string msg = prefix;
  if (err) {
    if (!msg.empty())
      msg += ": ";
    msg += err->message;
    g_error_free(err);
  }
  return Error(code, msg);
}

} // namespace sluice
