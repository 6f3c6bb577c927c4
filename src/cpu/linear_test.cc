#include "cpu/linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpu/convert.h"
#include "cpu/int8.h"
#include "cpu/q8_gemm.h"

namespace saferoute::cpu {
namespace {

// Random weights of one dtype, stacked from two parts (what q|k|v and
// gate|up look like), kept as the fp32 values they stand for.
struct TestWeights {
  DType dtype;
  int64_t k;
  std::vector<int64_t> part_rows;
  std::vector<float> values;     // [N, K] what the stored elements mean
  std::vector<std::byte> bytes;  // stored elements
  std::vector<WeightMatrix> parts;
};

TestWeights MakeWeights(DType dtype, int64_t k, std::vector<int64_t> part_rows, uint32_t seed) {
  TestWeights w{dtype, k, part_rows, {}, {}, {}};
  int64_t n = 0;
  for (int64_t r : part_rows) n += r;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  w.values.resize(static_cast<size_t>(n * k));
  for (float& v : w.values) v = normal(rng);
  // A few larger channels, as real checkpoints have.
  for (int64_t c = 0; c < k; c += 17) w.values[static_cast<size_t>(c)] *= 20.0f;
  const size_t elem = dtype == DType::kF32 ? 4 : 2;
  w.bytes.resize(w.values.size() * elem);
  for (size_t i = 0; i < w.values.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(w.bytes.data() + 4 * i, &w.values[i], 4);
    } else {
      const uint16_t bits = F32ToBf16(w.values[i]);
      w.values[i] = Bf16ToF32(bits);
      std::memcpy(w.bytes.data() + 2 * i, &bits, 2);
    }
  }
  int64_t row0 = 0;
  for (int64_t rows : part_rows) {
    w.parts.push_back({dtype, w.bytes.data() + static_cast<size_t>(row0 * k) * elem, rows, k});
    row0 += rows;
  }
  return w;
}

bool Available(GemmPath path, const CpuSupport& s) {
  return (path != GemmPath::kBf16Native || s.bf16_native) &&
         (!RunsQ8Kernels(path) || s.int8_block_isa != Q8Isa::kNone) &&
         (path != GemmPath::kInt8Rows || s.int8);
}

// The exact result each path defines, in double, with a bound on how far an
// fp32 accumulation may be from it (|error| <= tol).
struct Expected {
  std::vector<double> y;
  std::vector<double> tol;
};

// int8: both operands in blocks of 32 (QuantizeRowQ8 and, for the weights,
// QuantizeWeightRowQ8 with f16 scales times 2^-e: each checked against its
// own scalar reference in q8_gemm_test); exact s32 block sums, scaled.
// `wide`: 16-bit activations (QuantizeRowQ16, recombined here as 128 * high
// + low), the int8-a16 path.
Expected BlockReference(const std::vector<float>& x, int64_t m, const TestWeights& w,
                        const std::vector<float>& y0, bool accumulate, bool wide) {
  const int64_t k = w.k, n = static_cast<int64_t>(w.values.size()) / k, kb = Q8Blocks(k);
  Expected e{std::vector<double>(static_cast<size_t>(m * n)),
             std::vector<double>(static_cast<size_t>(m * n))};
  auto quantize = [&](const float* row, std::vector<int32_t>& q, std::vector<float>& s) {
    const auto size = static_cast<size_t>(kb * kQ8Block);
    std::vector<int8_t> high(size);
    std::vector<uint8_t> low(size, 0);
    s.resize(static_cast<size_t>(kb));
    if (wide) {
      QuantizeRowQ16(row, k, /*as_u8=*/false, high.data(), low.data(), s.data());
    } else {
      QuantizeRowQ8(row, k, /*as_u8=*/false, high.data(), s.data());
    }
    q.resize(size);
    for (size_t i = 0; i < size; ++i) q[i] = wide ? 128 * high[i] + low[i] : high[i];
  };
  float max_abs = 0;
  for (float v : w.values) max_abs = std::max(max_abs, std::fabs(v));
  const int exponent = Q8WeightExponent(max_abs / 127.0f);
  std::vector<std::vector<int8_t>> wq(n, std::vector<int8_t>(static_cast<size_t>(kb * kQ8Block)));
  std::vector<std::vector<float>> ws(n, std::vector<float>(static_cast<size_t>(kb)));
  std::vector<uint16_t> bits(static_cast<size_t>(kb));
  for (int64_t j = 0; j < n; ++j) {
    QuantizeWeightRowQ8(w.values.data() + j * k, k, exponent, wq[j].data(), bits.data());
    for (int64_t b = 0; b < kb; ++b) ws[j][b] = F16ToF32(bits[b]) * std::ldexp(1.0f, -exponent);
  }
  std::vector<int32_t> xq;
  std::vector<float> xs;
  for (int64_t i = 0; i < m; ++i) {
    quantize(x.data() + i * k, xq, xs);
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0, magnitude = 0;
      for (int64_t b = 0; b < kb; ++b) {
        int64_t dot = 0;
        for (int64_t c = b * kQ8Block; c < (b + 1) * kQ8Block; ++c)
          dot += int64_t{xq[c]} * wq[j][c];
        const double term = double{xs[b]} * ws[j][b] * static_cast<double>(dot);
        sum += term;
        magnitude += std::fabs(term);
      }
      const double base = accumulate ? y0[i * n + j] : 0.0;
      e.y[i * n + j] = sum + base;
      e.tol[i * n + j] = 1e-6 * (magnitude + std::fabs(base)) + 1e-7;
    }
  }
  return e;
}

