// Progress for long loops on stderr: a redrawn bar with rate and ETA when
// stderr is a terminal, plain log lines (about every 10% or 30 s) otherwise.
#ifndef SAFEROUTE_EVAL_PROGRESS_H_
#define SAFEROUTE_EVAL_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace saferoute::eval {

class Progress {
 public:
  // `done` items were finished before this run (resumed work): the rate
  // counts only what this run does.
  Progress(std::string label, int64_t total, int64_t done, bool enabled);
  void Update(int64_t done);
  void Finish();

 private:
  void Print(bool final_line);

  std::string label_;
  int64_t total_;
  int64_t start_done_;
  int64_t done_;
  bool enabled_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t last_logged_done_;
};

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_PROGRESS_H_
