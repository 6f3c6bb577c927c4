#include "cpu/q8_gemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "cpu/convert.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge
// source, which -Wmaybe-uninitialized reports after inlining (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// Each kernel carries its instruction set as a function attribute: the file
// builds without -march, and a kernel runs only where CpuRunsQ8Isa says so.
// F16C (the f16 weight scales) came with AVX2 on every CPU; it is checked too.
#define SR_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SR_TARGET_AVX_VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#define SR_TARGET_AVX512_VNNI \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

namespace saferoute::cpu {
namespace {

constexpr int64_t kTile = Q8Weights::kTile;
constexpr int kGroups = kQ8Block / 4;  // groups of 4 k per block (one VNNI step each)

// ---- quantization of one block of 32 ------------------------------------

// Calls fn(block, b) for every block b of the row x [k]: 32 floats, the last
// one zero-padded.
template <typename Fn>
void ForEachPaddedBlock(const float* x, int64_t k, Fn fn) {
  const int64_t full = k / kQ8Block;
  for (int64_t b = 0; b < full; ++b) fn(x + b * kQ8Block, b);
  if (k % kQ8Block != 0) {
    float padded[kQ8Block] = {};
    std::copy(x + full * kQ8Block, x + k, padded);
    fn(padded, full);
  }
}

void QuantizeBlockScalar(const float* x, bool as_u8, int8_t* q, float* scale) {
  float amax = 0.0f;
  for (int i = 0; i < kQ8Block; ++i) amax = std::max(amax, std::fabs(x[i]));
  const uint8_t flip = as_u8 ? 0x80 : 0;
  if (!(amax > 0.0f)) {
    std::memset(q, flip, kQ8Block);
    *scale = 0.0f;
    return;
  }
  *scale = amax / 127.0f;
  const float inv = 127.0f / amax;
  for (int i = 0; i < kQ8Block; ++i) {
    const float r = std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f);
    q[i] = static_cast<int8_t>(static_cast<uint8_t>(static_cast<int8_t>(r)) ^ flip);
  }
}

// Narrows the s32 quants of a block (4 x 8, each in [-127, 127]) to bytes,
// in order, XOR 0x80 when `as_u8`.
SR_TARGET_AVX2 void StoreBlockAvx2(const __m256i i32[4], bool as_u8, int8_t* q) {
  // packs interleaves the 128-bit lanes: dwords come out as
  // (0a 1a 2a 3a | 0b 1b 2b 3b) for 8-element halves a, b of each vector.
  const __m256i bytes =
      _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
  __m256i ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  if (as_u8) ordered = _mm256_xor_si256(ordered, _mm256_set1_epi8(static_cast<char>(0x80)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
}

SR_TARGET_AVX2 void QuantizeBlockAvx2(const float* x, bool as_u8, int8_t* q, float* scale) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 v[4];
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    m = _mm256_max_ps(m, _mm256_and_ps(v[i], abs_mask));
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  const float amax = _mm_cvtss_f32(h);
  if (!(amax > 0.0f)) {
    std::memset(q, as_u8 ? 0x80 : 0, kQ8Block);
    *scale = 0.0f;
    return;
  }
  *scale = amax / 127.0f;
  const __m256 inv = _mm256_set1_ps(127.0f / amax);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  __m256i i32[4];
  for (int i = 0; i < 4; ++i) {
    // cvtps rounds to nearest even (the default mode), as nearbyint does.
    i32[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], inv), lo), hi));
  }
  StoreBlockAvx2(i32, as_u8, q);
}

// 16-bit activations (Q8Activations::kInt16): q = round_half_even(x * 16383
// / amax) in [-16383, 16383], split q = 128 h + l, h = q >> 7 in [-128, 127]
// (XOR 0x80 when `as_u8`), l = q & 127 in [0, 127].
void QuantizeBlockWideScalar(const float* x, bool as_u8, int8_t* high, uint8_t* low, float* scale) {
  float amax = 0.0f;
  for (int i = 0; i < kQ8Block; ++i) amax = std::max(amax, std::fabs(x[i]));
  const uint8_t flip = as_u8 ? 0x80 : 0;
  if (!(amax > 0.0f)) {
    std::memset(high, flip, kQ8Block);
    std::memset(low, 0, kQ8Block);
    *scale = 0.0f;
    return;
  }
  *scale = amax / kQ16Max;
  const float inv = kQ16Max / amax;
  for (int i = 0; i < kQ8Block; ++i) {
    const float r =
        std::clamp(std::nearbyint(x[i] * inv), -static_cast<float>(kQ16Max), kQ16Max * 1.0f);
    // A non-finite activation (an overflowed layer; inf * 0 where amax is
    // inf) has no quant: 0, not an undefined float-to-int conversion.
    const int32_t q = r == r ? static_cast<int32_t>(r) : 0;
    high[i] = static_cast<int8_t>(static_cast<uint8_t>(q >> 7) ^ flip);  // arithmetic shift
    low[i] = static_cast<uint8_t>(q & 127);
  }
}

// ---- weight blocks: quantized with their stored (f16) scale ----------------

