// Safetensors reading: header validation and single memory-mapped files.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "io/checked_math.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

using json = nlohmann::json;

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

uint64_t ReadU64LittleEndian(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// One header entry before its offsets are checked against its neighbours.
struct RawEntry {
  TensorView view;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Parses `{"dtype", "shape", "data_offsets"}` of one tensor. Extra keys are
// ignored, as the reference implementation does. `data_bytes` bounds offsets.
absl::StatusOr<RawEntry> ParseEntry(const std::string& name, const json& value, uint64_t data_bytes,
                                    std::string_view source_view) {
  const std::string source(source_view);  // absl here has its own string_view
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": tensor '", name, "': ", parts...));
  };
  if (!value.is_object()) return error("entry is not a JSON object");
  RawEntry entry;
  entry.view.name = name;

  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end()) return error("missing field 'dtype'");
  if (!dtype_it->is_string()) return error("field 'dtype' is not a string");
  absl::StatusOr<DType> dtype = ParseDTypeName(dtype_it->get_ref<const std::string&>());
  if (!dtype.ok()) return error(dtype.status().message());
  entry.view.dtype = *dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end()) return error("missing field 'shape'");
  if (!shape_it->is_array()) return error("field 'shape' is not an array");
  if (shape_it->size() > 16) return error("shape has ", shape_it->size(), " dims (at most 16)");
  for (const json& dim : *shape_it) {
    if (dim.is_number_unsigned()) {
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(INT64_MAX)) return error("shape dim ", d, " is absurd");
      entry.view.shape.push_back(static_cast<int64_t>(d));
    } else if (dim.is_number_integer()) {
      return error("negative shape dim ", dim.get<int64_t>());
    } else {
      return error("shape dim ", dim.dump(), " is not a non-negative integer");
    }
  }
  std::optional<int64_t> numel = CheckedNumel(entry.view.shape);
  if (!numel) return error("shape ", ShapeText(entry.view.shape), " overflows int64 elements");
  std::optional<uint64_t> nbytes =
      CheckedMul(static_cast<uint64_t>(*numel), DTypeSize(entry.view.dtype));
  if (!nbytes) return error("shape ", ShapeText(entry.view.shape), " overflows the byte count");

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end()) return error("missing field 'data_offsets'");
  const json& offsets = *offsets_it;
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_integer() ||
      !offsets[1].is_number_integer()) {
    return error("field 'data_offsets' is not [begin, end]: ", offsets.dump());
  }
  if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
    return error("negative data_offsets ", offsets.dump());
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.begin > entry.end) {
    return error("data_offsets [", entry.begin, ", ", entry.end, "] are reversed");
  }
  if (entry.end > data_bytes) {
    return error("data_offsets [", entry.begin, ", ", entry.end,
                 "] out of range: the data buffer has ", data_bytes, " bytes");
  }
  if (entry.end - entry.begin != *nbytes) {
    return error("data_offsets span ", entry.end - entry.begin, " bytes but ",
                 std::string(DTypeName(entry.view.dtype)), " ", ShapeText(entry.view.shape),
                 " needs ", *nbytes, " bytes");
  }
  entry.view.nbytes = static_cast<size_t>(*nbytes);
  return entry;
}

absl::Status ParseMetadata(const json& value, const std::string& source,
                           std::map<std::string, std::string>* metadata) {
  if (value.is_null()) return absl::OkStatus();
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": '__metadata__' is not a string-to-string object"));
  }
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": '__metadata__' key '", key,
                                                     "' has a non-string value ", v.dump()));
    }
    (*metadata)[key] = v.get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DType> ParseDTypeName(std::string_view name_view) {
  const std::string name(name_view);
  if (name == "F32") return DType::kF32;
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name, "' (supported: F32, BF16, F16)"));
}

