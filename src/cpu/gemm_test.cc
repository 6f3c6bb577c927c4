#include "cpu/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/convert.h"

namespace saferoute::cpu {
namespace {

TEST(Gemm, MatchesReferenceForEveryWeightType) {
  // Shapes chosen to give several panels, ragged last panels and (M > 512)
  // several row blocks.
  const int64_t m = 530, k = 72;
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(m * k);
  for (float& v : x) v = dist(rng);
  for (DType type : {DType::kF32, DType::kBF16, DType::kF16}) {
    const int64_t n1 = 1000, n2 = 37;  // two jobs sharing x
    std::vector<float> w32(n1 * k + n2 * k);
    for (float& v : w32) v = dist(rng) * 0.1f;
    std::vector<uint16_t> w16(w32.size());
    for (size_t i = 0; i < w32.size(); ++i) {
      if (type == DType::kBF16) w16[i] = F32ToBf16(w32[i]);
      // f16 bits via the hardware conversion would need F16C; use exact
      // small integers / 64 which are representable in both formats.
      if (type == DType::kF16) {
        const int q = static_cast<int>(std::lround(w32[i] * 64));
        const float value = q / 64.0f;
        w32[i] = value;
        uint16_t bits = 0;
        if (q != 0) {
          int e;
          float frac = std::frexp(std::fabs(value), &e);  // value = frac * 2^e, frac in [0.5,1)
          const uint16_t mant = static_cast<uint16_t>(std::lround((frac * 2 - 1) * 1024));
          bits = static_cast<uint16_t>(((e - 1 + 15) << 10) | mant | (value < 0 ? 0x8000 : 0));
        }
        w16[i] = bits;
      }
    }
    const auto* base = type == DType::kF32 ? reinterpret_cast<const std::byte*>(w32.data())
                                           : reinterpret_cast<const std::byte*>(w16.data());
    const size_t elem = type == DType::kF32 ? 4 : 2;
    WeightMatrix a{type, base, n1, k};
    WeightMatrix b{type, base + n1 * k * elem, n2, k};
    const int64_t ldy = n1 + 3;
    std::vector<float> y(m * ldy, 0.5f), y2(m * n2, 0.0f);
    std::vector<float> ref = y, ref2 = y2;
    GemmRunner runner(2);
    std::vector<GemmJob> jobs = {{a, y.data(), ldy, true}, {b, y2.data(), n2, false}};
    ASSERT_TRUE(runner.Run(x.data(), m, k, k, jobs).ok());
    ReferenceGemm(x.data(), m, k, a, ref.data(), ldy, true);
    ReferenceGemm(x.data(), m, k, b, ref2.data(), n2, false);
    float err = 0;
    for (size_t i = 0; i < y.size(); ++i) err = std::max(err, std::fabs(y[i] - ref[i]));
    for (size_t i = 0; i < y2.size(); ++i) err = std::max(err, std::fabs(y2[i] - ref2[i]));
    EXPECT_LT(err, 2e-5f) << static_cast<int>(type);
  }
}

TEST(Gemm, RejectsShapeMismatch) {
  std::vector<float> x(4 * 8), w(3 * 9), y(4 * 3);
  GemmRunner runner(1);
  std::vector<GemmJob> jobs = {
      {{DType::kF32, reinterpret_cast<const std::byte*>(w.data()), 3, 9}, y.data(), 3, false}};
  absl::Status status = runner.Run(x.data(), 4, 8, 8, jobs);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(Gemm, RejectsWeightRowsThatAreNotWholeBlocks) {
  // K = 40 is not a whole number of Q8_0 blocks (32 elements): no row layout.
  std::vector<float> x(4 * 40), y(4 * 3);
  std::vector<std::byte> w(3 * 2 * 34);
  GemmRunner runner(1);
  std::vector<GemmJob> jobs = {{{DType::kQ8_0, w.data(), 3, 40}, y.data(), 3, false}};
  absl::Status status = runner.Run(x.data(), 4, 40, 40, jobs);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("Q8_0"), std::string::npos) << status;
}

}  // namespace
}  // namespace saferoute::cpu
