// SPDX-License-Identifier: LGPL-2.1-or-later
// `sluice upload`: a resumable (tus 1.0.0) upload of one file to a sluice server, optionally followed until played.
#pragma once

namespace sluice::cli {

// Runs `sluice upload FILE --server URL ...` (argv[0] is "upload"); returns the process's exit status.
int cmd_upload(int argc, char **argv);

} // namespace sluice::cli
