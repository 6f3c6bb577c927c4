// Dequantization of GGML block formats to fp32.
//
// Each format has a scalar dequantizer that follows ggml's reference
// (ggml-quants.c dequantize_row_*) and, where the build targets AVX-512 or
// AVX2, a vectorised one that computes the same values bit for bit: the same
// fp32 operations in the same order (d * q, then + m or - m as two rounded
// operations; this file is compiled with -ffp-contract=off so the compiler
// does not fuse them either). The test compares both paths with the PyPI
// `gguf` package's numpy dequantizers, exactly.
//
// Non-finite scales: block scales are IEEE halves, so a corrupt or random
// block can carry an inf or NaN scale. We do what ggml and gguf-py do: the
// arithmetic runs as written and the elements of that block come out inf or
// NaN (inf * 0 = NaN), bit for bit as in the reference. Model loading does
// not scan the scales (that would read the whole file at load, as a plain
// F16/BF16 checkpoint's NaN weights are not scanned either): such a model
// computes NaN/inf logits, as it does in llama.cpp.
#include "cpu/dequantize.h"

#include <cstring>

#include "cpu/convert.h"
#include "util/status.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define SR_DEQUANT_AVX512 1
#else
#define SR_DEQUANT_AVX512 0
#endif
#if defined(__AVX2__) && defined(__F16C__)
#define SR_DEQUANT_AVX2 1
#else
#define SR_DEQUANT_AVX2 0
#endif
#if SR_DEQUANT_AVX512 || SR_DEQUANT_AVX2 || defined(__F16C__)
#include <immintrin.h>
#endif

