// GGUF parsing: a bounds-checked cursor over the image, then the layout
// checks of the data section (see gguf.h for the policy).
#include "io/gguf.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <type_traits>

#include "io/checked_math.h"

namespace saferoute {

static_assert(std::endian::native == std::endian::little,
              "GGUF numbers are read in place as little-endian");

namespace {

// absl::StrCat for arguments that may be std::string_view (this Abseil's
// string_view is its own type).
inline absl::string_view CatArg(std::string_view s) { return AbslView(s); }
template <typename T>
requires std::is_arithmetic_v<T> T CatArg(T x) { return x; }
template <typename... Parts>
std::string Cat(const Parts&... parts) {
  return absl::StrCat(CatArg(parts)...);
}

// GGUF allows at most this many dims per tensor (GGML_MAX_DIMS).
constexpr uint32_t kMaxDims = 4;
// Keys are at most 2^16-1 bytes in the GGUF spec; tensor names are far shorter
// (ggml: 63), so the same bound is generous for both.
constexpr uint64_t kMaxNameBytes = 65535;

struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int64_t block_elements;
  uint64_t block_bytes;
};

// Block sizes of every ggml type (ggml.c type_traits / gguf-py
// GGML_QUANT_SIZES), so a file's layout can be checked even for types the
// engine does not read. Ids 4, 5 and 31-33, 36-38 were removed from ggml.
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},    {40, "NVFP4", 64, 36},
    {41, "Q1_0", 128, 18},
};

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  for (const GgmlTypeInfo& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

constexpr std::pair<uint32_t, DType> kEngineTypes[] = {
    {0, DType::kF32},   {1, DType::kF16},   {30, DType::kBF16}, {8, DType::kQ8_0},
    {2, DType::kQ4_0},  {3, DType::kQ4_1},  {6, DType::kQ5_0},  {7, DType::kQ5_1},
    {12, DType::kQ4_K}, {13, DType::kQ5_K}, {14, DType::kQ6_K},
};

// Fixed element sizes of the non-string, non-array value types.
std::optional<uint64_t> ScalarBytes(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return std::nullopt;
  }
  return std::nullopt;
}

bool IsKnownType(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufType::kFloat64); }