absl::StatusOr<SafetensorsContents> ParseSafetensors(std::span<const std::byte> image,
                                                     std::string_view source_view) {
  const std::string source(source_view);
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parts...));
  };
  if (image.size() < 8) {
    return error("file is ", image.size(), " bytes, shorter than the 8-byte header length");
  }
  SafetensorsContents contents;
  const uint64_t header_bytes = ReadU64LittleEndian(image.data());
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return error("header length ", header_bytes, " is absurd (limit ", kMaxSafetensorsHeaderBytes,
                 " bytes); not a safetensors file?");
  }
  if (header_bytes > image.size() - 8) {
    return error("header length ", header_bytes, " runs past the end of the file (", image.size(),
                 " bytes): truncated download?");
  }
  contents.header_bytes = header_bytes;
  contents.data_bytes = image.size() - 8 - header_bytes;
  const char* header_begin = reinterpret_cast<const char*>(image.data() + 8);
  const char* header_end = header_begin + header_bytes;

  // nlohmann keeps the last of duplicate keys silently; the parser callback
  // sees every top-level key, so duplicates are caught here.
  std::set<std::string> seen_keys;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen_keys.insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(header_begin, header_end, on_event, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {  // defensive: the callback path may still throw
    return error("header is not valid JSON: ", e.what());
  }
  if (header.is_discarded()) return error("header (", header_bytes, " bytes) is not valid JSON");
  if (!header.is_object()) return error("header is not a JSON object");
  if (!duplicate.empty()) return error("tensor '", duplicate, "': duplicate name in header");

  std::vector<RawEntry> entries;
  entries.reserve(header.size());
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      SR_RETURN_IF_ERROR(ParseMetadata(value, source, &contents.metadata));
      continue;
    }
    if (name.empty()) return error("tensor with an empty name");
    SR_ASSIGN_OR_RETURN(RawEntry entry, ParseEntry(name, value, contents.data_bytes, source));
    entries.push_back(std::move(entry));
  }

  // The tensors must tile [0, data_bytes) exactly: see the header comment.
  std::sort(entries.begin(), entries.end(), [](const RawEntry& a, const RawEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  const std::string* previous = nullptr;
  for (const RawEntry& e : entries) {
    if (e.begin < expected_begin) {
      return error("tensor '", e.view.name, "': data_offsets [", e.begin, ", ", e.end,
                   "] overlap tensor '", *previous, "' (which ends at ", expected_begin, ")");
    }
    if (e.begin > expected_begin) {
      return error("tensor '", e.view.name, "': data_offsets [", e.begin, ", ", e.end,
                   "] leave a gap of ", e.begin - expected_begin, " unused bytes after ",
                   previous ? absl::StrCat("tensor '", *previous, "'") : "the header",
                   " (tensors must be contiguous)");
    }
    expected_begin = e.end;
    previous = &e.view.name;
  }
  if (expected_begin != contents.data_bytes) {
    return error(contents.data_bytes - expected_begin,
                 " trailing bytes after the last tensor (data buffer is ", contents.data_bytes,
                 " bytes, tensors cover ", expected_begin, ")");
  }

  const std::byte* data = image.data() + 8 + header_bytes;
  contents.tensors.reserve(entries.size());
  for (RawEntry& e : entries) {
    e.view.data = data + e.begin;
    contents.tensors.push_back(std::move(e.view));
  }
  return contents;
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> mapping, SafetensorsContents contents)
    : mapping_(std::move(mapping)), contents_(std::move(contents)) {
  for (size_t i = 0; i < contents_.tensors.size(); ++i) {
    by_name_.emplace(contents_.tensors[i].name, i);
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  SR_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  // The header is read once, front to back; weights are then read by layer.
  mapping->Advise(AccessHint::kSequential, 0, 1 << 20);
  SR_ASSIGN_OR_RETURN(SafetensorsContents contents, ParseSafetensors(mapping->bytes(), path));
  mapping->Advise(AccessHint::kNormal);
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFile(std::move(mapping), std::move(contents)));
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &contents_.tensors[it->second];
}

}  // namespace saferoute
