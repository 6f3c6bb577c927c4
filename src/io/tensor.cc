#include "io/tensor.h"

#include "io/checked_math.h"
#include "util/status.h"

namespace saferoute {

DTypeBlock BlockOf(DType dtype) {
  // Block layouts of ggml-common.h (block_q8_0, block_q4_K, ...).
  switch (dtype) {
    case DType::kF32:
      return {1, 4};
    case DType::kBF16:
    case DType::kF16:
      return {1, 2};
    case DType::kQ8_0:
      return {32, 2 + 32};
    case DType::kQ4_0:
      return {32, 2 + 16};
    case DType::kQ4_1:
      return {32, 2 + 2 + 16};
    case DType::kQ5_0:
      return {32, 2 + 4 + 16};
    case DType::kQ5_1:
      return {32, 2 + 2 + 4 + 16};
    case DType::kQ4_K:
      return {256, 2 + 2 + 12 + 128};
    case DType::kQ5_K:
      return {256, 2 + 2 + 12 + 32 + 128};
    case DType::kQ6_K:
      return {256, 128 + 64 + 16 + 2};
  }
  SR_CHECK(false && "unhandled DType");
  return {1, 1};
}

bool IsQuantized(DType dtype) { return BlockOf(dtype).elements > 1; }

size_t DTypeSize(DType dtype) {
  SR_CHECK(!IsQuantized(dtype));
  return BlockOf(dtype).bytes;
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ4_1:
      return "Q4_1";
    case DType::kQ5_0:
      return "Q5_0";
    case DType::kQ5_1:
      return "Q5_1";
    case DType::kQ4_K:
      return "Q4_K";
    case DType::kQ5_K:
      return "Q5_K";
    case DType::kQ6_K:
      return "Q6_K";
  }
  SR_CHECK(false && "unhandled DType");
  return "";
}

std::optional<uint64_t> RowBytes(DType dtype, int64_t count) {
  const DTypeBlock block = BlockOf(dtype);
  if (count < 0 || count % block.elements != 0) return std::nullopt;
  return CheckedMul(static_cast<uint64_t>(count / block.elements), block.bytes);
}

std::optional<uint64_t> TensorBytes(DType dtype, std::span<const int64_t> shape) {
  if (shape.empty()) return RowBytes(dtype, 1);
  const std::optional<int64_t> rows = CheckedNumel(shape.first(shape.size() - 1));
  const std::optional<uint64_t> row_bytes = RowBytes(dtype, shape.back());
  if (!rows || !row_bytes) return std::nullopt;
  return CheckedMul(static_cast<uint64_t>(*rows), *row_bytes);
}

int64_t TensorView::numel() const {
  // Shapes are validated (non-negative, product fits in int64) when a view is
  // made from a file, so the plain product cannot overflow here.
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace saferoute
