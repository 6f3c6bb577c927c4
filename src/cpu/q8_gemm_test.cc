#include "cpu/q8_gemm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "cpu/convert.h"
#include "cpu/dequantize.h"

namespace saferoute::cpu {
namespace {

// Plain scalar reference of QuantizeRowQ8 (qmax 127) and QuantizeRowQ16
// (qmax 16383), q as signed integers whatever the variant stores: per block
// of 32, zero-padded.
void ReferenceQuantize(const float* x, int64_t k, int qmax, std::vector<int32_t>& q,
                       std::vector<float>& scale) {
  const int64_t kb = (k + 31) / 32;
  q.assign(static_cast<size_t>(kb * 32), 0);
  scale.assign(static_cast<size_t>(kb), 0.0f);
  const auto top = static_cast<float>(qmax);
  for (int64_t b = 0; b < kb; ++b) {
    float amax = 0;
    for (int64_t i = b * 32; i < std::min(k, b * 32 + 32); ++i)
      amax = std::max(amax, std::fabs(x[i]));
    if (amax == 0) continue;
    scale[b] = amax / top;
    for (int64_t i = b * 32; i < std::min(k, b * 32 + 32); ++i) {
      const float v = std::nearbyint(x[i] * (top / amax));
      q[i] = static_cast<int32_t>(std::min(std::max(v, -top), top));
    }
  }
}

int QMax(Q8Activations activations) { return activations == Q8Activations::kInt16 ? kQ16Max : 127; }
const char* ActivationsName(Q8Activations activations) {
  return activations == Q8Activations::kInt16 ? "16-bit activations" : "8-bit activations";
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

// QuantizeRowQ8 or QuantizeRowQ16 (`activations`) of x [k], the quants
// decoded to signed integers whatever the variant stores (u8 q + 128, or the
// 16-bit split 128 * high + low, low checked to be in [0, 127]).
void QuantizeDecoded(Q8Activations activations, const float* x, int64_t k, bool as_u8,
                     std::vector<int32_t>& q, std::vector<float>& scale) {
  const auto size = static_cast<size_t>(Q8Blocks(k) * kQ8Block);
  std::vector<int8_t> high(size, 99);
  std::vector<uint8_t> low(size, 200);
  scale.assign(static_cast<size_t>(Q8Blocks(k)), -1.0f);
  if (activations == Q8Activations::kInt16) {
    QuantizeRowQ16(x, k, as_u8, high.data(), low.data(), scale.data());
  } else {
    QuantizeRowQ8(x, k, as_u8, high.data(), scale.data());
  }
  q.resize(size);
  for (size_t i = 0; i < size; ++i) {
    const int h = as_u8 ? static_cast<uint8_t>(high[i]) - 128 : high[i];
    if (activations == Q8Activations::kInt16) {
      EXPECT_LE(low[i], 127) << "element " << i;
      q[i] = 128 * h + low[i];
    } else {
      q[i] = h;
    }
  }
}

TEST(Q8Gemm, QuantizeRowMatchesScalarReference) {
  for (Q8Activations activations : {Q8Activations::kInt8, Q8Activations::kInt16}) {
    const int qmax = QMax(activations);
    std::mt19937 rng(11);
    for (int64_t k : {1, 31, 32, 33, 100, 2048}) {
      std::vector<float> x = RandomMatrix(1, k, rng);
      if (k >= 64) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block
      if (k >= 100) {
        for (int64_t i = 64; i < 96; ++i) x[i] = static_cast<float>(i % 9) - 4.5f;  // ties
        x[64] = static_cast<float>(qmax);  // scale 1: x * qmax / qmax lands exactly on the ties
      }
      if (k >= 128) {
        // Every q -qmax (16-bit: high byte -128, low 1).
        std::fill(x.begin() + 96, x.begin() + 128, -1.0f);
      }
      std::vector<int32_t> want_q, got_q;
      std::vector<float> want_scale, got_scale;
      ReferenceQuantize(x.data(), k, qmax, want_q, want_scale);
      for (bool as_u8 : {false, true}) {
        QuantizeDecoded(activations, x.data(), k, as_u8, got_q, got_scale);
        ASSERT_FALSE(HasFailure());
        EXPECT_EQ(got_scale, want_scale) << ActivationsName(activations) << ", k " << k;
        for (size_t i = 0; i < want_q.size(); ++i) {
          ASSERT_EQ(got_q[i], want_q[i]) << ActivationsName(activations) << ", k " << k
                                         << " element " << i << " as_u8 " << as_u8;
        }
      }
    }
  }
}

TEST(Q8Gemm, QuantizeRow16TakesNonFiniteActivationsWithoutUndefinedBehaviour) {
  // An overflowed layer's inf or NaN: finite elements of such a block
  // quantize to 0 (its scale is inf: x * 0), NaN and inf * 0 to 0 too. Built
  // with clang's -fsanitize=float-cast-overflow this also shows that no
  // float-to-int conversion is undefined (it reported one before the NaN
  // guard; CI's sanitizer stages build only the server's tests).
  std::vector<float> x(64, 1.0f);
  x[3] = std::numeric_limits<float>::infinity();
  x[40] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int32_t> q;
  std::vector<float> scale;
  QuantizeDecoded(Q8Activations::kInt16, x.data(), 64, /*as_u8=*/false, q, scale);
  EXPECT_EQ(scale[0], std::numeric_limits<float>::infinity());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(q[i], 0) << i;
  // The second block's NaN is skipped by the max: the finite elements keep
  // their quants (1.0 of max 1.0: 16383), the NaN gets 0.
  EXPECT_EQ(scale[1], 1.0f / kQ16Max);
  for (int i = 32; i < 64; ++i) EXPECT_EQ(q[i], i == 40 ? 0 : kQ16Max) << i;
}

// The bits of the smallest IEEE f16 value >= v, for v in [0, 65504]: a
// search over F16ToF32's values (increasing in the bits), not a narrowing.
uint16_t RoundUpToF16(double v) {
  uint16_t lo = 0, hi = 0x7bff;  // F16ToF32(lo - 1) < v <= F16ToF32(hi) throughout
  while (lo < hi) {
    const auto mid = static_cast<uint16_t>((lo + hi) / 2);
    if (F16ToF32(mid) >= v) {
      hi = mid;
    } else {
      lo = static_cast<uint16_t>(mid + 1);
    }
  }
  return lo;
}

// Plain scalar reference of a converted (non-Q8_0) weight's packing, as
// q8_gemm.h defines it: rows [n, k] (dequantized) -> the exponent e that puts
// the largest block scale (amax / 127, f32; `other_max` for other parts of the
// matrix) in [2^14, 2^15), each block's f16 scale bits: s * 2^e rounded up,
// and q = round_half_even(x / d) (f32 quotient) in [-127, 127] with d the
// decoded scale times 2^-e.
struct ReferenceWeights {
  int exponent = 0;
  std::vector<uint16_t> bits;  // [n][kb]
  std::vector<int8_t> q;       // [n][kb * 32]
};
ReferenceWeights ReferencePack(const std::vector<float>& rows, int64_t n, int64_t k,
                               float other_max = 0.0f) {
  const int64_t kb = (k + 31) / 32;
  std::vector<float> s(static_cast<size_t>(n * kb), 0.0f);
  float max_scale = other_max;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < kb; ++b) {
      float amax = 0;
      for (int64_t c = b * 32; c < std::min(k, b * 32 + 32); ++c) {
        amax = std::max(amax, std::fabs(rows[r * k + c]));
      }
      s[r * kb + b] = amax / 127.0f;
      max_scale = std::max(max_scale, s[r * kb + b]);
    }
  }
  ReferenceWeights ref;
  if (max_scale > 0) {
    int binade;
    std::frexp(max_scale, &binade);  // max_scale in [2^(binade-1), 2^binade)
    ref.exponent = std::min(126, 15 - binade);
  }
  ref.bits.assign(s.size(), 0);
  ref.q.assign(static_cast<size_t>(n * kb * 32), 0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < kb; ++b) {
      const uint16_t bits = RoundUpToF16(std::ldexp(double{s[r * kb + b]}, ref.exponent));
      ref.bits[r * kb + b] = bits;
      const float d = F16ToF32(bits) * std::ldexp(1.0f, -ref.exponent);
      if (d == 0) continue;
      for (int64_t c = b * 32; c < std::min(k, b * 32 + 32); ++c) {
        const float v = std::nearbyint(rows[r * k + c] / d);
        ref.q[r * kb * 32 + c] = static_cast<int8_t>(std::min(std::max(v, -127.0f), 127.0f));
      }
    }
  }
  return ref;
}