// max |x[i]| of x [n], or +inf where an element is not finite (NaN too).
float AbsMaxScalar(const float* x, int64_t n) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (!(a <= FLT_MAX)) return INFINITY;
    amax = std::max(amax, a);
  }
  return amax;
}

SR_TARGET_AVX2 float AbsMaxAvx2(const float* x, int64_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 finite_max = _mm256_set1_ps(FLT_MAX);
  __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    m = _mm256_max_ps(m, a);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, finite_max, _CMP_NLE_UQ));  // inf or NaN
  }
  if (_mm256_movemask_ps(bad) != 0) return INFINITY;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  return std::max(*std::max_element(lanes, lanes + 8), AbsMaxScalar(x + i, n - i));
}

// q = round_half_even(x / d) in [-127, 127] for a block of 32 (d > 0).
void QuantizeWeightBlockScalar(const float* x, float d, int8_t* q) {
  for (int i = 0; i < kQ8Block; ++i) {
    q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / d), -127.0f, 127.0f));
  }
}

SR_TARGET_AVX2 void QuantizeWeightBlockAvx2(const float* x, float d, int8_t* q) {
  const __m256 dv = _mm256_set1_ps(d);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  __m256i i32[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 r = _mm256_div_ps(_mm256_loadu_ps(x + 8 * i), dv);
    i32[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
  }
  StoreBlockAvx2(i32, /*as_u8=*/false, q);
}

// The IEEE f16 bits of the smallest f16 value >= `value`, a float in
// [0, 2^15] (the weight scales' range that Q8Weights::Pack's exponent makes).
uint16_t RoundUpToF16(float value) {
  // Under f16's normal range: subnormal multiples of 2^-24 (1024 of them is
  // the smallest normal, whose bits are 0x0400: the same integer).
  if (value < 0x1p-14f) return static_cast<uint16_t>(std::ceil(value * 0x1p24f));
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  bits += 0x1fffu;  // any of the 13 dropped bits carries up; a carry may bump the exponent
  return static_cast<uint16_t>((bits >> 13) - ((127u - 15u) << 10));  // rebias 127 -> 15
}

// Stored bits of a (non-negative) scale s of a matrix with exponent e.
uint16_t ScaleBits(float s, float two_to_e) {
  return s > 0.0f ? RoundUpToF16(s * two_to_e) : uint16_t{0};
}

}  // namespace

// Each block's stored scale is amax / 127 * 2^e rounded up to f16, and its
// quants are x / (that, decoded, times 2^-e).
void QuantizeWeightRowQ8(const float* x, int64_t k, int exponent, int8_t* q, uint16_t* bits) {
  static const bool avx2 = CpuRunsQ8Isa(Q8Isa::kAvx2);
  const auto abs_max = avx2 ? &AbsMaxAvx2 : &AbsMaxScalar;
  const auto quantize = avx2 ? &QuantizeWeightBlockAvx2 : &QuantizeWeightBlockScalar;
  const float two_to_e = std::ldexp(1.0f, exponent), two_to_minus_e = std::ldexp(1.0f, -exponent);
  ForEachPaddedBlock(x, k, [&](const float* block, int64_t b) {
    bits[b] = ScaleBits(abs_max(block, kQ8Block) / 127.0f, two_to_e);
    const float d = F16ToF32(bits[b]) * two_to_minus_e;
    if (d > 0.0f) {
      quantize(block, d, q + b * kQ8Block);
    } else {  // an all-zero block
      std::memset(q + b * kQ8Block, 0, kQ8Block);
    }
  });
}

// At most 126, so that 2^-e is a normal float (scales under 2^-112 lose bits).
int Q8WeightExponent(float max_scale) {
  return max_scale > 0.0f ? std::min(126, 14 - std::ilogb(max_scale)) : 0;
}

namespace {

// ---- micro-kernels ----------------------------------------------------------

// zmm: up to 5 rows x 3 tiles: 15 s32 chains (enough to hide vpdpbusd's
// latency at two per cycle) and 15 f32 sums, of 32 registers (a few f32 sums
// spill in the per-block epilogue). Measured on Zen 5, one thread, M=300, the
// 1B shape's projections, alternating: 4x2 580-660 GFLOP/s, 6x2 550-600,
// 5x3 600-675 (oneDNN's u8s8 matmul ~1000). ymm: up to 2 rows x 1 tile (4 +
// 4 of 16 registers).
constexpr int kMr512 = 5, kNr512 = 3, kMr256 = 2;
// 16-bit activations take a second s32 chain per output (the low bytes):
// 2 rows x 3 tiles (12 + 12 chains, 6 sums) and 1 row on ymm.
constexpr int kMr512Wide = 2, kMr256Wide = 1;
// Blocks per K chunk: the unit's weights (kNr512 * 512 B per block: 12 KiB)
// stay in L1 while every row passes (16 or 4 blocks measured slower).
constexpr int64_t kChunkBlocks = 8;

// A chunk's weight scales, decoded once for every row block that passes:
// [tile j of the unit][block b - b0][16], times 2^-e.
using ChunkScales = std::array<float, kNr512 * kChunkBlocks * Q8Weights::kTile>;

SR_TARGET_AVX2 void DecodeChunkScales(const Q8Weights& w, int64_t t0, int nr, int64_t b0,
                                      int64_t b1, ChunkScales& out) {
  const __m256 scale_exp2 = _mm256_set1_ps(w.scale_exp2());
  for (int j = 0; j < nr; ++j) {
    for (int64_t b = b0; b < b1; ++b) {
      const uint16_t* bits = w.scales(t0 + j, b);
      float* dst = out.data() + (j * kChunkBlocks + (b - b0)) * kTile;
      for (int h = 0; h < 2; ++h) {
        const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bits + 8 * h));
        _mm256_storeu_ps(dst + 8 * h, _mm256_mul_ps(_mm256_cvtph_ps(half), scale_exp2));
      }
    }
  }
}

