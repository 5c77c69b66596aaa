// SPDX-License-Identifier: LGPL-2.1-or-later
// Small helpers for HTTP header text shared by the header parsers (RFC 9110 whitespace).
#pragma once

#include <string_view>

namespace sluice::http {

// Optional whitespace (OWS): space or horizontal tab.
inline bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

// s without leading and trailing OWS.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back()))
    s.remove_suffix(1);
  return s;
}

} // namespace sluice::http
