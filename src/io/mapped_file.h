// Read-only memory-mapped file (RAII). Checkpoint tensors are views into it,
// so weights are never copied into the heap.
//
// Thread safety: immutable after Open; the mapping is read-only and may be read
// from any thread. The mapping lives until the MappedFile is destroyed.
#ifndef SAFEROUTE_IO_MAPPED_FILE_H_
#define SAFEROUTE_IO_MAPPED_FILE_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "util/status.h"

namespace saferoute {

// How the mapping will be read; passed to madvise as a hint (never required).
enum class AccessHint {
  kNormal,
  kSequential,  // read once front to back (parsing, hashing)
  kRandom,      // weights read by layer in forward order, many times
  kWillNeed,    // prefetch now (small files, or to warm up before serving)
  kDontNeed,    // read, not needed again: the mapping drops its pages (they stay in the
                // page cache; the mapping is read-only, so a later read faults them back in)
};

class MappedFile {
 public:
  // Maps the whole file read-only. An empty file maps to an empty span.
  // Errors name the path (not found, not a regular file, mmap failure).
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // True if [p, p + n) lies inside the mapping.
  bool Contains(const void* p, size_t n) const;

  // Best-effort madvise over [offset, offset + length) (clipped to the file).
  void Advise(AccessHint hint, size_t offset = 0, size_t length = SIZE_MAX) const;

 private:
  MappedFile(std::string path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace saferoute

#endif  // SAFEROUTE_IO_MAPPED_FILE_H_
