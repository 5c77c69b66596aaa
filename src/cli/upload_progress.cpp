// SPDX-License-Identifier: LGPL-2.1-or-later
// sluice upload's progress on stderr: a bar redrawn in place on a terminal, a line every tenth otherwise.
#include "cli/upload_internal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace sluice::cli::upload_detail {

std::string format_bytes(std::uint64_t n) {
  char buf[32];
  if (n < 1024)
    std::snprintf(buf, sizeof buf, "%" PRIu64 " B", n);
  else if (n < 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024);
  else if (n < 1024ull * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1024 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(n) / (1024.0 * 1024 * 1024));
  return buf;
}

std::string format_seconds(double s) {
  if (s < 0 || s > 99 * 3600)
    return "--:--";
  auto t = static_cast<long long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

void Progress::start(std::uint64_t offset) {
  started_ = g_get_monotonic_time();
  window_.clear();
  window_.emplace_back(started_, offset);
  first_ = offset;
  position_ = offset;
  decile_ = total_ ? static_cast<int>(offset * 10 / total_) : 0;
}

void Progress::at(std::uint64_t position) {
  position_ = std::min(position, total_);
  const gint64 now = g_get_monotonic_time();
  if (window_.empty() || now - window_.back().first >= 100000) {
    window_.emplace_back(now, position_);
    while (window_.size() > 2 && now - window_.front().first > 5 * G_USEC_PER_SEC)
      window_.pop_front();
  }
  if (tty_) {
    if (now - drawn_ >= 100000 || position_ == total_) {
      drawn_ = now;
      draw();
    }
    return;
  }
  int decile = total_ ? static_cast<int>(position_ * 10 / total_) : 10;
  if (decile > decile_ && decile < 10) {
    decile_ = decile;
    std::fprintf(stderr, "sluice: %d%% sent (%s of %s, %s/s)\n", decile * 10, format_bytes(position_).c_str(),
                 format_bytes(total_).c_str(), format_bytes(static_cast<std::uint64_t>(speed())).c_str());
  }
}

void Progress::note(const std::string &text) {
  clear();
  std::fprintf(stderr, "sluice: %s\n", text.c_str());
}

void Progress::line(const std::string &text) {
  if (!tty_)
    return;
  int width = terminal_width();
  std::string t = text.size() + 1 > static_cast<std::size_t>(width) ? text.substr(0, width - 1) : text;
  std::fprintf(stderr, "\r%s\033[K", t.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void Progress::clear() {
  if (tty_ && shown_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  shown_ = false;
}

void Progress::finished() {
  clear();
  const double s = static_cast<double>(g_get_monotonic_time() - started_) / G_USEC_PER_SEC;
  const std::uint64_t sent = position_ - first_;
  std::fprintf(stderr, "sluice: 100%% uploaded (%s sent in %.1f s, %s/s)\n", format_bytes(sent).c_str(), s,
               format_bytes(s > 0 ? static_cast<std::uint64_t>(static_cast<double>(sent) / s) : sent).c_str());
}

double Progress::speed() const {
  auto rate = [](gint64 t0, std::uint64_t b0, gint64 t1, std::uint64_t b1) {
    return t1 > t0 && b1 >= b0 ? static_cast<double>(b1 - b0) * G_USEC_PER_SEC / static_cast<double>(t1 - t0) : 0;
  };
  // The last few seconds once there are some; before that, everything since the start.
  if (window_.size() >= 2 && window_.back().first - window_.front().first >= G_USEC_PER_SEC)
    return rate(window_.front().first, window_.front().second, window_.back().first, window_.back().second);
  return rate(started_, first_, g_get_monotonic_time(), position_);
}

int Progress::terminal_width() {
  struct winsize ws {};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
    return ws.ws_col;
  return 80;
}

void Progress::draw() {
  constexpr int kBar = 24;
  const double frac = total_ ? static_cast<double>(position_) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(frac * kBar);
  std::string bar = "[" + std::string(filled, '#') + std::string(kBar - filled, ' ') + "]";
  const double sp = speed();
  const double eta = sp > 0 ? static_cast<double>(total_ - position_) / sp : -1;
  char buf[256];
  std::snprintf(buf, sizeof buf, "  %3d%% %s %s / %s  %s/s  ETA %s", static_cast<int>(frac * 100), bar.c_str(),
                format_bytes(position_).c_str(), format_bytes(total_).c_str(),
                format_bytes(static_cast<std::uint64_t>(sp)).c_str(), format_seconds(eta).c_str());
  line(buf);
}

} // namespace sluice::cli::upload_detail