struct TileArgs {
  const int8_t* xq;   // [m, kb * 32]: the quants, or with 16-bit activations their high bytes
  const uint8_t* xl;  // [m, kb * 32]: 16-bit activations' low bytes (nullptr for 8-bit)
  const float* xs;    // [m, kb]
  int64_t kb;
  const Q8Weights* w;
  float* y;
  int64_t ldy;
  bool accumulate;
};

inline int32_t Load4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Rows m0 .. m0+MR, tiles t0 .. t0+NR, 16 columns per zmm, blocks b0 .. b1:
// y is set (b0 == 0 without accumulate) or added to. kWide: 16-bit
// activations, whose block sum is 128 (high bytes . w) + (low bytes . w).
template <int MR, int NR, bool kWide>
SR_TARGET_AVX512_VNNI void TileAvx512Vnni(const TileArgs& a, const ChunkScales& scales, int64_t m0,
                                          int64_t t0, int64_t b0, int64_t b1) {
  const int64_t ldq = a.kb * kQ8Block;
  const bool add = b0 > 0 || a.accumulate;
  __mmask16 mask[NR];
  for (int j = 0; j < NR; ++j) {
    const int64_t valid = std::min<int64_t>(kTile, a.w->rows() - (t0 + j) * kTile);
    mask[j] = static_cast<__mmask16>((1u << valid) - 1);
  }
  __m512 out[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      out[i][j] = add ? _mm512_maskz_loadu_ps(mask[j], a.y + (m0 + i) * a.ldy + (t0 + j) * kTile)
                      : _mm512_setzero_ps();
    }
  }
  for (int64_t b = b0; b < b1; ++b) {
    __m512i acc[MR][NR];
    __m512i acc_low[kWide ? MR : 1][kWide ? NR : 1];
    const int8_t* wq[NR];
    for (int j = 0; j < NR; ++j) {
      // -128 * block sum: the s32 sum of the u8 activations (q + 128) starts there.
      const __m512i offset = _mm512_slli_epi32(
          _mm512_cvtepi16_epi32(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.w->neg_sums(t0 + j, b)))),
          7);
      for (int i = 0; i < MR; ++i) {
        acc[i][j] = offset;
        if constexpr (kWide) acc_low[i][j] = _mm512_setzero_si512();
      }
      wq[j] = a.w->quants(t0 + j, b);
    }
    const int8_t* x = a.xq + m0 * ldq + b * kQ8Block;
    const uint8_t* xl = kWide ? a.xl + m0 * ldq + b * kQ8Block : nullptr;
#pragma GCC unroll 8
    for (int g = 0; g < kGroups; ++g) {
      __m512i wv[NR];
      for (int j = 0; j < NR; ++j) {
        wv[j] = _mm512_loadu_si512(wq[j] + g * 64);
        // Keeps the weights in registers: folded into each vpdpbusd as a
        // memory operand they would be loaded MR times, and loads, not
        // multiplies, would bound the kernel (2 x 512-bit loads per cycle).
        __asm__("" : "+v"(wv[j]));
      }
      for (int i = 0; i < MR; ++i) {
        const __m512i xv = _mm512_set1_epi32(Load4(x + i * ldq + g * 4));
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], xv, wv[j]);
        if constexpr (kWide) {
          const __m512i lv = _mm512_set1_epi32(Load4(xl + i * ldq + g * 4));
          for (int j = 0; j < NR; ++j) {
            acc_low[i][j] = _mm512_dpbusd_epi32(acc_low[i][j], lv, wv[j]);
          }
        }
      }
    }
    if constexpr (kWide) {
      for (int i = 0; i < MR; ++i) {
        for (int j = 0; j < NR; ++j) {
          acc[i][j] = _mm512_add_epi32(_mm512_slli_epi32(acc[i][j], 7), acc_low[i][j]);
        }
      }
    }
    __m512 sw[NR];
    for (int j = 0; j < NR; ++j) {
      sw[j] = _mm512_loadu_ps(scales.data() + (j * kChunkBlocks + (b - b0)) * kTile);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 sx = _mm512_set1_ps(a.xs[(m0 + i) * a.kb + b]);
      for (int j = 0; j < NR; ++j) {
        out[i][j] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][j]), _mm512_mul_ps(sw[j], sx), out[i][j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      _mm512_mask_storeu_ps(a.y + (m0 + i) * a.ldy + (t0 + j) * kTile, mask[j], out[i][j]);
    }
  }
}

