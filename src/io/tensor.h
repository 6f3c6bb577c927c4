// Non-owning views of tensors stored in checkpoint files or in memory.
#ifndef SAFEROUTE_IO_TENSOR_H_
#define SAFEROUTE_IO_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace saferoute {

// Element types the engine reads. Safetensors names: "F32", "BF16", "F16".
enum class DType : uint8_t { kF32, kBF16, kF16 };

size_t DTypeSize(DType dtype);            // bytes per element
std::string_view DTypeName(DType dtype);  // "F32", "BF16", "F16"

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