// Packed column n0 + r equals reference row r (bits, quants, decoded scale).
void ExpectPackedAsReference(const Q8Weights& packed, int64_t n0, const ReferenceWeights& ref,
                             int64_t n, int64_t k) {
  const int64_t kb = (k + 31) / 32;
  EXPECT_EQ(packed.scale_exp2(), std::ldexp(1.0f, -ref.exponent));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < kb; ++b) {
      ASSERT_EQ(packed.scale_bits(n0 + r, b), ref.bits[r * kb + b])
          << "row " << r << " block " << b;
      EXPECT_EQ(packed.scale(n0 + r, b),
                F16ToF32(ref.bits[r * kb + b]) * std::ldexp(1.0f, -ref.exponent));
    }
    for (int64_t c = 0; c < kb * 32; ++c) {
      ASSERT_EQ(packed.quant(n0 + r, c), ref.q[r * kb * 32 + c]) << "row " << r << " col " << c;
    }
  }
}

TEST(Q8Gemm, PacksFloatWeightsAsTheirBlockQuantization) {
  std::mt19937 rng(12);
  const int64_t k = 70;  // two whole blocks and a padded one
  std::vector<float> a = RandomMatrix(5, k, rng), b = RandomMatrix(14, k, rng);
  std::vector<uint16_t> b_bf16(b.size());
  for (size_t i = 0; i < b.size(); ++i) b_bf16[i] = F32ToBf16(b[i]);
  std::vector<uint16_t> c_f16(static_cast<size_t>(6 * k));
  for (uint16_t& v : c_f16) v = static_cast<uint16_t>(rng() & 0xbfff);  // finite, |x| < 2
  const WeightMatrix parts[] = {
      {DType::kF32, reinterpret_cast<const std::byte*>(a.data()), 5, k},
      {DType::kBF16, reinterpret_cast<const std::byte*>(b_bf16.data()), 14, k},
      {DType::kF16, reinterpret_cast<const std::byte*>(c_f16.data()), 6, k}};
  auto packed = Q8Weights::Pack(parts, "w");
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(packed->rows(), 25);
  EXPECT_EQ(packed->tiles(), 2);
  EXPECT_EQ(packed->blocks(), 3);
  // Per tile and block: 512 quants, 16 f16 scales (2 bytes, f32 took 4), 16
  // int16 sums.
  EXPECT_EQ(packed->bytes(), size_t{2 * 3} * (16 * 32 + 16 * 2 + 16 * 2));
  std::vector<float> rows = a;
  for (uint16_t v : b_bf16) rows.push_back(Bf16ToF32(v));
  for (uint16_t v : c_f16) rows.push_back(F16ToF32(v));
  const ReferenceWeights ref = ReferencePack(rows, 25, k);
  EXPECT_GT(ref.exponent, 14);  // scales ~ 1 (40-sigma outliers / 127) need a shift
  ExpectPackedAsReference(*packed, 0, ref, 25, k);
}

