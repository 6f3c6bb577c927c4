#include "router/random.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

namespace saferoute {
namespace {

TEST(RandomTest, NormalMomentsAndDeterminism) {
  const size_t n = 1'000'001;  // odd: the last pair keeps only its first value
  std::vector<float> a(n), b(n);
  FillNormal(123, a.data(), n);
  FillNormal(123, b.data(), n);
  EXPECT_EQ(a, b);
  std::vector<float> prefix(1001);
  FillNormal(123, prefix.data(), prefix.size());  // value i depends only on (key, i)
  for (size_t i = 0; i < prefix.size(); ++i) ASSERT_EQ(prefix[i], a[i]) << i;
  double sum = 0, sq = 0, fourth = 0;
  size_t beyond3 = 0;
  for (float v : a) {
    sum += v;
    sq += double(v) * v;
    fourth += double(v) * v * v * v;
    beyond3 += std::abs(v) > 3;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  // Standard errors for n = 1e6: mean 0.001, variance 0.0014, 4th moment ~0.01.
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(var, 1.0, 0.007);
  EXPECT_NEAR(fourth / n, 3.0, 0.05);
  // P(|z| > 3) = 0.0027.
  EXPECT_NEAR(static_cast<double>(beyond3) / n, 0.0027, 0.0004);
  std::vector<float> other(n);
  FillNormal(124, other.data(), n);
  EXPECT_NE(a, other);
}

TEST(RandomTest, NormalRangeIsASliceOfTheStream) {
  // Sizes across FillNormal's parallel chunks (8192 values) and its inner
  // blocks, odd and even ends.
  const size_t n = 20001;
  std::vector<float> whole(n);
  FillNormal(99, whole.data(), n);
  for (auto [begin, end] : std::vector<std::pair<size_t, size_t>>{
           {0, n}, {0, 1}, {2, 3}, {8190, 8195}, {4096, 12288}, {19998, 20001}, {10, 10}}) {
    std::vector<float> part(end - begin);
    FillNormalRange(99, begin, end, part.data());
    EXPECT_EQ(part, std::vector<float>(whole.begin() + begin, whole.begin() + end))
        << begin << ".." << end;
  }
}

}  // namespace
}  // namespace saferoute
