// SPDX-License-Identifier: LGPL-2.1-or-later
// The store's executor: a queue of catalog calls, a few threads with a connection each, answers posted to the loop.
#include "store/executor.h"

#include "core/mainloop.h"

#include <exception>
#include <string>
#include <utility>

namespace sluice::store {

Executor::Executor(Store &store) : inline_(&store) {}

Executor::Executor(Open open, int threads, std::int64_t wait_us, GMainContext *context)
    : open_(std::move(open)), wait_us_(wait_us), context_(context) {
  for (int i = 0; i < std::max(threads, 1); i++)
    threads_.emplace_back([this] { serve(); });
}

Executor::~Executor() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto &t : threads_)
    t.join();
}

std::size_t Executor::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + busy_;
}

void Executor::call(Task &t, Store *store, const std::function<std::unique_ptr<Store>()> &open,
                    std::unique_ptr<Store> &own) {
  try {
    if (!store) {
      if (!own)
        own = open();
      store = own.get();
    }
    t.work(*store);
  } catch (const Error &e) {
    t.fail(e);
  } catch (const std::exception &e) {
    t.fail(Error(ErrorCode::Internal, e.what()));
  } catch (...) {
    t.fail(Error(ErrorCode::Internal, "a catalog call failed"));
  }
}

void Executor::submit(std::function<void(Store &)> work, std::function<void(const Error &)> fail,
                      std::function<void()> done) {
  Task t{std::move(work), std::move(fail), std::move(done), g_get_monotonic_time()};
  if (inline_) {
    std::unique_ptr<Store> none;
    call(t, inline_, nullptr, none);
    t.done();
    return;
  }
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(t));
  }
  cv_.notify_one();
}

void Executor::fire(std::function<void(Store &)> work, std::string what) {
  auto failed = std::make_shared<std::optional<Error>>();
  submit(
      std::move(work), [failed](const Error &e) { *failed = e; },
      [failed, what = std::move(what)] {
        if (*failed)
          g_warning("cannot %s: %s", what.c_str(), (*failed)->what());
      });
}

void Executor::serve() {
  std::unique_ptr<Store> own; // this thread's connection
  for (;;) {
    Task t;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      t = std::move(queue_.front());
      queue_.pop_front();
      busy_++;
    }
    if (g_get_monotonic_time() - t.asked > wait_us_)
      t.fail(Error(ErrorCode::Io, "the catalog did not answer within " + std::to_string(wait_us_ / G_USEC_PER_SEC) +
                                      " s ([store] timeout)"));
    else
      call(t, nullptr, open_, own);
    {
      std::lock_guard lock(mu_);
      busy_--;
    }
    post(std::move(t.done), context_);
  }
}

} // namespace sluice::store