bool IsIntegerType(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

template <typename T>
T Load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Decodes one integer element of `type` at p: (value, fits int64).
std::pair<int64_t, bool> LoadInteger(GgufType type, const std::byte* p) {
  switch (type) {
    case GgufType::kUint8:
      return {Load<uint8_t>(p), true};
    case GgufType::kInt8:
      return {Load<int8_t>(p), true};
    case GgufType::kUint16:
      return {Load<uint16_t>(p), true};
    case GgufType::kInt16:
      return {Load<int16_t>(p), true};
    case GgufType::kUint32:
      return {Load<uint32_t>(p), true};
    case GgufType::kInt32:
      return {Load<int32_t>(p), true};
    case GgufType::kUint64: {
      const uint64_t v = Load<uint64_t>(p);
      return {static_cast<int64_t>(v), v <= static_cast<uint64_t>(INT64_MAX)};
    }
    case GgufType::kInt64:
      return {Load<int64_t>(p), true};
    default:
      break;
  }
  SR_CHECK(false && "not an integer type");
  return {0, false};
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

// A bounds-checked reader over the image. Every Read* fails (rather than
// reading past the end) with an error that says what was being read.
class Cursor {
 public:
  Cursor(std::span<const std::byte> image, const std::string& source)
      : image_(image), source_(source) {}

  uint64_t position() const { return position_; }
  uint64_t remaining() const { return image_.size() - position_; }
  const std::byte* here() const { return image_.data() + position_; }

  template <typename... Parts>
  absl::Status Error(const Parts&... parts) const {
    return absl::InvalidArgumentError(Cat(source_, ": ", parts...));
  }

  // `n` bytes for `what`: their start, advancing past them.
  absl::StatusOr<const std::byte*> Take(uint64_t n, std::string_view what) {
    if (n > remaining()) {
      return Error(what, " (", n, " bytes at offset ", position_,
                   ") runs past the end of the file (", image_.size(), " bytes): truncated?");
    }
    const std::byte* p = here();
    position_ += n;
    return p;
  }
  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    SR_ASSIGN_OR_RETURN(const std::byte* p, Take(sizeof(T), what));
    return Load<T>(p);
  }
  // A GGUF string (u64 length + bytes) as a view into the image.
  absl::StatusOr<std::string_view> ReadString(std::string_view what,
                                              uint64_t max_bytes = UINT64_MAX) {
    SR_ASSIGN_OR_RETURN(uint64_t length, Read<uint64_t>(Cat(what, " length")));
    if (length > remaining()) {
      return Error(what, " length ", length, " at offset ", position_ - 8,
                   " runs past the end of the file (", remaining(), " bytes left)");
    }
    if (length > max_bytes) {
      return Error(what, " is ", length, " bytes long (at most ", max_bytes, ")");
    }
    SR_ASSIGN_OR_RETURN(const std::byte* p, Take(length, what));
    return std::string_view(reinterpret_cast<const char*>(p), length);
  }
  // A count of items that each take at least `min_item_bytes`: a count the
  // rest of the file cannot hold is refused before anything is allocated.
  absl::Status CheckCount(uint64_t count, uint64_t min_item_bytes, std::string_view what) const {
    const std::optional<uint64_t> needed = CheckedMul(count, min_item_bytes);
    if (!needed || *needed > remaining()) {
      return Error(what, " ", count, " cannot fit in the ", remaining(),
                   " bytes left in the file (truncated or corrupt)");
    }
    return absl::OkStatus();
  }

 private:
  std::span<const std::byte> image_;
  const std::string& source_;
  uint64_t position_ = 0;
};

absl::StatusOr<GgufType> ReadType(Cursor& in, std::string_view what) {
  SR_ASSIGN_OR_RETURN(uint32_t raw, in.Read<uint32_t>(what));
  if (!IsKnownType(raw)) return in.Error(what, " ", raw, " is not a GGUF value type (0..12)");
  return static_cast<GgufType>(raw);
}

// One value of `type` (not an array) into `value`.
absl::Status ReadScalar(Cursor& in, GgufType type, std::string_view where, GgufValue* value) {
  if (type == GgufType::kString) {
    SR_ASSIGN_OR_RETURN(value->string, in.ReadString(Cat(where, ": string")));
    return absl::OkStatus();
  }
  const uint64_t bytes = *ScalarBytes(type);
  SR_ASSIGN_OR_RETURN(const std::byte* p, in.Take(bytes, Cat(where, ": value")));
  if (IsIntegerType(type)) {
    auto [v, fits] = LoadInteger(type, p);
    value->integer = v;
    value->integer_overflows = !fits;
  } else if (type == GgufType::kFloat32) {
    value->number = Load<float>(p);
  } else if (type == GgufType::kFloat64) {
    value->number = Load<double>(p);
  } else if (type == GgufType::kBool) {
    const uint8_t b = Load<uint8_t>(p);
    if (b > 1) return in.Error(where, ": BOOL value ", static_cast<int>(b), " is not 0 or 1");
    value->boolean = b == 1;
  }
  return absl::OkStatus();
}

absl::Status ReadArray(Cursor& in, std::string_view where, GgufValue* value) {
  SR_ASSIGN_OR_RETURN(value->element_type, ReadType(in, Cat(where, ": array type")));
  if (value->element_type == GgufType::kArray) {
    return in.Error(where, ": arrays of arrays are not supported");
  }
  SR_ASSIGN_OR_RETURN(value->count, in.Read<uint64_t>(Cat(where, ": array count")));
  if (value->element_type == GgufType::kString) {
    // Each element takes at least its 8-byte length.
    SR_RETURN_IF_ERROR(in.CheckCount(value->count, 8, Cat(where, ": array count")));
    value->strings.reserve(static_cast<size_t>(value->count));
    for (uint64_t i = 0; i < value->count; ++i) {
      SR_ASSIGN_OR_RETURN(std::string_view s, in.ReadString(Cat(where, ": element ", i)));
      value->strings.push_back(s);
    }
    value->elements = nullptr;
    return absl::OkStatus();
  }
  const uint64_t element_bytes = *ScalarBytes(value->element_type);
  SR_RETURN_IF_ERROR(in.CheckCount(value->count, element_bytes, Cat(where, ": array count")));
  SR_ASSIGN_OR_RETURN(value->elements,
                      in.Take(value->count * element_bytes, Cat(where, ": array elements")));
  if (value->element_type == GgufType::kBool) {
    for (uint64_t i = 0; i < value->count; ++i) {
      const auto b = static_cast<uint8_t>(value->elements[i]);
      if (b > 1) return in.Error(where, ": element ", i, ": BOOL value ", int{b}, " is not 0 or 1");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadMetadata(Cursor& in, uint64_t count, GgufMetadata* metadata) {
  // A key/value takes at least 8 (key length) + 4 (type) + 1 (value) bytes.
  SR_RETURN_IF_ERROR(in.CheckCount(count, 13, "metadata key/value count"));
  for (uint64_t i = 0; i < count; ++i) {
    SR_ASSIGN_OR_RETURN(std::string_view key,
                        in.ReadString(Cat("metadata key #", i), kMaxNameBytes));
    if (key.empty()) return in.Error("metadata key #", i, " is empty");
    const std::string where = Cat("key '", key, "'");
    GgufValue value;
    SR_ASSIGN_OR_RETURN(value.type, ReadType(in, Cat(where, ": value type")));
    if (value.type == GgufType::kArray) {
      SR_RETURN_IF_ERROR(ReadArray(in, where, &value));
    } else {
      SR_RETURN_IF_ERROR(ReadScalar(in, value.type, where, &value));
    }
    SR_RETURN_IF_ERROR(metadata->Add(key, std::move(value)));
  }
  return absl::OkStatus();
}

absl::StatusOr<GgufTensorInfo> ReadTensorInfo(Cursor& in, uint64_t index) {
  GgufTensorInfo info;
  SR_ASSIGN_OR_RETURN(std::string_view name,
                      in.ReadString(Cat("tensor #", index, " name"), kMaxNameBytes));
  if (name.empty()) return in.Error("tensor #", index, " has an empty name");
  info.name = std::string(name);
  const std::string where = Cat("tensor '", info.name, "'");
  SR_ASSIGN_OR_RETURN(uint32_t n_dims, in.Read<uint32_t>(Cat(where, ": n_dims")));
  if (n_dims > kMaxDims) {
    return in.Error(where, ": ", n_dims, " dims (GGUF allows at most ", kMaxDims, ")");
  }
  std::vector<int64_t> ne(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) {
    SR_ASSIGN_OR_RETURN(uint64_t dim, in.Read<uint64_t>(Cat(where, ": ne[", d, "]")));
    if (dim > static_cast<uint64_t>(INT64_MAX)) {
      return in.Error(where, ": ne[", d, "] = ", dim, " is absurd");
    }
    ne[d] = static_cast<int64_t>(dim);
  }
  info.shape.assign(ne.rbegin(), ne.rend());
  SR_ASSIGN_OR_RETURN(info.ggml_type, in.Read<uint32_t>(Cat(where, ": type")));
  SR_ASSIGN_OR_RETURN(info.offset, in.Read<uint64_t>(Cat(where, ": offset")));

  const GgmlTypeInfo* type = FindGgmlType(info.ggml_type);
  if (type == nullptr) return in.Error(where, ": unknown ggml type ", info.ggml_type);
  info.dtype = DTypeFromGgmlType(info.ggml_type);
  // A zero dim must not hide others that overflow: whoever reads the tensor
  // sizes rows and panels from the dims (TensorBytes, RowBytes), so every
  // product and the row's bytes must fit as if each dim were at least 1.
  std::vector<int64_t> at_least_one = info.shape;
  for (int64_t& d : at_least_one) d = std::max<int64_t>(d, 1);
  const std::optional<int64_t> numel = CheckedNumel(info.shape);
  if (!numel || !CheckedNumel(at_least_one))
    return in.Error(where, ": shape ", ShapeText(info.shape), " overflows int64 elements");
  const int64_t row = info.shape.empty() ? 1 : info.shape.back();
  if (row % type->block_elements != 0) {
    return in.Error(where, ": innermost dim ", row, " is not a multiple of the ", type->name,
                    " block size ", type->block_elements);
  }
  const std::optional<uint64_t> nbytes =
      CheckedMul(static_cast<uint64_t>(*numel / type->block_elements), type->block_bytes);
  if (!nbytes || !CheckedMul(static_cast<uint64_t>(row / type->block_elements), type->block_bytes))
    return in.Error(where, ": shape ", ShapeText(info.shape), " overflows the byte count");
  info.nbytes = *nbytes;
  return info;
}

// The data-section layout policy of gguf.h: aligned, in range, no overlap,
// only alignment padding between tensors and after the last.
absl::Status CheckLayout(const GgufContents& contents, const std::string& source) {
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(Cat(source, ": ", parts...));
  };
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(contents.tensors.size());
  for (const GgufTensorInfo& t : contents.tensors) by_offset.push_back(&t);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const GgufTensorInfo* a, const GgufTensorInfo* b) {
                     return a->offset != b->offset ? a->offset < b->offset : a->nbytes < b->nbytes;
                   });
  uint64_t end = 0;  // of the previous tensor, relative to the data section
  const GgufTensorInfo* previous = nullptr;
  for (const GgufTensorInfo* t : by_offset) {
    const std::string where = Cat("tensor '", t->name, "'");
    if (t->offset % contents.alignment != 0) {
      return error(where, ": offset ", t->offset, " is not a multiple of the alignment ",
                   contents.alignment);
    }
    const std::optional<uint64_t> t_end = CheckedAdd(t->offset, t->nbytes);
    if (!t_end || *t_end > contents.data_bytes) {
      return error(where, ": data [", t->offset, ", ", t->offset, " + ", t->nbytes,
                   ") runs past the end of the data section (", contents.data_bytes,
                   " bytes): truncated download?");
    }
    if (t->offset < end) {
      return error(where, ": data at offset ", t->offset, " overlaps tensor '", previous->name,
                   "' (which ends at ", end, ")");
    }
    if (t->offset - end >= contents.alignment) {
      return error(where, ": ", t->offset - end, " unused bytes before it at offset ", end,
                   " (more than the alignment padding of ", contents.alignment, ")");
    }
    end = *t_end;
    previous = t;
  }
  if (!contents.tensors.empty() && contents.data_bytes - end >= contents.alignment) {
    return error(contents.data_bytes - end, " trailing bytes after the last tensor's data (",
                 "more than the alignment padding of ", contents.alignment, ")");
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      return "UINT8";
    case GgufType::kInt8:
      return "INT8";
    case GgufType::kUint16:
      return "UINT16";
    case GgufType::kInt16:
      return "INT16";
    case GgufType::kUint32:
      return "UINT32";
    case GgufType::kInt32:
      return "INT32";
    case GgufType::kFloat32:
      return "FLOAT32";
    case GgufType::kBool:
      return "BOOL";
    case GgufType::kString:
      return "STRING";
    case GgufType::kArray:
      return "ARRAY";
    case GgufType::kUint64:
      return "UINT64";
    case GgufType::kInt64:
      return "INT64";
    case GgufType::kFloat64:
      return "FLOAT64";
  }
  return "?";
}

std::optional<DType> DTypeFromGgmlType(uint32_t ggml_type) {
  for (const auto& [id, dtype] : kEngineTypes) {
    if (id == ggml_type) return dtype;
  }
  return std::nullopt;
}

uint32_t GgmlTypeOf(DType dtype) {
  for (const auto& [id, d] : kEngineTypes) {
    if (d == dtype) return id;
  }
  SR_CHECK(false && "DType without a ggml type");
  return 0;
}

std::string_view GgmlTypeName(uint32_t ggml_type) {
  const GgmlTypeInfo* t = FindGgmlType(ggml_type);
  return t == nullptr ? std::string_view() : t->name;
}

// ---- GgufMetadata ----

const GgufValue* GgufMetadata::Find(std::string_view key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &entries_[it->second].second;
}

absl::Status GgufMetadata::KeyError(std::string_view key, std::string_view what) const {
  return absl::InvalidArgumentError(Cat(source_, ": key '", key, "': ", what));
}

absl::Status GgufMetadata::Add(std::string_view key, GgufValue value) {
  if (by_key_.contains(key)) return KeyError(key, "duplicate key");
  by_key_.emplace(key, entries_.size());
  entries_.emplace_back(key, std::move(value));
  return absl::OkStatus();
}

absl::StatusOr<const GgufValue*> GgufMetadata::Require(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) {
    return absl::NotFoundError(Cat(source_, ": key '", key, "' is missing (required)"));
  }
  return v;
}

