#include "eval/progress.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_format.h"

namespace saferoute::eval {
namespace {
std::string Duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  return absl::StrFormat("%02d:%02d", s / 60, s % 60);
}
}  // namespace

Progress::Progress(std::string label, int64_t total, int64_t done, bool enabled)
    : label_(std::move(label)),
      total_(total),
      start_done_(done),
      done_(done),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_),
      last_logged_done_(done) {}

void Progress::Update(int64_t done) {
  done_ = done;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (tty_) {
    if (since >= 0.1) Print(false);
  } else if (since >= 30 || (total_ > 0 && (done_ - last_logged_done_) * 10 >= total_)) {
    Print(false);
  }
}

void Progress::Finish() {
  if (enabled_) Print(true);
}

void Progress::Print(bool final_line) {
  const auto now = std::chrono::steady_clock::now();
  last_print_ = now;
  last_logged_done_ = done_;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? (done_ - start_done_) / elapsed : 0;
  const double eta = rate > 0 ? (total_ - done_) / rate : -1;
  const double fraction = total_ > 0 ? static_cast<double>(done_) / total_ : 1.0;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = std::clamp(static_cast<int>(fraction * kWidth), 0, kWidth);
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld %3.0f%% %.1f/s ETA %s\x1b[K%s", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, ' ').c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), 100 * fraction,
                 rate, Duration(eta).c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s: %lld/%lld (%.0f%%), %.1f/s, %s %s\n", label_.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), 100 * fraction,
                 rate, final_line ? "took" : "ETA", Duration(final_line ? elapsed : eta).c_str());
  }
  std::fflush(stderr);
}

}  // namespace saferoute::eval
