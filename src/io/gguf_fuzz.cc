// libFuzzer target: any byte string given to the GGUF parser must give a
// Status or a header whose tensors lie inside the input, never a crash, a hang
// or a read outside it. Every metadata value is also read back through the
// typed accessors (the paths the model and tokenizer loaders take).
//
// Seeds: a valid image is a good start (e.g. one written by GgufWriter or any
// small .gguf; tests/data/smollm2 has none checked in, the fuzz helper keeps
// its corpus outside the repository).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> image(reinterpret_cast<const std::byte*>(data), size);
  auto contents = saferoute::ParseGguf(image, "fuzz");
  if (!contents.ok()) return 0;
  for (const saferoute::GgufTensorInfo& t : contents->tensors) {
    SR_CHECK(contents->data_offset <= size);
    SR_CHECK(t.offset <= size - contents->data_offset);
    SR_CHECK(t.nbytes <= size - contents->data_offset - t.offset);
    if (t.dtype) {
      const std::optional<uint64_t> nbytes = saferoute::TensorBytes(*t.dtype, t.shape);
      if (!nbytes || *nbytes != t.nbytes) {
        std::fprintf(
            stderr, "tensor '%s': ggml type %u, %zu dims, parser says %llu bytes, TensorBytes %s\n",
            t.name.c_str(), t.ggml_type, t.shape.size(), static_cast<unsigned long long>(t.nbytes),
            nbytes ? std::to_string(*nbytes).c_str() : "none");
        for (int64_t d : t.shape) std::fprintf(stderr, "  dim %lld\n", static_cast<long long>(d));
        std::abort();
      }
    }
  }
  const saferoute::GgufMetadata& m = contents->metadata;
  for (const auto& [key, value] : m.entries()) {
    (void)m.GetInt(key, INT64_MIN, INT64_MAX);
    (void)m.GetFloat(key);
    (void)m.GetBool(key);
    auto s = m.GetString(key);
    if (s.ok())
      SR_CHECK(s->empty() || (s->data() >= reinterpret_cast<const char*>(data) &&
                              s->data() + s->size() <= reinterpret_cast<const char*>(data) + size));
    (void)m.GetStringArray(key);
    (void)m.GetIntArray(key);
    (void)m.GetFloatArray(key);
  }
  return 0;
}