namespace saferoute::cpu {
namespace {

inline float Half(const std::byte* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof(bits));
#if defined(__F16C__)
  return _cvtsh_ss(bits);
#else
  return F16ToF32(bits);
#endif
}

inline uint8_t U8(const std::byte* p) { return static_cast<uint8_t>(*p); }

// ---- Scalar reference dequantizers: one block at a time ----

// block_q8_0: f16 d, int8 qs[32].  y = d * q
void BlockQ8_0(const std::byte* b, float* y) {
  const float d = Half(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(U8(b + 2 + j))) * d;
}

// block_q4_0: f16 d, u8 qs[16] (element j in the low nibble of qs[j], element
// j + 16 in the high nibble).  y = (q - 8) * d
void BlockQ4_0(const std::byte* b, float* y) {
  const float d = Half(b);
  const std::byte* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((U8(qs + j) & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((U8(qs + j) >> 4) - 8) * d;
  }
}

// block_q4_1: f16 d, f16 m, u8 qs[16].  y = q * d + m
void BlockQ4_1(const std::byte* b, float* y) {
  const float d = Half(b), m = Half(b + 2);
  const std::byte* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(U8(qs + j) & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(U8(qs + j) >> 4) * d + m;
  }
}

// The 5th bits of q5 blocks: bit j of the little-endian u32 qh is element j's.
inline uint32_t HighBits(const std::byte* p) {
  uint32_t qh;
  std::memcpy(&qh, p, sizeof(qh));
  return qh;
}

// block_q5_0: f16 d, u32 qh, u8 qs[16].  y = (q - 16) * d
void BlockQ5_0(const std::byte* b, float* y) {
  const float d = Half(b);
  const uint32_t qh = HighBits(b + 2);
  const std::byte* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int lo = (U8(qs + j) & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (U8(qs + j) >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    y[j] = static_cast<float>(lo - 16) * d;
    y[j + 16] = static_cast<float>(hi - 16) * d;
  }
}

// block_q5_1: f16 d, f16 m, u32 qh, u8 qs[16].  y = q * d + m
void BlockQ5_1(const std::byte* b, float* y) {
  const float d = Half(b), m = Half(b + 2);
  const uint32_t qh = HighBits(b + 4);
  const std::byte* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int lo = (U8(qs + j) & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (U8(qs + j) >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    y[j] = static_cast<float>(lo) * d + m;
    y[j + 16] = static_cast<float>(hi) * d + m;
  }
}

// The 8 (scale, min) pairs of a K-quant super-block, 6 bits each, packed in
// 12 bytes (ggml's get_scale_min_k4): pairs 0-3 in the low 6 bits of bytes
// 0-3 / 4-7; pairs 4-7 take their low 4 bits from bytes 8-11 and their high
// 2 bits from the top of bytes 0-3 / 4-7.
inline void ScaleMinK4(int j, const std::byte* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = U8(q + j) & 63;
    *min = U8(q + j + 4) & 63;
  } else {
    *scale = static_cast<uint8_t>((U8(q + j + 4) & 0x0F) | ((U8(q + j - 4) >> 6) << 4));
    *min = static_cast<uint8_t>((U8(q + j + 4) >> 4) | ((U8(q + j) >> 6) << 4));
  }
}

// block_q4_K: f16 d, f16 dmin, u8 scales[12], u8 qs[128]. Eight groups of 32:
// group 2i uses the low nibbles of qs[32i .. 32i+32), group 2i+1 the high
// ones.  y = (d * scale) * q - (dmin * min)
void BlockQ4_K(const std::byte* b, float* y) {
  const float d = Half(b), dmin = Half(b + 2);
  const std::byte* scales = b + 4;
  const std::byte* qs = b + 16;
  for (int i = 0; i < 4; ++i) {
    uint8_t sc, m;
    ScaleMinK4(2 * i, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    ScaleMinK4(2 * i + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) y[64 * i + l] = d1 * static_cast<float>(U8(qs + l) & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[64 * i + 32 + l] = d2 * static_cast<float>(U8(qs + l) >> 4) - m2;
    qs += 32;
  }
}

// block_q5_K: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]: Q4_K
// plus a 5th bit per element, bit g of qh[l] for element l of group g.
void BlockQ5_K(const std::byte* b, float* y) {
  const float d = Half(b), dmin = Half(b + 2);
  const std::byte* scales = b + 4;
  const std::byte* qh = b + 16;
  const std::byte* qs = b + 48;
  for (int i = 0; i < 4; ++i) {
    uint8_t sc, m;
    ScaleMinK4(2 * i, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    ScaleMinK4(2 * i + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) {
      const int q = (U8(qs + l) & 0x0F) | (((U8(qh + l) >> (2 * i)) & 1) << 4);
      y[64 * i + l] = d1 * static_cast<float>(q) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      const int q = (U8(qs + l) >> 4) | (((U8(qh + l) >> (2 * i + 1)) & 1) << 4);
      y[64 * i + 32 + l] = d2 * static_cast<float>(q) - m2;
    }
    qs += 32;
  }
}

// block_q6_K: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), int8
// scales[16], f16 d. Two halves of 128; in half h, element 32k + l (k < 4)
// takes its low bits from ql[64h + l + 32(k&1)] (nibble k >> 1), its high
// bits from bits 2k..2k+1 of qh[32h + l], and scale scales[8h + 2k + l/16].
//   y = (d * scale) * (q - 32)
void BlockQ6_K(const std::byte* b, float* y) {
  const std::byte* ql = b;
  const std::byte* qh = b + 128;
  const std::byte* sc = b + 192;
  const float d = Half(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int h = U8(qh + l);
      const int q1 = ((U8(ql + l) & 0x0F) | (((h >> 0) & 3) << 4)) - 32;
      const int q2 = ((U8(ql + l + 32) & 0x0F) | (((h >> 2) & 3) << 4)) - 32;
      const int q3 = ((U8(ql + l) >> 4) | (((h >> 4) & 3) << 4)) - 32;
      const int q4 = ((U8(ql + l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32;
      auto scale = [&](int k) { return static_cast<float>(static_cast<int8_t>(U8(sc + is + k))); };
      y[l] = d * scale(0) * static_cast<float>(q1);
      y[l + 32] = d * scale(2) * static_cast<float>(q2);
      y[l + 64] = d * scale(4) * static_cast<float>(q3);
      y[l + 96] = d * scale(6) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

using BlockFn = void (*)(const std::byte*, float*);

BlockFn ScalarBlockFn(DType dtype) {
  switch (dtype) {
    case DType::kQ8_0:
      return BlockQ8_0;
    case DType::kQ4_0:
      return BlockQ4_0;
    case DType::kQ4_1:
      return BlockQ4_1;
    case DType::kQ5_0:
      return BlockQ5_0;
    case DType::kQ5_1:
      return BlockQ5_1;
    case DType::kQ4_K:
      return BlockQ4_K;
    case DType::kQ5_K:
      return BlockQ5_K;
    case DType::kQ6_K:
      return BlockQ6_K;
    default:
      return nullptr;
  }
}

// ---- Vectorised dequantizers (same values as the scalar ones) ----

#if SR_DEQUANT_AVX512

// 16 bytes -> 16 fp32 of their low (shift 0) or high (shift 4) nibbles.
inline __m512 Nibbles16(__m128i bytes, int shift) {
  const __m128i n = _mm_and_si128(_mm_srli_epi16(bytes, shift), _mm_set1_epi8(0x0F));
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(n));
}

void Q8_0Blocks(const std::byte* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 34, y += 32) {
    const __m512 d = _mm512_set1_ps(Half(b));
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d));
  }
}

void Q4_0Blocks(const std::byte* b, int64_t blocks, float* y) {
  const __m512 eight = _mm512_set1_ps(8.0f);
  for (int64_t i = 0; i < blocks; ++i, b += 18, y += 32) {
    const __m512 d = _mm512_set1_ps(Half(b));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    // (q - 8) is exact in fp32, so subtracting after the conversion is the same value.
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_sub_ps(Nibbles16(q, 0), eight), d));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_sub_ps(Nibbles16(q, 4), eight), d));
  }
}

void Q4_1Blocks(const std::byte* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 20, y += 32) {
    const __m512 d = _mm512_set1_ps(Half(b)), m = _mm512_set1_ps(Half(b + 2));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(Nibbles16(q, 0), d), m));
    _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(Nibbles16(q, 4), d), m));
  }
}

