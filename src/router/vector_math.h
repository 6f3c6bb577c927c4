// Branch-free float log and sin/cos that GCC vectorises, for Box-Muller
// sampling (router/random.cc), which runs on every Bayesian weight at every
// training step (1.3M normals per step for the paper's router). libm's scalar
// logf and sincosf were ~15% of training time; glibc's vector math (libmvec)
// is only used under -ffast-math and has no vector sincos. (exp comes from
// cpu::Exp.) Accuracy, checked against libm
// in vector_math_test.cc: a few float ulps — below anything a training step
// could show. Needs -fno-math-errno to vectorise (router/CMakeLists.txt).
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

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_VECTOR_MATH_H_