absl::StatusOr<int64_t> GgufMetadata::GetInt(std::string_view key, int64_t lo, int64_t hi,
                                             std::optional<int64_t> fallback) const {
  const GgufValue* v = Find(key);
  if (v == nullptr && fallback) return *fallback;
  SR_ASSIGN_OR_RETURN(v, Require(key));
  if (!IsIntegerType(v->type)) {
    return KeyError(key, Cat("is ", GgufTypeName(v->type), ", expected an integer"));
  }
  if (v->integer_overflows || v->integer < lo || v->integer > hi) {
    const std::string value =
        v->integer_overflows ? Cat(static_cast<uint64_t>(v->integer)) : Cat(v->integer);
    return KeyError(key, Cat("value ", value, " is out of range [", lo, ", ", hi, "]"));
  }
  return v->integer;
}

absl::StatusOr<double> GgufMetadata::GetFloat(std::string_view key,
                                              std::optional<double> fallback) const {
  const GgufValue* v = Find(key);
  if (v == nullptr && fallback) return *fallback;
  SR_ASSIGN_OR_RETURN(v, Require(key));
  if (v->type != GgufType::kFloat32 && v->type != GgufType::kFloat64) {
    return KeyError(key, Cat("is ", GgufTypeName(v->type), ", expected FLOAT32"));
  }
  if (!std::isfinite(v->number)) return KeyError(key, Cat("value ", v->number, " is not finite"));
  return v->number;
}