// The s32 sums of one group for both halves: VNNI (u8 activations) or the
// AVX2 sign trick (s8 activations). Dot(acc, x, w) adds x . w per lane.
struct DotAvxVnni {
  static SR_TARGET_AVX_VNNI __m256i Dot(__m256i acc, __m256i x, __m256i w) {
    return _mm256_dpbusd_avx_epi32(acc, x, w);
  }
  // 16-bit activations' low bytes: u8 already, as Dot takes them.
  static SR_TARGET_AVX_VNNI __m256i DotLow(__m256i acc, __m256i x, __m256i w) {
    return Dot(acc, x, w);
  }
  static SR_TARGET_AVX_VNNI __m256i Init(const int16_t* neg_sums) {  // -128 * sums
    return _mm256_slli_epi32(
        _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(neg_sums))), 7);
  }
};
struct DotAvx2 {
  static SR_TARGET_AVX2 __m256i Dot(__m256i acc, __m256i x, __m256i w) {
    // |x| * (sign(x) w): u8 x s8 pairs of at most 2 * 127 * 127, no saturation.
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(w, x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  // Low bytes are u8 of at most 127: pairs of at most 2 * 127 * 127 as they are.
  static SR_TARGET_AVX2 __m256i DotLow(__m256i acc, __m256i x, __m256i w) {
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), _mm256_set1_epi16(1)));
  }
  static SR_TARGET_AVX2 __m256i Init(const int16_t*) { return _mm256_setzero_si256(); }
};

// ymm kernels: one tile (two 8-column halves) of rows m0 .. m0+MR, blocks
// b0 .. b1; y's rows go through a 16-float staging row (the tile may hang
// over column N). kWide: 16-bit activations, as in TileAvx512Vnni.
#define SR_YMM_TILE_KERNEL(Name, Target, Ops)                                                      \
  template <int MR, bool kWide>                                                                    \
  Target void Name(const TileArgs& a, const ChunkScales& scales, int64_t m0, int64_t t,            \
                   int64_t b0, int64_t b1) {                                                       \
    const int64_t ldq = a.kb * kQ8Block;                                                           \
    const int64_t n0 = t * kTile;                                                                  \
    const int64_t valid = std::min<int64_t>(kTile, a.w->rows() - n0);                              \
    const bool add = b0 > 0 || a.accumulate;                                                       \
    alignas(32) float row[kTile] = {};                                                             \
    __m256 out[MR][2];                                                                             \
    for (int i = 0; i < MR; ++i) {                                                                 \
      if (add) std::copy_n(a.y + (m0 + i) * a.ldy + n0, valid, row);                               \
      out[i][0] = _mm256_load_ps(row);                                                             \
      out[i][1] = _mm256_load_ps(row + 8);                                                         \
    }                                                                                              \
    for (int64_t b = b0; b < b1; ++b) {                                                            \
      __m256i acc[MR][2], acc_low[kWide ? MR : 1][2];                                              \
      const int16_t* neg_sums = a.w->neg_sums(t, b);                                               \
      for (int i = 0; i < MR; ++i) {                                                               \
        acc[i][0] = Ops::Init(neg_sums);                                                           \
        acc[i][1] = Ops::Init(neg_sums + 8);                                                       \
        if constexpr (kWide) acc_low[i][0] = acc_low[i][1] = _mm256_setzero_si256();               \
      }                                                                                            \
      const int8_t* wq = a.w->quants(t, b);                                                        \
      const int8_t* x = a.xq + m0 * ldq + b * kQ8Block;                                            \
      const uint8_t* xl = kWide ? a.xl + m0 * ldq + b * kQ8Block : nullptr;                        \
      _Pragma("GCC unroll 8") for (int g = 0; g < kGroups; ++g) {                                  \
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64));      \
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64 + 32)); \
        for (int i = 0; i < MR; ++i) {                                                             \
          const __m256i xv = _mm256_set1_epi32(Load4(x + i * ldq + g * 4));                        \
          acc[i][0] = Ops::Dot(acc[i][0], xv, w0);                                                 \
          acc[i][1] = Ops::Dot(acc[i][1], xv, w1);                                                 \
          if constexpr (kWide) {                                                                   \
            const __m256i lv = _mm256_set1_epi32(Load4(xl + i * ldq + g * 4));                     \
            acc_low[i][0] = Ops::DotLow(acc_low[i][0], lv, w0);                                    \
            acc_low[i][1] = Ops::DotLow(acc_low[i][1], lv, w1);                                    \
          }                                                                                        \
        }                                                                                          \
      }                                                                                            \
      if constexpr (kWide) {                                                                       \
        for (int i = 0; i < MR; ++i) {                                                             \
          for (int h = 0; h < 2; ++h) {                                                            \
            acc[i][h] = _mm256_add_epi32(_mm256_slli_epi32(acc[i][h], 7), acc_low[i][h]);          \
          }                                                                                        \
        }                                                                                          \
      }                                                                                            \
      const float* scale = scales.data() + (b - b0) * kTile;                                       \
      const __m256 sw0 = _mm256_loadu_ps(scale), sw1 = _mm256_loadu_ps(scale + 8);                 \
      for (int i = 0; i < MR; ++i) {                                                               \
        const __m256 sx = _mm256_set1_ps(a.xs[(m0 + i) * a.kb + b]);                               \
        out[i][0] =                                                                                \
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][0]), _mm256_mul_ps(sw0, sx), out[i][0]);     \
        out[i][1] =                                                                                \
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][1]), _mm256_mul_ps(sw1, sx), out[i][1]);     \
      }                                                                                            \
    }                                                                                              \
    for (int i = 0; i < MR; ++i) {                                                                 \
      _mm256_store_ps(row, out[i][0]);                                                             \
      _mm256_store_ps(row + 8, out[i][1]);                                                         \
      std::copy_n(row, valid, a.y + (m0 + i) * a.ldy + n0);                                        \
    }                                                                                              \
  }

