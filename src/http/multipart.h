// SPDX-License-Identifier: LGPL-2.1-or-later
// A streaming multipart/form-data parser: bytes in as they arrive, parts out, nothing buffered whole.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace sluice::http {

struct PartInfo {
  std::string name;         // Content-Disposition name
  std::string filename;     // Content-Disposition filename ("" when absent)
  std::string content_type; // the part's Content-Type ("" when absent)
};

// Callbacks may throw; the exception propagates out of feed()/finish().
struct MultipartHandler {
  std::function<void(const PartInfo &)> begin;
  std::function<void(const PartInfo &, const char *data, std::size_t len)> data;
  std::function<void(const PartInfo &)> end;
};

class MultipartParser {
public:
  // The boundary parameter of a multipart/form-data Content-Type; throws sluice::Error (Invalid).
  static std::string boundary_from_content_type(const std::string &content_type);

  MultipartParser(std::string boundary, MultipartHandler handler, std::size_t max_header_bytes = 16 * 1024);
  // Feeds the next bytes of the body, in chunks of any size. Throws sluice::Error (Invalid) with a
  // message saying what is malformed (missing boundary, headers too long, no name, ...).
  void feed(const char *data, std::size_t len);
  // The body has ended: throws sluice::Error (Invalid) unless the closing boundary was seen.
  void finish();
  bool complete() const;

private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

} // namespace sluice::http
