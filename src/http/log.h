// SPDX-License-Identifier: LGPL-2.1-or-later
// The HTTP server's log category, sluice-http (GST_DEBUG=sluice-http:4: one line per request).
#pragma once

#include "core/log.h"

namespace sluice::http {

log::Category *http_log();

} // namespace sluice::http
