// The one place where the engine's GEMM path is chosen, at run time, from
// what this CPU's oneDNN actually offers.
//
// oneDNN is asked, not only cpuid: the effective ISA (which honours the
// ONEDNN_MAX_CPU_ISA cap, how a faster CPU shows what a lesser one gets), and
// a matmul primitive of each precision is created and its implementation
// name inspected, so a reference ("ref") implementation is never taken for a
// fast path. For int8 a small product with extreme values is also run and
// checked exactly: oneDNN's non-VNNI int8 kernels (AVX2, AVX512_CORE) sum
// u8*s8 pairs in saturating 16-bit arithmetic, which is exact only for
// weights of at most 7 bits; the probe tells which range is exact.
//
// Paths:
//   fp32          fp32 activations, weights widened per panel to fp32, oneDNN
//                 sgemm. The parity path (what the fixtures are checked with).
//   bf16-widened  activations rounded to bf16, weights widened per panel,
//                 sgemm: exactly the products of a bf16 x bf16 -> f32 GEMM,
//                 at fp32 speed, on any CPU (the fallback of bf16).
//   bf16-native   oneDNN bf16 matmul (AVX512-BF16 / AMX-BF16), weights
//                 reordered once at load into oneDNN's preferred layout.
//   int8          the block-scaled int8 GEMM of cpu/q8_gemm.h: weights and
//                 activations in blocks of 32 along K, each with an f32
//                 scale (GGML's Q8_0; a Q8_0 GGUF weight is used as stored),
//                 s32 block sums (AVX512-VNNI, AVX-VNNI or AVX2), scaled and
//                 summed in f32. What `--precision int8` runs; its LM head
//                 (full-vocabulary logits) runs on bf16 (HeadPath).
//   int8-a16      the same int8 weights and kernels with 16-bit activations
//                 (q8_gemm.h, Q8Activations::kInt16: two byte planes, two u8
//                 x s8 products per weight, exact s32 block sums): only the
//                 weights' rounding is left, at about half int8's multiply
//                 rate. What `--precision int8-a16` runs, with two
//                 exceptions: each layer's Q/K/V projection runs on bf16
//                 (AttentionInputPath) and the LM head on int8-a16 itself
//                 (HeadPath).
//   int8-rows     oneDNN s8 x s8 -> s32 matmul (AMX-INT8, AVX512-VNNI,
//                 AVX-VNNI, or AVX2/AVX512 without VNNI with 7-bit weights);
//                 weights per output channel, activations per row, both
//                 symmetric; scales applied in f32 after the s32 product.
//                 Faster where oneDNN has AMX-INT8, but on real weights far
//                 less accurate (SmolLM2-135M: mean KL 0.059 from fp32 against
//                 the blocked scheme's, see ChoosePath): forced only
//                 (benchmarks, tests), and the int8 peak of `saferoute bench`.
#ifndef SAFEROUTE_CPU_DISPATCH_H_
#define SAFEROUTE_CPU_DISPATCH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cpu/q8_gemm.h"
#include "util/status.h"

