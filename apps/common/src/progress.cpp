#include <soundnet/app/progress.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

namespace soundnet::app {

progress::progress(std::size_t total, std::string unit)
    : total_(total), unit_(std::move(unit)), on_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()), finished_at_(start_) {}

void progress::update(std::size_t done, double fraction, const std::string& current) {
  if (!on_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done != done_) {  // an item finished: the time per item so far
    done_ = done;
    finished_at_ = now;
  }
  if (done < total_ && now - last_ < std::chrono::milliseconds(200)) return;
  last_ = now;
  auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
  const double per_item = done > 0 ? seconds(finished_at_ - start_) / done : 0;
  const double in_item = seconds(now - finished_at_);
  const double current_left = fraction > 0 ? in_item * (1 - fraction) / fraction : per_item;
  const std::size_t after = done < total_ ? total_ - done - 1 : 0;
  const long eta = static_cast<long>(std::lround(done < total_ ? current_left + after * per_item : 0));
  std::fprintf(stderr, "\r\033[K[%zu/%zu] ", done, total_);
  if (fraction > 0) std::fprintf(stderr, "%s %d%%, ", current.c_str(), static_cast<int>(100 * fraction));
  const double elapsed = seconds(now - start_);
  std::fprintf(stderr, "%.2f %s/s, ETA %ld:%02ld:%02ld ", elapsed > 0 ? (done + fraction) / elapsed : 0.0,
               unit_.c_str(), eta / 3600, eta / 60 % 60, eta % 60);
  if (done == total_) std::fputc('\n', stderr);
}

void progress::message(const std::string& line) { std::cerr << (on_ ? "\r\033[K" : "") << line << "\n"; }

}  // namespace soundnet::app
