// y[M,N] (+)= x[M,K] * W^T with W stored [N,K] row-major (HF Linear layout),
// fp32 activations, weights of any DType that cpu::DequantizeToF32 handles
// (F32, BF16, F16, and the GGML block types once their dequantizers exist).
//
// How: the N rows of W are cut into panels; the threads share the panels of
// all jobs of one call (e.g. q, k and v projections of the same input), and
// each thread runs oneDNN's single-threaded sgemm on its panel. Non-F32
// panels are first widened (DequantizeToF32) into that thread's fp32 scratch (bounded by
// kPanelScratchBytes, reused across calls): never a whole-model fp32 copy.
// Widening costs O(N*K) per M-block against O(M*N*K) of GEMM work.
//
// bf16 x bf16 -> fp32 semantics: a bf16 GEMM multiplies bf16 activations by
// bf16 weights with fp32 accumulation. Rounding x to bf16 first (the caller
// does, with Precision::kBf16) and using the widened weights gives the same
// products exactly (bf16*bf16 fits fp32), so the numbers are those of a bf16
// GEMM; oneDNN 2.6 has no bf16 matmul on AVX2-only CPUs, so this runs there.
//
// Thread safety: one GemmRunner per engine; calls must not overlap.
#ifndef SAFEROUTE_CPU_GEMM_H_
#define SAFEROUTE_CPU_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "io/tensor.h"
#include "util/status.h"

namespace saferoute::cpu {

// A [rows, cols] row-major weight matrix in checkpoint memory. Row r starts
// at data + r * RowBytes(dtype, cols) (block-quantized types: cols is a whole
// number of blocks).
struct WeightMatrix {
  DType dtype = DType::kF32;
  const std::byte* data = nullptr;
  int64_t rows = 0;  // N (output features)
  int64_t cols = 0;  // K (input features)

  size_t row_bytes() const { return static_cast<size_t>(*RowBytes(dtype, cols)); }
  const std::byte* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
};

// out[(r - row0) * cols + c] = w[r, c] as fp32 for r in [row0, row0 + rows):
// the one way weight elements are read (through cpu::DequantizeToF32).
void DequantizeRows(const WeightMatrix& w, int64_t row0, int64_t rows, float* out);

// One output of a multi-job GEMM: y[M, w.rows] at `y` with row stride ldy.
struct GemmJob {
  WeightMatrix weight;
  float* y = nullptr;
  int64_t ldy = 0;
  bool accumulate = false;  // y += x W^T (fuses a residual add) instead of y = x W^T
};

class GemmRunner {
 public:
  static constexpr size_t kPanelScratchBytes = size_t{2} << 20;  // per thread
  // round_weights_to_bf16: panels of weights not stored as BF16 are rounded
  // to bf16 after widening (the bf16-widened path then multiplies exactly the
  // bf16 weights the native bf16 path packs; BF16 weights need no rounding).
  explicit GemmRunner(int num_threads, bool round_weights_to_bf16 = false);

  // All jobs read the same x [M, K] (row stride ldx); every job's weight must
  // have cols == K. Returns InvalidArgument on shape mismatch or a oneDNN error.
  absl::Status Run(const float* x, int64_t m, int64_t k, int64_t ldx,
                   std::span<const GemmJob> jobs);

  int num_threads() const { return num_threads_; }

 private:
  int num_threads_;
  bool round_weights_to_bf16_;
  struct Panel {
    int32_t job;
    int64_t row0, rows;
  };
  std::vector<std::vector<float>> scratch_;  // [thread] panel of widened weights
  std::vector<Panel> panels_;                // work list of the current call (reused)
};

// Whether this CPU's oneDNN offers a bf16 x bf16 -> f32 matmul (needs
// AVX512-BF16/AMX in oneDNN 2.6). Reported by `saferoute bench`; the engine's
// bf16 path computes the same numbers through the widened-panel sgemm.
bool NativeBf16MatmulSupported();

// GFLOP/s of oneDNN's own sgemm on one row-major [m, k] x [n, k]^T product,
// run multi-threaded on `threads` OpenMP threads, best of `reps` after one
// warm-up. `saferoute bench` takes the machine's fp32 GEMM peak from this
// (the library at its best), not from the engine's own panel GEMM.
double LibrarySgemmGflops(int64_t m, int64_t k, int64_t n, int threads, int reps);

// Plain triple-loop reference (tests only; slow).
void ReferenceGemm(const float* x, int64_t m, int64_t k, const WeightMatrix& w, float* y,
                   int64_t ldy, bool accumulate);

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_GEMM_H_
