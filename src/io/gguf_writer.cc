#include "io/gguf_writer.h"

#include <cstring>

#include "io/safetensors.h"  // WriteFileAtomically

namespace saferoute {
namespace {

template <typename T>
void Append(std::string* out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian host (gguf.cc asserts it)
  out->append(bytes, sizeof(T));
}

void AppendString(std::string* out, std::string_view s) {
  Append<uint64_t>(out, s.size());
  out->append(s);
}

void Pad(std::string* out, uint64_t alignment) {
  out->append((alignment - out->size() % alignment) % alignment, '\0');
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  SR_CHECK(alignment != 0 && (alignment & (alignment - 1)) == 0);
  if (alignment != kGgufDefaultAlignment) AddUint32("general.alignment", alignment);
}

void GgufWriter::Key(std::string_view key, GgufType type) {
  ++kv_count_;
  AppendString(&kv_bytes_, key);
  Append<uint32_t>(&kv_bytes_, static_cast<uint32_t>(type));
}

void GgufWriter::AddUint32(std::string_view key, uint32_t value) {
  Key(key, GgufType::kUint32);
  Append(&kv_bytes_, value);
}

void GgufWriter::AddInt32(std::string_view key, int32_t value) {
  Key(key, GgufType::kInt32);
  Append(&kv_bytes_, value);
}

void GgufWriter::AddUint64(std::string_view key, uint64_t value) {
  Key(key, GgufType::kUint64);
  Append(&kv_bytes_, value);
}

void GgufWriter::AddFloat32(std::string_view key, float value) {
  Key(key, GgufType::kFloat32);
  Append(&kv_bytes_, value);
}

void GgufWriter::AddBool(std::string_view key, bool value) {
  Key(key, GgufType::kBool);
  Append<uint8_t>(&kv_bytes_, value ? 1 : 0);
}

void GgufWriter::AddString(std::string_view key, std::string_view value) {
  Key(key, GgufType::kString);
  AppendString(&kv_bytes_, value);
}

void GgufWriter::AddStringArray(std::string_view key, std::span<const std::string> values) {
  Key(key, GgufType::kArray);
  Append<uint32_t>(&kv_bytes_, static_cast<uint32_t>(GgufType::kString));
  Append<uint64_t>(&kv_bytes_, values.size());
  for (const std::string& v : values) AppendString(&kv_bytes_, v);
}

void GgufWriter::AddInt32Array(std::string_view key, std::span<const int32_t> values) {
  Key(key, GgufType::kArray);
  Append<uint32_t>(&kv_bytes_, static_cast<uint32_t>(GgufType::kInt32));
  Append<uint64_t>(&kv_bytes_, values.size());
  kv_bytes_.append(reinterpret_cast<const char*>(values.data()), values.size_bytes());
}

void GgufWriter::AddFloat32Array(std::string_view key, std::span<const float> values) {
  Key(key, GgufType::kArray);
  Append<uint32_t>(&kv_bytes_, static_cast<uint32_t>(GgufType::kFloat32));
  Append<uint64_t>(&kv_bytes_, values.size());
  kv_bytes_.append(reinterpret_cast<const char*>(values.data()), values.size_bytes());
}

void GgufWriter::AddTensor(std::string_view name, DType dtype, std::span<const int64_t> shape,
                           const void* data) {
  const std::optional<uint64_t> nbytes = TensorBytes(dtype, shape);
  SR_CHECK(nbytes.has_value());
  Tensor t{.name = std::string(name),
           .ggml_type = GgmlTypeOf(dtype),
           .ne = std::vector<int64_t>(shape.rbegin(), shape.rend()),
           .data = std::string(static_cast<const char*>(data), static_cast<size_t>(*nbytes))};
  tensors_.push_back(std::move(t));
}

std::string GgufWriter::Build() const {
  std::string out = "GGUF";
  Append<uint32_t>(&out, 3);
  Append<uint64_t>(&out, tensors_.size());
  Append<uint64_t>(&out, kv_count_);
  out += kv_bytes_;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    AppendString(&out, t.name);
    Append<uint32_t>(&out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) Append<uint64_t>(&out, static_cast<uint64_t>(d));
    Append<uint32_t>(&out, t.ggml_type);
    Append<uint64_t>(&out, offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  Pad(&out, alignment_);
  for (const Tensor& t : tensors_) {
    out += t.data;
    Pad(&out, alignment_);
  }
  return out;
}

absl::Status GgufWriter::Write(const std::string& path) const {
  return WriteFileAtomically(path, Build());
}

}  // namespace saferoute
