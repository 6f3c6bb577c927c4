// GGUF reading (versions 2 and 3, little-endian), the llama.cpp model format.
//
// Layout (all integers little-endian; gguf.md of ggml):
//   "GGUF" u32 version u64 tensor_count u64 kv_count
//   kv_count x  { string key, u32 value_type, value }
//   tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to `general.alignment` (u32, default 32), then the data section;
//   each tensor's offset is relative to the data section and aligned.
// string = u64 length + bytes (no terminator); array = u32 element_type,
// u64 count, elements (arrays of arrays are refused: no writer makes them and
// llama.cpp refuses them too).
//
// Everything in a file is hostile input and validated, with overflow-safe
// arithmetic, before any of it is used: magic, version (2 or 3; version 1 and
// big-endian files are refused by name), counts against the bytes left, string
// and array lengths, duplicate keys and tensor names, dims (at most 4, as in
// ggml) and their products, ggml types, general.alignment (a power of two),
// and every tensor's offset and data size. Layout policy (llama.cpp's,
// stated on offsets instead of file order): sorted by offset, the tensors
// tile the data section with only alignment padding between them — each
// offset is aligned, no tensor overlaps the next, the gap before each is
// less than the alignment, and at most alignment-1 bytes follow the last.
// Every error names the source and the key or tensor.
//
// Shapes: ggml lists dims innermost first (ne0 is contiguous). Views here are
// row-major like Hugging Face: a GGUF matrix with ne = [ne0, ne1] is a
// TensorView of shape [ne1, ne0], quantization blocks along the last dim.
//
// Thread safety: GgufContents and GgufFile are immutable after parsing; string
// and array values are views into the image, which must outlive them.
#ifndef SAFEROUTE_IO_GGUF_H_
#define SAFEROUTE_IO_GGUF_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor.h"
#include "util/status.h"

namespace saferoute {

// Metadata value types (GGUF's gguf_type / gguf-py's GGUFValueType).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
std::string_view GgufTypeName(GgufType type);  // "UINT8", ..., "FLOAT64"

// ggml tensor type ids the engine reads (others parse, but cannot be viewed).
// Returns nullopt for any other id.
std::optional<DType> DTypeFromGgmlType(uint32_t ggml_type);
uint32_t GgmlTypeOf(DType dtype);
// "Q4_K", "IQ2_XS", ... for every ggml type id known to ggml; "" if unknown.
std::string_view GgmlTypeName(uint32_t ggml_type);

// Default of general.alignment (GGUF_DEFAULT_ALIGNMENT).
inline constexpr uint64_t kGgufDefaultAlignment = 32;

// One metadata value. Numbers are decoded when parsed; strings and arrays are
// views into the image (arrays of numbers stay packed little-endian there).
struct GgufValue {
  GgufType type = GgufType::kUint8;
  // Scalars: the integer types fill `integer` (uint64 values above INT64_MAX
  // set `integer_overflows`), FLOAT32/FLOAT64 fill `number`, BOOL fills
  // `boolean`, STRING fills `string`.
  int64_t integer = 0;
  bool integer_overflows = false;
  double number = 0;
  bool boolean = false;
  std::string_view string;
  // Arrays: element type, count, and either the packed elements or, for
  // arrays of strings, one view per element (one allocation per array).
  GgufType element_type = GgufType::kUint8;
  uint64_t count = 0;
  const std::byte* elements = nullptr;
  std::vector<std::string_view> strings;
};

// The key/value metadata of a GGUF file, in file order, with typed lookups.
// Each error names the source and the key ("m.gguf: key 'llama.block_count':
// is STRING, expected an integer").
class GgufMetadata {
 public:
  explicit GgufMetadata(std::string source = {}) : source_(std::move(source)) {}
  GgufMetadata(GgufMetadata&&) = default;
  GgufMetadata& operator=(GgufMetadata&&) = default;

