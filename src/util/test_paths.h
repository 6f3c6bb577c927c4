// Test-only helper: file paths that do not collide when ctest runs tests of
// the same binary in parallel processes (ctest -j).
#ifndef SAFEROUTE_UTIL_TEST_PATHS_H_
#define SAFEROUTE_UTIL_TEST_PATHS_H_

#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace saferoute {

// <TempDir>/<Suite>.<Test>.<pid>.<name>
inline std::string UniqueTestPath(const std::string& name) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test =
      info == nullptr ? "global" : std::string(info->test_suite_name()) + "." + info->name();
  for (char& c : test) {
    if (c == '/') c = '_';
  }
  return ::testing::TempDir() + "/" + test + "." + std::to_string(getpid()) + "." + name;
}

}  // namespace saferoute

#endif  // SAFEROUTE_UTIL_TEST_PATHS_H_
