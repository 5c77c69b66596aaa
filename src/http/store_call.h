// SPDX-License-Identifier: LGPL-2.1-or-later
// A handler's catalog call on the service's store::Executor: the message paused until the answer is back.
#pragma once

#include "app/service.h"
#include "http/context.h"
#include "http/respond.h"
#include "http/upload.h"
#include "store/executor.h"

#include <libsoup/soup.h>

#include <exception>
#include <type_traits>
#include <utility>

namespace sluice::http {

// Runs fn() on the main loop for msg: what it throws is answered on msg as any handler's failure (a thrown
// UploadError as its status, the catalog's Io as 503 JSON), never crossing the loop's callback.
template <typename Fn> void answering_failures(SoupServerMessage *msg, Fn &&fn) {
  try {
    fn();
  } catch (const UploadError &e) {
    set_error(msg, e.status, e.code, e.message, e.field);
  } catch (const Error &e) {
    set_failure(msg, app::failure_of(e));
  } catch (const std::exception &e) {
    set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
  }
}

// Runs work(store::Store &) -> T where the main loop does not wait for it, then answer(T &) on the main loop; the
// message stays paused in between (answer may start another wait on it: later(), with_store). A failure is answered
// as any handler's: the catalog's (Io) 503 JSON, a thrown UploadError as its status. Inline
// executor (SQLite): both at once, on the handler's own call, with its errors thrown to the caller as before.
template <typename Work, typename Answer>
void with_store(Context &cx, SoupServerMessage *msg, Work work, Answer answer) {
  using T = std::invoke_result_t<Work &, store::Store &>;
  store::Executor &ex = cx.service.executor();
  if (ex.is_inline()) {
    T value = work(cx.service.store());
    answer(value);
    return;
  }
  ex.run(std::move(work), later(cx, msg, [msg, answer = std::move(answer)](store::Outcome<T> &o) {
           answering_failures(msg, [&] { answer(o.get()); });
         }));
}

} // namespace sluice::http
