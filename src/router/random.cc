#include "router/random.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "router/parallel.h"

namespace saferoute {
namespace {

// Box-Muller runs on every Bayesian weight at every training step (1.3M
// normals per step for the paper's router), where libm's scalar logf and
// sincosf were ~15% of training time. glibc's vector math (libmvec) is only
// used under -ffast-math and has no vector sincos, so these two short
// polynomials, written so the compiler vectorises them, replace the calls.
// Accuracy (checked in random_test.cc against libm): log within 2e-7
// relative, sin/cos within 2e-7 absolute — below float rounding of the
// result, and far below anything a N(0,1) sample could show.

// log(u) for normal floats u > 0: u = 2^e * m, m in [sqrt(1/2), sqrt(2)),
// log(m) = 2 atanh(t) with t = (m - 1) / (m + 1), |t| <= 0.1716.
inline float LogPositive(float u) {
  const int32_t bits = std::bit_cast<int32_t>(u);
  // Shift the mantissa range by sqrt(1/2) so m lands in [sqrt(1/2), sqrt(2)).
  constexpr int32_t kSqrtHalfBits = 0x3F3504F3;
  const int32_t shifted = bits - kSqrtHalfBits;
  const int32_t exponent = shifted >> 23;  // arithmetic shift: floor
  const float m = std::bit_cast<float>((shifted & 0x007FFFFF) + kSqrtHalfBits);
  const float t = (m - 1.0f) / (m + 1.0f);
  const float t2 = t * t;
  // 2 * (t + t^3/3 + t^5/5 + t^7/7 + t^9/9): the next term is < 1e-9.
  const float series =
      t * (2.0f + t2 * (2.0f / 3 + t2 * (2.0f / 5 + t2 * (2.0f / 7 + t2 * (2.0f / 9)))));
  return static_cast<float>(exponent) * 0.693147180559945309f + series;
}

// sin and cos of 2*pi*u for u in [0, 1): quadrant from 4u, then Taylor
// polynomials on [0, pi/2) (remainders < 6e-8). Selects on float compares
// and a truncating conversion (not std::floor) so GCC vectorises the loop.
struct SinCos {
  float sin, cos;
};
inline SinCos SinCosTwoPi(float u) {
  const float v = u * 4.0f;
  const float quadrant = static_cast<float>(static_cast<int32_t>(v));  // v >= 0: floor
  const float x = (v - quadrant) * 1.57079632679489662f;               // in [0, pi/2)
  const float x2 = x * x;
  const float s =
      x * (1.0f + x2 * (-1.0f / 6 +
                        x2 * (1.0f / 120 + x2 * (-1.0f / 5040 +
                                                 x2 * (1.0f / 362880 + x2 * (-1.0f / 39916800))))));
  const float c =
      1.0f +
      x2 * (-0.5f + x2 * (1.0f / 24 + x2 * (-1.0f / 720 +
                                            x2 * (1.0f / 40320 + x2 * (-1.0f / 3628800 +
                                                                       x2 * (1.0f / 479001600))))));
  // Rotate by quadrant quarter turns: (sin, cos) -> (cos, -sin) per turn.
  const bool odd = quadrant == 1.0f || quadrant == 3.0f;
  const float a = odd ? c : s;
  const float b = odd ? s : c;
  return {quadrant >= 2.0f ? -a : a, (quadrant == 1.0f || quadrant == 2.0f) ? -b : b};
}

// Pairs [begin, end) of stream `key` into out (2 values per pair, the last
// pair may have only its first value when n is odd).
void NormalPairs(uint64_t key, int64_t begin, int64_t end, float* out, size_t n) {
  constexpr int64_t kBlock = 256;
  float u1[kBlock], u2[kBlock], radius[kBlock], sin_v[kBlock], cos_v[kBlock];
  for (int64_t block = begin; block < end; block += kBlock) {
    const int64_t count = std::min(kBlock, end - block);
    // Integer hashing (64-bit multiplies) stays scalar; the math below is
    // vectorised.
    for (int64_t i = 0; i < count; ++i) {
      // SplitMix64 of the stream seeded with key: one mix per pair.
      const uint64_t bits = Mix64(key + static_cast<uint64_t>(block + i) * 0x9E3779B97F4A7C15ull);
      // u1 in (0, 1] so log(u1) is finite; u2 in [0, 1). 24 bits each.
      u1[i] = static_cast<float>((bits >> 40) + 1) * 0x1.0p-24f;
      u2[i] = static_cast<float>((bits >> 16) & 0xFFFFFF) * 0x1.0p-24f;
    }
    for (int64_t i = 0; i < count; ++i) radius[i] = std::sqrt(-2.0f * LogPositive(u1[i]));
    for (int64_t i = 0; i < count; ++i) {
      const SinCos sc = SinCosTwoPi(u2[i]);
      sin_v[i] = sc.sin;
      cos_v[i] = sc.cos;
    }
    for (int64_t i = 0; i < count; ++i) {
      const size_t at = 2 * static_cast<size_t>(block + i);
      out[at] = radius[i] * cos_v[i];
      if (at + 1 < n) out[at + 1] = radius[i] * sin_v[i];
    }
  }
}

}  // namespace

float LogPositiveForTest(float u) { return LogPositive(u); }
void SinCosTwoPiForTest(float u, float* sin_out, float* cos_out) {
  const SinCos sc = SinCosTwoPi(u);
  *sin_out = sc.sin;
  *cos_out = sc.cos;
}

void FillNormal(uint64_t key, float* out, size_t n) {
  const int64_t pairs = static_cast<int64_t>((n + 1) / 2);
  // Fixed chunks of pairs: the value at index i never depends on threads.
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (pairs + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (pairs >= kMinParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    NormalPairs(key, c * kChunk, std::min(pairs, (c + 1) * kChunk), out, n);
  }
}

void FillUniform(uint64_t key, double low, double high, float* out, size_t n) {
  const int64_t size = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static) if (size >= kMinParallelWork)
  for (int64_t i = 0; i < size; ++i) {
    out[i] = static_cast<float>(low + (high - low) * UniformAt(key, static_cast<uint64_t>(i)));
  }
}

}  // namespace saferoute