TEST(Q8Gemm, ScalesRoundUpToF16) {
  // Row 0's scale is 1 (e = 14: stored 2^14); each other row's block scale
  // is 2^-14 times an f16 value (kept), or a value just above one, or the
  // midpoint to the next (both up to the next): in the normals, into the
  // exponent (0x77ff -> 0x7800), in the subnormals and from them into the
  // normals (0x03ff -> 0x0400).
  struct Case {
    uint16_t lower;
    double above;  // fraction of the step to the next f16 value
    uint16_t want;
  };
  const Case cases[] = {{0x3c00, 0.0, 0x3c00},    {0x3c00, 0x1p-12, 0x3c01}, {0x3c01, 0.5, 0x3c02},
                        {0x77ff, 0.5, 0x7800},    {0x0002, 0.0, 0x0002},     {0x0002, 0.5, 0x0003},
                        {0x03ff, 0x1p-6, 0x0400}, {0x0000, 0x1p-6, 0x0001}};
  const auto n = static_cast<int64_t>(1 + std::size(cases)), k = int64_t{32};
  std::vector<float> rows(static_cast<size_t>(n * k));
  std::vector<float> scale = {1.0f};
  for (const Case& c : cases) {
    const double lower = F16ToF32(c.lower), next = F16ToF32(static_cast<uint16_t>(c.lower + 1));
    // Exact in f32 (at most 17 significant bits), as is 127 * it below.
    scale.push_back(static_cast<float>(std::ldexp(lower + c.above * (next - lower), -14)));
  }
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      // amax = 127 * scale (exact), then values spread over the block.
      const float spread = c == 0 ? 1.0f : static_cast<float>(c % 13) / 13 - 0.5f;
      rows[r * k + c] = 127.0f * scale[r] * spread;
    }
  }
  const WeightMatrix w{DType::kF32, reinterpret_cast<const std::byte*>(rows.data()), n, k};
  auto packed = Q8Weights::Pack({&w, 1}, "steps");
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(packed->scale_exp2(), 0x1p-14f);
  EXPECT_EQ(packed->scale_bits(0, 0), 0x7400);  // 2^14
  for (size_t i = 0; i < std::size(cases); ++i) {
    EXPECT_EQ(packed->scale_bits(static_cast<int64_t>(i) + 1, 0), cases[i].want)
        << std::hex << "0x" << cases[i].lower << " + " << cases[i].above;
  }
  const ReferenceWeights ref = ReferencePack(rows, n, k);
  ExpectPackedAsReference(*packed, 0, ref, n, k);
}