// The 5th bits of 16 elements (bits `first`..first+15 of qh) as 16 in {0, 16}.
inline __m512 FifthBits16(uint32_t qh, int first) {
  const __mmask16 bits = static_cast<__mmask16>(qh >> first);
  return _mm512_maskz_mov_ps(bits, _mm512_set1_ps(16.0f));
}

template <bool kHasMin>
void Q5Blocks(const std::byte* b, int64_t blocks, float* y) {
  constexpr int kBytes = kHasMin ? 24 : 22;
  const __m512 sixteen = _mm512_set1_ps(16.0f);
  for (int64_t i = 0; i < blocks; ++i, b += kBytes, y += 32) {
    const __m512 d = _mm512_set1_ps(Half(b));
    const std::byte* rest = b + (kHasMin ? 4 : 2);
    const uint32_t qh = HighBits(rest);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rest + 4));
    // Nibble + {0,16} and the -16 are small integers: exact in fp32.
    __m512 lo = _mm512_add_ps(Nibbles16(q, 0), FifthBits16(qh, 0));
    __m512 hi = _mm512_add_ps(Nibbles16(q, 4), FifthBits16(qh, 16));
    if constexpr (kHasMin) {
      const __m512 m = _mm512_set1_ps(Half(b + 2));
      _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(lo, d), m));
      _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(hi, d), m));
    } else {
      _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_sub_ps(lo, sixteen), d));
      _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_sub_ps(hi, sixteen), d));
    }
  }
}

