// SPDX-License-Identifier: LGPL-2.1-or-later
// What the sluice commands share: their exit statuses, how an error is printed, how options are parsed.
#pragma once

#include "core/error.h"

#include <glib.h>

namespace sluice::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// "sluice: error: WHAT" on stderr.
void print_error(const Error &e);

// Parses options with GOptionContext; returns false (after printing) on a usage error.
bool parse_options(int &argc, char **&argv, const char *params, const char *summary, GOptionEntry *entries);

} // namespace sluice::cli
