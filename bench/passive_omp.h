// Benchmarks that measure numbers, not time, on a shared machine: OpenMP's
// idle workers busy-wait between parallel regions, and with the cores busy
// that made the engine ~20x slower (precision_quality_bench, int8 on 3
// prompts: 6.3 s, 0.32 s with OMP_WAIT_POLICY=passive). The policy is read
// when the OpenMP runtime starts, so it is set by re-running the binary.
#ifndef SAFEROUTE_BENCH_PASSIVE_OMP_H_
#define SAFEROUTE_BENCH_PASSIVE_OMP_H_

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace saferoute::bench {

// Re-runs this binary with OMP_WAIT_POLICY=passive unless the variable is
// set (a user's choice is kept); returns only if that is so or exec fails.
inline void RerunWithPassiveOmpWait(char** argv, const char* name) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);
  std::perror((std::string(name) + ": re-exec with OMP_WAIT_POLICY=passive").c_str());
}

}  // namespace saferoute::bench

#endif  // SAFEROUTE_BENCH_PASSIVE_OMP_H_