SR_YMM_TILE_KERNEL(TileAvxVnni, SR_TARGET_AVX_VNNI, DotAvxVnni)
SR_YMM_TILE_KERNEL(TileAvx2, SR_TARGET_AVX2, DotAvx2)
#undef SR_YMM_TILE_KERNEL

using TileFn = void (*)(const TileArgs&, const ChunkScales&, int64_t, int64_t, int64_t, int64_t);

template <int NR, bool kWide, size_t... I>
constexpr std::array<TileFn, kMr512> Avx512Rows(std::index_sequence<I...>) {
  return {&TileAvx512Vnni<static_cast<int>(I) + 1, NR, kWide>...};  // the rest stay null
}
template <bool kWide, int kMr, size_t... J>
constexpr std::array<std::array<TileFn, kMr512>, sizeof...(J)> Avx512Table(
    std::index_sequence<J...>) {
  return {Avx512Rows<static_cast<int>(J) + 1, kWide>(std::make_index_sequence<kMr>())...};
}
// [nr - 1][mr - 1]
constexpr auto kAvx512Tiles = Avx512Table<false, kMr512>(std::make_index_sequence<kNr512>());
constexpr auto kAvx512WideTiles = Avx512Table<true, kMr512Wide>(std::make_index_sequence<kNr512>());
constexpr TileFn kAvxVnniTiles[kMr256] = {&TileAvxVnni<1, false>, &TileAvxVnni<2, false>};
constexpr TileFn kAvx2Tiles[kMr256] = {&TileAvx2<1, false>, &TileAvx2<2, false>};
constexpr TileFn kAvxVnniWideTiles[kMr256Wide] = {&TileAvxVnni<1, true>};
constexpr TileFn kAvx2WideTiles[kMr256Wide] = {&TileAvx2<1, true>};

}  // namespace

const char* Q8IsaName(Q8Isa isa) {
  switch (isa) {
    case Q8Isa::kNone:
      return "none";
    case Q8Isa::kAvx2:
      return "avx2";
    case Q8Isa::kAvxVnni:
      return "avx_vnni";
    case Q8Isa::kAvx512Vnni:
      return "avx512_vnni";
  }
  return "?";
}

namespace {

// AVX-VNNI: CPUID leaf 7, sub-leaf 1, EAX bit 4. Read directly: clang 14's
// __builtin_cpu_supports has no "avxvnni" (the fuzz build's compiler). The
// OS's YMM state support is what the caller's avx2 check already covers.
bool CpuHasAvxVnni() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return (eax & (1u << 4)) != 0;
}

// F16C: CPUID leaf 1, ECX bit 29 (read directly, as AVX-VNNI is).
bool CpuHasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx & bit_F16C) != 0;
}

}  // namespace

