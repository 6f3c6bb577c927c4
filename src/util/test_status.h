// Test-only helper: asserts that a Status is an error whose message names
// what it should (errors must say what and where).
#ifndef SAFEROUTE_UTIL_TEST_STATUS_H_
#define SAFEROUTE_UTIL_TEST_STATUS_H_

#include <string>

#include "gtest/gtest.h"
#include "util/status.h"

namespace saferoute {

// EXPECT_TRUE(ErrorContains(status, "tensor 'x'")): fails on OK, or on an
// error whose message lacks `part` (printing the message).
inline ::testing::AssertionResult ErrorContains(const absl::Status& status,
                                                const std::string& part) {
  if (status.ok()) {
    return ::testing::AssertionFailure() << "expected an error containing '" << part << "'";
  }
  const std::string message(status.message());
  if (message.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "error '" << message << "' does not contain '" << part << "'";
}

}  // namespace saferoute

#endif  // SAFEROUTE_UTIL_TEST_STATUS_H_
