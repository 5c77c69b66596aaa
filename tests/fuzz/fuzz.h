// SPDX-License-Identifier: LGPL-2.1-or-later
// Shared helpers of the libFuzzer targets: invariants that abort (libFuzzer keeps the input), input splitting.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

// An invariant of the code under test: when it does not hold, the input is a finding.
#define FUZZ_CHECK(cond, what)                                                                                         \
  do {                                                                                                                 \
    if (!(cond)) {                                                                                                     \
      std::fprintf(stderr, "fuzz invariant failed at %s:%d: %s: %s\n", __FILE__, __LINE__, #cond,                      \
                   std::string(what).c_str());                                                                         \
      std::abort();                                                                                                    \
    }                                                                                                                  \
  } while (0)

namespace sluice::fuzz {

inline std::string text_of(const std::uint8_t *data, std::size_t size) {
  return std::string(reinterpret_cast<const char *>(data), size);
}

// Splits at the first '\n': the line before it and the rest (the whole input and "" without one).
inline std::pair<std::string, std::string> first_line(const std::string &s) {
  auto nl = s.find('\n');
  if (nl == std::string::npos)
    return {s, ""};
  return {s.substr(0, nl), s.substr(nl + 1)};
}

inline std::vector<std::string> lines(const std::string &s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t nl = s.find('\n', pos);
    if (nl == std::string::npos)
      nl = s.size();
    out.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

// A small deterministic generator (xorshift), seeded from the input, for choices such as chunk sizes.
class Rng {
public:
  explicit Rng(std::uint64_t seed) : s_(seed * 0x9e3779b97f4a7c15ULL + 1) {}
  std::uint64_t next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_;
  }
  std::size_t below(std::size_t n) { return n ? static_cast<std::size_t>(next() % n) : 0; }

private:
  std::uint64_t s_;
};

} // namespace sluice::fuzz