bool CpuRunsQ8Isa(Q8Isa isa) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuHasF16c();
  switch (isa) {
    case Q8Isa::kNone:
      return true;
    case Q8Isa::kAvx2:
      return avx2;
    case Q8Isa::kAvxVnni:
      return avx2 && CpuHasAvxVnni();
    case Q8Isa::kAvx512Vnni:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

Q8Isa BestQ8Isa(std::string_view onednn_isa) {
  // oneDNN's names: avx2, avx2_vnni, avx512_core, avx512_core_vnni,
  // avx512_core_bf16, avx512_core_amx (each includes the ones before, except
  // that avx512_core has no VNNI: the AVX2 kernel is what it gets).
  const bool has_avx512_vnni = onednn_isa == "avx512_core_vnni" ||
                               onednn_isa == "avx512_core_bf16" || onednn_isa == "avx512_core_amx";
  const bool has_avx2 = onednn_isa.starts_with("avx2") || onednn_isa.starts_with("avx512_core");
  if (has_avx512_vnni && CpuRunsQ8Isa(Q8Isa::kAvx512Vnni)) return Q8Isa::kAvx512Vnni;
  if ((has_avx512_vnni || onednn_isa == "avx2_vnni") && CpuRunsQ8Isa(Q8Isa::kAvxVnni)) {
    return Q8Isa::kAvxVnni;
  }
  if (has_avx2 && CpuRunsQ8Isa(Q8Isa::kAvx2)) return Q8Isa::kAvx2;
  return Q8Isa::kNone;
}

void QuantizeRowQ8(const float* x, int64_t k, bool as_u8, int8_t* q, float* scale) {
  static const bool avx2 = CpuRunsQ8Isa(Q8Isa::kAvx2);
  const auto quantize = avx2 ? &QuantizeBlockAvx2 : &QuantizeBlockScalar;
  ForEachPaddedBlock(x, k, [&](const float* block, int64_t b) {
    quantize(block, as_u8, q + b * kQ8Block, scale + b);
  });
}

void QuantizeRowQ16(const float* x, int64_t k, bool as_u8, int8_t* high, uint8_t* low,
                    float* scale) {
  ForEachPaddedBlock(x, k, [&](const float* block, int64_t b) {
    QuantizeBlockWideScalar(block, as_u8, high + b * kQ8Block, low + b * kQ8Block, scale + b);
  });
}

// ---- weights ----------------------------------------------------------------

int8_t Q8Weights::quant(int64_t n, int64_t k) const {
  const int64_t i = k % kQ8Block;
  return quants(n / kTile, k / kQ8Block)[(i / 4) * 64 + (n % kTile) * 4 + i % 4];
}

float Q8Weights::scale(int64_t n, int64_t b) const {
  return F16ToF32(scale_bits(n, b)) * scale_exp2_;
}

void Q8Weights::SetColumn(int64_t n, const int8_t* q, const uint16_t* scale_bits) {
  const int64_t t = n / kTile, lane = n % kTile;
  for (int64_t b = 0; b < kb_; ++b) {
    int8_t* dst = quants_.data() + (t * kb_ + b) * kTileBlockBytes;
    int32_t sum = 0;
    for (int i = 0; i < kQ8Block; ++i) {
      const int8_t v = q[b * kQ8Block + i];
      dst[(i / 4) * 64 + lane * 4 + i % 4] = v;
      sum += v;
    }
    scales_[(t * kb_ + b) * kTile + lane] = scale_bits[b];
    neg_sums_[(t * kb_ + b) * kTile + lane] = static_cast<int16_t>(-sum);
  }
}

namespace {

constexpr int64_t kQ8_0BlockBytes = 2 + kQ8Block;  // block_q8_0: f16 d, int8 qs[32]

uint16_t Q8_0ScaleBits(const std::byte* row, int64_t b) {
  uint16_t bits;
  std::memcpy(&bits, row + b * kQ8_0BlockBytes, sizeof(bits));
  return bits;
}

bool HasFloatBits(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
}

// The largest bits of row[0..n) & mask.
template <typename Bits>
Bits MaxMaskedBits(const std::byte* row, int64_t n, Bits mask) {
  Bits m = 0;
  for (int64_t i = 0; i < n; ++i) {
    Bits v;
    std::memcpy(&v, row + i * static_cast<int64_t>(sizeof(Bits)), sizeof(Bits));  // unaligned
    m = std::max<Bits>(m, v & mask);
  }
  return m;
}

// max |x| over row r of an f32 / bf16 / f16 part, straight from its bits: with
// the sign cleared they order as the magnitudes do, and inf / NaN (exponent
// all ones) above every finite value; +inf where one is there.
float FloatRowAbsMax(const WeightMatrix& w, int64_t r) {
  if (w.dtype == DType::kF32) {
    const uint32_t bits = MaxMaskedBits<uint32_t>(w.row(r), w.cols, 0x7fffffffu);
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return bits < 0x7f800000u ? value : INFINITY;
  }
  const uint16_t bits = MaxMaskedBits<uint16_t>(w.row(r), w.cols, 0x7fffu);
  if (w.dtype == DType::kBF16) return bits < 0x7f80u ? Bf16ToF32(bits) : INFINITY;
  return bits < 0x7c00u ? F16ToF32(bits) : INFINITY;
}

// The largest |block scale| of part `w` (Q8_0: its f16 d; other dtypes:
// max |x| / 127 of the dequantized rows), or the error that names the first
// row (and block) holding a non-finite weight or scale.
absl::StatusOr<float> MaxBlockScale(const WeightMatrix& w, const std::string& name, size_t part) {
  const int64_t kb = Q8Blocks(w.cols);
  int64_t bad_row = std::numeric_limits<int64_t>::max(), bad_block = 0;
  float max_scale = 0.0f;
  if (w.dtype == DType::kQ8_0) {
#pragma omp parallel for schedule(static) reduction(max : max_scale)
    for (int64_t r = 0; r < w.rows; ++r) {
      const std::byte* row = w.row(r);
      for (int64_t b = 0; b < kb; ++b) {
        const uint16_t magnitude = Q8_0ScaleBits(row, b) & 0x7fffu;
        if (magnitude >= 0x7c00u) {  // exponent 31: inf or NaN
#pragma omp critical
          if (r < bad_row) bad_row = r, bad_block = b;
          break;
        }
        max_scale = std::max(max_scale, F16ToF32(magnitude));
      }
    }
    if (bad_row != std::numeric_limits<int64_t>::max()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: part %d (Q8_0) row %d block %d: the f16 scale 0x%04x is not finite", name, part,
          bad_row, bad_block, Q8_0ScaleBits(w.row(bad_row), bad_block)));
    }
    return max_scale;
  }
  static const auto abs_max = CpuRunsQ8Isa(Q8Isa::kAvx2) ? &AbsMaxAvx2 : &AbsMaxScalar;
  // Float dtypes are read as stored (no widening); the others a few
  // dequantized rows at a time.
  const bool float_bits = HasFloatBits(w.dtype);
  const int64_t rows_per_step = float_bits ? 1 : 16;  // f32 rows stay in cache
  const int64_t steps = (w.rows + rows_per_step - 1) / rows_per_step;
  float amax = 0.0f;
#pragma omp parallel reduction(max : amax)
  {
    std::vector<float> rows_f32(static_cast<size_t>(float_bits ? 0 : rows_per_step * w.cols));
#pragma omp for schedule(static)
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t r0 = s * rows_per_step, count = std::min(rows_per_step, w.rows - r0);
      if (!float_bits) DequantizeRows(w, r0, count, rows_f32.data());
      for (int64_t r = 0; r < count; ++r) {
        const float row_max =
            float_bits ? FloatRowAbsMax(w, r0 + r) : abs_max(rows_f32.data() + r * w.cols, w.cols);
        if (!(row_max <= FLT_MAX)) {
#pragma omp critical
          bad_row = std::min(bad_row, r0 + r);
        }
        amax = std::max(amax, row_max);
      }
    }
  }
  if (bad_row != std::numeric_limits<int64_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: part %d (%s) row %d holds a weight that is not finite", name, part,
                        DTypeName(w.dtype), bad_row));
  }
  return amax / 127.0f;
}

}  // namespace

