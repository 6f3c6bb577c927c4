// Conversion of stored weight elements of any DType (plain or GGML
// block-quantized) to fp32: the one entry point through which the engine's
// GEMM paths and element-wise weight reads (norm gains, embedding rows,
// LM-head rows) see checkpoint data, panel by panel, never a whole-model
// fp32 copy.
//
// Quantized formats follow ggml's reference dequantizers
// (ggml-quants.c: dequantize_row_q8_0, ..._q4_K, ..._q6_K); each has a test
// against the PyPI `gguf` package's `gguf.quants.dequantize` on random blocks.
#ifndef SAFEROUTE_CPU_DEQUANTIZE_H_
#define SAFEROUTE_CPU_DEQUANTIZE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/tensor.h"

namespace saferoute::cpu {

// Whether DequantizeToF32 handles `dtype` (loaders refuse the rest by name).
bool CanDequantize(DType dtype);

// dst[0, count) = the `count` elements stored at `src`, as fp32. `src` starts
// at a block boundary and `count` is a whole number of blocks
// (RowBytes(dtype, count) bytes are read). Thread-safe, no allocation.
void DequantizeToF32(DType dtype, const std::byte* src, int64_t count, float* dst);

// The plain scalar dequantizers (ggml's reference loops), which the
// vectorised ones must match bit for bit; for tests and benchmarks.
void DequantizeToF32Scalar(DType dtype, const std::byte* src, int64_t count, float* dst);
// Which vector path DequantizeToF32 takes in this build: "avx512", "avx2" or
// "scalar" (chosen at compile time; the build targets its own machine).
std::string_view DequantizePath();

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_DEQUANTIZE_H_
