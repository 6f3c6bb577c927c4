// Optimised kernels against plain scalar references on random input.
#include "cpu/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "cpu/convert.h"

namespace saferoute::cpu {
namespace {

std::vector<float> RandomVector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(Convert, Bf16RoundTripAndRounding) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly between two bf16 values: ties to even (down to 1.0).
  EXPECT_EQ(F32ToBf16(1.00390625f), 0x3f80);
  // 1 + 3*2^-8 ties up to the even neighbour 1 + 2^-6.
  EXPECT_EQ(F32ToBf16(1.01171875f), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::nanf("")))));
  EXPECT_TRUE(std::isinf(Bf16ToF32(F32ToBf16(INFINITY))));
  // Bulk (vector + tail) equals scalar for random values, odd length.
  std::vector<float> x = RandomVector(1003, 1, 100.0f);
  x[5] = std::nanf("");
  x[17] = -INFINITY;
  std::vector<uint16_t> bits(x.size());
  NarrowToBf16(x.data(), bits.data(), x.size());
  std::vector<float> rounded = x;
  RoundToBf16InPlace(rounded.data(), rounded.size());
  std::vector<float> widened(x.size());
  WidenBf16(bits.data(), widened.data(), bits.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(widened[i]) && std::isnan(rounded[i]));
      continue;
    }
    ASSERT_EQ(bits[i], F32ToBf16(x[i])) << i;
    ASSERT_EQ(widened[i], Bf16ToF32(bits[i])) << i;
    ASSERT_EQ(rounded[i], widened[i]) << i;
    if (std::isfinite(x[i])) {
      ASSERT_LE(std::fabs(widened[i] - x[i]), std::fabs(x[i]) * (1.0f / 256)) << i;
    }
  }
}

TEST(Convert, F16MatchesDefinition) {
  // Every half bit pattern: vector path equals the scalar definition.
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> wide(all.size());
  WidenF16(all.data(), wide.data(), all.size());
  for (uint32_t i = 0; i < 65536; ++i) {
    const float ref = F16ToF32(static_cast<uint16_t>(i));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(wide[i])) << i;
    } else {
      ASSERT_EQ(wide[i], ref) << i;
    }
  }
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
}

TEST(Kernels, ExpAccurate) {
  std::vector<float> x;
  for (float v = -100.0f; v < 88.37f; v += 0.0137f) x.push_back(v);
  std::vector<float> y(x.size());
  Exp(x.data(), y.data(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    if (x[i] < -87.3365447504f) {  // below the smallest normal result: flushed to 0
      ASSERT_EQ(y[i], 0.0f) << x[i];
      continue;
    }
    ASSERT_TRUE(std::isfinite(y[i])) << x[i];
    ASSERT_NEAR(y[i] / ref, 1.0, 3e-7) << x[i];
  }
  // In place (out == x) gives the same values (odd length: the scalar tail too).
  std::vector<float> z(x.begin(), x.end() - 1);
  Exp(z.data(), z.data(), z.size());
  ASSERT_EQ(z, std::vector<float>(y.begin(), y.end() - 1));
}

TEST(Kernels, RmsNormMatchesReference) {
  for (bool round : {false, true}) {
    const int64_t rows = 5, width = 77;  // odd width exercises the tail
    auto x = RandomVector(rows * width, 2, 3.0f);
    auto w = RandomVector(width, 3);
    std::vector<float> out(rows * width);
    RmsNorm(x.data(), width, w.data(), rows, width, 1e-5f, round, out.data(), width);
    std::vector<float> ref(rows * width);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < width; ++i) ss += double(x[r * width + i]) * x[r * width + i];
      const double inv = 1.0 / std::sqrt(ss / width + 1e-5);
      for (int64_t i = 0; i < width; ++i) {
        float y = float(x[r * width + i] * inv);
        ref[r * width + i] = round ? RoundToBf16(w[i] * RoundToBf16(y)) : w[i] * y;
      }
    }
    // fp32: a few ulp of O(1) values; bf16: one bf16 ulp at most where the
    // fp32 difference crosses a rounding boundary.
    EXPECT_LT(MaxAbsDiff(out, ref), round ? 0.05f : 2e-6f) << round;
    if (round) {
      for (float v : out) ASSERT_EQ(v, RoundToBf16(v));
    }
  }
}

