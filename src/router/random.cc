#include "router/random.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "router/parallel.h"
#include "router/vector_math.h"

namespace saferoute {
namespace {

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
