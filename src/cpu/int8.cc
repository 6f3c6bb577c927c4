#include "cpu/int8.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__)
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge
// source, which -Wmaybe-uninitialized reports after inlining (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define SR_INT8_AVX512 1
#elif defined(__AVX2__)
#include <immintrin.h>
#define SR_INT8_AVX2 1
#endif

namespace saferoute::cpu {
namespace {

float MaxAbs(const float* x, int64_t n) {
  int64_t i = 0;
  float m = 0.0f;
#if SR_INT8_AVX512
  // (and/max/extract rather than _mm512_abs_ps / _mm512_reduce_max_ps, whose
  // GCC 12 definitions trip -Wmaybe-uninitialized)
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  __m512i acc = _mm512_setzero_si512();  // |x| bit patterns compare like the floats
  for (; i + 16 <= n; i += 16) {
    acc = _mm512_max_epu32(acc, _mm512_and_si512(_mm512_loadu_si512(x + i), abs_mask));
  }
  alignas(64) float lanes[16];
  _mm512_store_si512(lanes, acc);
  for (float v : lanes) m = std::max(m, v);
#elif SR_INT8_AVX2
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8)
    acc = _mm256_max_ps(acc, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float v : lanes) m = std::max(m, v);
#endif
  for (; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// round_half_even(v * inv), clamped to [-q_max, q_max]: the scalar twin of
// the vector loops (cvtps rounds to nearest even in the default mode).
inline int8_t QuantizeOne(float v, float inv, float q_max) {
  const float r = std::nearbyint(v * inv);
  return static_cast<int8_t>(std::clamp(r, -q_max, q_max));
}

// Quantizes rows to int8 and stores each byte XOR `flip` (0: s8; 0x80: the
// s8 value + 128 as u8, two's complement).
void QuantizeRows(const float* x, int64_t ldx, int64_t rows, int64_t cols, int q_max, uint8_t flip,
                  uint8_t* q, int64_t ldq, float* scale) {
  const float qm = static_cast<float>(q_max);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    uint8_t* qr = q + r * ldq;
    const float max_abs = MaxAbs(xr, cols);
    if (!(max_abs > 0.0f)) {  // all zeros (or NaN: quantized to zeros, scale 1)
      std::memset(qr, flip, static_cast<size_t>(cols));
      scale[r] = 1.0f;
      continue;
    }
    const float inv = qm / max_abs;
    scale[r] = max_abs / qm;
    int64_t c = 0;
#if SR_INT8_AVX512
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512 hi = _mm512_set1_ps(qm), lo = _mm512_set1_ps(-qm);
    const __m128i vflip = _mm_set1_epi8(static_cast<char>(flip));
    for (; c + 16 <= cols; c += 16) {
      __m512 v = _mm512_mul_ps(_mm512_loadu_ps(xr + c), vinv);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);  // |v| <= q_max up to rounding of inv
      const __m128i bytes = _mm512_maskz_cvtsepi32_epi8(0xffff, _mm512_cvtps_epi32(v));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + c), _mm_xor_si128(bytes, vflip));
    }
#elif SR_INT8_AVX2
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256 hi = _mm256_set1_ps(qm), lo = _mm256_set1_ps(-qm);
    for (; c + 8 <= cols; c += 8) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xr + c), vinv);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i i32 = _mm256_cvtps_epi32(v);
      const __m128i i16 =
          _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
      const __m128i bytes =
          _mm_xor_si128(_mm_packs_epi16(i16, i16), _mm_set1_epi8(static_cast<char>(flip)));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(qr + c), bytes);
    }
#endif
    for (; c < cols; ++c) qr[c] = static_cast<uint8_t>(QuantizeOne(xr[c], inv, qm)) ^ flip;
  }
}

}  // namespace

void QuantizeRowsS8(const float* x, int64_t ldx, int64_t rows, int64_t cols, int q_max, int8_t* q,
                    int64_t ldq, float* scale) {
  QuantizeRows(x, ldx, rows, cols, q_max, 0, reinterpret_cast<uint8_t*>(q), ldq, scale);
}

void QuantizeRowsU8(const float* x, int64_t ldx, int64_t rows, int64_t cols, uint8_t* q,
                    int64_t ldq, float* scale) {
  QuantizeRows(x, ldx, rows, cols, 127, 0x80, q, ldq, scale);
}

void ScaleS32ToF32(const int32_t* acc, int64_t lda, int64_t rows, int64_t cols,
                   const int32_t* col_offset, const float* row_scale, const float* col_scale,
                   bool accumulate, float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* ar = acc + r * lda;
    float* yr = y + r * ldy;
    const float rs = row_scale[r];
    int64_t c = 0;
#if SR_INT8_AVX512
    const __m512 vrs = _mm512_set1_ps(rs);
    for (; c + 16 <= cols; c += 16) {
      const __m512 a = _mm512_cvtepi32_ps(
          _mm512_sub_epi32(_mm512_loadu_si512(ar + c), _mm512_loadu_si512(col_offset + c)));
      const __m512 s = _mm512_mul_ps(vrs, _mm512_loadu_ps(col_scale + c));
      const __m512 base = accumulate ? _mm512_loadu_ps(yr + c) : _mm512_setzero_ps();
      _mm512_storeu_ps(yr + c, _mm512_fmadd_ps(a, s, base));
    }
#elif SR_INT8_AVX2
    const __m256 vrs = _mm256_set1_ps(rs);
    for (; c + 8 <= cols; c += 8) {
      const __m256 a = _mm256_cvtepi32_ps(
          _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + c)),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col_offset + c))));
      const __m256 s = _mm256_mul_ps(vrs, _mm256_loadu_ps(col_scale + c));
      const __m256 base = accumulate ? _mm256_loadu_ps(yr + c) : _mm256_setzero_ps();
      _mm256_storeu_ps(yr + c, _mm256_fmadd_ps(a, s, base));
    }
#endif
    for (; c < cols; ++c) {
      int32_t a;  // acc and y may share memory: read through memcpy
      std::memcpy(&a, ar + c, sizeof(a));
      float base = 0.0f;
      if (accumulate) std::memcpy(&base, yr + c, sizeof(base));
      const float v = std::fma(static_cast<float>(a - col_offset[c]), rs * col_scale[c], base);
      std::memcpy(yr + c, &v, sizeof(v));
    }
  }
}

}  // namespace saferoute::cpu
