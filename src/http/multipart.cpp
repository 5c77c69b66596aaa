// SPDX-License-Identifier: LGPL-2.1-or-later
// A streaming multipart/form-data parser (RFC 7578, RFC 2046 section 5.1) with memory bounded by the headers.
#include "http/multipart.h"

#include "core/error.h"
#include "http/text.h"

#include <glib.h>

#include <cstring>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::http {

namespace {

constexpr std::size_t kMaxBoundary = 70; // RFC 2046 section 5.1.1

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && g_ascii_strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Printable ASCII, 1..70 characters, not ending in a space: every boundary real clients use (RFC 2046 is
// stricter), and nothing that could contain CR or LF.
void check_boundary(const std::string &boundary) {
  if (boundary.empty())
    throw Error(ErrorCode::Invalid, "multipart boundary is empty");
  if (boundary.size() > kMaxBoundary)
    throw Error(ErrorCode::Invalid, "multipart boundary is " + std::to_string(boundary.size()) +
                                        " characters long; RFC 2046 allows at most 70");
  for (char c : boundary)
    if (c < 0x20 || c > 0x7e)
      throw Error(ErrorCode::Invalid, "multipart boundary contains a control or non-ASCII character");
  if (boundary.back() == ' ')
    throw Error(ErrorCode::Invalid, "multipart boundary ends with a space (RFC 2046 does not allow that)");
}

// One "; name=value" parameter list (after the media type or disposition type). Values may be tokens or
// quoted strings; inside quotes a backslash escapes '"' and '\' and is kept literally before anything else
// (browsers send Windows paths unescaped). Returns false when the list is malformed.
bool parse_params(std::string_view s, const std::function<void(std::string_view, std::string)> &param) {
  std::size_t i = 0;
  auto skip_ows = [&] {
    while (i < s.size() && is_ows(s[i]))
      i++;
  };
  while (true) {
    skip_ows();
    if (i == s.size())
      return true;
    if (s[i] != ';')
      return false;
    i++;
    skip_ows();
    if (i == s.size())
      return true; // trailing ';'
    std::size_t name_start = i;
    while (i < s.size() && s[i] != '=' && s[i] != ';' && !is_ows(s[i]))
      i++;
    std::string_view name = s.substr(name_start, i - name_start);
    skip_ows();
    if (name.empty() || i == s.size() || s[i] != '=')
      return false;
    i++;
    skip_ows();
    std::string value;
    if (i < s.size() && s[i] == '"') {
      i++;
      bool closed = false;
      while (i < s.size()) {
        char c = s[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < s.size() && (s[i] == '"' || s[i] == '\\'))
          c = s[i++];
        value.push_back(c);
      }
      if (!closed)
        return false;
    } else {
      std::size_t start = i;
      while (i < s.size() && s[i] != ';' && !is_ows(s[i]))
        i++;
      value.assign(s.substr(start, i - start));
      if (value.empty())
        return false;
    }
    param(name, std::move(value));
  }
}

} // namespace

std::string MultipartParser::boundary_from_content_type(const std::string &content_type) {
  std::string_view ct = trim(content_type);
  std::size_t semi = ct.find(';');
  std::string_view type = trim(ct.substr(0, semi));
  if (!iequals(type, "multipart/form-data"))
    throw Error(ErrorCode::Invalid, "the request's Content-Type is '" + std::string(type.empty() ? "(none)" : type) +
                                        "', expected multipart/form-data");
  std::optional<std::string> boundary;
  bool ok =
      semi == std::string_view::npos || parse_params(ct.substr(semi), [&](std::string_view name, std::string value) {
        if (iequals(name, "boundary") && !boundary)
          boundary = std::move(value);
      });
  if (!ok)
    throw Error(ErrorCode::Invalid, "the multipart/form-data Content-Type has malformed parameters: " + content_type);
  if (!boundary)
    throw Error(ErrorCode::Invalid, "the multipart/form-data Content-Type has no boundary parameter");
  check_boundary(*boundary);
  return *boundary;
}

struct MultipartParser::Impl {
  enum class State {
    Preamble,     // before the first delimiter: discarded
    AfterDelim,   // just after "--boundary": "--", transport padding or CRLF
    AfterDelimCR, // saw the CR of the CRLF after the delimiter
    CloseDash,    // saw the first '-' of the closing "--"
    Headers,      // a part's header block
    Body,         // a part's content
    Epilogue,     // after the closing delimiter: discarded
    Failed,       // an error was thrown: no further input is accepted
  };