void Q8Weights::PackQ8_0Part(const WeightMatrix& w, int64_t row0, int exponent) {
  // Used as stored (-128 read as -127); the scales keep their bits at e = 0,
  // are shifted by 2^e otherwise (exact down to f16's normal range, rounded
  // up below it).
  const float two_to_e = std::ldexp(1.0f, exponent);
#pragma omp parallel
  {
    std::vector<int8_t> q(static_cast<size_t>(kb_ * kQ8Block));
    std::vector<uint16_t> bits(static_cast<size_t>(kb_));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < w.rows; ++r) {
      const std::byte* row = w.row(r);
      for (int64_t b = 0; b < kb_; ++b) {
        const uint16_t d = Q8_0ScaleBits(row, b);
        bits[b] =
            exponent == 0
                ? d
                : static_cast<uint16_t>((d & 0x8000u) | ScaleBits(F16ToF32(d & 0x7fffu), two_to_e));
        const std::byte* qs = row + b * kQ8_0BlockBytes + 2;
        for (int i = 0; i < kQ8Block; ++i) {
          q[b * kQ8Block + i] = std::max<int8_t>(-127, static_cast<int8_t>(qs[i]));
        }
      }
      SetColumn(row0 + r, q.data(), bits.data());
    }
  }
}

void Q8Weights::PackConvertedPart(const WeightMatrix& w, int64_t row0, int exponent) {
  constexpr int64_t kRowsPerStep = 16;  // f32 rows read at once (stay in cache)
  const int64_t steps = (w.rows + kRowsPerStep - 1) / kRowsPerStep;
#pragma omp parallel
  {
    std::vector<float> rows_f32(static_cast<size_t>(kRowsPerStep * k_));
    std::vector<int8_t> q(static_cast<size_t>(kb_ * kQ8Block));
    std::vector<uint16_t> bits(static_cast<size_t>(kb_));
#pragma omp for schedule(static)
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t r0 = s * kRowsPerStep, count = std::min(kRowsPerStep, w.rows - r0);
      DequantizeRows(w, r0, count, rows_f32.data());
      for (int64_t r = 0; r < count; ++r) {
        QuantizeWeightRowQ8(rows_f32.data() + r * k_, k_, exponent, q.data(), bits.data());
        SetColumn(row0 + r0 + r, q.data(), bits.data());
      }
    }
  }
}

absl::StatusOr<Q8Weights> Q8Weights::Pack(std::span<const WeightMatrix> parts,
                                          const std::string& name) {
  if (parts.empty()) return absl::InvalidArgumentError(name + ": no weight matrices");
  Q8Weights packed;
  packed.k_ = parts[0].cols;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].cols != packed.k_ || parts[i].rows <= 0 || parts[i].cols <= 0 ||
        !RowBytes(parts[i].dtype, parts[i].cols)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: part %d is a [%d, %d] %s matrix, part 0 has %d columns", name, i,
                          parts[i].rows, parts[i].cols, DTypeName(parts[i].dtype), packed.k_));
    }
    packed.n_ += parts[i].rows;
  }
  packed.kb_ = Q8Blocks(packed.k_);
  packed.tiles_ = (packed.n_ + kTile - 1) / kTile;

  // The matrix's exponent e (q8_gemm.h): 0 where every part is Q8_0, else
  // the one that puts the largest block scale in [2^14, 2^15).
  float max_scale = 0.0f;
  bool all_q8_0 = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    SR_ASSIGN_OR_RETURN(const float part_max, MaxBlockScale(parts[i], name, i));
    max_scale = std::max(max_scale, part_max);
    all_q8_0 = all_q8_0 && parts[i].dtype == DType::kQ8_0;
  }
  const int exponent = all_q8_0 ? 0 : Q8WeightExponent(max_scale);
  packed.scale_exp2_ = std::ldexp(1.0f, -exponent);

  const auto tile_blocks = static_cast<size_t>(packed.tiles_ * packed.kb_);
  packed.quants_.assign(tile_blocks * kTileBlockBytes, 0);
  packed.scales_.assign(tile_blocks * kTile, 0);
  packed.neg_sums_.assign(tile_blocks * kTile, 0);
  for (int64_t row0 = 0; const WeightMatrix& w : parts) {
    if (w.dtype == DType::kQ8_0) {
      packed.PackQ8_0Part(w, row0, exponent);
    } else {
      packed.PackConvertedPart(w, row0, exponent);
    }
    row0 += w.rows;
  }
  return packed;
}

