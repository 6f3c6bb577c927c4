#include "io/tensor.h"

#include "util/status.h"

namespace saferoute {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
  }
  SR_CHECK(false && "unhandled DType");
  return 0;
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
  }
  SR_CHECK(false && "unhandled DType");
  return "";
}

int64_t TensorView::numel() const {
  // Shapes are validated (non-negative, product fits in int64) when a view is
  // made from a file, so the plain product cannot overflow here.
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace saferoute
