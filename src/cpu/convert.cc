#include "cpu/convert.h"

#include <cmath>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace saferoute::cpu {

float F16ToF32(uint16_t bits) {
  const uint32_t sign = (bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // subnormal (or zero)
  } else if (exponent == 31) {
    magnitude = mantissa ? std::nanf("") : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  uint32_t out;
  std::memcpy(&out, &magnitude, sizeof(out));
  out |= sign;
  float result;
  std::memcpy(&result, &out, sizeof(result));
  return result;
}

void WidenBf16(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(wide));
  }
#endif
  for (; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

void WidenF16(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(half));
  }
#endif
  for (; i < n; ++i) dst[i] = F16ToF32(src[i]);
}

#if defined(__AVX2__)
// Round-to-nearest-even of 8 floats to bf16 bit patterns in the high halves
// (low halves zero). NaNs keep a quiet NaN.
static inline __m256i RoundBf16x8(__m256 x) {
  __m256i bits = _mm256_castps_si256(x);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
  rounded = _mm256_and_si256(rounded, _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
  __m256 is_nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256i quiet =
      _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(static_cast<int>(0xffff0000u))),
                      _mm256_set1_epi32(0x00400000));
  return _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(quiet), is_nan));
}
#endif

void NarrowToBf16(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    __m256i r = _mm256_srli_epi32(RoundBf16x8(_mm256_loadu_ps(src + i)), 16);
    // Pack 8 x u32 (values < 2^16) into 8 x u16.
    __m128i lo = _mm256_castsi256_si128(r);
    __m128i hi = _mm256_extracti128_si256(r, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_packus_epi32(lo, hi));
  }
#endif
  for (; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

void RoundToBf16InPlace(float* x, size_t n) {
  size_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(x + i, _mm256_castsi256_ps(RoundBf16x8(_mm256_loadu_ps(x + i))));
  }
#endif
  for (; i < n; ++i) x[i] = RoundToBf16(x[i]);
}

}  // namespace saferoute::cpu
