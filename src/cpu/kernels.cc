#include "cpu/kernels.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/convert.h"
#include "cpu/omp_threads.h"
#include "oneapi/dnnl/dnnl.h"
#include "util/status.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SR_KERNELS_AVX2 1
#endif

namespace saferoute::cpu {
namespace {

// Cephes-style expf: exp(x) = 2^n * exp(r), r = x - n*ln2 in [-ln2/2, ln2/2],
// exp(r) by a degree-6 polynomial. Scalar twin of the AVX2 version below so
// tails give bit-identical results.
inline float ExpScalar(float x) {
  x = std::min(x, 88.3762626647949f);
  if (x < -87.3365447504f) return 0.0f;
  float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(n, -0.693359375f, x);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r);
  p += 1.0f;
  return std::ldexp(p, static_cast<int>(n));
}

#if SR_KERNELS_AVX2
inline __m256 Exp8(__m256 x) {
  const __m256 too_small = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3365447504f), _CMP_LT_OQ);
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365447504f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  // 2^n via the exponent field. n is in [-126, 128]; 2^128 would overflow the
  // field, so scale in two steps (2^(n/2) twice) to keep exp(88.37) finite.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i half = _mm256_srai_epi32(ni, 1);
  __m256i rest = _mm256_sub_epi32(ni, half);
  __m256 s1 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  __m256 s2 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, _mm256_set1_epi32(127)), 23));
  p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  return _mm256_andnot_ps(too_small, p);
}

inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}
#endif

inline float SumOfSquares(const float* x, int64_t n) { return Dot(x, x, n); }

// One head, pairs (j, j + d/2).
void RotateHalves(const float* cos, const float* sin, int64_t half, float* x) {
  float* x1 = x;         // [d/2] first half
  float* x2 = x + half;  // [d/2] second half
  int64_t j = 0;
#if SR_KERNELS_AVX2
  for (; j + 8 <= half; j += 8) {
    __m256 a = _mm256_loadu_ps(x1 + j), b = _mm256_loadu_ps(x2 + j);
    __m256 c = _mm256_loadu_ps(cos + j), s = _mm256_loadu_ps(sin + j);
    _mm256_storeu_ps(x1 + j, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
    _mm256_storeu_ps(x2 + j, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s)));
  }
#endif
  for (; j < half; ++j) {
    const float a = x1[j], b = x2[j];
    x1[j] = a * cos[j] - b * sin[j];
    x2[j] = b * cos[j] + a * sin[j];
  }
}

// One head, pairs (2j, 2j + 1).
void RotateAdjacent(const float* cos, const float* sin, int64_t half, float* x) {
  int64_t j = 0;
#if SR_KERNELS_AVX2
  // Four pairs per ymm: cos/sin of pair j in lanes 2j and 2j+1; the even
  // lanes take -sin (a' = a cos - b sin, b' = b cos + a sin).
  const __m256i spread = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  const __m256 negate_even = _mm256_setr_ps(-0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f);
  for (; j + 4 <= half; j += 4) {
    const __m256 v = _mm256_loadu_ps(x + 2 * j);
    const __m256 c =
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cos + j)), spread);
    const __m256 s = _mm256_xor_ps(
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sin + j)), spread),
        negate_even);
    const __m256 swapped = _mm256_permute_ps(v, 0xB1);  // (b, a) in each pair
    _mm256_storeu_ps(x + 2 * j, _mm256_fmadd_ps(v, c, _mm256_mul_ps(swapped, s)));
  }
#endif
  for (; j < half; ++j) {
    const float a = x[2 * j], b = x[2 * j + 1];
    x[2 * j] = a * cos[j] - b * sin[j];
    x[2 * j + 1] = b * cos[j] + a * sin[j];
  }
}

}  // namespace

void Exp(const float* x, float* out, size_t n) {
  size_t i = 0;
#if SR_KERNELS_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, Exp8(_mm256_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) out[i] = ExpScalar(x[i]);
}

float Dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#if SR_KERNELS_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}

