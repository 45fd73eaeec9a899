// A one-line progress report on stderr, shown only when stderr is a terminal.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace soundnet::app {

/// "[done/total] current 42%, 1.25 files/s, ETA 0:01:10": files done, the share of the current
/// file (for long files), the rate and the estimated time left (the current file from its own
/// pace, the files after it at the average pace so far). Redrawn at most 5 times a second.
class progress {
 public:
  explicit progress(std::size_t total, std::string unit = "files");
  /// Reports `done` finished items and `fraction` of the current one (named `current`).
  void update(std::size_t done, double fraction = 0, const std::string& current = "");
  /// Prints a line (an error report) that must not mix with the progress line.
  void message(const std::string& line);
  bool on_terminal() const { return on_; }

 private:
  std::size_t total_, done_ = 0;
  std::string unit_;
  bool on_;
  std::chrono::steady_clock::time_point start_, finished_at_, last_{};
};

}  // namespace soundnet::app