TEST(Kernels, RopeMatchesRotateHalfReference) {
  const int64_t d = 16, heads = 3, rows = 4, stride = heads * d + 5, first = 7;
  std::vector<float> inv_freq(d / 2);
  for (int64_t j = 0; j < d / 2; ++j) inv_freq[j] = float(1.0 / std::pow(10000.0, 2.0 * j / d));
  RopeTable table = MakeRopeTable(inv_freq, 64, false);
  auto x = RandomVector(rows * stride, 4);
  auto ref = x;
  ApplyRope(table, x.data(), rows, stride, heads, first, false);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* in = ref.data() + r * stride + h * d;
      std::vector<float> rotated(d);
      for (int64_t i = 0; i < d; ++i) {
        // HF: x * cos(emb) + rotate_half(x) * sin(emb), emb = cat(freqs, freqs)
        const double angle = double(float(first + r) * inv_freq[i % (d / 2)]);
        const double rh = i < d / 2 ? -in[i + d / 2] : in[i - d / 2];
        rotated[i] = float(in[i] * std::cos(angle) + rh * std::sin(angle));
      }
      for (int64_t i = 0; i < d; ++i) {
        ASSERT_NEAR(x[r * stride + h * d + i], rotated[i], 1e-5) << r << " " << h << " " << i;
      }
    }
    // Padding between rows is untouched.
    for (int64_t i = heads * d; i < stride; ++i) ASSERT_EQ(x[r * stride + i], ref[r * stride + i]);
  }
}

// kAdjacent rotates pairs (2j, 2j+1) (ggml's normal RoPE, GGUF llama row
// order): checked against that formula, and against kHalves on the same
// head with its rows in HF order (GGUF row 2j + s = HF row j + s*d/2), which
// is why a GGUF's Q/K need no re-ordered copy. d = 12 leaves a scalar tail
// after the 4-pair vector loop.
TEST(Kernels, RopeAdjacentPairsMatchGgmlAndHalvesOnPermutedRows) {
  for (const int64_t d : {int64_t{16}, int64_t{12}}) {
    const int64_t heads = 3, rows = 4, stride = heads * d + 3, first = 5;
    std::vector<float> inv_freq(d / 2);
    for (int64_t j = 0; j < d / 2; ++j) inv_freq[j] = float(1.0 / std::pow(500.0, 2.0 * j / d));
    const RopeTable adjacent = MakeRopeTable(inv_freq, 32, false, RopePairing::kAdjacent);
    const RopeTable halves = MakeRopeTable(inv_freq, 32, false, RopePairing::kHalves);
    auto x = RandomVector(rows * stride, 9);
    const auto in = x;
    // The same heads in HF order.
    std::vector<float> hf(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < stride; ++i) {
        const int64_t h = i / d, e = i % d;
        const int64_t to = i < heads * d ? h * d + e / 2 + (e % 2) * (d / 2) : i;
        hf[r * stride + to] = in[r * stride + i];
      }
    }
    ApplyRope(adjacent, x.data(), rows, stride, heads, first, false);
    ApplyRope(halves, hf.data(), rows, stride, heads, first, false);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t j = 0; j < d / 2; ++j) {
          const double angle = double(float(first + r) * inv_freq[j]);
          const float a = in[r * stride + h * d + 2 * j], b = in[r * stride + h * d + 2 * j + 1];
          const float* out = x.data() + r * stride + h * d;
          ASSERT_NEAR(out[2 * j], a * std::cos(angle) - b * std::sin(angle), 1e-5) << d << j;
          ASSERT_NEAR(out[2 * j + 1], b * std::cos(angle) + a * std::sin(angle), 1e-5) << d << j;
          const float* out_hf = hf.data() + r * stride + h * d;
          ASSERT_NEAR(out[2 * j], out_hf[j], 1e-6) << d << " " << j;
          ASSERT_NEAR(out[2 * j + 1], out_hf[j + d / 2], 1e-6) << d << " " << j;
        }
      }
      for (int64_t i = heads * d; i < stride; ++i) ASSERT_EQ(x[r * stride + i], in[r * stride + i]);
    }
  }
}