// Rows [n, k] of RandomMatrix, row r scaled by factor[r] = 10^(-12 + 15 r / (n - 1)):
// from 1e-12 to 1e3, 50 binades.
std::vector<float> SpanningMatrix(int64_t n, int64_t k, std::mt19937& rng,
                                  std::vector<float>& factor) {
  std::vector<float> rows = RandomMatrix(n, k, rng);
  factor.resize(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    factor[r] = std::pow(10.0f, -12.0f + 15.0f * static_cast<float>(r) / static_cast<float>(n - 1));
    for (int64_t c = 0; c < k; ++c) rows[r * k + c] *= factor[r];
  }
  return rows;
}

TEST(Q8Gemm, BlockScalesSpanningManyBinades) {
  // The blocks within 2^28 of the largest keep f16's 11-bit scales, the
  // smaller ones round up to f16's subnormals, and nothing is NaN or
  // infinite.
  std::mt19937 rng(15);
  const int64_t n = 40, k = 96;
  std::vector<float> factor;
  const std::vector<float> rows = SpanningMatrix(n, k, rng, factor);
  const WeightMatrix w{DType::kF32, reinterpret_cast<const std::byte*>(rows.data()), n, k};
  auto packed = Q8Weights::Pack({&w, 1}, "span");
  ASSERT_TRUE(packed.ok()) << packed.status();
  const ReferenceWeights ref = ReferencePack(rows, n, k);
  ExpectPackedAsReference(*packed, 0, ref, n, k);
  float max_scale = 0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < 3; ++b) max_scale = std::max(max_scale, packed->scale(r, b));
  }
  int exact = 0, smallest = 0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < 3; ++b) {
      float amax = 0;
      for (int64_t c = b * 32; c < b * 32 + 32; ++c) {
        amax = std::max(amax, std::fabs(rows[r * k + c]));
      }
      const float s = amax / 127.0f, got = packed->scale(r, b);
      ASSERT_TRUE(std::isfinite(got)) << r;
      EXPECT_GE(got, s) << "row " << r << " block " << b;
      if (s >= std::ldexp(max_scale, -28)) {
        // f16's 11 significant bits: rounded up by under an ulp, 2^-10 relative.
        EXPECT_LT(got - s, std::ldexp(s, -10)) << "row " << r << " block " << b;
        ++exact;
      } else {
        EXPECT_LE(got, std::ldexp(max_scale, -27)) << "row " << r;
        smallest += packed->scale_bits(r, b) == 1 ? 1 : 0;
      }
    }
  }
  EXPECT_GT(exact, 3 * 20);
  EXPECT_GT(smallest, 0);  // 1e-12 against 1e3: under f16's smallest subnormal
}

// A Q8_0 matrix [rows, k]: random quants (-128 in row 0, block 0), scales
// from `scales` in turn.
std::vector<std::byte> Q8_0Matrix(int64_t rows, int64_t k, const std::vector<uint16_t>& scales,
                                  std::mt19937& rng) {
  std::vector<std::byte> data(static_cast<size_t>(rows * (k / 32) * 34));
  for (size_t blk = 0; blk < data.size() / 34; ++blk) {
    std::byte* b = data.data() + blk * 34;
    std::memcpy(b, &scales[blk % scales.size()], 2);
    for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<std::byte>(rng() % 256);
  }
  data[2] = static_cast<std::byte>(0x80);
  return data;
}

