#include "cpu/q8_gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/convert.h"
#include "cpu/dequantize.h"

namespace saferoute::cpu {
namespace {

// Plain scalar reference of QuantizeRowQ8 (q as s8, whatever the variant
// stores): per block of 32, zero-padded.
void ReferenceQuantize(const float* x, int64_t k, std::vector<int8_t>& q,
                       std::vector<float>& scale) {
  const int64_t kb = (k + 31) / 32;
  q.assign(static_cast<size_t>(kb * 32), 0);
  scale.assign(static_cast<size_t>(kb), 0.0f);
  for (int64_t b = 0; b < kb; ++b) {
    float amax = 0;
    for (int64_t i = b * 32; i < std::min(k, b * 32 + 32); ++i)
      amax = std::max(amax, std::fabs(x[i]));
    if (amax == 0) continue;
    scale[b] = amax / 127.0f;
    for (int64_t i = b * 32; i < std::min(k, b * 32 + 32); ++i) {
      const float v = std::nearbyint(x[i] * (127.0f / amax));
      q[i] = static_cast<int8_t>(std::min(std::max(v, -127.0f), 127.0f));
    }
  }
}

std::vector<float> RandomMatrix(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (float& v : x) v = normal(rng);
  // Outlier channels, as real activations have: one column per 37 scaled up.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 5; c < cols; c += 37) x[r * cols + c] *= 40.0f;
  }
  return x;
}

TEST(Q8Gemm, QuantizeRowMatchesScalarReference) {
  std::mt19937 rng(11);
  for (int64_t k : {1, 31, 32, 33, 100, 2048}) {
    std::vector<float> x = RandomMatrix(1, k, rng);
    if (k >= 64) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block
    if (k >= 100) {
      for (int64_t i = 64; i < 96; ++i) x[i] = static_cast<float>(i % 9) - 4.5f;  // ties
      x[64] = 127.0f;  // scale 1: x * 127 / 127 lands exactly on the .5 ties
    }
    std::vector<int8_t> want_q;
    std::vector<float> want_scale;
    ReferenceQuantize(x.data(), k, want_q, want_scale);
    for (bool as_u8 : {false, true}) {
      std::vector<int8_t> q(want_q.size(), 99);
      std::vector<float> scale(want_scale.size(), -1.0f);
      QuantizeRowQ8(x.data(), k, as_u8, q.data(), scale.data());
      for (size_t b = 0; b < scale.size(); ++b) EXPECT_EQ(scale[b], want_scale[b]) << k << " " << b;
      for (size_t i = 0; i < q.size(); ++i) {
        const int8_t got = as_u8 ? static_cast<int8_t>(static_cast<uint8_t>(q[i]) - 128) : q[i];
        ASSERT_EQ(got, want_q[i]) << "k " << k << " element " << i << " as_u8 " << as_u8;
      }
    }
  }
}

TEST(Q8Gemm, PacksFloatWeightsAsTheirBlockQuantization) {
  std::mt19937 rng(12);
  const int64_t k = 70;  // two whole blocks and a padded one
  std::vector<float> a = RandomMatrix(5, k, rng), b = RandomMatrix(14, k, rng);
  std::vector<uint16_t> b_bf16(b.size());
  for (size_t i = 0; i < b.size(); ++i) b_bf16[i] = F32ToBf16(b[i]);
  const WeightMatrix parts[] = {
      {DType::kF32, reinterpret_cast<const std::byte*>(a.data()), 5, k},
      {DType::kBF16, reinterpret_cast<const std::byte*>(b_bf16.data()), 14, k}};
  auto packed = Q8Weights::Pack(parts, "w");
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(packed->rows(), 19);
  EXPECT_EQ(packed->tiles(), 2);
  EXPECT_EQ(packed->blocks(), 3);
  for (int64_t n = 0; n < 19; ++n) {
    std::vector<float> row(a.begin() + n * k, a.begin() + (n + 1) * k);
    if (n >= 5) {
      for (int64_t c = 0; c < k; ++c) row[c] = Bf16ToF32(b_bf16[(n - 5) * k + c]);
    }
    std::vector<int8_t> q;
    std::vector<float> scale;
    ReferenceQuantize(row.data(), k, q, scale);
    for (int64_t bl = 0; bl < 3; ++bl) EXPECT_EQ(packed->scale(n, bl), scale[bl]) << n;
    for (int64_t c = 0; c < 96; ++c) ASSERT_EQ(packed->quant(n, c), q[c]) << n << " " << c;
  }
}

TEST(Q8Gemm, UsesQ8_0BlocksAsStored) {
  // Two rows of two Q8_0 blocks: f16 scale + 32 int8 each, -128 included.
  std::mt19937 rng(13);
  const int64_t rows = 2, k = 64;
  std::vector<std::byte> data(static_cast<size_t>(rows * 2 * 34));
  const uint16_t scales_f16[] = {0x2e66, 0x1c00, 0xb400, 0x0001};  // 0.1, ~0.0039, -0.25, subnormal
  for (int64_t blk = 0; blk < rows * 2; ++blk) {
    std::byte* b = data.data() + blk * 34;
    std::memcpy(b, &scales_f16[blk], 2);
    for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<std::byte>(rng() % 256);
  }
  data[2] = static_cast<std::byte>(0x80);  // -128 in row 0, block 0
  const WeightMatrix w{DType::kQ8_0, data.data(), rows, k};
  auto packed = Q8Weights::Pack({&w, 1}, "q8");
  ASSERT_TRUE(packed.ok()) << packed.status();
  std::vector<float> dequantized(static_cast<size_t>(rows * k));
  DequantizeRows(w, 0, rows, dequantized.data());  // the independent reading: d * q
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t c = 0; c < k; ++c) {
      const auto stored = static_cast<int8_t>(data[(n * 2 + c / 32) * 34 + 2 + c % 32]);
      EXPECT_EQ(packed->quant(n, c), std::max<int8_t>(stored, -127)) << n << " " << c;
      if (stored != -128) {
        EXPECT_EQ(packed->scale(n, c / 32) * packed->quant(n, c), dequantized[n * k + c]);
      }
    }
  }
}

