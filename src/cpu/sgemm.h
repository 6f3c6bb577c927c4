// General fp32 GEMM on plain row-major matrices, for the small networks
// beside the guard models (the router's MLP in training and inference):
//   C[m, n] = op(A)[m, k] * op(B)[k, n] + beta * C,  op(X) = X or X^T.
// The guard models' GEMMs go through cpu/linear.h (packed weights) and
// cpu/gemm.h (widened panels) instead.
#ifndef SAFEROUTE_CPU_SGEMM_H_
#define SAFEROUTE_CPU_SGEMM_H_

#include <cstdint>

namespace saferoute::cpu {

// trans_a/trans_b: 'N' or 'T'. lda/ldb/ldc: row strides (elements) of A, B,
// C as stored. oneDNN's sgemm (its own threads) for products of at least
// kSgemmMinParallel multiply-adds; smaller ones run on the calling thread
// (a thread team's wake-up costs more than the work, and stalls when the
// cores are busy), A * B^T there as dot products four rows of B at a time,
// which a single example through a layer ([1, K] x [N, K]^T) is bound by.
// Deterministic for a given thread count.
void Sgemm(char trans_a, char trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Multiply-adds from which Sgemm calls oneDNN.
inline constexpr int64_t kSgemmMinParallel = int64_t{1} << 22;

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_SGEMM_H_