absl::StatusOr<bool> GgufMetadata::GetBool(std::string_view key,
                                           std::optional<bool> fallback) const {
  const GgufValue* v = Find(key);
  if (v == nullptr && fallback) return *fallback;
  SR_ASSIGN_OR_RETURN(v, Require(key));
  if (v->type != GgufType::kBool) {
    return KeyError(key, Cat("is ", GgufTypeName(v->type), ", expected BOOL"));
  }
  return v->boolean;
}

absl::StatusOr<std::string_view> GgufMetadata::GetString(
    std::string_view key, std::optional<std::string_view> fallback) const {
  const GgufValue* v = Find(key);
  if (v == nullptr && fallback) return *fallback;
  SR_ASSIGN_OR_RETURN(v, Require(key));
  if (v->type != GgufType::kString) {
    return KeyError(key, Cat("is ", GgufTypeName(v->type), ", expected STRING"));
  }
  return v->string;
}

absl::StatusOr<std::span<const std::string_view>> GgufMetadata::GetStringArray(
    std::string_view key) const {
  SR_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  if (v->type != GgufType::kArray || v->element_type != GgufType::kString) {
    return KeyError(
        key, Cat("is ", GgufTypeName(v->type),
                 v->type == GgufType::kArray ? Cat(" of ", GgufTypeName(v->element_type)) : "",
                 ", expected ARRAY of STRING"));
  }
  return std::span<const std::string_view>(v->strings);
}