TEST(Q8Gemm, UsesQ8_0BlocksAsStored) {
  // Two rows of two Q8_0 blocks: the scales keep their f16 bits (e = 0).
  std::mt19937 rng(13);
  const int64_t rows = 2, k = 64;
  // 0.1, ~0.0039, -0.25, the smallest subnormal
  const std::vector<uint16_t> scales_f16 = {0x2e66, 0x1c00, 0xb400, 0x0001};
  const std::vector<std::byte> data = Q8_0Matrix(rows, k, scales_f16, rng);
  const WeightMatrix w{DType::kQ8_0, data.data(), rows, k};
  auto packed = Q8Weights::Pack({&w, 1}, "q8");
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(packed->scale_exp2(), 1.0f);
  std::vector<float> dequantized(static_cast<size_t>(rows * k));
  DequantizeRows(w, 0, rows, dequantized.data());  // the independent reading: d * q
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t b = 0; b < 2; ++b) EXPECT_EQ(packed->scale_bits(n, b), scales_f16[n * 2 + b]);
    for (int64_t c = 0; c < k; ++c) {
      const auto stored = static_cast<int8_t>(data[(n * 2 + c / 32) * 34 + 2 + c % 32]);
      EXPECT_EQ(packed->quant(n, c), std::max<int8_t>(stored, -127)) << n << " " << c;
      if (stored != -128) {
        EXPECT_EQ(packed->scale(n, c / 32) * packed->quant(n, c), dequantized[n * k + c]);
      }
    }
  }
}

TEST(Q8Gemm, Q8_0BesideAConvertedPartSharesItsExponent) {
  // A Q8_0 part and an f32 part in one matrix: one exponent for both, from
  // the largest scale of either; the Q8_0 scales shift exactly.
  std::mt19937 rng(16);
  const int64_t k = 64;
  const std::vector<uint16_t> scales_f16 = {0x2e66, 0x1c00, 0xb400, 0x0400};
  const std::vector<std::byte> q8 = Q8_0Matrix(3, k, scales_f16, rng);
  const std::vector<float> f32 = RandomMatrix(4, k, rng);
  const WeightMatrix parts[] = {
      {DType::kQ8_0, q8.data(), 3, k},
      {DType::kF32, reinterpret_cast<const std::byte*>(f32.data()), 4, k}};
  auto packed = Q8Weights::Pack(parts, "mixed");
  ASSERT_TRUE(packed.ok()) << packed.status();
  const ReferenceWeights ref = ReferencePack(f32, 4, k, /*other_max=*/0.25f);
  EXPECT_NE(ref.exponent, 0);
  ExpectPackedAsReference(*packed, 3, ref, 4, k);
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t b = 0; b < 2; ++b) {
      EXPECT_EQ(packed->scale(n, b), F16ToF32(scales_f16[(n * 2 + b) % 4])) << n << " " << b;
    }
    for (int64_t c = 0; c < k; ++c) {
      const auto stored = static_cast<int8_t>(q8[(n * 2 + c / 32) * 34 + 2 + c % 32]);
      EXPECT_EQ(packed->quant(n, c), std::max<int8_t>(stored, -127));
    }
  }
}

