#include "router/random.h"

#include <cmath>
#include <cstdint>
#include <numbers>

#include "router/parallel.h"

namespace saferoute {

void FillNormal(uint64_t key, float* out, size_t n) {
  const int64_t pairs = static_cast<int64_t>((n + 1) / 2);
#pragma omp parallel for schedule(static) if(pairs >= kMinParallelWork)
  for (int64_t k = 0; k < pairs; ++k) {
    // u1 in (0, 1] so log(u1) is finite.
    const double u1 = 1.0 - UniformAt(key, 2 * static_cast<uint64_t>(k));
    const double u2 = UniformAt(key, 2 * static_cast<uint64_t>(k) + 1);
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * std::numbers::pi * u2;
    out[2 * k] = static_cast<float>(radius * std::cos(angle));
    if (static_cast<size_t>(2 * k + 1) < n) out[2 * k + 1] = static_cast<float>(radius * std::sin(angle));
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
