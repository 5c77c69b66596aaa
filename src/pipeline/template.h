// SPDX-License-Identifier: LGPL-2.1-or-later
// `{placeholder}` templates: scanning, quoting context and substitution.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sluice::pipeline {

struct Placeholder {
  std::string name;
  bool quoted; // inside a double-quoted gst-launch value
};

// Lists the placeholders of a fragment in order. A '{' not followed by [a-z0-9_]+ '}' is literal.
std::vector<Placeholder> scan_placeholders(const std::string &fragment);

// Replaces every placeholder by vars[name]; throws naming `where` for an unknown one.
std::string substitute(const std::string &fragment, const std::map<std::string, std::string> &vars,
                       const std::string &where);

// Turns a gst-launch description into a line a POSIX shell passes to gst-launch-1.0 unchanged.
std::string shell_quote_description(const std::string &description);

} // namespace sluice::pipeline
