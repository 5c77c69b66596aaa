// SPDX-License-Identifier: LGPL-2.1-or-later
// Placeholder scanning and substitution for pipeline description fragments.
#include "pipeline/template.h"

#include "core/error.h"

#include <glib.h>

namespace sluice::pipeline {

namespace {
bool is_name_char(char c) {
  return g_ascii_islower(c) || g_ascii_isdigit(c) || c == '_';
}

// Calls fn(start, end, name, quoted) for each placeholder.
template <typename Fn> void for_each_placeholder(const std::string &s, Fn fn) {
  bool quoted = false;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (c == '"') {
      quoted = !quoted;
      continue;
    }
    if (c != '{')
      continue;
    size_t j = i + 1;
    while (j < s.size() && is_name_char(s[j]))
      j++;
    if (j > i + 1 && j < s.size() && s[j] == '}') {
      fn(i, j + 1, s.substr(i + 1, j - i - 1), quoted);
      i = j;
    }
  }
}
} // namespace

std::vector<Placeholder> scan_placeholders(const std::string &fragment) {
  std::vector<Placeholder> out;
  for_each_placeholder(fragment, [&](size_t, size_t, const std::string &name, bool quoted) {
    out.push_back({name, quoted});
  });
  return out;
}

std::string substitute(const std::string &fragment, const std::map<std::string, std::string> &vars,
                       const std::string &where) {
  std::string out;
  size_t pos = 0;
  for_each_placeholder(fragment, [&](size_t start, size_t end, const std::string &name, bool) {
    auto it = vars.find(name);
    if (it == vars.end())
      throw Error(ErrorCode::Invalid, where + ": unknown placeholder {" + name + "}");
    out.append(fragment, pos, start - pos);
    out += it->second;
    pos = end;
  });
  out.append(fragment, pos, std::string::npos);
  return out;
}

std::string shell_quote_description(const std::string &description) {
  std::vector<std::string> tokens;
  std::string cur;
  bool quoted = false;
  for (char c : description) {
    if (c == '"')
      quoted = !quoted;
    if (!quoted && g_ascii_isspace(c)) {
      if (!cur.empty())
        tokens.push_back(cur);
      cur.clear();
      continue;
    }
    cur += c;
  }
  if (!cur.empty())
    tokens.push_back(cur);
  std::string out;
  for (const auto &t : tokens) {
    bool plain = true;
    for (char c : t)
      if (!(g_ascii_isalnum(c) || strchr("_./:=,+%@-!", c)))
        plain = false;
    if (!out.empty())
      out += ' ';
    if (plain) {
      out += t;
    } else {
      out += '\'';
      for (char c : t) {
        if (c == '\'')
          out += "'\\''";
        else
          out += c;
      }
      out += '\'';
    }
  }
  return out;
}

} // namespace sluice::pipeline