// ---- the product ------------------------------------------------------------

Q8Gemm::Q8Gemm(Q8Isa isa, int num_threads, Q8Activations activations)
    : isa_(isa), activations_(activations), num_threads_(std::max(1, num_threads)) {
  SR_CHECK(isa != Q8Isa::kNone && CpuRunsQ8Isa(isa));
}

void Q8Gemm::Run(const float* x, int64_t m, int64_t ldx, const Q8Weights& w, float* y, int64_t ldy,
                 bool accumulate) {
  if (m <= 0) return;
  const int64_t kb = w.blocks(), ldq = kb * kQ8Block;
  if (xq_.size() < static_cast<size_t>(m * ldq)) xq_.resize(static_cast<size_t>(m * ldq));
  if (xs_.size() < static_cast<size_t>(m * kb)) xs_.resize(static_cast<size_t>(m * kb));
  const bool wide = activations_ == Q8Activations::kInt16;
  if (wide && xl_.size() < static_cast<size_t>(m * ldq)) xl_.resize(static_cast<size_t>(m * ldq));
  const bool as_u8 = Q8IsaTakesU8(isa_);
  const int threads = m * w.cols() < (int64_t{1} << 16) ? 1 : num_threads_;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < m; ++r) {
    if (wide) {
      QuantizeRowQ16(x + r * ldx, w.cols(), as_u8, xq_.data() + r * ldq, xl_.data() + r * ldq,
                     xs_.data() + r * kb);
    } else {
      QuantizeRowQ8(x + r * ldx, w.cols(), as_u8, xq_.data() + r * ldq, xs_.data() + r * kb);
    }
  }
  RunPlanes(xq_.data(), wide ? xl_.data() : nullptr, xs_.data(), m, w, y, ldy, accumulate);
}

void Q8Gemm::RunQuantized(const int8_t* xq, const float* xs, int64_t m, const Q8Weights& w,
                          float* y, int64_t ldy, bool accumulate) const {
  SR_CHECK(activations_ == Q8Activations::kInt8);
  RunPlanes(xq, nullptr, xs, m, w, y, ldy, accumulate);
}

void Q8Gemm::RunPlanes(const int8_t* xq, const uint8_t* xl, const float* xs, int64_t m,
                       const Q8Weights& w, float* y, int64_t ldy, bool accumulate) const {
  if (m <= 0) return;
  const TileArgs args{xq, xl, xs, w.blocks(), &w, y, ldy, accumulate};
  const bool wide = xl != nullptr;
  // Units of work: kNr512 tiles (zmm) or one tile (ymm), shared by the threads.
  const bool zmm = isa_ == Q8Isa::kAvx512Vnni;
  const int64_t units = zmm ? (w.tiles() + kNr512 - 1) / kNr512 : w.tiles();
  const int64_t work = m * w.rows() * w.cols();
  const int threads =
      static_cast<int>(work < (int64_t{1} << 20) ? 1 : std::min<int64_t>(num_threads_, units));
  const TileFn* ymm_tiles = isa_ == Q8Isa::kAvxVnni ? (wide ? kAvxVnniWideTiles : kAvxVnniTiles)
                                                    : (wide ? kAvx2WideTiles : kAvx2Tiles);
  const auto& zmm_tiles = wide ? kAvx512WideTiles : kAvx512Tiles;
  const int mr_max = zmm ? (wide ? kMr512Wide : kMr512) : (wide ? kMr256Wide : kMr256);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t t0 = zmm ? u * kNr512 : u;
    const int nr = zmm ? static_cast<int>(std::min<int64_t>(kNr512, w.tiles() - t0)) : 1;
    ChunkScales scales;
    // K in chunks whose weights (per unit) stay in L1 while every row passes.
    for (int64_t b0 = 0; b0 < w.blocks(); b0 += kChunkBlocks) {
      const int64_t b1 = std::min(w.blocks(), b0 + kChunkBlocks);
      DecodeChunkScales(w, t0, nr, b0, b1, scales);
      if (zmm) {
        for (int64_t m0 = 0; m0 < m; m0 += mr_max) {
          const int mr = static_cast<int>(std::min<int64_t>(mr_max, m - m0));
          zmm_tiles[nr - 1][mr - 1](args, scales, m0, t0, b0, b1);
        }
      } else {
        for (int64_t m0 = 0; m0 < m; m0 += mr_max) {
          const int mr = static_cast<int>(std::min<int64_t>(mr_max, m - m0));
          ymm_tiles[mr - 1](args, scales, m0, t0, b0, b1);
        }
      }
    }
  }
}

}  // namespace saferoute::cpu