absl::StatusOr<std::vector<int64_t>> GgufMetadata::GetIntArray(std::string_view key) const {
  SR_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  if (v->type != GgufType::kArray || !IsIntegerType(v->element_type)) {
    return KeyError(
        key, Cat("is ", GgufTypeName(v->type),
                 v->type == GgufType::kArray ? Cat(" of ", GgufTypeName(v->element_type)) : "",
                 ", expected an ARRAY of integers"));
  }
  const uint64_t element_bytes = *ScalarBytes(v->element_type);
  std::vector<int64_t> out(static_cast<size_t>(v->count));
  for (uint64_t i = 0; i < v->count; ++i) {
    auto [x, fits] = LoadInteger(v->element_type, v->elements + i * element_bytes);
    if (!fits) {
      return KeyError(key,
                      Cat("element ", i, " = ", static_cast<uint64_t>(x), " does not fit int64"));
    }
    out[i] = x;
  }
  return out;
}

absl::StatusOr<std::vector<float>> GgufMetadata::GetFloatArray(std::string_view key) const {
  SR_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  const bool f32 = v->element_type == GgufType::kFloat32;
  if (v->type != GgufType::kArray || !(f32 || v->element_type == GgufType::kFloat64)) {
    return KeyError(
        key, Cat("is ", GgufTypeName(v->type),
                 v->type == GgufType::kArray ? Cat(" of ", GgufTypeName(v->element_type)) : "",
                 ", expected an ARRAY of FLOAT32"));
  }
  std::vector<float> out(static_cast<size_t>(v->count));
  if (out.empty()) return out;  // memcpy must not get data() == nullptr, even for 0 bytes
  if (f32) {
    std::memcpy(out.data(), v->elements, out.size() * sizeof(float));
  } else {
    for (uint64_t i = 0; i < v->count; ++i) {
      out[i] = static_cast<float>(Load<double>(v->elements + i * 8));
    }
  }
  return out;
}

