// Element conversions between the checkpoint dtypes (bf16, f16) and fp32.
//
// bf16 is the top 16 bits of an IEEE fp32, so widening is exact (a shift);
// narrowing rounds to nearest, ties to even, as torch's `.to(bfloat16)` does.
#ifndef SAFEROUTE_CPU_CONVERT_H_
#define SAFEROUTE_CPU_CONVERT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace saferoute::cpu {

inline float Bf16ToF32(uint16_t bits) {
  uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

// Round to nearest even; NaN stays NaN (quiet bit forced so the payload cannot
// round into an infinity).
inline uint16_t F32ToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// fp32 value rounded to the nearest bf16 value (kept in fp32).
inline float RoundToBf16(float value) { return Bf16ToF32(F32ToBf16(value)); }

// IEEE half -> fp32 (exact), scalar reference used for tails and tests.
float F16ToF32(uint16_t bits);

// Bulk conversions (AVX2 where the build targets it; scalar otherwise).
void WidenBf16(const uint16_t* src, float* dst, size_t n);
void WidenF16(const uint16_t* src, float* dst, size_t n);
void NarrowToBf16(const float* src, uint16_t* dst, size_t n);
// x[i] = RoundToBf16(x[i]): gives fp32 activations bf16 semantics in place.
void RoundToBf16InPlace(float* x, size_t n);

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_CONVERT_H_
