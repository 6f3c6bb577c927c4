// The int8 path's block-scaled GEMM (cpu/q8_gemm.h) against the library
// matmuls it competes with, on the Llama-Guard-3-1B projections: GFLOP/s
// (2*M*N*K per second, best of --reps after a warm-up) of
// cpu::PathMatmulGflops for int8 (this kernel, activations already
// quantized), int8-rows (oneDNN's int8 matmul: the machine's int8 peak) and
// bf16-native (oneDNN's bf16 matmul), measured in one run, alternating.
//
//   build/release/bench/q8_gemm_bench [--threads N] [--reps N] [--m M]
//                                     [--paths int8,int8-rows,bf16-native]
// Prints one JSON object per shape and path, and a table on stderr.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "cpu/dispatch.h"
#include "cpu/linear.h"

namespace saferoute {
namespace {

int Main(int argc, char** argv) {
  int threads = 2, reps = 5;
  int64_t m = 300;
  std::string path_names = "int8,int8-rows,bf16-native";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else if (flag == "--reps") {
      reps = std::atoi(argv[i + 1]);
    } else if (flag == "--paths") {
      path_names = argv[i + 1];
    } else if (flag == "--m") {
      m = std::atoll(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  std::vector<cpu::GemmPath> paths;
  for (const std::string& name : std::vector<std::string>(absl::StrSplit(path_names, ','))) {
    const std::optional<cpu::GemmPath> path = cpu::ParseGemmPath(name);
    if (!path) {
      std::fprintf(stderr, "--paths: unknown path '%s'\n", name.c_str());
      return 2;
    }
    auto available = cpu::ChoosePath(cpu::PathPrecision(*path), support, *path);
    if (available.ok()) {
      paths.push_back(*path);
    } else {
      std::fprintf(stderr, "skipped: %s\n", std::string(available.status().message()).c_str());
    }
  }
  struct Shape {
    const char* name;
    int64_t k, n;
  };
  // q|k|v stacked, o, gate|up stacked, down.
  const Shape shapes[] = {
      {"qkv", 2048, 3072}, {"o", 2048, 2048}, {"gate_up", 2048, 16384}, {"down", 8192, 2048}};
  std::fprintf(stderr, "%-8s %6s %6s %6s  %-12s %9s\n", "shape", "M", "K", "N", "path", "GFLOP/s");
  for (const Shape& s : shapes) {
    for (cpu::GemmPath path : paths) {
      auto gflops = cpu::PathMatmulGflops(path, support, m, s.k, s.n, threads, reps);
      if (!gflops.ok()) {
        std::fprintf(stderr, "%s %s: %s\n", s.name, cpu::GemmPathName(path),
                     std::string(gflops.status().message()).c_str());
        return 1;
      }
      std::printf(
          "{\"shape\": \"%s\", \"m\": %ld, \"k\": %ld, \"n\": %ld, \"path\": \"%s\", \"impl\": "
          "\"%s\", \"threads\": %d, \"gflops\": %.2f}\n",
          s.name, static_cast<long>(m), static_cast<long>(s.k), static_cast<long>(s.n),
          cpu::GemmPathName(path), cpu::PathImplementation(path, support).c_str(), threads,
          *gflops);
      std::fprintf(stderr, "%-8s %6ld %6ld %6ld  %-12s %9.1f\n", s.name, static_cast<long>(m),
                   static_cast<long>(s.k), static_cast<long>(s.n), cpu::GemmPathName(path),
                   *gflops);
    }
  }
  return 0;
}

}  // namespace
}  // namespace saferoute

int main(int argc, char** argv) { return saferoute::Main(argc, argv); }
