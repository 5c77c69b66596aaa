// SPDX-License-Identifier: LGPL-2.1-or-later
// What the sluice commands share (cli/common.h).
#include "cli/common.h"

#include <cstdio>

namespace sluice::cli {

void print_error(const Error &e) {
  std::fprintf(stderr, "sluice: error: %s\n", e.what());
}

bool parse_options(int &argc, char **&argv, const char *params, const char *summary, GOptionEntry *entries) {
  GOptionContext *ctx = g_option_context_new(params);
  g_option_context_set_summary(ctx, summary);
  g_option_context_add_main_entries(ctx, entries, nullptr);
  GError *err = nullptr;
  bool ok = g_option_context_parse(ctx, &argc, &argv, &err);
  if (!ok) {
    std::fprintf(stderr, "sluice: %s\n(see --help)\n", err->message);
    g_clear_error(&err);
  }
  g_option_context_free(ctx);
  return ok;
}

} // namespace sluice::cli
