// Test-only helper: the GEMM paths this CPU runs, out of those a test
// covers. A path the CPU cannot run is skipped with a printed line that names
// it and says why (never silently).
#ifndef SAFEROUTE_CPU_TESTING_AVAILABLE_PATHS_H_
#define SAFEROUTE_CPU_TESTING_AVAILABLE_PATHS_H_

#include <cstdio>
#include <initializer_list>
#include <vector>

#include "cpu/dispatch.h"

namespace saferoute::cpu::testing {

inline std::vector<GemmPath> AvailablePaths(std::initializer_list<GemmPath> candidates) {
  std::vector<GemmPath> paths;
  const CpuSupport& support = DetectCpuSupport();
  for (GemmPath path : candidates) {
    if (ChoosePath(PathPrecision(path), support, path).ok()) {
      paths.push_back(path);
    } else {
      std::printf("path %s skipped: not available on this CPU (%s)\n", GemmPathName(path),
                  DescribePath(path, support).c_str());
    }
  }
  return paths;
}

}  // namespace saferoute::cpu::testing

#endif  // SAFEROUTE_CPU_TESTING_AVAILABLE_PATHS_H_