TEST(Q8Gemm, NonFiniteScalesAndWeightsAreErrors) {
  std::mt19937 rng(17);
  for (uint16_t bad : {uint16_t{0x7c00}, uint16_t{0xfc00}, uint16_t{0x7e00}}) {  // +-inf, NaN
    std::vector<std::byte> data = Q8_0Matrix(3, 64, {0x2e66}, rng);
    std::memcpy(data.data() + (1 * 2 + 1) * 34, &bad, 2);  // row 1, block 1
    const WeightMatrix w{DType::kQ8_0, data.data(), 3, 64};
    auto packed = Q8Weights::Pack({&w, 1}, "blk.0.ffn_up.weight");
    ASSERT_FALSE(packed.ok()) << std::hex << bad;
    EXPECT_THAT(std::string(packed.status().message()),
                ::testing::AllOf(::testing::HasSubstr("blk.0.ffn_up.weight"),
                                 ::testing::HasSubstr("row 1 block 1"),
                                 ::testing::HasSubstr("not finite")));
  }
  for (float bad : {INFINITY, -INFINITY, NAN}) {
    std::vector<float> a = RandomMatrix(4, 40, rng);
    a[2 * 40 + 37] = bad;
    const WeightMatrix parts[] = {
        {DType::kF32, reinterpret_cast<const std::byte*>(a.data()), 2, 40},
        {DType::kF32, reinterpret_cast<const std::byte*>(a.data() + 80), 2, 40}};
    auto packed = Q8Weights::Pack(parts, "qkv");
    ASSERT_FALSE(packed.ok()) << bad;
    EXPECT_THAT(std::string(packed.status().message()),
                ::testing::AllOf(::testing::HasSubstr("qkv: part 1 (F32) row 0"),
                                 ::testing::HasSubstr("not finite")));
  }
  // 16-bit floats (read as stored): inf, -inf, NaN.
  struct Bad16 {
    DType dtype;
    uint16_t one, bad;
    const char* name;
  };
  const Bad16 bad16[] = {
      {DType::kBF16, 0x3f80, 0x7f80, "BF16"}, {DType::kBF16, 0x3f80, 0xff80, "BF16"},
      {DType::kBF16, 0x3f80, 0x7fc1, "BF16"}, {DType::kF16, 0x3c00, 0x7c00, "F16"},
      {DType::kF16, 0x3c00, 0xfc00, "F16"},   {DType::kF16, 0x3c00, 0x7e00, "F16"}};
  for (const Bad16& c : bad16) {
    std::vector<uint16_t> a(4 * 64, c.one);
    a[2 * 64 + 37] = c.bad;
    const WeightMatrix parts[] = {
        {c.dtype, reinterpret_cast<const std::byte*>(a.data()), 2, 64},
        {c.dtype, reinterpret_cast<const std::byte*>(a.data() + 128), 2, 64}};
    auto packed = Q8Weights::Pack(parts, "qkv");
    ASSERT_FALSE(packed.ok()) << c.name << " " << std::hex << c.bad;
    EXPECT_THAT(
        std::string(packed.status().message()),
        ::testing::AllOf(::testing::HasSubstr(std::string("qkv: part 1 (") + c.name + ") row 0"),
                         ::testing::HasSubstr("not finite")));
  }
  // A block type read through DequantizeRows: Q4_0 (f16 d, 16 bytes of
  // nibbles), an infinite d in row 1, block 1.
  std::vector<std::byte> q4(static_cast<size_t>(2 * 2 * 18), std::byte{0x12});
  const uint16_t one = 0x3c00, inf = 0x7c00;
  for (int blk = 0; blk < 4; ++blk) std::memcpy(q4.data() + blk * 18, blk == 3 ? &inf : &one, 2);
  const WeightMatrix q4_matrix{DType::kQ4_0, q4.data(), 2, 64};
  auto packed = Q8Weights::Pack({&q4_matrix, 1}, "wo");
  ASSERT_FALSE(packed.ok());
  EXPECT_THAT(std::string(packed.status().message()),
              ::testing::AllOf(::testing::HasSubstr("wo: part 0 (Q4_0) row 1"),
                               ::testing::HasSubstr("not finite")));
  std::memcpy(q4.data() + 3 * 18, &one, 2);
  EXPECT_TRUE(Q8Weights::Pack({&q4_matrix, 1}, "wo").ok()) << "the same matrix with a finite d";
}

// The product as defined, in double: activations through the reference
// quantizer, weights as stored (quants, f16 scale bits decoded here with the
// scalar F16ToF32, times 2^-e). bound: the sum of |scaled block sums|.
std::vector<double> ReferenceProduct(const std::vector<float>& x, int64_t m, const Q8Weights& w,
                                     Q8Activations activations, std::vector<double>& bound) {
  const int64_t k = w.cols(), n = w.rows();
  std::vector<double> y(static_cast<size_t>(m * n), 0.0);
  bound.assign(y.size(), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    std::vector<int32_t> xq;
    std::vector<float> xs;
    ReferenceQuantize(x.data() + i * k, k, QMax(activations), xq, xs);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t b = 0; b < static_cast<int64_t>(xs.size()); ++b) {
        int64_t dot = 0;
        for (int64_t c = 0; c < 32; ++c) dot += int64_t{xq[b * 32 + c]} * w.quant(j, b * 32 + c);
        const double ws = double{F16ToF32(w.scale_bits(j, b))} * w.scale_exp2();
        const double term = double{xs[b]} * ws * static_cast<double>(dot);
        y[i * n + j] += term;
        bound[i * n + j] += std::fabs(term);
      }
    }
  }
  return y;
}

