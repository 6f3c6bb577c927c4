// Test-only helper: the rows of a JSON-lines fixture file (blank lines
// skipped); an unreadable file is a test failure naming the path.
#ifndef SAFEROUTE_UTIL_TEST_JSONL_H_
#define SAFEROUTE_UTIL_TEST_JSONL_H_

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace saferoute {

inline std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

}  // namespace saferoute

#endif  // SAFEROUTE_UTIL_TEST_JSONL_H_
