// Dequantization throughput (cpu::DequantizeToF32) per GGML block type, one
// thread: the vectorised path of this build against the scalar reference.
// Rows of 2048 elements (a Llama-3.2-1B row), 16M elements per pass read from
// memory, best of --reps passes, written two ways:
//  - into a 512 KB panel reused row after row (what the GEMM does: it widens
//    weight panels into a per-thread scratch that stays in cache);
//  - into a 64 MB fp32 array (a whole-tensor conversion), compared with a
//    memcpy of that array (the ceiling for a pass that writes fp32).
//
//   build/release/bench/dequantize_bench [--reps N]
// Prints one JSON object per line and a table on stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/dequantize.h"

namespace saferoute {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kRowElements = 2048;
constexpr int64_t kRows = 8192;  // 16M elements: 64 MB of fp32, past every cache

template <typename Fn>
double BestSeconds(int reps, Fn fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return best;
}

int Main(int argc, char** argv) {
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--reps N]\n", argv[0]);
      return 2;
    }
  }
  const int64_t count = kRowElements * kRows;
  std::vector<float> out(static_cast<size_t>(count)), copy_src(static_cast<size_t>(count), 1.0f);
  const double memcpy_s = BestSeconds(
      reps, [&] { std::memcpy(out.data(), copy_src.data(), out.size() * sizeof(float)); });
  const double memcpy_gbs = static_cast<double>(count) * 4 * 2 / memcpy_s / 1e9;  // read + write
  std::fprintf(stderr, "%-6s %10s %10s %8s %16s %14s\n", "type", "Gelem/s", "scalar", "speedup",
               "to-memory Gel/s", "vs memcpy time");
  for (DType dtype : {DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1,
                      DType::kQ5_0, DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    const uint64_t row_bytes = *RowBytes(dtype, kRowElements);
    std::vector<std::byte> data(static_cast<size_t>(row_bytes * kRows));
    std::mt19937 rng(1);
    for (std::byte& b : data) b = static_cast<std::byte>(rng() & 0x3b);  // finite f16 scales
    auto run = [&](auto dequantize, int64_t out_rows) {
      return BestSeconds(reps, [&] {
        for (int64_t r = 0; r < kRows; ++r) {
          dequantize(dtype, data.data() + r * row_bytes, kRowElements,
                     out.data() + (r % out_rows) * kRowElements);
        }
      });
    };
    constexpr int64_t kPanelRows = 64;  // 512 KB of fp32
    const double fast_s = run(cpu::DequantizeToF32, kPanelRows);
    const double scalar_s =
        IsQuantized(dtype) ? run(cpu::DequantizeToF32Scalar, kPanelRows) : fast_s;
    const double to_memory_s = run(cpu::DequantizeToF32, kRows);
    const double gelems = static_cast<double>(count) / fast_s / 1e9;
    std::printf(
        "{\"bench\": \"dequantize\", \"type\": \"%s\", \"path\": \"%s\", \"threads\": 1, "
        "\"elements\": %lld, \"gelem_per_s\": %.3f, \"scalar_gelem_per_s\": %.3f, "
        "\"input_gb_per_s\": %.2f, \"to_memory_gelem_per_s\": %.3f, \"memcpy_gb_per_s\": %.2f, "
        "\"to_memory_time_vs_memcpy\": %.2f}\n",
        std::string(DTypeName(dtype)).c_str(), std::string(cpu::DequantizePath()).c_str(),
        static_cast<long long>(count), gelems, static_cast<double>(count) / scalar_s / 1e9,
        static_cast<double>(data.size()) / fast_s / 1e9,
        static_cast<double>(count) / to_memory_s / 1e9, memcpy_gbs, to_memory_s / memcpy_s);
    std::fprintf(stderr, "%-6s %10.2f %10.2f %7.1fx %16.2f %13.2fx\n",
                 std::string(DTypeName(dtype)).c_str(), gelems,
                 static_cast<double>(count) / scalar_s / 1e9, scalar_s / fast_s,
                 static_cast<double>(count) / to_memory_s / 1e9, to_memory_s / memcpy_s);
  }
  return 0;
}

}  // namespace
}  // namespace saferoute

int main(int argc, char** argv) { return saferoute::Main(argc, argv); }