// Runs `isa` on x [m, w.cols()] and compares with ReferenceProduct; returns
// y [m, w.rows()] (accumulated onto 0.5 when `accumulate`, taken off here).
std::vector<double> RunAndCompare(Q8Isa isa, const std::vector<float>& x, int64_t m,
                                  const Q8Weights& w, bool accumulate,
                                  Q8Activations activations = Q8Activations::kInt8) {
  const int64_t k = w.cols(), n = w.rows();
  std::vector<double> bound;
  const std::vector<double> want = ReferenceProduct(x, m, w, activations, bound);
  const int64_t ldy = n + 3;  // strided output
  std::vector<float> y(static_cast<size_t>(m * ldy), 0.5f);
  Q8Gemm gemm(isa, 2, activations);
  gemm.Run(x.data(), m, k, w, y.data(), ldy, accumulate);
  std::vector<double> got(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      got[i * n + j] = y[i * ldy + j] - (accumulate ? 0.5 : 0.0);
      EXPECT_TRUE(std::isfinite(y[i * ldy + j]));
      // f32 accumulation of the scaled block sums: a few ulps of the sum of
      // their magnitudes.
      EXPECT_NEAR(got[i * n + j], want[i * n + j], 1e-6 * bound[i * n + j] + 1e-6)
          << Q8IsaName(isa) << ", " << ActivationsName(activations) << ", m " << m << " k " << k
          << " n " << n << " at " << i << "," << j;
    }
    for (int64_t j = n; j < ldy; ++j) EXPECT_EQ(y[i * ldy + j], 0.5f) << "past column N";
  }
  return got;
}

// The variants this CPU runs (the others are reported as skipped).
std::vector<Q8Isa> RunnableIsas() {
  std::vector<Q8Isa> isas;
  for (Q8Isa isa : {Q8Isa::kAvx2, Q8Isa::kAvxVnni, Q8Isa::kAvx512Vnni}) {
    if (CpuRunsQ8Isa(isa)) {
      isas.push_back(isa);
    } else {
      std::printf("[ SKIPPED  ] q8 kernel %s: this CPU lacks its instructions\n", Q8IsaName(isa));
    }
  }
  return isas;
}

TEST(Q8Gemm, EveryKernelMatchesScalarReference) {
  struct Shape {
    int64_t m, k, n;
  };
  // M=1, odd N, K not a multiple of 32, M not a multiple of the row block,
  // a tile pair with one tile, and one large enough for two threads.
  const Shape shapes[] = {{1, 32, 16}, {1, 64, 17}, {3, 100, 33},  {5, 256, 31},
                          {7, 96, 48}, {2, 40, 1},  {6, 2048, 40}, {64, 512, 160}};
  const std::vector<Q8Isa> isas = RunnableIsas();
  if (isas.empty()) GTEST_SKIP() << "no q8 kernel runs on this CPU (needs AVX2, FMA, F16C)";
  for (Q8Isa isa : isas) {
    std::mt19937 rng(14);
    // Squared distance from the real product and its norm, over all shapes,
    // with 8- and 16-bit activations.
    double total_err[2] = {}, total_norm[2] = {};
    for (const Shape& s : shapes) {
      for (bool accumulate : {false, true}) {
        const std::vector<float> x = RandomMatrix(s.m, s.k, rng), w = RandomMatrix(s.n, s.k, rng);
        const WeightMatrix matrix{DType::kF32, reinterpret_cast<const std::byte*>(w.data()), s.n,
                                  s.k};
        auto packed = Q8Weights::Pack({&matrix, 1}, "w");
        ASSERT_TRUE(packed.ok()) << packed.status();
        for (Q8Activations activations : {Q8Activations::kInt8, Q8Activations::kInt16}) {
          const std::vector<double> got =
              RunAndCompare(isa, x, s.m, *packed, accumulate, activations);
          ASSERT_FALSE(HasFailure());
          double exact_err = 0, norm = 0;
          for (int64_t i = 0; i < s.m; ++i) {
            for (int64_t j = 0; j < s.n; ++j) {
              double exact = 0;
              for (int64_t c = 0; c < s.k; ++c) exact += double{x[i * s.k + c]} * w[j * s.k + c];
              exact_err += (got[i * s.n + j] - exact) * (got[i * s.n + j] - exact);
              norm += exact * exact;
            }
          }
          // The quantized product is close to the real one (both operands
          // at 8 bits per block or better): relative RMS error under 2%.
          EXPECT_LT(std::sqrt(exact_err / norm), 0.02)
              << Q8IsaName(isa) << ", " << ActivationsName(activations) << ", k " << s.k;
          total_err[activations == Q8Activations::kInt16] += exact_err;
          total_norm[activations == Q8Activations::kInt16] += norm;
        }
      }
    }
    // With 16-bit activations only the weights' rounding is left: over all
    // shapes the product is closer (these inputs have outlier channels, as
    // real activations do).
    const double error8 = std::sqrt(total_err[0] / total_norm[0]);
    const double error16 = std::sqrt(total_err[1] / total_norm[1]);
    std::printf(
        "%s: relative RMS error from the real product: 8-bit activations %.5f, 16-bit %.5f\n",
        Q8IsaName(isa), error8, error16);
    EXPECT_LT(error16, error8) << Q8IsaName(isa);
  }
}