// ---- Parsing ----

absl::StatusOr<GgufContents> ParseGguf(std::span<const std::byte> image,
                                       std::string_view source_view) {
  const std::string source(source_view);
  Cursor in(image, source);
  GgufContents contents;
  contents.metadata = GgufMetadata(source);

  if (image.size() < 4 || std::memcmp(image.data(), "GGUF", 4) != 0) {
    return in.Error("not a GGUF file (the first 4 bytes are not \"GGUF\")");
  }
  (void)in.Take(4, "magic");
  SR_ASSIGN_OR_RETURN(contents.version, in.Read<uint32_t>("header version"));
  if (contents.version != 2 && contents.version != 3) {
    const uint32_t swapped = __builtin_bswap32(contents.version);
    if (swapped == 2 || swapped == 3) {
      return in.Error("big-endian GGUF (version ", swapped, ") is not supported");
    }
    if (contents.version == 1) return in.Error("GGUF version 1 is not supported (2 and 3 are)");
    return in.Error("GGUF version ", contents.version, " is not supported (2 and 3 are)");
  }
  SR_ASSIGN_OR_RETURN(uint64_t tensor_count, in.Read<uint64_t>("header tensor count"));
  SR_ASSIGN_OR_RETURN(uint64_t kv_count, in.Read<uint64_t>("header metadata count"));
  SR_RETURN_IF_ERROR(ReadMetadata(in, kv_count, &contents.metadata));

  if (const GgufValue* alignment = contents.metadata.Find("general.alignment")) {
    if (alignment->type != GgufType::kUint32) {
      return contents.metadata.KeyError(
          "general.alignment", Cat("is ", GgufTypeName(alignment->type), ", expected UINT32"));
    }
    const auto a = static_cast<uint64_t>(alignment->integer);
    if (a == 0 || (a & (a - 1)) != 0) {
      return contents.metadata.KeyError("general.alignment", Cat(a, " is not a power of two"));
    }
    contents.alignment = a;
  }

  // A tensor info takes at least 8 (name length) + 4 + 4 + 8 bytes.
  SR_RETURN_IF_ERROR(in.CheckCount(tensor_count, 24, "tensor count"));
  contents.tensors.reserve(static_cast<size_t>(tensor_count));
  std::unordered_map<std::string_view, size_t> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    SR_ASSIGN_OR_RETURN(GgufTensorInfo info, ReadTensorInfo(in, i));
    contents.tensors.push_back(std::move(info));
  }
  for (size_t i = 0; i < contents.tensors.size(); ++i) {
    if (!names.emplace(contents.tensors[i].name, i).second) {
      return in.Error("tensor '", contents.tensors[i].name, "': duplicate name");
    }
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t info_end = in.position();
  const uint64_t padding =
      (contents.alignment - info_end % contents.alignment) % contents.alignment;
  const std::optional<uint64_t> data_offset = CheckedAdd(info_end, padding);
  if (!data_offset || *data_offset > image.size()) {
    if (!contents.tensors.empty()) {
      return in.Error("the data section (at offset ", info_end, " + ", padding,
                      " bytes of padding) starts past the end of the file (", image.size(),
                      " bytes): truncated?");
    }
    contents.data_offset = image.size();
  } else {
    contents.data_offset = *data_offset;
  }
  contents.data_bytes = image.size() - contents.data_offset;
  SR_RETURN_IF_ERROR(CheckLayout(contents, source));
  return contents;
}

