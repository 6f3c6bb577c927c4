// libFuzzer target: any byte string given to the safetensors parser must give
// a Status or views that lie inside the input, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> image(reinterpret_cast<const std::byte*>(data), size);
  auto contents = saferoute::ParseSafetensors(image, "fuzz");
  if (contents.ok()) {
    for (const saferoute::TensorView& t : contents->tensors) {
      const auto* begin = reinterpret_cast<const std::byte*>(data);
      SR_CHECK(t.data >= begin && t.nbytes <= size &&
               t.data - begin <= static_cast<ptrdiff_t>(size - t.nbytes));
      SR_CHECK(static_cast<uint64_t>(t.numel()) * saferoute::DTypeSize(t.dtype) == t.nbytes);
    }
  }
  return 0;
}