  std::string delim; // "\r\n--" + boundary
  MultipartHandler handler;
  std::size_t max_header_bytes;

  State state = State::Preamble;
  // Bytes of delim matched at the end of the input so far (held back from the part's data). Starts at 2:
  // the body is read as if preceded by CRLF, so a first boundary at the very start is found too.
  std::size_t matched = 2;
  std::string headers; // the current part's header block, at most max_header_bytes
  PartInfo part;
  int part_number = 0;

  [[noreturn]] void fail(const std::string &message) { throw Error(ErrorCode::Invalid, "multipart body: " + message); }

  std::string part_label() const {
    std::string s = "part " + std::to_string(part_number);
    if (!part.name.empty())
      s += " ('" + part.name + "')";
    return s;
  }

  void emit(const char *data, std::size_t len) {
    if (len > 0 && state == State::Body && handler.data)
      handler.data(part, data, len);
  }

  void delimiter_found() {
    if (state == State::Body && handler.end)
      handler.end(part);
    state = State::AfterDelim;
    matched = 0;
  }

  // Scans content (Preamble or Body) for the delimiter; returns how many bytes of [p, end) were consumed.
  std::size_t scan(const char *p, const char *end) {
    const char *start = p;
    const std::size_t D = delim.size();
    if (matched > 0) {
      // Continue a partial match held back from the previous chunk.
      while (matched < D && p < end && *p == delim[matched]) {
        matched++;
        p++;
      }
      if (matched == D) {
        delimiter_found();
        return static_cast<std::size_t>(p - start);
      }
      if (p == end)
        return static_cast<std::size_t>(p - start);
      // Not a delimiter: what was held back is data. The boundary has no CR, so no suffix of delim[0, matched)
      // can start a new match and the mismatching byte is scanned afresh below.
      emit(delim.data(), matched);
      matched = 0;
    }
    const char *data_start = p;
    while (p < end) {
      const char *cr = static_cast<const char *>(std::memchr(p, '\r', static_cast<std::size_t>(end - p)));
      if (!cr) {
        p = end;
        break;
      }
      std::size_t avail = static_cast<std::size_t>(end - cr);
      std::size_t n = avail < D ? avail : D;
      if (std::memcmp(cr, delim.data(), n) == 0) {
        emit(data_start, static_cast<std::size_t>(cr - data_start));
        if (n == D) {
          delimiter_found();
          return static_cast<std::size_t>(cr + D - start);
        }
        matched = n; // a possible delimiter cut by the end of the chunk
        return static_cast<std::size_t>(end - start);
      }
      p = cr + 1;
    }
    emit(data_start, static_cast<std::size_t>(p - data_start));
    return static_cast<std::size_t>(p - start);
  }

  void parse_headers() {
    part = PartInfo{};
    bool have_disposition = false, have_name = false;
    std::string disposition_type;
    // Unfold obsolete line folding, then split "Name: value" lines.
    std::vector<std::string> lines;
    std::string_view block(headers);
    block.remove_suffix(2); // the final CRLF of the empty line
    std::size_t pos = 0;
    while (pos < block.size()) {
      std::size_t eol = block.find("\r\n", pos);
      if (eol == std::string_view::npos)
        eol = block.size();
      std::string_view line = block.substr(pos, eol - pos);
      pos = eol + 2;
      if (line.empty())
        continue;
      if (is_ows(line.front()) && !lines.empty())
        lines.back().append(" ").append(trim(line));
      else
        lines.emplace_back(line);
    }
    for (const std::string &line : lines) {
      std::size_t colon = line.find(':');
      if (colon == std::string::npos || colon == 0)
        fail("part " + std::to_string(part_number) + " has a header line without a name: '" + line.substr(0, 80) + "'");
      std::string_view name = trim(std::string_view(line).substr(0, colon));
      std::string_view value = trim(std::string_view(line).substr(colon + 1));
      if (iequals(name, "Content-Disposition")) {
        if (have_disposition)
          fail("part " + std::to_string(part_number) + " has two Content-Disposition headers");
        have_disposition = true;
        std::size_t semi = value.find(';');
        disposition_type = std::string(trim(value.substr(0, semi)));
        bool have_filename = false;
        bool ok = semi == std::string_view::npos ||
                  parse_params(value.substr(semi), [&](std::string_view pname, std::string pvalue) {
                    if (iequals(pname, "name") && !have_name) {
                      have_name = true;
                      part.name = std::move(pvalue);
                    } else if (iequals(pname, "filename") && !have_filename) {
                      have_filename = true;
                      part.filename = std::move(pvalue);
                    }
                  });
        if (!ok)
          fail("part " + std::to_string(part_number) +
               " has a malformed Content-Disposition: " + std::string(value.substr(0, 200)));
      } else if (iequals(name, "Content-Type")) {
        part.content_type = std::string(value);
      }
    }
    if (!have_disposition)
      fail("part " + std::to_string(part_number) + " has no Content-Disposition header");
    if (!have_name || part.name.empty())
      fail("part " + std::to_string(part_number) + " has no Content-Disposition name");
    if (!iequals(disposition_type, "form-data"))
      fail("part " + std::to_string(part_number) + " ('" + part.name + "') has Content-Disposition '" +
           disposition_type + "', expected form-data");
  }