TEST(Q8Gemm, SixteenBitActivationsAtTheExtremesSumExactly) {
  // Every activation q = -16383 (high byte -128, low 1) or +16383 against
  // weights of +-127: block sums of 32 * 16383 * 127 (66.6M), and on AVX2
  // byte pairs of 2 * 128 * 127 (just under the 16-bit saturation): the
  // kernels must equal the reference, which sums in int64.
  const std::vector<Q8Isa> isas = RunnableIsas();
  if (isas.empty()) GTEST_SKIP() << "no q8 kernel runs on this CPU (needs AVX2, FMA, F16C)";
  const int64_t m = 3, n = 20, k = 96;
  std::vector<float> x(static_cast<size_t>(m * k)), w(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < m * k; ++i) x[i] = (i / k) == 1 ? 2.5f : -2.5f;
  for (int64_t i = 0; i < n * k; ++i)
    w[i] = ((i / k) % 2 == 0) == (i % 3 == 0)
               ? 0.9921875f
               : -0.9921875f;  // 127 * 2^-7: the scale 2^-7 is exact in f16
  const WeightMatrix matrix{DType::kF32, reinterpret_cast<const std::byte*>(w.data()), n, k};
  auto packed = Q8Weights::Pack({&matrix, 1}, "w");
  ASSERT_TRUE(packed.ok()) << packed.status();
  for (Q8Isa isa : isas) {
    const std::vector<double> got =
        RunAndCompare(isa, x, m, *packed, /*accumulate=*/false, Q8Activations::kInt16);
    // x and w are exact on both grids: the product itself.
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0;
        for (int64_t c = 0; c < k; ++c) exact += double{x[i * k + c]} * w[j * k + c];
        EXPECT_NEAR(got[i * n + j], exact, 1e-5 * std::fabs(exact) + 1e-6) << Q8IsaName(isa);
      }
    }
  }
}

TEST(Q8Gemm, EveryKernelReadsSpanningAndQ8_0Scales) {
  // Weights spanning 50 binades (2^-e far from 1) and a Q8_0 matrix
  // (negative and subnormal f16 scales, e = 0), each kernel against the
  // reference; the spanning columns within 2^26 of the largest are also
  // close to the real product.
  const std::vector<Q8Isa> isas = RunnableIsas();
  if (isas.empty()) GTEST_SKIP() << "no q8 kernel runs on this CPU (needs AVX2, FMA, F16C)";
  std::mt19937 rng(18);
  const int64_t m = 7, n = 40, k = 96;
  std::vector<float> factor;
  const std::vector<float> rows = SpanningMatrix(n, k, rng, factor);
  const WeightMatrix spanning{DType::kF32, reinterpret_cast<const std::byte*>(rows.data()), n, k};
  auto packed = Q8Weights::Pack({&spanning, 1}, "span");
  ASSERT_TRUE(packed.ok()) << packed.status();
  const std::vector<uint16_t> scales_f16 = {0x2e66, 0x1c00, 0xb400, 0x0001, 0x8123, 0x5000};
  const std::vector<std::byte> q8 = Q8_0Matrix(n, k, scales_f16, rng);
  const WeightMatrix q8_matrix{DType::kQ8_0, q8.data(), n, k};
  auto q8_packed = Q8Weights::Pack({&q8_matrix, 1}, "q8");
  ASSERT_TRUE(q8_packed.ok()) << q8_packed.status();
  const std::vector<float> x = RandomMatrix(m, k, rng);
  for (Q8Isa isa : isas) {
    for (bool accumulate : {false, true}) {
      RunAndCompare(isa, x, m, *q8_packed, accumulate);
      RunAndCompare(isa, x, m, *q8_packed, accumulate, Q8Activations::kInt16);
      RunAndCompare(isa, x, m, *packed, accumulate, Q8Activations::kInt16);
      const std::vector<double> got = RunAndCompare(isa, x, m, *packed, accumulate);
      for (int64_t j = 0; j < n; ++j) {
        if (factor[j] < factor[n - 1] * 0x1p-26f) continue;  // far below the largest rows
        double err = 0, norm = 0;
        for (int64_t i = 0; i < m; ++i) {
          double exact = 0;
          for (int64_t c = 0; c < k; ++c) exact += double{x[i * k + c]} * rows[j * k + c];
          err += (got[i * n + j] - exact) * (got[i * n + j] - exact);
          norm += exact * exact;
        }
        EXPECT_LT(std::sqrt(err / norm), 0.02) << Q8IsaName(isa) << " column " << j;
      }
    }
  }
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
