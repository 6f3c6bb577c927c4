// Safetensors writing, atomically (tmp file + fsync + rename).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "io/checked_math.h"
#include "io/safetensors.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

using json = nlohmann::json;

// An open temporary file that is removed unless Commit() renames it.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path)
      : path_(std::move(path)), tmp_path_(absl::StrCat(path_, ".tmp.", ::getpid())) {}
  ~AtomicFileWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_path_.c_str());
  }

  absl::Status Open() {
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return Error("cannot create", tmp_path_);
    return absl::OkStatus();
  }

  absl::Status Write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      // write() may be partial (and is capped near 2 GB per call on Linux).
      const ssize_t w = ::write(fd_, p, std::min<size_t>(n, 1u << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        return Error("cannot write", tmp_path_);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return absl::OkStatus();
  }

  absl::Status Commit() {
    if (::fsync(fd_) != 0) return Error("cannot fsync", tmp_path_);
    if (::close(fd_) != 0) {
      fd_ = -1;
      return Error("cannot close", tmp_path_);
    }
    fd_ = -1;
    if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) return Error("cannot rename to", path_);
    committed_ = true;
    // Make the rename itself durable.
    std::string dir = std::filesystem::path(path_).parent_path().string();
    if (dir.empty()) dir = ".";
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      (void)::fsync(dir_fd);
      ::close(dir_fd);
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status Error(std::string_view what, const std::string& path) {
    return absl::InternalError(
        absl::StrCat(path, ": ", std::string(what), ": ", std::strerror(errno)));
  }

  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents) {
  AtomicFileWriter writer(path);
  SR_RETURN_IF_ERROR(writer.Open());
  SR_RETURN_IF_ERROR(writer.Write(contents.data(), contents.size()));
  return writer.Commit();
}

absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    auto error = [&](auto&&... parts) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "': ", parts...));
    };
    if (t.name.empty() || t.name == "__metadata__") return error("invalid tensor name");
    if (!names.insert(t.name).second) return error("duplicate tensor name");
    std::optional<int64_t> numel = CheckedNumel(t.shape);
    if (!numel) return error("negative or overflowing shape");
    std::optional<uint64_t> nbytes = CheckedMul(static_cast<uint64_t>(*numel), DTypeSize(t.dtype));
    if (!nbytes || *nbytes != t.nbytes) {
      return error("nbytes ", t.nbytes, " does not match ", std::string(DTypeName(t.dtype)), " x ",
                   *numel, " elements");
    }
    if (t.data == nullptr && t.nbytes != 0) return error("no data");
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + *nbytes}}};
    offset += *nbytes;
  }
  std::string header_text = header.dump();
  // Pad with spaces (valid trailing JSON whitespace) so the data buffer, and
  // with it every tensor, starts 8-byte aligned in the file, as HF does.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint8_t length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<uint8_t>(header_text.size() >> (8 * i));

  AtomicFileWriter writer(path);
  SR_RETURN_IF_ERROR(writer.Open());
  SR_RETURN_IF_ERROR(writer.Write(length_bytes, 8));
  SR_RETURN_IF_ERROR(writer.Write(header_text.data(), header_text.size()));
  for (const TensorToWrite& t : tensors) SR_RETURN_IF_ERROR(writer.Write(t.data, t.nbytes));
  return writer.Commit();
}

}  // namespace saferoute