template <bool kHasHighBit>
void QK_Blocks(const std::byte* b, int64_t blocks, float* y) {
  constexpr int kBytes = kHasHighBit ? 176 : 144;
  for (int64_t n = 0; n < blocks; ++n, b += kBytes, y += 256) {
    const float d = Half(b), dmin = Half(b + 2);
    const std::byte* scales = b + 4;
    const std::byte* qh = b + 16;
    const std::byte* qs = b + (kHasHighBit ? 48 : 16);
    __m128i h0 = _mm_setzero_si128(), h1 = _mm_setzero_si128();
    if constexpr (kHasHighBit) {
      h0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qh));
      h1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + 16));
    }
    for (int g = 0; g < 8; ++g) {  // groups of 32
      uint8_t sc, m;
      ScaleMinK4(g, scales, &sc, &m);
      const __m512 dg = _mm512_set1_ps(d * sc), mg = _mm512_set1_ps(dmin * m);
      const int shift = (g & 1) * 4;
      const std::byte* q = qs + 32 * (g / 2);
      for (int half = 0; half < 2; ++half) {
        __m512 v =
            Nibbles16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * half)), shift);
        if constexpr (kHasHighBit) {
          // Bit g of each qh byte -> 16.
          const __m128i hb = half == 0 ? h0 : h1;
          const __mmask16 bits = _mm_test_epi8_mask(hb, _mm_set1_epi8(static_cast<char>(1 << g)));
          v = _mm512_add_ps(v, _mm512_maskz_mov_ps(bits, _mm512_set1_ps(16.0f)));
        }
        _mm512_storeu_ps(y + 32 * g + 16 * half, _mm512_sub_ps(_mm512_mul_ps(dg, v), mg));
      }
    }
  }
}

void Q6_KBlocks(const std::byte* b, int64_t blocks, float* y) {
  const __m512i low4 = _mm512_set1_epi32(0x0F), low2 = _mm512_set1_epi32(3);
  const __m512i bias = _mm512_set1_epi32(32);
  for (int64_t n = 0; n < blocks; ++n, b += 210, y += 256) {
    const float d = Half(b + 208);
    for (int half = 0; half < 2; ++half) {
      const std::byte* ql = b + 64 * half;
      const std::byte* qh = b + 128 + 32 * half;
      const std::byte* sc = b + 192 + 8 * half;
      float* out = y + 128 * half;
      for (int l0 = 0; l0 < 32; l0 += 16) {  // l0 / 16 selects the scale
        const __m512i h =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + l0)));
        const __m512i a =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ql + l0)));
        const __m512i c =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ql + 32 + l0)));
        const __m512i q[4] = {
            _mm512_or_si512(_mm512_and_si512(a, low4),
                            _mm512_slli_epi32(_mm512_and_si512(h, low2), 4)),
            _mm512_or_si512(_mm512_and_si512(c, low4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h, 2), low2), 4)),
            _mm512_or_si512(_mm512_srli_epi32(a, 4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h, 4), low2), 4)),
            _mm512_or_si512(_mm512_srli_epi32(c, 4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h, 6), low2), 4)),
        };
        for (int k = 0; k < 4; ++k) {
          const float scale = static_cast<float>(static_cast<int8_t>(U8(sc + l0 / 16 + 2 * k)));
          const __m512 dk = _mm512_set1_ps(d * scale);
          const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(q[k], bias));
          _mm512_storeu_ps(out + 32 * k + l0, _mm512_mul_ps(dk, v));
        }
      }
    }
  }
}

#elif SR_DEQUANT_AVX2

// 8 bytes -> 8 fp32 of their low (shift 0) or high (shift 4) nibbles.
inline __m256 Nibbles8(__m128i bytes, int shift) {
  const __m128i n = _mm_and_si128(_mm_srli_epi16(bytes, shift), _mm_set1_epi8(0x0F));
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(n));
}
inline __m128i Load8(const std::byte* p) {
  return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
}

void Q8_0Blocks(const std::byte* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 34, y += 32) {
    const __m256 d = _mm256_set1_ps(Half(b));
    for (int k = 0; k < 4; ++k) {
      const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(Load8(b + 2 + 8 * k)));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(q, d));
    }
  }
}

void Q4_0Blocks(const std::byte* b, int64_t blocks, float* y) {
  const __m256 eight = _mm256_set1_ps(8.0f);
  for (int64_t i = 0; i < blocks; ++i, b += 18, y += 32) {
    const __m256 d = _mm256_set1_ps(Half(b));
    for (int k = 0; k < 2; ++k) {
      const __m128i q = Load8(b + 2 + 8 * k);
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_sub_ps(Nibbles8(q, 0), eight), d));
      _mm256_storeu_ps(y + 16 + 8 * k, _mm256_mul_ps(_mm256_sub_ps(Nibbles8(q, 4), eight), d));
    }
  }
}

