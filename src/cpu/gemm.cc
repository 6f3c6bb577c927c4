#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "cpu/convert.h"
#include "cpu/dequantize.h"
#include "cpu/omp_threads.h"
#include "oneapi/dnnl/dnnl.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace saferoute::cpu {
namespace {

// Rows of x per sgemm call: the x block (<= 512 x K fp32) stays cache-friendly
// while the widened panel is reused for every block.
constexpr int64_t kRowBlock = 512;
// Multiply-adds below which a GEMM call runs single-threaded.
constexpr int64_t kMinParallelMacs = int64_t{1} << 21;

}  // namespace

void DequantizeRows(const WeightMatrix& w, int64_t row0, int64_t rows, float* out) {
  // Rows are contiguous and each is a whole number of blocks, so a range of
  // rows is one run of elements.
  DequantizeToF32(w.dtype, w.row(row0), rows * w.cols, out);
}

GemmRunner::GemmRunner(int num_threads, bool round_weights_to_bf16)
    : num_threads_(std::max(1, num_threads)),
      round_weights_to_bf16_(round_weights_to_bf16),
      scratch_(static_cast<size_t>(num_threads_)) {}

absl::Status GemmRunner::Run(const float* x, int64_t m, int64_t k, int64_t ldx,
                             std::span<const GemmJob> jobs) {
  if (m <= 0 || jobs.empty()) return absl::OkStatus();
  // Panel height: as many weight rows as fit the per-thread scratch, a
  // multiple of 16 (sgemm micro-kernel width), at least 16.
  const int64_t panel_rows = std::max<int64_t>(
      16, (static_cast<int64_t>(kPanelScratchBytes / sizeof(float)) / k) / 16 * 16);
  std::vector<Panel>& panels = panels_;
  panels.clear();
  for (size_t j = 0; j < jobs.size(); ++j) {
    const WeightMatrix& w = jobs[j].weight;
    if (w.cols != k || w.rows <= 0 || w.data == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("gemm: weight %d is [%d, %d], input has K=%d", j, w.rows, w.cols, k));
    }
    if (!CanDequantize(w.dtype) || !RowBytes(w.dtype, k)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("gemm: weight %d has dtype %s with K=%d, which cannot be read", j,
                          DTypeName(w.dtype), k));
    }
    for (int64_t r = 0; r < w.rows; r += panel_rows) {
      panels.push_back({static_cast<int32_t>(j), r, std::min(panel_rows, w.rows - r)});
    }
  }
  for (auto& s : scratch_) {
    if (s.size() < static_cast<size_t>(panel_rows * k))
      s.resize(static_cast<size_t>(panel_rows * k));
  }
  std::atomic<int> failure{dnnl_success};
  const int64_t n_panels = static_cast<int64_t>(panels.size());
  int64_t total_rows = 0;
  for (const GemmJob& job : jobs) total_rows += job.weight.rows;
  // Small products (tiny models, short decode steps) run on one thread: a
  // fork/join costs more than it saves, and far more on a loaded machine.
  const bool parallel = num_threads_ > 1 && m * total_rows * k >= kMinParallelMacs && n_panels > 1;
  // Serial case: cap this thread's OpenMP team so oneDNN's sgemm, called
  // outside a parallel region, really runs on one thread (omp_threads.h).
  const ScopedOmpMaxThreads team(parallel ? omp_get_max_threads() : 1);
#pragma omp parallel num_threads(num_threads_) if (parallel)
  {
    float* scratch = scratch_[static_cast<size_t>(omp_get_thread_num())].data();
    // Each panel is widened once, then multiplied by every row block of x.
#pragma omp for schedule(static)
    for (int64_t p = 0; p < n_panels; ++p) {
      const Panel& panel = panels[static_cast<size_t>(p)];
      const GemmJob& job = jobs[static_cast<size_t>(panel.job)];
      const WeightMatrix& w = job.weight;
      const float* b = scratch;  // [panel.rows, K] fp32
      const bool round = round_weights_to_bf16_ && w.dtype != DType::kBF16;
      if (w.dtype == DType::kF32 && !round) {
        b = reinterpret_cast<const float*>(w.row(panel.row0));  // used in place
      } else {
        DequantizeRows(w, panel.row0, panel.rows, scratch);
        if (round) RoundToBf16InPlace(scratch, static_cast<size_t>(panel.rows * k));
      }
      for (int64_t m0 = 0; m0 < m; m0 += kRowBlock) {
        const int64_t rows = std::min(kRowBlock, m - m0);
        // Inside a parallel region oneDNN's sgemm runs on this thread only.
        dnnl_status_t st =
            dnnl_sgemm('N', 'T', rows, panel.rows, k, 1.0f, x + m0 * ldx, ldx, b, k,
                       job.accumulate ? 1.0f : 0.0f, job.y + m0 * job.ldy + panel.row0, job.ldy);
        if (st != dnnl_success) failure.store(st);
      }
    }
  }
  if (failure.load() != dnnl_success) {
    return absl::InternalError(absl::StrFormat(
        "gemm: oneDNN sgemm failed with status %d (M=%d K=%d)", failure.load(), m, k));
  }
  return absl::OkStatus();
}

bool NativeBf16MatmulSupported() {
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    using dt = dnnl::memory::data_type;
    dnnl::memory::desc src({64, 64}, dt::bf16, {64, 1});
    dnnl::memory::desc weights({64, 64}, dt::bf16, {1, 64});  // [K, N] view of W [N, K]
    dnnl::memory::desc dst({64, 64}, dt::f32, {64, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst), engine);
    // The reference (non-JIT) implementation is too slow to count.
    return std::string(pd.impl_info_str()).find("ref") == std::string::npos;
  } catch (const dnnl::error&) {
    return false;
  }
}

double LibrarySgemmGflops(int64_t m, int64_t k, int64_t n, int threads, int reps) {
  std::vector<float> x(static_cast<size_t>(m * k)), w(static_cast<size_t>(n * k)),
      y(static_cast<size_t>(m * n));
  // Non-trivial values (denormals or zeros could change the speed).
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.001f * static_cast<float>(i % 97) - 0.05f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.002f * static_cast<float>(i % 89) - 0.09f;
  const ScopedOmpMaxThreads team(threads);  // oneDNN's OpenMP team for the calls
  double best = 1e30;
  for (int r = 0; r < std::max(1, reps) + 1; ++r) {  // the first run warms up
    const auto start = std::chrono::steady_clock::now();
    const dnnl_status_t st =
        dnnl_sgemm('N', 'T', m, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, y.data(), n);
    SR_CHECK(st == dnnl_success);  // fixed valid arguments
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r > 0) best = std::min(best, seconds);
  }
  return 2.0 * static_cast<double>(m) * n * k / best / 1e9;
}

void ReferenceGemm(const float* x, int64_t m, int64_t k, const WeightMatrix& w, float* y,
                   int64_t ldy, bool accumulate) {
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t n = 0; n < w.rows; ++n) {
    DequantizeRows(w, n, 1, row.data());
    for (int64_t i = 0; i < m; ++i) {
      double sum = 0.0;
      for (int64_t c = 0; c < k; ++c) sum += static_cast<double>(x[i * k + c]) * row[c];
      float* out = y + i * ldy + n;
      *out = static_cast<float>(accumulate ? *out + sum : sum);
    }
  }
}

}  // namespace saferoute::cpu
