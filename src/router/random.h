// Counter-based random numbers for router training: value i of stream `key`
// is a pure function of (key, i), so filling in parallel gives the same bits
// for any thread count, and results are identical across compilers and
// standard libraries (unlike std::normal_distribution).
#ifndef SAFEROUTE_ROUTER_RANDOM_H_
#define SAFEROUTE_ROUTER_RANDOM_H_

#include <cstddef>
#include <cstdint>

namespace saferoute {

// SplitMix64 finaliser: a bijective 64-bit mixer.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Key of an independent stream, e.g. (seed, training step, parameter index).
inline uint64_t MixKey(uint64_t a, uint64_t b, uint64_t c) {
  return Mix64(Mix64(Mix64(a) ^ b) ^ c);
}

// Uniform double in [0, 1) with 53 random bits: value i of stream key.
inline double UniformAt(uint64_t key, uint64_t i) {
  return static_cast<double>(Mix64(key ^ Mix64(i)) >> 11) * 0x1.0p-53;
}

// Uniform integer in [0, n): value i of stream key (n > 0; bias < n / 2^64).
inline uint64_t IndexAt(uint64_t key, uint64_t i, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(Mix64(key ^ Mix64(i))) * n) >> 64);
}

// out[0..n) ~ N(0, 1) by Box-Muller on pairs (value i depends only on key, i;
// 24-bit uniforms, single precision, vectorised log and sin/cos).
void FillNormal(uint64_t key, float* out, size_t n);
// Values [begin, end) of that stream into out[0, end - begin), on the calling
// thread; begin must be even (values come in pairs).
void FillNormalRange(uint64_t key, size_t begin, size_t end, float* out);
// out[0..n) ~ U(low, high).
void FillUniform(uint64_t key, double low, double high, float* out, size_t n);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_RANDOM_H_