  void feed(const char *data, std::size_t len) {
    if (state == State::Failed)
      fail("the parser already failed on earlier input");
    const char *p = data, *end = data + len;
    while (p < end) {
      switch (state) {
      case State::Preamble:
      case State::Body: p += scan(p, end); break;
      case State::AfterDelim: {
        char c = *p++;
        if (c == '-')
          state = State::CloseDash;
        else if (c == '\r')
          state = State::AfterDelimCR;
        else if (!is_ows(c)) // transport padding is allowed before the CRLF
          fail("a boundary line is followed by unexpected bytes (the boundary must not occur inside a part)");
        break;
      }
      case State::AfterDelimCR:
        if (*p++ != '\n')
          fail("a boundary line ends with CR but no LF");
        state = State::Headers;
        part_number++;
        part = PartInfo{};
        headers.clear();
        break;
      case State::CloseDash:
        if (*p++ != '-')
          fail("a boundary line is followed by a single '-' (the closing boundary ends with \"--\")");
        state = State::Epilogue;
        break;
      case State::Headers: {
        // Byte by byte up to CRLF CRLF (or a lone CRLF: no headers); header blocks are small.
        while (p < end) {
          if (headers.size() >= max_header_bytes)
            fail("the headers of part " + std::to_string(part_number) + " are longer than " +
                 std::to_string(max_header_bytes) + " bytes");
          headers.push_back(*p++);
          std::size_t n = headers.size();
          if ((n == 2 && headers == "\r\n") || (n >= 4 && headers.compare(n - 4, 4, "\r\n\r\n") == 0)) {
            parse_headers();
            headers.clear();
            headers.shrink_to_fit();
            state = State::Body;
            matched = 0;
            if (handler.begin)
              handler.begin(part);
            break;
          }
        }
        break;
      }
      case State::Epilogue:
      case State::Failed: p = end; break;
      }
    }
  }

  void finish() {
    switch (state) {
    case State::Epilogue: return;
    case State::Preamble:
      fail("no boundary line found (is the body multipart/form-data with boundary '" + delim.substr(4) + "'?)");
    case State::Headers: fail("body ended in the headers of part " + std::to_string(part_number));
    case State::Body: fail("body ended inside " + part_label() + ", before the closing boundary");
    case State::Failed: fail("the parser already failed on earlier input");
    default: fail("body ended before the closing boundary");
    }
  }
};

MultipartParser::MultipartParser(std::string boundary, MultipartHandler handler, std::size_t max_header_bytes)
    : impl_(std::make_shared<Impl>()) {
  check_boundary(boundary);
  impl_->delim = "\r\n--" + boundary;
  impl_->handler = std::move(handler);
  impl_->max_header_bytes = max_header_bytes;
}

void MultipartParser::feed(const char *data, std::size_t len) {
  try {
    impl_->feed(data, len);
  } catch (...) {
    impl_->state = Impl::State::Failed;
    throw;
  }
}

void MultipartParser::finish() {
  try {
    impl_->finish();
  } catch (...) {
    if (impl_->state != Impl::State::Epilogue)
      impl_->state = Impl::State::Failed;
    throw;
  }
}

bool MultipartParser::complete() const {
  return impl_->state == Impl::State::Epilogue;
}

} // namespace sluice::http
