#include "cpu/int8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace saferoute::cpu {
namespace {

// Plain scalar references (the definitions of int8.h, written out).
void ReferenceQuantize(const std::vector<float>& x, int64_t rows, int64_t cols, int q_max,
                       std::vector<int8_t>& q, std::vector<float>& scale) {
  q.assign(static_cast<size_t>(rows * cols), 0);
  scale.assign(static_cast<size_t>(rows), 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float max_abs = 0;
    for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(x[r * cols + c]));
    if (max_abs == 0) continue;
    scale[r] = max_abs / static_cast<float>(q_max);
    const float inv = static_cast<float>(q_max) / max_abs;
    for (int64_t c = 0; c < cols; ++c) {
      float v = std::nearbyint(x[r * cols + c] * inv);
      v = std::min(std::max(v, -static_cast<float>(q_max)), static_cast<float>(q_max));
      q[r * cols + c] = static_cast<int8_t>(v);
    }
  }
}

TEST(Int8, QuantizeRowsMatchesScalarReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Widths with vector bodies and tails; a zero row; an outlier row; values
  // exactly half-way between two steps (ties round to even).
  for (int64_t cols : {1, 7, 16, 33, 100, 2048}) {
    for (int q_max : {127, 63}) {
      const int64_t rows = 6;
      std::vector<float> x(static_cast<size_t>(rows * cols));
      for (float& v : x) v = normal(rng);
      std::fill(x.begin() + cols, x.begin() + 2 * cols, 0.0f);  // row 1: zeros
      x[2 * cols] = 1000.0f;                                    // row 2: one outlier
      for (int64_t c = 0; c < cols; ++c) {                      // row 3: ties
        x[3 * cols + c] = static_cast<float>(c % 7 == 0 ? q_max : (c % 5) - 2) + 0.5f;
      }
      const int64_t ldx = cols, ldq = cols + 3;
      std::vector<int8_t> q(static_cast<size_t>(rows * ldq), 99), want_q;
      std::vector<float> scale(rows), want_scale;
      QuantizeRowsS8(x.data(), ldx, rows, cols, q_max, q.data(), ldq, scale.data());
      ReferenceQuantize(x, rows, cols, q_max, want_q, want_scale);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(scale[r], want_scale[r]) << cols << " row " << r;
        for (int64_t c = 0; c < cols; ++c) {
          ASSERT_EQ(q[r * ldq + c], want_q[r * cols + c]) << cols << " " << r << " " << c;
        }
        for (int64_t c = cols; c < ldq && r + 1 < rows; ++c) ASSERT_EQ(q[r * ldq + c], 99);
      }
      // The dequantized row is within half a step of the input.
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          EXPECT_LE(std::fabs(q[r * ldq + c] * scale[r] - x[r * cols + c]),
                    0.5f * scale[r] * 1.0001f + 1e-6f);
        }
      }
    }
  }
}

TEST(Int8, QuantizeRowsU8IsS8Plus128) {
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int64_t cols : {5, 16, 77}) {
    const int64_t rows = 3;
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (float& v : x) v = normal(rng);
    std::fill(x.begin(), x.begin() + cols, 0.0f);  // a zero row: q = 0 -> 128
    std::vector<int8_t> s8(x.size());
    std::vector<uint8_t> u8(x.size());
    std::vector<float> s8_scale(rows), u8_scale(rows);
    QuantizeRowsS8(x.data(), cols, rows, cols, 127, s8.data(), cols, s8_scale.data());
    QuantizeRowsU8(x.data(), cols, rows, cols, u8.data(), cols, u8_scale.data());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(int{u8[i]}, s8[i] + 128) << cols << " " << i;
    EXPECT_EQ(s8_scale, u8_scale);
  }
}

TEST(Int8, ScaleS32MatchesScalarReference) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> acc_dist(-4000000, 4000000);
  std::uniform_real_distribution<float> scale_dist(1e-5f, 1e-2f);
  for (int64_t cols : {1, 15, 16, 47, 300}) {
    for (bool accumulate : {false, true}) {
      const int64_t rows = 5, lda = cols + 2, ldy = cols + 5;
      std::vector<int32_t> acc(static_cast<size_t>(rows * lda));
      for (auto& v : acc) v = acc_dist(rng);
      std::vector<float> rs(rows), cs(cols), y(static_cast<size_t>(rows * ldy));
      std::vector<int32_t> offset(cols);
      for (float& v : rs) v = scale_dist(rng);
      for (float& v : cs) v = scale_dist(rng);
      for (int32_t& v : offset) v = acc_dist(rng) / 8;
      for (float& v : y) v = scale_dist(rng) * 100;
      std::vector<float> want = y, magnitude(y.size(), 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const double v = static_cast<double>(acc[r * lda + c] - offset[c]) * rs[r] * cs[c];
          const double base = accumulate ? want[r * ldy + c] : 0.0;
          want[r * ldy + c] = static_cast<float>(v + base);
          magnitude[r * ldy + c] = static_cast<float>(std::fabs(v) + std::fabs(base));
        }
      }
      ScaleS32ToF32(acc.data(), lda, rows, cols, offset.data(), rs.data(), cs.data(), accumulate,
                    y.data(), ldy);
      for (size_t i = 0; i < y.size(); ++i) {
        // float(acc) rounds (|acc| < 2^22 here is exact) and the product of
        // the two scales rounds once: a few ulps.
        EXPECT_NEAR(y[i], want[i], 4e-7f * magnitude[i] + 1e-12f) << cols << " " << i;
      }
    }
  }
}

TEST(Int8, ScaleS32InPlace) {
  // y and acc share memory (what LinearRunner does when nothing is accumulated).
  const int64_t rows = 3, cols = 37;
  std::vector<int32_t> buffer(rows * cols);
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<int32_t>(i * 977) - 20000;
  const std::vector<int32_t> acc = buffer;
  std::vector<float> rs = {0.5f, 0.25f, 2.0f}, cs(cols, 0.125f);
  std::vector<int32_t> offset(cols, 0);
  float* y = reinterpret_cast<float*>(buffer.data());
  ScaleS32ToF32(buffer.data(), cols, rows, cols, offset.data(), rs.data(), cs.data(), false, y,
                cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float got;
      std::memcpy(&got, &buffer[r * cols + c], sizeof(got));
      EXPECT_EQ(got, static_cast<float>(acc[r * cols + c]) * (rs[r] * cs[c]));
    }
  }
}

}  // namespace
}  // namespace saferoute::cpu
