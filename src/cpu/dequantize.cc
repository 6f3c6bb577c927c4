#include "cpu/dequantize.h"

#include <cstring>

#include "cpu/convert.h"
#include "util/status.h"

namespace saferoute::cpu {

bool CanDequantize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kBF16:
    case DType::kF16:
      return true;
    default:
      // Block-quantized types: added with the GGUF loader (issue 12).
      return false;
  }
}

void DequantizeToF32(DType dtype, const std::byte* src, int64_t count, float* dst) {
  const auto n = static_cast<size_t>(count);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      WidenBf16(reinterpret_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::kF16:
      WidenF16(reinterpret_cast<const uint16_t*>(src), dst, n);
      return;
    default:
      break;
  }
  SR_CHECK(CanDequantize(dtype));  // callers check CanDequantize first
}

}  // namespace saferoute::cpu
