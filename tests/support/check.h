// SPDX-License-Identifier: LGPL-2.1-or-later
// Small assertion helpers shared by the test suites.
#pragma once

#include "core/error.h"

#include <gtest/gtest.h>

#include <exception>
#include <string>

namespace sluice::test {

// Runs fn, which must throw sluice::Error; returns it (or records a failure).
template <typename Fn> Error expect_error(Fn fn) {
  try {
    fn();
  } catch (const Error &e) {
    return e;
  } catch (const std::exception &e) {
    ADD_FAILURE() << "threw a non-sluice exception: " << e.what();
    return Error(ErrorCode::Internal, "wrong exception");
  }
  ADD_FAILURE() << "did not throw";
  return Error(ErrorCode::Internal, "no exception");
}

inline bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

// Non-overlapping occurrences of needle.
inline int count(const std::string &haystack, const std::string &needle) {
  int n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + needle.size()))
    n++;
  return n;
}

} // namespace sluice::test
