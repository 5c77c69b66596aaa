// SPDX-License-Identifier: LGPL-2.1-or-later
// The fast path's answers: media files the connections write themselves (http/connections.h, FastHandler).
#pragma once

#include "http/context.h"

namespace sluice::http {

// Offers cx's connections' plain GET and HEAD requests to the fast path ([server] media-fast-path).
void start_fast_path(Context &cx);

} // namespace sluice::http