// The product as defined, in double, from the reference quantization.
std::vector<double> ReferenceProduct(const std::vector<float>& x, const std::vector<float>& w,
                                     int64_t m, int64_t k, int64_t n, std::vector<double>& bound) {
  std::vector<double> y(static_cast<size_t>(m * n), 0.0);
  bound.assign(y.size(), 0.0);
  std::vector<std::vector<int8_t>> wq(n);
  std::vector<std::vector<float>> ws(n);
  for (int64_t j = 0; j < n; ++j) ReferenceQuantize(w.data() + j * k, k, wq[j], ws[j]);
  for (int64_t i = 0; i < m; ++i) {
    std::vector<int8_t> xq;
    std::vector<float> xs;
    ReferenceQuantize(x.data() + i * k, k, xq, xs);
    for (int64_t j = 0; j < n; ++j) {
      for (size_t b = 0; b < xs.size(); ++b) {
        int64_t dot = 0;
        for (int64_t c = 0; c < 32; ++c) dot += int64_t{xq[b * 32 + c]} * wq[j][b * 32 + c];
        const double term = double{xs[b]} * ws[j][b] * static_cast<double>(dot);
        y[i * n + j] += term;
        bound[i * n + j] += std::fabs(term);
      }
    }
  }
  return y;
}

TEST(Q8Gemm, EveryKernelMatchesScalarReference) {
  struct Shape {
    int64_t m, k, n;
  };
  // M=1, odd N, K not a multiple of 32, M not a multiple of the row block,
  // a tile pair with one tile, and one large enough for two threads.
  const Shape shapes[] = {{1, 32, 16}, {1, 64, 17}, {3, 100, 33},  {5, 256, 31},
                          {7, 96, 48}, {2, 40, 1},  {6, 2048, 40}, {64, 512, 160}};
  int ran = 0;
  for (Q8Isa isa : {Q8Isa::kAvx2, Q8Isa::kAvxVnni, Q8Isa::kAvx512Vnni}) {
    if (!CpuRunsQ8Isa(isa)) {
      std::printf("[ SKIPPED  ] q8 kernel %s: this CPU lacks its instructions\n", Q8IsaName(isa));
      continue;
    }
    ++ran;
    std::mt19937 rng(14);
    for (const Shape& s : shapes) {
      for (bool accumulate : {false, true}) {
        const std::vector<float> x = RandomMatrix(s.m, s.k, rng), w = RandomMatrix(s.n, s.k, rng);
        const WeightMatrix matrix{DType::kF32, reinterpret_cast<const std::byte*>(w.data()), s.n,
                                  s.k};
        auto packed = Q8Weights::Pack({&matrix, 1}, "w");
        ASSERT_TRUE(packed.ok()) << packed.status();
        std::vector<double> bound;
        const std::vector<double> want = ReferenceProduct(x, w, s.m, s.k, s.n, bound);
        const int64_t ldy = s.n + 3;  // strided output
        std::vector<float> y(static_cast<size_t>(s.m * ldy), 0.5f);
        Q8Gemm gemm(isa, 2);
        gemm.Run(x.data(), s.m, s.k, *packed, y.data(), ldy, accumulate);
        double exact_err = 0, norm = 0;
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < s.n; ++j) {
            const double got = y[i * ldy + j] - (accumulate ? 0.5 : 0.0);
            // f32 accumulation of the scaled block sums: a few ulps of the
            // sum of their magnitudes.
            ASSERT_NEAR(got, want[i * s.n + j], 1e-6 * bound[i * s.n + j] + 1e-6)
                << Q8IsaName(isa) << " m " << s.m << " k " << s.k << " n " << s.n << " at " << i
                << "," << j;
            double exact = 0;
            for (int64_t c = 0; c < s.k; ++c) exact += double{x[i * s.k + c]} * w[j * s.k + c];
            exact_err += (got - exact) * (got - exact);
            norm += exact * exact;
          }
          for (int64_t j = s.n; j < ldy; ++j) ASSERT_EQ(y[i * ldy + j], 0.5f) << "past column N";
        }
        // And the quantized product is close to the real one (both operands
        // at 8 bits per block): relative RMS error under 2%.
        EXPECT_LT(std::sqrt(exact_err / norm), 0.02) << Q8IsaName(isa) << " k " << s.k;
      }
    }
  }
  EXPECT_GT(ran, 0) << "no q8 kernel runs on this CPU";
}

TEST(Q8Gemm, BestIsaFollowsOneDnnCap) {
  EXPECT_EQ(BestQ8Isa("sse41"), Q8Isa::kNone);
  if (CpuRunsQ8Isa(Q8Isa::kAvx2)) {
    EXPECT_EQ(BestQ8Isa("avx2"), Q8Isa::kAvx2);
    EXPECT_EQ(BestQ8Isa("avx512_core"), Q8Isa::kAvx2);  // no VNNI under that cap
  }
  if (CpuRunsQ8Isa(Q8Isa::kAvx512Vnni)) {
    EXPECT_EQ(BestQ8Isa("avx512_core_bf16"), Q8Isa::kAvx512Vnni);
  }
  if (CpuRunsQ8Isa(Q8Isa::kAvxVnni)) {
    EXPECT_EQ(BestQ8Isa("avx2_vnni"), Q8Isa::kAvxVnni);
  }
}

}  // namespace
}  // namespace saferoute::cpu
