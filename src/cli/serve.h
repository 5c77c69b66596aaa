// SPDX-License-Identifier: LGPL-2.1-or-later
// `sluice serve` (the server: HTTP, the job queue, the live engine) and `sluice keys` (its catalog's API keys).
#pragma once

namespace sluice::cli {

// Run `sluice serve ...` / `sluice keys ...` (argv[0] is the command's name); return the process's exit status.
int cmd_serve(int argc, char **argv);
int cmd_keys(int argc, char **argv);

} // namespace sluice::cli