void RmsNorm(const float* x, int64_t x_stride, const float* weight, int64_t rows, int64_t width,
             float eps, bool round_bf16, float* out, int64_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    float* yr = out + r * out_stride;
    const float mean_square = SumOfSquares(xr, width) / static_cast<float>(width);
    const float inv_rms = 1.0f / std::sqrt(mean_square + eps);  // torch.rsqrt, fp32
    if (round_bf16) {
      // HF: weight * y.to(bf16), the product rounded to bf16 again.
      for (int64_t i = 0; i < width; ++i) yr[i] = xr[i] * inv_rms;
      RoundToBf16InPlace(yr, static_cast<size_t>(width));
      for (int64_t i = 0; i < width; ++i) yr[i] *= weight[i];
      RoundToBf16InPlace(yr, static_cast<size_t>(width));
      continue;
    }
    int64_t i = 0;
#if SR_KERNELS_AVX2
    const __m256 s = _mm256_set1_ps(inv_rms);
    for (; i + 8 <= width; i += 8) {
      __m256 y = _mm256_mul_ps(_mm256_loadu_ps(xr + i), s);
      _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_loadu_ps(weight + i), y));
    }
#endif
    for (; i < width; ++i) yr[i] = weight[i] * (xr[i] * inv_rms);
  }
}

RopeTable MakeRopeTable(const std::vector<float>& inv_freq, int64_t max_positions, bool round_bf16,
                        RopePairing pairing) {
  RopeTable table;
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  table.head_dim = 2 * half;
  table.max_positions = max_positions;
  table.pairing = pairing;
  table.cos.resize(static_cast<size_t>(max_positions * half));
  table.sin.resize(static_cast<size_t>(max_positions * half));
  for (int64_t t = 0; t < max_positions; ++t) {
    for (int64_t j = 0; j < half; ++j) {
      // HF: freqs = inv_freq @ position_ids in fp32, then cos/sin in fp32.
      const float angle = static_cast<float>(t) * inv_freq[j];
      float c = static_cast<float>(std::cos(static_cast<double>(angle)));
      float s = static_cast<float>(std::sin(static_cast<double>(angle)));
      if (round_bf16) {
        c = RoundToBf16(c);
        s = RoundToBf16(s);
      }
      table.cos[t * half + j] = c;
      table.sin[t * half + j] = s;
    }
  }
  return table;
}

void ApplyRope(const RopeTable& table, float* x, int64_t rows, int64_t row_stride, int64_t n_heads,
               int64_t first_position, bool round_bf16) {
  const int64_t half = table.head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* cos = table.cos.data() + (first_position + r) * half;
    const float* sin = table.sin.data() + (first_position + r) * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + r * row_stride + h * table.head_dim;
      if (table.pairing == RopePairing::kAdjacent) {
        RotateAdjacent(cos, sin, half, head);
      } else {
        RotateHalves(cos, sin, half, head);
      }
      // bf16 semantics: the rotated values are stored as bf16 (HF also rounds
      // each intermediate product; that difference is inside the bf16 tolerance).
      if (round_bf16) RoundToBf16InPlace(head, static_cast<size_t>(table.head_dim));
    }
  }
}

void SiluMul(const float* gate, const float* up, int64_t rows, int64_t n, int64_t in_stride,
             bool round_bf16, float* out, int64_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gate + r * in_stride;
    const float* u = up + r * in_stride;
    float* o = out + r * out_stride;
    int64_t i = 0;
#if SR_KERNELS_AVX2
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
      __m256 gv = _mm256_loadu_ps(g + i);
      __m256 e = Exp8(_mm256_xor_ps(gv, sign));  // exp(-g)
      __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(one, e));
      _mm256_storeu_ps(o + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
    }
#endif
    for (; i < n; ++i) o[i] = g[i] / (1.0f + ExpScalar(-g[i])) * u[i];
    // bf16 semantics: the product is stored as bf16 (HF also rounds silu(g)
    // first; that difference is inside the bf16 tolerance).
    if (round_bf16) RoundToBf16InPlace(o, static_cast<size_t>(n));
  }
}