Expected Reference(GemmPath path, const std::vector<float>& x, int64_t m, const TestWeights& w,
                   const std::vector<float>& y0, bool accumulate, const CpuSupport& support) {
  const int64_t k = w.k, n = static_cast<int64_t>(w.values.size()) / k;
  Expected e{std::vector<double>(static_cast<size_t>(m * n)),
             std::vector<double>(static_cast<size_t>(m * n))};
  std::vector<float> xq = x, wq = w.values;
  std::vector<float> x_scale(m, 1.0f), w_scale(n, 1.0f);
  if (RunsQ8Kernels(path)) {
    return BlockReference(x, m, w, y0, accumulate, path == GemmPath::kInt8A16);
  }
  if (path == GemmPath::kBf16Widened || path == GemmPath::kBf16Native) {
    for (float& v : wq) v = RoundToBf16(v);  // x is already bf16 (the caller's contract)
  } else if (path == GemmPath::kInt8Rows) {
    // The quantizer is checked against its own scalar reference (int8_test);
    // here the integer products, packing, stacking and scales are checked.
    std::vector<int8_t> qx(x.size()), qw(w.values.size());
    QuantizeRowsS8(x.data(), k, m, k, 127, qx.data(), k, x_scale.data());
    QuantizeRowsS8(w.values.data(), k, n, k, support.int8_weight_max, qw.data(), k, w_scale.data());
    for (size_t i = 0; i < qx.size(); ++i) xq[i] = qx[i];
    for (size_t i = 0; i < qw.size(); ++i) wq[i] = qw[i];
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0, magnitude = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = static_cast<double>(xq[i * k + c]) * wq[j * k + c];
        sum += p;
        magnitude += std::fabs(p);
      }
      const double scale = static_cast<double>(x_scale[i]) * w_scale[j];
      const double base = accumulate ? y0[i * n + j] : 0.0;
      e.y[i * n + j] = sum * scale + base;
      // int8: s32 sums are exact; only the f32 scaling rounds. Float paths:
      // fp32 accumulation over K terms (oneDNN's blocked order).
      const double rel = path == GemmPath::kInt8Rows ? 1e-6 : 2e-6 * std::sqrt(double(k));
      e.tol[i * n + j] = rel * (magnitude * scale + std::fabs(base)) + 1e-7;
    }
  }
  return e;
}

class LinearPaths : public ::testing::TestWithParam<GemmPath> {};

TEST_P(LinearPaths, MatchesTheReferenceOfThePath) {
  const GemmPath path = GetParam();
  const CpuSupport& support = DetectCpuSupport();
  if (!Available(path, support)) {
    GTEST_SKIP() << GemmPathName(path)
                 << " is not available on this CPU: " << DescribePath(path, support);
  }
  std::printf("path %s\n", DescribePath(path, support).c_str());
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t k = 200;
  // Parts of 96 and 40 rows: the second starts inside a block of oneDNN's N
  // blocking, so the parts are stacked in a plain copy before the reorder;
  // 128 and 64: each is reordered straight into its columns.
  for (const auto& [dtype, part_rows] : {std::pair{DType::kBF16, std::vector<int64_t>{96, 40}},
                                         std::pair{DType::kF32, std::vector<int64_t>{96, 40}},
                                         std::pair{DType::kBF16, std::vector<int64_t>{128, 64}},
                                         std::pair{DType::kF32, std::vector<int64_t>{128, 64}}}) {
    const TestWeights w = MakeWeights(dtype, k, part_rows, 3);
    auto packed = PackedLinear::Pack(path, w.parts, support, "test");
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_EQ(packed->rows(), part_rows[0] + part_rows[1]);
    EXPECT_EQ(packed->cols(), k);
    LinearRunner runner(path, 2);
    for (int64_t m : {1, 5, 37, 300}) {
      for (bool accumulate : {false, true}) {
        const int64_t ldx = k + 8, n = packed->rows(), ldy = n + 4;
        std::vector<float> x(static_cast<size_t>(m * k)), x_strided(static_cast<size_t>(m * ldx));
        for (float& v : x) v = normal(rng);
        if (PathPrecision(path) == Precision::kBf16) {
          for (float& v : x) v = RoundToBf16(v);
        }
        for (int64_t i = 0; i < m; ++i) {
          std::copy_n(x.begin() + i * k, k, x_strided.begin() + i * ldx);
        }
        std::vector<float> y0(static_cast<size_t>(m * n)), y(static_cast<size_t>(m * ldy), -7.0f);
        for (float& v : y0) v = normal(rng);
        for (int64_t i = 0; i < m; ++i) std::copy_n(y0.begin() + i * n, n, y.begin() + i * ldy);
        const absl::Status run =
            runner.Run(x_strided.data(), m, ldx, *packed, y.data(), ldy, accumulate);
        ASSERT_TRUE(run.ok()) << run;
        const Expected want = Reference(path, x, m, w, y0, accumulate, support);
        double worst = 0;
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            const double err = std::fabs(y[i * ldy + j] - want.y[i * n + j]);
            ASSERT_LE(err, want.tol[i * n + j])
                << GemmPathName(path) << " " << DTypeName(dtype) << " m=" << m << " (" << i << ", "
                << j << ") acc=" << accumulate;
            worst = std::max(worst, err);
          }
          for (int64_t j = n; j < ldy; ++j) ASSERT_EQ(y[i * ldy + j], -7.0f) << "padding";
        }
      }
    }
    // The same shapes again create no new primitive.
    const size_t created = runner.primitives_created();
    std::vector<float> x(5 * k, 0.5f), y(5 * packed->rows());
    ASSERT_TRUE(runner.Run(x.data(), 5, k, *packed, y.data(), packed->rows(), false).ok());
    EXPECT_EQ(runner.primitives_created(), created);
  }
}

