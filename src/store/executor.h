// SPDX-License-Identifier: LGPL-2.1-or-later
// Catalog calls off the main loop: a few threads, each with a Store of its own, answering back on the main loop.
#pragma once

#include "core/error.h"
#include "store/store.h"

#include <glib.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

namespace sluice::store {

// What a call made through an Executor came to: its value, or the error it threw (a store's Error; anything else
// thrown is an Internal one).
template <typename T> struct Outcome {
  std::optional<T> value;
  std::optional<Error> error;
  bool ok() const { return value.has_value(); }
  // The value, or the call's error thrown again (for a caller whose own errors are answered the usual way).
  T &get() {
    if (error)
      throw *error;
    return *value;
  }
};

// Runs catalog calls where they cannot stop the main loop. A pool: `threads` threads, each with the Store `open`
// makes for it (at its first call, and again after that failed), so that one slow statement holds one thread;
// a call that no thread has started within wait_us of being asked fails unrun (Io, "[store] timeout"), so that
// calls queued behind a catalog that stopped answering come back in bounded time. Inline: each call runs at once
// on the caller's thread, on the one Store it was given (a SQLite catalog, one process's: every call as it was).
class Executor {
public:
  using Open = std::function<std::unique_ptr<Store>()>;
  explicit Executor(Store &store);
  // done runs on `context`'s loop (nullptr: the default one).
  Executor(Open open, int threads, std::int64_t wait_us, GMainContext *context = nullptr);
  // Calls not started are dropped; each thread's call in progress is waited for (bounded by its store's timeout).
  ~Executor();
  Executor(const Executor &) = delete;
  Executor &operator=(const Executor &) = delete;

  // Whether calls run on the caller's thread (done is called before run() returns).
  bool is_inline() const { return threads_.empty(); }

  // work(Store &) -> T runs on a store thread (it must capture nothing the main loop owns: values only), then
  // done(Outcome<T> &) on the main loop. Inline: both at once.
  template <typename Work, typename Done> void run(Work work, Done done) {
    using T = std::invoke_result_t<Work &, Store &>;
    auto out = std::make_shared<Outcome<T>>();
    submit([out, work = std::move(work)](Store &s) mutable { out->value.emplace(work(s)); },
           [out](const Error &e) { out->error = e; }, [out, done = std::move(done)]() mutable { done(*out); });
  }
  // work(Store &) runs on a store thread, nobody waiting for it: a failure is logged.
  void fire(std::function<void(Store &)> work, std::string what);

  // Calls asked for and not finished yet.
  std::size_t pending() const;

private:
  struct Task {
    std::function<void(Store &)> work;
    std::function<void(const Error &)> fail;
    std::function<void()> done;
    std::int64_t asked = 0; // monotonic microseconds
  };
  void submit(std::function<void(Store &)> work, std::function<void(const Error &)> fail, std::function<void()> done);
  void serve();
  static void call(Task &t, Store *store, const std::function<std::unique_ptr<Store>()> &open,
                   std::unique_ptr<Store> &own);

  Store *inline_ = nullptr;
  Open open_;
  std::int64_t wait_us_ = 0;
  GMainContext *context_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  std::size_t busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

} // namespace sluice::store
