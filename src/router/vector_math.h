// Branch-free float log, sin/cos and exp that GCC vectorises, for the loops
// that run on every Bayesian weight at every training step (1.3M elements per
// step for the paper's router): Box-Muller sampling (router/random.cc) and
// sigma = exp(log_sigma) (router/network.cc). libm's scalar logf, sincosf and
// expf were ~20% of training time; glibc's vector math (libmvec) is only used
// under -ffast-math and has no vector sincos. Accuracy, checked against libm
// in vector_math_test.cc: a few float ulps — below anything a training step
// could show. Needs -fno-math-errno and -fno-trapping-math to vectorise
// (router/CMakeLists.txt).
#ifndef SAFEROUTE_ROUTER_VECTOR_MATH_H_
#define SAFEROUTE_ROUTER_VECTOR_MATH_H_

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace saferoute {

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

// e^x for any float x, computed as 2^n * e^r with n = round(x / ln 2) and
// |r| <= ln(2)/2; x is clamped to [-87, 88] so 2^n stays a normal float
// (e^-87 ~ 1.6e-38, e^88 ~ 1.7e38; no caller comes near either end).
inline float ExpFloat(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  constexpr float kLog2E = 1.44269504088896341f;
  constexpr float kLn2High = 0.693145751953125f;      // few mantissa bits: n * kLn2High is exact
  constexpr float kLn2Low = 1.42860682030941723e-6f;  // ln 2 - kLn2High
  // Round to nearest by adding and removing 1.5 * 2^23 (|x * log2 e| < 2^22).
  constexpr float kRoundingShift = 12582912.0f;
  const float n = (x * kLog2E + kRoundingShift) - kRoundingShift;
  const float r = (x - n * kLn2High) - n * kLn2Low;
  // Taylor to r^7: the remainder is < (ln2/2)^8 / 8! < 5e-9.
  const float p =
      1.0f +
      r * (1.0f +
           r * (1.0f / 2 +
                r * (1.0f / 6 +
                     r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
  return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_VECTOR_MATH_H_