// Parts taller than Pack's conversion chunk (1 MiB of converted rows: 2048
// bf16 or 4096 int8 rows at K = 256) are converted and reordered a chunk at
// a time on several threads; every row lands in its place.
TEST_P(LinearPaths, TallPartsAreConvertedInChunks) {
  const GemmPath path = GetParam();
  const CpuSupport& support = DetectCpuSupport();
  if (!Available(path, support)) {
    GTEST_SKIP() << GemmPathName(path)
                 << " is not available on this CPU: " << DescribePath(path, support);
  }
  const int64_t k = 256, m = 3;
  const std::vector<int64_t> part_rows = {9216, 64};  // 4.5 bf16 / 2.25 int8 chunks, then one
  const TestWeights w = MakeWeights(DType::kF32, k, part_rows, 5);
  auto packed = PackedLinear::Pack(path, w.parts, support, "test");
  ASSERT_TRUE(packed.ok()) << packed.status();
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x)
    v = path == GemmPath::kFp32 || RunsQ8Kernels(path) ? normal(rng) : RoundToBf16(normal(rng));
  const int64_t n = packed->rows();
  std::vector<float> y0(static_cast<size_t>(m * n), 0.0f), y(y0);
  LinearRunner runner(path, 2);
  ASSERT_TRUE(runner.Run(x.data(), m, k, *packed, y.data(), n, /*accumulate=*/false).ok());
  const Expected want = Reference(path, x, m, w, y0, /*accumulate=*/false, support);
  for (int64_t i = 0; i < m * n; ++i) {
    ASSERT_LE(std::fabs(y[i] - want.y[i]), want.tol[i]) << GemmPathName(path) << " at " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, LinearPaths,
                         ::testing::Values(GemmPath::kFp32, GemmPath::kBf16Widened,
                                           GemmPath::kBf16Native, GemmPath::kInt8,
                                           GemmPath::kInt8Rows, GemmPath::kInt8A16),
                         [](const auto& info) {
                           std::string name = GemmPathName(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(Linear, PackRefusesMismatchedParts) {
  const TestWeights a = MakeWeights(DType::kBF16, 64, {8}, 1);
  const TestWeights b = MakeWeights(DType::kBF16, 32, {8}, 2);
  const WeightMatrix parts[] = {a.parts[0], b.parts[0]};
  auto packed = PackedLinear::Pack(GemmPath::kFp32, parts, DetectCpuSupport(), "layer 3 qkv");
  ASSERT_FALSE(packed.ok());
  EXPECT_NE(packed.status().message().find("layer 3 qkv"), std::string::npos) << packed.status();
}

TEST(Linear, RunnerRefusesWeightsOfAnotherPath) {
  const TestWeights a = MakeWeights(DType::kBF16, 64, {8}, 1);
  auto packed = PackedLinear::Pack(GemmPath::kFp32, a.parts, DetectCpuSupport(), "w");
  ASSERT_TRUE(packed.ok());
  LinearRunner runner(GemmPath::kBf16Widened, 1);
  std::vector<float> x(64), y(8);
  EXPECT_EQ(runner.Run(x.data(), 1, 64, *packed, y.data(), 8, false).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace saferoute::cpu