  const std::string& source() const { return source_; }
  size_t size() const { return entries_.size(); }
  // (key, value) pairs in file order.
  const std::vector<std::pair<std::string_view, GgufValue>>& entries() const { return entries_; }
  const GgufValue* Find(std::string_view key) const;
  bool Contains(std::string_view key) const { return Find(key) != nullptr; }

  // Typed access. `fallback` is returned when the key is absent (without it,
  // absence is a NotFound error); a present key of the wrong type or out of
  // range is an InvalidArgument error.
  // Any integer type (UINT8 ... INT64) whose value lies in [lo, hi].
  absl::StatusOr<int64_t> GetInt(std::string_view key, int64_t lo, int64_t hi,
                                 std::optional<int64_t> fallback = std::nullopt) const;
  // FLOAT32 or FLOAT64, finite.
  absl::StatusOr<double> GetFloat(std::string_view key,
                                  std::optional<double> fallback = std::nullopt) const;
  absl::StatusOr<bool> GetBool(std::string_view key,
                               std::optional<bool> fallback = std::nullopt) const;
  absl::StatusOr<std::string_view> GetString(
      std::string_view key, std::optional<std::string_view> fallback = std::nullopt) const;
  // Arrays (absent key: NotFound). The string views point into the image.
  absl::StatusOr<std::span<const std::string_view>> GetStringArray(std::string_view key) const;
  // An array of any integer type; every element must fit int64.
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  // An array of FLOAT32 or FLOAT64 (as float; FLOAT64 values are rounded).
  absl::StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;

  // An error about `key` in this metadata's words (for callers' own checks).
  absl::Status KeyError(std::string_view key, std::string_view what) const;

  // Used by the parser.
  absl::Status Add(std::string_view key, GgufValue value);

 private:
  absl::StatusOr<const GgufValue*> Require(std::string_view key) const;

  std::string source_;
  std::vector<std::pair<std::string_view, GgufValue>> entries_;
  std::unordered_map<std::string_view, size_t> by_key_;  // keys point into the image
};

// One tensor info. Every ggml type known to ggml parses (its size is checked);
// only the DTypes the engine reads have a `dtype`.
struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;
  std::optional<DType> dtype;  // nullopt: a ggml type the engine does not read
  std::vector<int64_t> shape;  // row-major, outermost first: ne reversed
  uint64_t offset = 0;         // from the start of the data section (aligned)
  uint64_t nbytes = 0;
};

// The parsed header of a GGUF image held in memory.
struct GgufContents {
  uint32_t version = 0;
  uint64_t alignment = kGgufDefaultAlignment;
  uint64_t data_offset = 0;  // where the data section starts in the image
  uint64_t data_bytes = 0;   // bytes from data_offset to the end of the image
  GgufMetadata metadata;
  std::vector<GgufTensorInfo> tensors;  // in file order
};

// Validates and parses a complete GGUF image. `source` names it in errors.
// Exposed for the fuzzer and the tests.
absl::StatusOr<GgufContents> ParseGguf(std::span<const std::byte> image, std::string_view source);

// True if `path` is a regular file whose first four bytes are "GGUF".
bool HasGgufMagic(const std::string& path);

// One memory-mapped .gguf file.
class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const std::string& path() const { return mapping_->path(); }
  uint32_t version() const { return contents_.version; }
  const GgufMetadata& metadata() const { return contents_.metadata; }
  const std::vector<GgufTensorInfo>& tensors() const { return contents_.tensors; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // A view of a tensor into the mapping. Errors name the file and the tensor:
  // absent (NotFound) or of a ggml type the engine does not read.
  absl::StatusOr<TensorView> Tensor(std::string_view name) const;
  // Sum of every tensor's data bytes.
  uint64_t tensor_bytes() const;
  const MappedFile& mapping() const { return *mapping_; }

 private:
  GgufFile(std::unique_ptr<MappedFile> mapping, GgufContents contents);

  std::unique_ptr<MappedFile> mapping_;
  GgufContents contents_;
  std::unordered_map<std::string_view, size_t> by_name_;  // keys point into contents_
};

}  // namespace saferoute

#endif  // SAFEROUTE_IO_GGUF_H_
