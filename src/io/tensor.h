// Non-owning views of tensors stored in checkpoint files or in memory.
#ifndef SAFEROUTE_IO_TENSOR_H_
#define SAFEROUTE_IO_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace saferoute {

// Element types the engine reads. The first three are plain element types
// (safetensors names "F32", "BF16", "F16"); the rest are GGML block-quantized
// types from GGUF files ("Q8_0", ...): their elements come in fixed-size
// blocks along the innermost (last, contiguous) dimension, each block holding
// its own scales. A row of a quantized tensor is a whole number of blocks.
enum class DType : uint8_t {
  kF32,
  kBF16,
  kF16,
  kQ8_0,  // 32 elements: f16 scale d, 32 x int8            -> d * q
  kQ4_0,  // 32 elements: f16 d, 16 bytes of 4-bit q       -> d * (q - 8)
  kQ4_1,  // 32 elements: f16 d, f16 m, 16 bytes of 4-bit q -> d * q + m
  kQ5_0,  // 32 elements: f16 d, 4 bytes of high bits, 16 bytes of low nibbles
  kQ5_1,  // 32 elements: f16 d, f16 m, high bits, low nibbles
  kQ4_K,  // 256 elements: super-block of 8 x 32 with 6-bit scales and mins
  kQ5_K,  // 256 elements: as Q4_K plus one high bit per element
  kQ6_K,  // 256 elements: 16 x 16 with 8-bit scales, 6-bit values
};

// The storage unit of a dtype: `elements` values packed into `bytes` bytes
// ({1, 4} for F32, {32, 34} for Q8_0, {256, 144} for Q4_K).
struct DTypeBlock {
  int64_t elements;
  size_t bytes;
};
DTypeBlock BlockOf(DType dtype);
bool IsQuantized(DType dtype);  // block of more than one element

// Bytes per element of a plain (unquantized) dtype. Quantized dtypes have no
// per-element size: use BlockOf / RowBytes (checked: calling this with one is
// a programming error).
size_t DTypeSize(DType dtype);
std::string_view DTypeName(DType dtype);  // "F32", "BF16", "F16", "Q8_0", ...

// Bytes of `count` consecutive elements along the innermost dimension, or
// nullopt if `count` is negative, not a whole number of blocks, or the byte
// count overflows. For a [rows, cols] tensor: rows * RowBytes(dtype, cols).
std::optional<uint64_t> RowBytes(DType dtype, int64_t count);
// Bytes of a row-major tensor of `shape` (innermost dimension last): nullopt
// if a dim is negative, the innermost is not a whole number of blocks, or the
// count overflows. A 0-d tensor is one element.
std::optional<uint64_t> TensorBytes(DType dtype, std::span<const int64_t> shape);

// A view of a row-major tensor. `data` points into memory owned elsewhere
// (a memory-mapped checkpoint or an owned buffer) that outlives the view.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  bool empty() const { return data == nullptr; }
  int64_t numel() const;
  int64_t dim(int i) const { return shape[i]; }
};

}  // namespace saferoute

#endif  // SAFEROUTE_IO_TENSOR_H_