void Q4_1Blocks(const std::byte* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 20, y += 32) {
    const __m256 d = _mm256_set1_ps(Half(b)), m = _mm256_set1_ps(Half(b + 2));
    for (int k = 0; k < 2; ++k) {
      const __m128i q = Load8(b + 4 + 8 * k);
      _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(Nibbles8(q, 0), d), m));
      _mm256_storeu_ps(y + 16 + 8 * k, _mm256_add_ps(_mm256_mul_ps(Nibbles8(q, 4), d), m));
    }
  }
}

// 16 * bit (first + i) of qh for i < 8, as fp32.
inline __m256 FifthBits8(uint32_t qh, int first) {
  const __m256i bits = _mm256_set1_epi32(static_cast<int>(qh >> first));
  const __m256i lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(bits, lanes), lanes);
  return _mm256_and_ps(_mm256_castsi256_ps(set), _mm256_set1_ps(16.0f));
}

template <bool kHasMin>
void Q5Blocks(const std::byte* b, int64_t blocks, float* y) {
  constexpr int kBytes = kHasMin ? 24 : 22;
  const __m256 sixteen = _mm256_set1_ps(16.0f);
  for (int64_t i = 0; i < blocks; ++i, b += kBytes, y += 32) {
    const __m256 d = _mm256_set1_ps(Half(b));
    const __m256 m = _mm256_set1_ps(kHasMin ? Half(b + 2) : 0.0f);
    const std::byte* rest = b + (kHasMin ? 4 : 2);
    const uint32_t qh = HighBits(rest);
    for (int k = 0; k < 2; ++k) {
      const __m128i q = Load8(rest + 4 + 8 * k);
      const __m256 lo = _mm256_add_ps(Nibbles8(q, 0), FifthBits8(qh, 8 * k));
      const __m256 hi = _mm256_add_ps(Nibbles8(q, 4), FifthBits8(qh, 16 + 8 * k));
      if constexpr (kHasMin) {
        _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(lo, d), m));
        _mm256_storeu_ps(y + 16 + 8 * k, _mm256_add_ps(_mm256_mul_ps(hi, d), m));
      } else {
        _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_sub_ps(lo, sixteen), d));
        _mm256_storeu_ps(y + 16 + 8 * k, _mm256_mul_ps(_mm256_sub_ps(hi, sixteen), d));
      }
    }
  }
}

template <bool kHasHighBit>
void QK_Blocks(const std::byte* b, int64_t blocks, float* y) {
  constexpr int kBytes = kHasHighBit ? 176 : 144;
  for (int64_t n = 0; n < blocks; ++n, b += kBytes, y += 256) {
    const float d = Half(b), dmin = Half(b + 2);
    const std::byte* scales = b + 4;
    const std::byte* qh = b + 16;
    const std::byte* qs = b + (kHasHighBit ? 48 : 16);
    for (int g = 0; g < 8; ++g) {
      uint8_t sc, m;
      ScaleMinK4(g, scales, &sc, &m);
      const __m256 dg = _mm256_set1_ps(d * sc), mg = _mm256_set1_ps(dmin * m);
      const int shift = (g & 1) * 4;
      const std::byte* q = qs + 32 * (g / 2);
      for (int k = 0; k < 4; ++k) {
        __m256 v = Nibbles8(Load8(q + 8 * k), shift);
        if constexpr (kHasHighBit) {
          const __m256i h = _mm256_cvtepu8_epi32(Load8(qh + 8 * k));
          const __m256i bit = _mm256_set1_epi32(1 << g);
          const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(h, bit), bit);
          v = _mm256_add_ps(v, _mm256_and_ps(_mm256_castsi256_ps(set), _mm256_set1_ps(16.0f)));
        }
        _mm256_storeu_ps(y + 32 * g + 8 * k, _mm256_sub_ps(_mm256_mul_ps(dg, v), mg));
      }
    }
  }
}

