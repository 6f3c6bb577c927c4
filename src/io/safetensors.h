// Safetensors reading (single files and sharded HF directories) and writing.
//
// Format: u64 little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...,
//    "__metadata__": {"<k>": "<v>"}}
// then the data buffer; offsets are relative to byte 8 + N, data row-major.
//
// Everything in a file is hostile input and validated with overflow-safe
// arithmetic. Layout policy (same as the reference Rust implementation): the
// tensors must tile the data buffer exactly — sorted by offset they start at 0,
// each begins where the previous ends, the last ends at the end of the file.
// Overlaps, gaps ("holes") and trailing bytes are errors, so no byte of a file
// is unaccounted for (no polyglot files, no silently ignored data).
//
// Thread safety: SafetensorsFile and TensorStore are immutable after Open.
#ifndef SAFEROUTE_IO_SAFETENSORS_H_
#define SAFEROUTE_IO_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor.h"
#include "util/status.h"

namespace saferoute {

// Largest JSON header accepted. Real 8B-model headers are ~30 KB; anything
// near this is a corrupt or malicious length field.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// Parses a safetensors dtype name ("F32", "BF16", "F16").
absl::StatusOr<DType> ParseDTypeName(std::string_view name);

// The parsed header of a safetensors image held in memory. `tensors` are in
// data-offset order and point into `image`.
struct SafetensorsContents {
  std::vector<TensorView> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t header_bytes = 0;  // N
  uint64_t data_bytes = 0;    // size of the data buffer after the header
};

// Validates and parses a complete safetensors image. `source` names it in
// errors ("<source>: tensor '<name>': <what>"). Exposed for the fuzzer.
absl::StatusOr<SafetensorsContents> ParseSafetensors(std::span<const std::byte> image,
                                                     std::string_view source);

// One memory-mapped .safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return mapping_->path(); }
  // In data-offset order. Views point into the mapping.
  const std::vector<TensorView>& tensors() const { return contents_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return contents_.metadata; }
  const TensorView* Find(std::string_view name) const;
  uint64_t data_bytes() const { return contents_.data_bytes; }
  const MappedFile& mapping() const { return *mapping_; }

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> mapping, SafetensorsContents contents);

  std::unique_ptr<MappedFile> mapping_;
  SafetensorsContents contents_;
  std::unordered_map<std::string_view, size_t> by_name_;  // keys point into contents_
};

// The tensors of a Hugging Face model directory: dir/model.safetensors.index.json
// ("weight_map": tensor name -> shard file in dir) if present, otherwise
// dir/model.safetensors. Validation beyond each file's own:
//  - shard names are plain file names (no '/', '\\', '..', not empty);
//  - every shard the index names exists (error names the shard);
//  - every indexed tensor is in exactly the shard the index says;
//  - no tensor appears in two shards, and every tensor in a shard is indexed
//    (an index that does not describe its shards is a broken download).
// The index's "metadata.total_size" is not checked: writers disagree on it.
class TensorStore {
 public:
  static absl::StatusOr<std::unique_ptr<TensorStore>> Open(const std::string& dir);

  const TensorView* Find(std::string_view name) const;
  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  // Sum of every tensor's data bytes.
  uint64_t total_bytes() const { return total_bytes_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // The file holding a tensor found by Find (for error messages).
  const std::string& FileOf(std::string_view name) const;
  // True if `p` points into one of the store's memory mappings.
  bool Owns(const void* p, size_t n) const;

 private:
  TensorStore() = default;
  absl::Status AddFile(std::unique_ptr<SafetensorsFile> file);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  // name -> (file index, tensor index); keys point into files_' views.
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> by_name_;
  uint64_t total_bytes_ = 0;
};

// One tensor for WriteSafetensors. `data` holds `nbytes` bytes, row-major.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes a safetensors file atomically: to "<path>.tmp.<pid>", fsync, rename
// over `path`, fsync the directory. Tensors are laid out in the given order;
// the header is padded with spaces to a multiple of 8 bytes (as HF does) so
// data offsets stay 8-byte aligned in the file. Checks names are unique and
// non-empty and nbytes == numel * dtype size.
absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata);

// Writes `contents` to `path` atomically (tmp + fsync + rename). Used for small
// companion files (config.json) next to safetensors files.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);

}  // namespace saferoute

#endif  // SAFEROUTE_IO_SAFETENSORS_H_
