#include "cpu/sgemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace saferoute::cpu {
namespace {

// Plain triple loop in double: C = op(A) op(B) + beta C, and per element
// the sum of the magnitudes of its terms (for the rounding-error bound).
struct Expected {
  std::vector<double> c, magnitude;
};
Expected Reference(char ta, char tb, int64_t m, int64_t n, int64_t k, const std::vector<float>& a,
                   int64_t lda, const std::vector<float>& b, int64_t ldb, float beta,
                   const std::vector<float>& c, int64_t ldc) {
  Expected out{std::vector<double>(static_cast<size_t>(m * n)),
               std::vector<double>(static_cast<size_t>(m * n))};
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = beta == 0.0f ? 0.0 : double{beta} * c[i * ldc + j];
      double magnitude = std::fabs(sum);
      for (int64_t p = 0; p < k; ++p) {
        const double a_ip = ta == 'N' ? a[i * lda + p] : a[p * lda + i];
        const double b_pj = tb == 'N' ? b[p * ldb + j] : b[j * ldb + p];
        sum += a_ip * b_pj;
        magnitude += std::fabs(a_ip * b_pj);
      }
      out.c[i * n + j] = sum;
      out.magnitude[i * n + j] = magnitude;
    }
  }
  return out;
}

struct Shape {
  int64_t m, n, k;
};

// Every transpose combination, beta 0 and 1, strided operands, on shapes
// below (the calling-thread loop, with and without the 4-row dot products
// and their remainder) and above (oneDNN) the threshold.
TEST(Sgemm, MatchesAPlainTripleLoop) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // The last shape is oneDNN's, the others the calling thread's ({1, 514,
  // 2048}: one example, its rows split over threads).
  const Shape shapes[] = {{1, 7, 5}, {3, 9, 33}, {1, 514, 2048}, {2, 130, 70}, {64, 96, 1024}};
  static_assert(int64_t{64} * 96 * 1024 >= kSgemmMinParallel);
  static_assert(int64_t{1} * 514 * 2048 < kSgemmMinParallel);
  for (const Shape& s : shapes) {
    for (char ta : {'N', 'T'}) {
      for (char tb : {'N', 'T'}) {
        for (float beta : {0.0f, 1.0f}) {
          const int64_t a_rows = ta == 'N' ? s.m : s.k, a_cols = ta == 'N' ? s.k : s.m;
          const int64_t b_rows = tb == 'N' ? s.k : s.n, b_cols = tb == 'N' ? s.n : s.k;
          const int64_t lda = a_cols + 3, ldb = b_cols + 5, ldc = s.n + 2;
          std::vector<float> a(static_cast<size_t>(a_rows * lda)),
              b(static_cast<size_t>(b_rows * ldb)), c(static_cast<size_t>(s.m * ldc));
          for (float& v : a) v = normal(rng);
          for (float& v : b) v = normal(rng);
          for (float& v : c) v = normal(rng);
          const Expected want = Reference(ta, tb, s.m, s.n, s.k, a, lda, b, ldb, beta, c, ldc);
          std::vector<float> got = c;
          Sgemm(ta, tb, s.m, s.n, s.k, a.data(), lda, b.data(), ldb, beta, got.data(), ldc);
          // The worst-case bound of an fp32 sum of k + 1 terms in any order:
          // (k + 1) * 2^-24 * sum of their magnitudes (plus the product roundings).
          for (int64_t i = 0; i < s.m; ++i) {
            for (int64_t j = 0; j < s.n; ++j) {
              const double tol = (s.k + 2) * 0x1p-24 * want.magnitude[i * s.n + j];
              ASSERT_NEAR(got[i * ldc + j], want.c[i * s.n + j], tol)
                  << ta << tb << " beta " << beta << " m " << s.m << " n " << s.n << " k " << s.k
                  << " at (" << i << ", " << j << ")";
            }
            for (int64_t j = s.n; j < ldc; ++j) {
              ASSERT_EQ(got[i * ldc + j], c[i * ldc + j]) << "padding of C was written";
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace saferoute::cpu