namespace saferoute::cpu {

// What the user asks for (`--precision`, the service's `precision` key).
enum class Precision : uint8_t {
  kAuto,     // the fastest path documented as guard-safe on this CPU (ChoosePath)
  kFp32,     // the parity path
  kBf16,     // bf16 activations into bf16 GEMMs (native where the CPU has bf16 units)
  kInt8,     // int8 weights and activations, s32 accumulation
  kInt8A16,  // int8 weights, 16-bit integer activations, s32 accumulation
};
// Every precision, in the order they are listed to users.
inline constexpr Precision kPrecisions[] = {Precision::kAuto, Precision::kFp32, Precision::kBf16,
                                            Precision::kInt8, Precision::kInt8A16};
// "auto", "fp32", "bf16", "int8", "int8-a16"
const char* PrecisionName(Precision precision);
// The names of kPrecisions, e.g. for a command-line check.
std::vector<std::string> PrecisionNames();
// Parses a PrecisionName; the error names the value and the choices.
absl::StatusOr<Precision> ParsePrecision(std::string_view name);

enum class GemmPath : uint8_t { kFp32, kBf16Widened, kBf16Native, kInt8, kInt8Rows, kInt8A16 };
inline constexpr GemmPath kGemmPaths[] = {GemmPath::kFp32,       GemmPath::kBf16Widened,
                                          GemmPath::kBf16Native, GemmPath::kInt8,
                                          GemmPath::kInt8Rows,   GemmPath::kInt8A16};
// "fp32", "bf16-widened", "bf16-native", "int8", "int8-rows", "int8-a16"
const char* GemmPathName(GemmPath path);
// Whether a path runs the block-scaled kernels of cpu/q8_gemm.h (int8 and
// int8-a16: the same packed weights, 8- or 16-bit activations).
inline bool RunsQ8Kernels(GemmPath path) {
  return path == GemmPath::kInt8 || path == GemmPath::kInt8A16;
}
std::optional<GemmPath> ParseGemmPath(std::string_view name);  // inverse of GemmPathName
// The precision whose numbers a path computes (kBf16 for both bf16 paths,
// kInt8 for int8 and int8-rows, kInt8A16 for int8-a16).
Precision PathPrecision(GemmPath path);

// What this process's oneDNN offers (see the file comment).
struct CpuSupport {
  std::string isa;  // oneDNN's effective ISA, e.g. "avx512_core_bf16", "avx2"
  bool bf16_native = false;
  std::string bf16_impl;  // implementation of the probe primitive, or why there is none
  bool int8 = false;
  std::string int8_impl;
  // Largest weight magnitude whose products oneDNN's int8 matmul sums exactly:
  // 127 with VNNI/AMX, 63 where pairs are summed in saturating 16 bits, 0 when
  // int8 is unavailable.
  int int8_weight_max = 0;
  // The block-scaled int8 kernel this CPU runs (cpuid, capped at oneDNN's
  // effective ISA: see BestQ8Isa); kNone: the int8 path is unavailable.
  Q8Isa int8_block_isa = Q8Isa::kNone;
};

// Probed once per process (oneDNN reads ONEDNN_MAX_CPU_ISA once, at its
// first use) and cached; thread-safe.
const CpuSupport& DetectCpuSupport();

// The path a request runs on, given what the CPU offers:
//   fp32 -> fp32; bf16 -> bf16-native, else bf16-widened; int8 -> int8,
//   int8-a16 -> int8-a16 (each an error naming the ISA where the CPU has no
//   AVX2);
//   auto -> bf16-native where the CPU has bf16 units, else bf16-widened.
// `forced`, if set (tests and benchmarks), must compute the requested
// precision's numbers and be available, else InvalidArgument.
absl::StatusOr<GemmPath> ChoosePath(Precision requested, const CpuSupport& support,
                                    std::optional<GemmPath> forced = std::nullopt);

// The path whose library matmul is the peak a path is compared with in
// `saferoute bench` (the peak of its precision on this machine):
// bf16-widened -> fp32 (it multiplies in fp32 sgemm); int8 and int8-a16 ->
// int8-rows (oneDNN's int8 matmul) where oneDNN has one, else int8 (the q8
// kernel); any other path -> itself. int8-a16 makes two int8 products per
// weight: its ratio to that peak is at most about half int8's.
GemmPath PeakPath(GemmPath path, const CpuSupport& support);

// What bf16 runs on this CPU: bf16-native where it has bf16 units (and
// oneDNN a bf16 matmul for them), else bf16-widened.
GemmPath Bf16Path(const CpuSupport& support);

// The path a model's LM head runs on for full-vocabulary logits (a guard's
// verdict logits are computed from fp32 head rows on every path): the path
// itself, except int8, whose head runs on bf16 (bf16-native where the CPU has
// bf16 units, else bf16-widened). Measured on SmolLM2-135M (200 prompts, see
// ChoosePath): an int8 head is the largest single share of int8's KL (0.00586
// with it, 0.00520 with a bf16 one; llama.cpp Q8_0 0.00540). With 16-bit
// activations the head's share is gone (int8-a16 with its head on int8-a16:
// 0.00120, on bf16: 0.00123), so int8-a16 keeps it in int8, which pays for
// its bf16 Q/K/V on an 8B model (its head: 0.59 GB in int8, 1.05 in bf16).
GemmPath HeadPath(GemmPath path, const CpuSupport& support);

// The path a layer's attention input projection (Q, K and V, one packed
// matrix) runs on: the path itself, except int8-a16, whose Q/K/V run on bf16
// (Bf16Path) unless the checkpoint stores them quantized (a GGUF's Q8_0,
// Q4_K, ...): those stay on int8-a16, used as stored, since bf16 cannot
// restore what the file's quantization dropped and would round Q8_0's values
// (8-bit q times an f16 scale) a second time. Why bf16: on
// SmolLM2-135M (bench/precision_quality_bench, 200 prompts, fp32 reference)
// int8 weights with exact activations agree on the top-1 token at 97.66% of
// the positions after the prompts' shared 24-token prefix, whatever the
// rounding (per-block MSE scales, blocks of 16: 97.72-97.79%); with Q/K/V
// unquantized 98.10%, and no flipped prefix position. No other single
// projection comes close (down 97.55% over all positions against Q/K/V's
// 98.49%), and Q, K or V alone recovers almost nothing (96.43-96.69%): only
// the three together do. Q/K/V are 12% of a Llama-3-8B layer's
// weights: in bf16 they add 0.70 GB to an 8B model, less the 0.46 GB its
// int8 head saves.
GemmPath AttentionInputPath(GemmPath path, const CpuSupport& support, bool stored_quantized);

// The implementation a path runs: "oneDNN brg:avx512_core_bf16", ...
std::string PathImplementation(GemmPath path, const CpuSupport& support);

// One line for logs and reports: "bf16-native (oneDNN brg:avx512_core_bf16, isa avx512_core_bf16)".
std::string DescribePath(GemmPath path, const CpuSupport& support);
// The same with `implementation` in place of PathImplementation's (an engine
// adds where its Q/K/V run).
std::string DescribePath(GemmPath path, const CpuSupport& support,
                         const std::string& implementation);

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_DISPATCH_H_