TEST(Kernels, SiluMulMatchesReference) {
  const int64_t rows = 3, n = 45;
  auto g = RandomVector(rows * 2 * n, 5, 4.0f);
  std::vector<float> out(rows * n);
  SiluMul(g.data(), g.data() + n, rows, n, 2 * n, false, out.data(), n);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const double gv = g[r * 2 * n + i], uv = g[r * 2 * n + n + i];
      const double ref = gv / (1.0 + std::exp(-gv)) * uv;
      ASSERT_NEAR(out[r * n + i], ref, 1e-5 * (1 + std::fabs(ref)));
    }
  }
}

// Attention reference: dense scores with explicit causal mask, double math.
std::vector<float> ReferenceAttention(const AttentionShape& s, const std::vector<float>& q,
                                      const std::vector<float>& k, const std::vector<float>& v) {
  const int64_t d = s.head_dim, group = s.n_heads / s.n_kv_heads;
  std::vector<float> out(s.tokens * s.out_stride, 0.0f);
  for (int64_t h = 0; h < s.n_heads; ++h) {
    const int64_t g = h / group;
    for (int64_t i = 0; i < s.tokens; ++i) {
      const int64_t keys = s.past + s.tokens;
      std::vector<double> p(keys);
      double mx = -1e300;
      for (int64_t j = 0; j < keys; ++j) {
        if (j > s.past + i) {
          p[j] = -1e300;
          continue;
        }  // masked
        double dot = 0;
        for (int64_t c = 0; c < d; ++c)
          dot += double(q[i * s.q_stride + h * d + c]) * k[g * s.kv_head_stride + j * d + c];
        p[j] = dot * s.scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < keys; ++j) {
        p[j] = j > s.past + i ? 0 : std::exp(p[j] - mx);
        sum += p[j];
      }
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < keys; ++j) acc += p[j] / sum * v[g * s.kv_head_stride + j * d + c];
        out[i * s.out_stride + h * d + c] = float(acc);
      }
    }
  }
  return out;
}

TEST(Kernels, AttentionCausalGqaWithPast) {
  // 150 tokens span three query blocks (the last one partial) of the kernel.
  for (auto [tokens, past] : {std::pair<int64_t, int64_t>{13, 0}, {13, 9}, {150, 9}, {1, 40}}) {
    AttentionShape s;
    s.tokens = tokens;
    s.past = past;
    s.n_heads = 8;
    s.n_kv_heads = 2;
    s.head_dim = 24;
    s.q_stride = s.n_heads * s.head_dim + 3;
    s.out_stride = s.n_heads * s.head_dim;
    s.kv_head_stride = (past + s.tokens + 4) * s.head_dim;  // spare capacity after the keys
    s.scale = 1.0f / std::sqrt(float(s.head_dim));
    auto q = RandomVector(s.tokens * s.q_stride, 6, 2.0f);
    auto k = RandomVector(s.n_kv_heads * s.kv_head_stride, 7, 2.0f);
    auto v = RandomVector(s.n_kv_heads * s.kv_head_stride, 8);
    std::vector<float> out(s.tokens * s.out_stride);
    Attention(s, q.data(), k.data(), v.data(), out.data(), 2, false);
    // fp32 rounding grows with the keys summed: 2e-6 holds up to ~22 keys;
    // over 159 keys both this kernel and the per-query one it replaced
    // measured 2.38e-6 against the double reference.
    const float tolerance = past + tokens > 64 ? 4e-6f : 2e-6f;
    EXPECT_LT(MaxAbsDiff(out, ReferenceAttention(s, q, k, v)), tolerance) << tokens << "," << past;
    // One thread (the serial path) gives the same numbers.
    std::vector<float> serial(out.size());
    Attention(s, q.data(), k.data(), v.data(), serial.data(), 1, false);
    EXPECT_EQ(serial, out) << tokens << "," << past;
  }
}