void Q6_KBlocks(const std::byte* b, int64_t blocks, float* y) {
  const __m256i low4 = _mm256_set1_epi32(0x0F), low2 = _mm256_set1_epi32(3);
  const __m256i bias = _mm256_set1_epi32(32);
  for (int64_t n = 0; n < blocks; ++n, b += 210, y += 256) {
    const float d = Half(b + 208);
    for (int half = 0; half < 2; ++half) {
      const std::byte* ql = b + 64 * half;
      const std::byte* qh = b + 128 + 32 * half;
      const std::byte* sc = b + 192 + 8 * half;
      float* out = y + 128 * half;
      for (int l0 = 0; l0 < 32; l0 += 8) {
        const __m256i h = _mm256_cvtepu8_epi32(Load8(qh + l0));
        const __m256i a = _mm256_cvtepu8_epi32(Load8(ql + l0));
        const __m256i c = _mm256_cvtepu8_epi32(Load8(ql + 32 + l0));
        const __m256i q[4] = {
            _mm256_or_si256(_mm256_and_si256(a, low4),
                            _mm256_slli_epi32(_mm256_and_si256(h, low2), 4)),
            _mm256_or_si256(_mm256_and_si256(c, low4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), low2), 4)),
            _mm256_or_si256(_mm256_srli_epi32(a, 4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), low2), 4)),
            _mm256_or_si256(_mm256_srli_epi32(c, 4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 6), low2), 4)),
        };
        for (int k = 0; k < 4; ++k) {
          const float scale = static_cast<float>(static_cast<int8_t>(U8(sc + l0 / 16 + 2 * k)));
          const __m256 dk = _mm256_set1_ps(d * scale);
          const __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], bias));
          _mm256_storeu_ps(out + 32 * k + l0, _mm256_mul_ps(dk, v));
        }
      }
    }
  }
}

#endif

using BlocksFn = void (*)(const std::byte*, int64_t, float*);

BlocksFn VectorBlocksFn(DType dtype) {
#if SR_DEQUANT_AVX512 || SR_DEQUANT_AVX2
  switch (dtype) {
    case DType::kQ8_0:
      return Q8_0Blocks;
    case DType::kQ4_0:
      return Q4_0Blocks;
    case DType::kQ4_1:
      return Q4_1Blocks;
    case DType::kQ5_0:
      return Q5Blocks<false>;
    case DType::kQ5_1:
      return Q5Blocks<true>;
    case DType::kQ4_K:
      return QK_Blocks<false>;
    case DType::kQ5_K:
      return QK_Blocks<true>;
    case DType::kQ6_K:
      return Q6_KBlocks;
    default:
      break;
  }
#endif
  (void)dtype;
  return nullptr;
}

}  // namespace

bool CanDequantize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kBF16:
    case DType::kF16:
      return true;
    default:
      return ScalarBlockFn(dtype) != nullptr;
  }
}

std::string_view DequantizePath() {
#if SR_DEQUANT_AVX512
  return "avx512";
#elif SR_DEQUANT_AVX2
  return "avx2";
#else
  return "scalar";
#endif
}

void DequantizeToF32Scalar(DType dtype, const std::byte* src, int64_t count, float* dst) {
  const BlockFn block = ScalarBlockFn(dtype);
  if (block == nullptr) {
    DequantizeToF32(dtype, src, count, dst);  // plain types have one path
    return;
  }
  const DTypeBlock layout = BlockOf(dtype);
  SR_CHECK(count % layout.elements == 0);
  for (int64_t i = 0; i < count / layout.elements; ++i) {
    block(src + i * layout.bytes, dst + i * layout.elements);
  }
}

void DequantizeToF32(DType dtype, const std::byte* src, int64_t count, float* dst) {
  const auto n = static_cast<size_t>(count);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      WidenBf16(reinterpret_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::kF16:
      WidenF16(reinterpret_cast<const uint16_t*>(src), dst, n);
      return;
    default:
      break;
  }
  SR_CHECK(CanDequantize(dtype));  // callers check CanDequantize first
  const DTypeBlock layout = BlockOf(dtype);
  SR_CHECK(count % layout.elements == 0);
  if (const BlocksFn vector = VectorBlocksFn(dtype)) {
    vector(src, count / layout.elements, dst);
    return;
  }
  DequantizeToF32Scalar(dtype, src, count, dst);
}

}  // namespace saferoute::cpu
