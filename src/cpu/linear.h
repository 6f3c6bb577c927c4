// Linear layers on the GEMM path chosen at run time (cpu/dispatch.h):
//   y[M, N] (+)= x[M, K] W^T,  W [N, K] row-major (HF Linear layout).
//
// PackedLinear prepares a weight once, at load, for one path: the widened
// paths (fp32, bf16-widened) keep reading the checkpoint's memory panel by
// panel (cpu/gemm.h); the native paths own a copy in the layout oneDNN
// prefers for its matmul (format_tag::any): bf16 for bf16-native; for int8
// symmetric per-output-channel int8 values and f32 scales. Several matrices
// that read the same input (q|k|v, gate|up) are stacked along N into one
// PackedLinear, so one GEMM computes them all.
//
// LinearRunner runs them: it converts x into the path's input form (bf16, or
// int8 with one scale per row), keeps one oneDNN primitive per (M, shape),
// created on first use (creation is ~0.1-0.2 ms after the first JIT; runtime
// dims would select oneDNN's slower gemm:jit), and applies the int8 scales in
// f32. Scratch is grown, never shrunk: steady-state calls allocate nothing.
#ifndef SAFEROUTE_CPU_LINEAR_H_
#define SAFEROUTE_CPU_LINEAR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/gemm.h"
#include "util/status.h"

namespace saferoute::cpu {

class PackedLinear {
 public:
  PackedLinear();
  ~PackedLinear();
  PackedLinear(PackedLinear&&) noexcept;
  PackedLinear& operator=(PackedLinear&&) noexcept;

  // `parts` share K; their rows are stacked in order (output columns
  // [0, parts[0].rows) are parts[0], and so on). `name` appears in errors.
  // Native paths read every part once (through DequantizeToF32) and own the
  // result; the widened paths keep views.
  static absl::StatusOr<PackedLinear> Pack(GemmPath path, std::span<const WeightMatrix> parts,
                                           const CpuSupport& support, const std::string& name);

  GemmPath path() const { return path_; }
  int64_t rows() const { return n_; }  // N
  int64_t cols() const { return k_; }  // K
  std::span<const WeightMatrix> parts() const { return parts_; }
  // Bytes this object owns (the packed copy and scales); 0 on widened paths.
  size_t owned_bytes() const;

 private:
  friend class LinearRunner;
  friend absl::StatusOr<double> PathMatmulGflops(GemmPath, const CpuSupport&, int64_t, int64_t,
                                                 int64_t, int, int);
  struct Native;
  static void ConvertRows(GemmPath path, const WeightMatrix& w, int q_max, Native& native,
                          int64_t row0, int64_t first, int64_t count, std::byte* out,
                          std::vector<float>& rows_f32);
  GemmPath path_ = GemmPath::kFp32;
  int64_t n_ = 0, k_ = 0;
  std::vector<WeightMatrix> parts_;
  std::unique_ptr<Native> native_;
};

class LinearRunner {
 public:
  LinearRunner(GemmPath path, int num_threads);
  ~LinearRunner();

  // y [m, w.rows()] (row stride ldy) (+)= x [m, w.cols()] (row stride ldx) W^T.
  // On the bf16 paths x must hold bf16 values (the forward rounds them); on
  // int8 it is quantized here, per row. Not thread-safe: one runner per engine.
  absl::Status Run(const float* x, int64_t m, int64_t ldx, const PackedLinear& w, float* y,
                   int64_t ldy, bool accumulate);

  GemmPath path() const { return path_; }
  int num_threads() const { return num_threads_; }
  // Primitives created so far (a benchmark/diagnostic number).
  size_t primitives_created() const;

 private:
  struct Impl;
  GemmPath path_;
  int num_threads_;
  GemmRunner widened_;
  std::unique_ptr<Impl> impl_;
};

// Measured GFLOP/s (2*m*n*k per second, best of `reps` after a warm-up) of
// the oneDNN matmul a path runs, on a [m, k] x [n, k]^T product with random
// weights packed as the path packs them, on `threads` threads. The peak
// `saferoute bench` compares each path with. Widened paths: the library's
// own sgemm (LibrarySgemmGflops).
absl::StatusOr<double> PathMatmulGflops(GemmPath path, const CpuSupport& support, int64_t m,
                                        int64_t k, int64_t n, int threads, int reps);

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_LINEAR_H_