void Attention(const AttentionShape& shape, const float* q, const float* k, const float* v,
               float* out, int num_threads, bool round_bf16) {
  // Per (head, block of up to kQueryBlock queries): scores S = scale * Q K^T
  // and output O = P V are two GEMMs (oneDNN sgemm on this thread), the
  // softmax runs row by row in between. One query at a time (dot products
  // and axpys of length head_dim) ran at a fraction of the GEMM rate and
  // grew to ~15% of a 1200-token prefill. A block computes the keys its last
  // query sees; the few above the diagonal for earlier rows are masked.
  constexpr int64_t kQueryBlock = 64;
  SR_CHECK(shape.prefix >= 0 && shape.prefix <= shape.past &&
           (shape.prefix == 0 || (shape.prefix_k != nullptr && shape.prefix_v != nullptr)));
  const int64_t d = shape.head_dim;
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const int64_t max_keys = shape.past + shape.tokens;
  const int64_t blocks = (shape.tokens + kQueryBlock - 1) / kQueryBlock;
  const int64_t work = shape.n_heads * blocks;
  // ~4 * d flops per (query, key) pair; small problems stay on one thread.
  const bool parallel = num_threads > 1 && work > 1 &&
                        shape.n_heads * shape.tokens * max_keys * d >= (int64_t{1} << 19);
  // oneDNN's sgemm runs on the calling thread inside an active parallel
  // region; outside one it would start its own team: cap it for the serial case.
  const ScopedOmpMaxThreads team(parallel ? omp_get_max_threads() : 1);
  std::atomic<dnnl_status_t> failure{dnnl_success};
#pragma omp parallel num_threads(num_threads) if (parallel)
  {
    // Per-thread scores/probabilities [kQueryBlock, max_keys].
    std::vector<float> scores(static_cast<size_t>(kQueryBlock * max_keys));
    // Later blocks see more keys: dynamic schedule balances the triangle.
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < work; ++item) {
      const int64_t h = item / blocks;
      const int64_t first = (item % blocks) * kQueryBlock;  // first query of the block
      const int64_t rows = std::min(kQueryBlock, shape.tokens - first);
      const int64_t keys = shape.past + first + rows;  // keys the block's last query sees
      const int64_t g = h / group;
      const float* qh = q + first * shape.q_stride + h * d;  // [rows, d], row stride q_stride
      // Keys [0, split) come from the prefix segment, [split, keys) from k/v.
      const int64_t split = shape.prefix, own = keys - split;
      const float* kg = k + g * shape.kv_head_stride;      // [own, d]
      const float* vg = v + g * shape.kv_head_stride;      // [own, d]
      float* oh = out + first * shape.out_stride + h * d;  // [rows, d], row stride out_stride
      float* s = scores.data();                            // [rows, keys]
      dnnl_status_t st = dnnl_success;
      if (split > 0) {
        st = dnnl_sgemm('N', 'T', rows, split, d, shape.scale, qh, shape.q_stride,
                        shape.prefix_k + g * shape.prefix_head_stride, d, 0.0f, s, keys);
        if (st != dnnl_success) failure.store(st);
      }
      st = dnnl_sgemm('N', 'T', rows, own, d, shape.scale, qh, shape.q_stride, kg, d, 0.0f,
                      s + split, keys);
      if (st != dnnl_success) failure.store(st);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = s + r * keys;
        const int64_t n_keys = shape.past + first + r + 1;  // causal
        if (round_bf16) RoundToBf16InPlace(row, static_cast<size_t>(n_keys));
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n_keys; ++j) max_score = std::max(max_score, row[j]);
        for (int64_t j = 0; j < n_keys; ++j) row[j] -= max_score;
        Exp(row, row, static_cast<size_t>(n_keys));
        float sum = 0.0f;
        for (int64_t j = 0; j < n_keys; ++j) sum += row[j];
        const float inv_sum = 1.0f / sum;
        for (int64_t j = 0; j < n_keys; ++j) row[j] *= inv_sum;
        if (round_bf16) RoundToBf16InPlace(row, static_cast<size_t>(n_keys));
        std::fill(row + n_keys, row + keys, 0.0f);  // masked: later positions
      }
      if (split > 0) {
        st = dnnl_sgemm('N', 'N', rows, d, split, 1.0f, s, keys,
                        shape.prefix_v + g * shape.prefix_head_stride, d, 0.0f, oh,
                        shape.out_stride);
        if (st != dnnl_success) failure.store(st);
      }
      st = dnnl_sgemm('N', 'N', rows, d, own, 1.0f, s + split, keys, vg, d, split > 0 ? 1.0f : 0.0f,
                      oh, shape.out_stride);
      if (st != dnnl_success) failure.store(st);
      if (round_bf16) {
        for (int64_t r = 0; r < rows; ++r) {
          RoundToBf16InPlace(oh + r * shape.out_stride, static_cast<size_t>(d));
        }
      }
    }
  }
  // Arguments are ours and consistent: a failure is a programming error.
  SR_CHECK(failure.load() == dnnl_success);
}

}  // namespace saferoute::cpu
