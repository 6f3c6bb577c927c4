#include "cpu/sgemm.h"

#include <cstring>

#include "cpu/kernels.h"
#include "oneapi/dnnl/dnnl.h"
#include "util/status.h"

namespace saferoute::cpu {
namespace {

// Multiply-adds above which a single example's product is split over threads.
constexpr int64_t kMinParallelMatVec = int64_t{1} << 19;

// Eight floats as one value (GCC/Clang vector extension: AVX registers with
// -march=native, pairs of SSE registers otherwise). Written out because the
// compiler's own vectorisation of the 8-lane loop this replaces kept partial
// sums in memory and ran ~10x slower.
using Vec8 = float __attribute__((vector_size(32)));
inline Vec8 Load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}
inline float Sum8(Vec8 v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// Dot products of x with rows y0..y3 (length n), written to out[0..3]: each
// with 8 partial sums in a fixed order (deterministic). Four rows at a time
// keep four independent multiply-add chains in flight and load x once: one
// row at a time was bound by add latency (single-example router inference, a
// [1, 2048] x [2048, 512] product).
void Dot4(const float* x, const float* y0, const float* y1, const float* y2, const float* y3,
          int64_t n, float* out) {
  Vec8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t p = 0;
  for (; p + 8 <= n; p += 8) {
    const Vec8 xv = Load8(x + p);
    a0 += xv * Load8(y0 + p);
    a1 += xv * Load8(y1 + p);
    a2 += xv * Load8(y2 + p);
    a3 += xv * Load8(y3 + p);
  }
  float sums[4] = {Sum8(a0), Sum8(a1), Sum8(a2), Sum8(a3)};
  const float* rows[4] = {y0, y1, y2, y3};
  for (int r = 0; r < 4; ++r) {
    for (int64_t q = p; q < n; ++q) sums[r] += x[q] * rows[r][q];
    out[r] = sums[r];
  }
}

}  // namespace

void Sgemm(char trans_a, char trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m * n * k < kSgemmMinParallel) {
    // Waking a thread team costs more than the work here, and stalls when
    // the cores are busy.
    for (int64_t i = 0; i < m; ++i) {
      float* c_row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) c_row[j] = beta == 0.0f ? 0.0f : beta * c_row[j];
      if (trans_a == 'N' && trans_b == 'T') {  // rows of A against rows of B: dot products
        const float* a_row = a + i * lda;
        const int64_t quads = n / 4;
        // One example through the first layer ([2048] x [512, 2048]) reads
        // 4 MB of weights: bound by one core's cache bandwidth, so both
        // cores share the rows (each output still computed by one thread).
#pragma omp parallel for schedule(static) if (m == 1 && n * k >= kMinParallelMatVec)
        for (int64_t quad = 0; quad < quads; ++quad) {
          const int64_t j = quad * 4;
          float dots[4];
          Dot4(a_row, b + j * ldb, b + (j + 1) * ldb, b + (j + 2) * ldb, b + (j + 3) * ldb, k,
               dots);
          for (int r = 0; r < 4; ++r) c_row[j + r] += dots[r];
        }
        for (int64_t j = quads * 4; j < n; ++j) c_row[j] += Dot(a_row, b + j * ldb, k);
        continue;
      }
      for (int64_t p = 0; p < k; ++p) {
        const float a_ip = trans_a == 'N' ? a[i * lda + p] : a[p * lda + i];
        if (trans_b == 'N') {
          const float* b_row = b + p * ldb;
          for (int64_t j = 0; j < n; ++j) c_row[j] += a_ip * b_row[j];
        } else {
          for (int64_t j = 0; j < n; ++j) c_row[j] += a_ip * b[j * ldb + p];
        }
      }
    }
    return;
  }
  const dnnl_status_t status =
      dnnl_sgemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  SR_CHECK(status == dnnl_success);  // only fails on bad arguments: a programming error
}

}  // namespace saferoute::cpu
