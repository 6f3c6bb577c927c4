#include "router/random.h"

#include <cmath>
#include <cstdint>
#include <numbers>

#include "router/parallel.h"

namespace saferoute {

void FillNormal(uint64_t key, float* out, size_t n) {
  const int64_t pairs = static_cast<int64_t>((n + 1) / 2);
  // Single precision throughout: this runs on every weight at every training
  // step, and float log/sin/cos are about twice as fast as double. Both
  // uniforms come from one 64-bit draw (24 bits each).
  constexpr float kTwoPi = 6.28318530717958647692f;
#pragma omp parallel for schedule(static) if(pairs >= kMinParallelWork)
  for (int64_t k = 0; k < pairs; ++k) {
    const uint64_t bits = Mix64(key ^ Mix64(static_cast<uint64_t>(k)));
    // u1 in (0, 1] so log(u1) is finite; u2 in [0, 1).
    const float u1 = static_cast<float>((bits >> 40) + 1) * 0x1.0p-24f;
    const float u2 = static_cast<float>((bits >> 16) & 0xFFFFFF) * 0x1.0p-24f;
    const float radius = std::sqrt(-2.0f * std::log(u1));
    const float angle = kTwoPi * u2;
    out[2 * k] = radius * std::cos(angle);
    if (static_cast<size_t>(2 * k + 1) < n) out[2 * k + 1] = radius * std::sin(angle);
  }
}

void FillUniform(uint64_t key, double low, double high, float* out, size_t n) {
  const int64_t size = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static) if(size >= kMinParallelWork)
  for (int64_t i = 0; i < size; ++i) {
    out[i] = static_cast<float>(low + (high - low) * UniformAt(key, static_cast<uint64_t>(i)));
  }
}

}  // namespace saferoute