// A shared prefix read in place (positions [0, prefix) from their own area,
// the rest from the sequence's) gives the reference's numbers for the whole
// contiguous cache, with any split, including prefix == past (only the new
// tokens in the sequence's area).
TEST(Kernels, AttentionWithPrefixSegmentMatchesContiguousCache) {
  for (auto [tokens, past, prefix] : {std::tuple<int64_t, int64_t, int64_t>{13, 9, 9},
                                      {13, 9, 4},
                                      {1, 40, 40},
                                      {1, 40, 31},
                                      {150, 70, 70}}) {
    AttentionShape s;
    s.tokens = tokens;
    s.past = past;
    s.n_heads = 8;
    s.n_kv_heads = 2;
    s.head_dim = 24;
    s.q_stride = s.n_heads * s.head_dim + 3;
    s.out_stride = s.n_heads * s.head_dim;
    s.kv_head_stride = (past + s.tokens + 4) * s.head_dim;
    s.scale = 1.0f / std::sqrt(float(s.head_dim));
    auto q = RandomVector(s.tokens * s.q_stride, 16, 2.0f);
    auto k = RandomVector(s.n_kv_heads * s.kv_head_stride, 17, 2.0f);
    auto v = RandomVector(s.n_kv_heads * s.kv_head_stride, 18);
    const std::vector<float> want = ReferenceAttention(s, q, k, v);

    // The same cache cut in two: [0, prefix) in a prefix area of another
    // stride, [prefix, past + T) in the sequence's area.
    AttentionShape split = s;
    split.prefix = prefix;
    split.prefix_head_stride = (prefix + 2) * s.head_dim;
    split.kv_head_stride = (past + tokens - prefix + 1) * s.head_dim;
    std::vector<float> pk(s.n_kv_heads * split.prefix_head_stride), pv(pk.size()),
        own_k(s.n_kv_heads * split.kv_head_stride), own_v(own_k.size());
    for (int64_t g = 0; g < s.n_kv_heads; ++g) {
      for (int64_t j = 0; j < past + tokens; ++j) {
        for (int64_t c = 0; c < s.head_dim; ++c) {
          const size_t from = g * s.kv_head_stride + j * s.head_dim + c;
          if (j < prefix) {
            pk[g * split.prefix_head_stride + j * s.head_dim + c] = k[from];
            pv[g * split.prefix_head_stride + j * s.head_dim + c] = v[from];
          } else {
            own_k[g * split.kv_head_stride + (j - prefix) * s.head_dim + c] = k[from];
            own_v[g * split.kv_head_stride + (j - prefix) * s.head_dim + c] = v[from];
          }
        }
      }
    }
    split.prefix_k = pk.data();
    split.prefix_v = pv.data();
    for (int threads : {1, 2}) {
      std::vector<float> out(s.tokens * s.out_stride);
      Attention(split, q.data(), own_k.data(), own_v.data(), out.data(), threads, false);
      const float tolerance = past + tokens > 64 ? 4e-6f : 2e-6f;
      EXPECT_LT(MaxAbsDiff(out, want), tolerance)
          << tokens << "," << past << "," << prefix << " threads " << threads;
    }
  }
}

}  // namespace
}  // namespace saferoute::cpu
