// GGUF writing (version 3): metadata key/values and tensors, laid out as
// llama.cpp and gguf-py lay them out (tensor data in the order added, each
// padded to the alignment). Used to write random models as GGUF and by tests;
// the reader (gguf.h) reads back whatever this writes.
#ifndef SAFEROUTE_IO_GGUF_WRITER_H_
#define SAFEROUTE_IO_GGUF_WRITER_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/gguf.h"
#include "io/tensor.h"
#include "util/status.h"

namespace saferoute {

class GgufWriter {
 public:
  // `alignment` (a power of two) is written as general.alignment unless it is
  // the default 32.
  explicit GgufWriter(uint32_t alignment = static_cast<uint32_t>(kGgufDefaultAlignment));

  void AddUint32(std::string_view key, uint32_t value);
  void AddInt32(std::string_view key, int32_t value);
  void AddUint64(std::string_view key, uint64_t value);
  void AddFloat32(std::string_view key, float value);
  void AddBool(std::string_view key, bool value);
  void AddString(std::string_view key, std::string_view value);
  void AddStringArray(std::string_view key, std::span<const std::string> values);
  void AddInt32Array(std::string_view key, std::span<const int32_t> values);
  void AddFloat32Array(std::string_view key, std::span<const float> values);

  // A tensor of row-major `shape` (outermost first, as TensorView): written
  // with ggml's innermost-first dims. `data` holds TensorBytes(dtype, shape)
  // bytes and is copied.
  void AddTensor(std::string_view name, DType dtype, std::span<const int64_t> shape,
                 const void* data);

  // The whole file image.
  std::string Build() const;
  // Writes Build() to `path` atomically (tmp + fsync + rename).
  absl::Status Write(const std::string& path) const;

 private:
  void Key(std::string_view key, GgufType type);

  uint32_t alignment_;
  uint64_t kv_count_ = 0;
  std::string kv_bytes_;  // encoded key/values
  struct Tensor {
    std::string name;
    uint32_t ggml_type;
    std::vector<int64_t> ne;  // innermost first
    std::string data;
  };
  std::vector<Tensor> tensors_;
};

}  // namespace saferoute

#endif  // SAFEROUTE_IO_GGUF_WRITER_H_