bool HasGgufMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

// ---- GgufFile ----

GgufFile::GgufFile(std::unique_ptr<MappedFile> mapping, GgufContents contents)
    : mapping_(std::move(mapping)), contents_(std::move(contents)) {
  for (size_t i = 0; i < contents_.tensors.size(); ++i) {
    by_name_.emplace(contents_.tensors[i].name, i);
  }
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  SR_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  // The header (vocabularies make it a few MB) is read once, front to back.
  mapping->Advise(AccessHint::kSequential, 0, 16 << 20);
  SR_ASSIGN_OR_RETURN(GgufContents contents, ParseGguf(mapping->bytes(), path));
  mapping->Advise(AccessHint::kNormal);
  return std::unique_ptr<GgufFile>(new GgufFile(std::move(mapping), std::move(contents)));
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &contents_.tensors[it->second];
}

absl::StatusOr<TensorView> GgufFile::Tensor(std::string_view name) const {
  const GgufTensorInfo* info = FindTensor(name);
  if (info == nullptr) {
    return absl::NotFoundError(Cat(path(), ": tensor '", name, "' is missing"));
  }
  if (!info->dtype) {
    return absl::InvalidArgumentError(
        Cat(path(), ": tensor '", name, "': ggml type ", GgmlTypeName(info->ggml_type), " (",
            info->ggml_type,
            ") is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, "
            "Q5_K, Q6_K)"));
  }
  TensorView view;
  view.name = info->name;
  view.dtype = *info->dtype;
  view.shape = info->shape;
  view.data = mapping_->data() + contents_.data_offset + info->offset;
  view.nbytes = static_cast<size_t>(info->nbytes);
  return view;
}

uint64_t GgufFile::tensor_bytes() const {
  uint64_t total = 0;
  for (const GgufTensorInfo& t : contents_.tensors) total += t.nbytes;
  return total;
}

}  // namespace saferoute
