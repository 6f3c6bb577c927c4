// TensorStore: the safetensors files of one Hugging Face model directory.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/safetensors.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

using json = nlohmann::json;

constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr char kSingleName[] = "model.safetensors";
// Index files list one line per tensor; a few MB at most for any real model.
constexpr uintmax_t kMaxIndexBytes = 64ull << 20;

// A shard name from the index must name a file directly inside the model
// directory: a hostile index must not make us open files elsewhere.
absl::Status CheckShardName(const std::string& shard, const std::string& index_path,
                            const std::string& tensor) {
  if (shard.empty() || shard == "." || shard == ".." ||
      shard.find_first_of(std::string_view("/\\\0", 3)) != std::string::npos ||
      shard.find("..") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", tensor,
                                                   "': shard file name '", shard,
                                                   "' is not a plain file name in the directory"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, uintmax_t limit) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": cannot read: ", ec.message()));
  if (size > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", size, " bytes is too large (limit ", limit, ")"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return std::move(text).str();
}

}  // namespace

absl::Status TensorStore::AddFile(std::unique_ptr<SafetensorsFile> file) {
  const size_t file_index = files_.size();
  for (size_t i = 0; i < file->tensors().size(); ++i) {
    const TensorView& t = file->tensors()[i];
    auto [it, inserted] = by_name_.emplace(t.name, std::make_pair(file_index, i));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", t.name,
                                                     "': also present in ",
                                                     files_[it->second.first]->path()));
    }
    total_bytes_ += t.nbytes;
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TensorStore>> TensorStore::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<TensorStore> store(new TensorStore());
  const std::string index_path = (fs::path(dir) / kIndexName).string();
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    const std::string single = (fs::path(dir) / kSingleName).string();
    if (!fs::exists(single, ec)) {
      return absl::NotFoundError(absl::StrCat(dir, ": neither ", kSingleName, " nor ", kIndexName,
                                              " found (not a Hugging Face model directory?)"));
    }
    SR_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single));
    SR_RETURN_IF_ERROR(store->AddFile(std::move(file)));
    return store;
  }

  SR_ASSIGN_OR_RETURN(std::string index_text, ReadSmallFile(index_path, kMaxIndexBytes));
  json index = json::parse(index_text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a JSON object"));
  }
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": missing object 'weight_map' (tensor name -> shard file)"));
  }
  // Shards in first-mention order; tensor -> shard as the index says.
  std::vector<std::string> shard_order;
  std::map<std::string, std::string> shard_of;
  for (const auto& [tensor, shard_value] : map_it->items()) {
    if (!shard_value.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": tensor '", tensor, "': shard is not a string"));
    }
    const std::string shard = shard_value.get<std::string>();
    SR_RETURN_IF_ERROR(CheckShardName(shard, index_path, tensor));
    if (std::find(shard_order.begin(), shard_order.end(), shard) == shard_order.end()) {
      shard_order.push_back(shard);
    }
    shard_of[tensor] = shard;
  }
  if (shard_order.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": 'weight_map' is empty"));
  }
  for (const std::string& shard : shard_order) {
    const std::string shard_path = (fs::path(dir) / shard).string();
    if (!fs::exists(shard_path, ec)) {
      return absl::NotFoundError(absl::StrCat(
          index_path, ": shard '", shard, "' named in the index is missing (", shard_path, ")"));
    }
    SR_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(shard_path));
    SR_RETURN_IF_ERROR(store->AddFile(std::move(file)));
  }
  // The index and the shards must describe the same tensors.
  for (const auto& [tensor, shard] : shard_of) {
    auto it = store->by_name_.find(tensor);
    if (it == store->by_name_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", tensor,
                                                     "': the index maps it to '", shard,
                                                     "' but no shard contains it"));
    }
    const std::string actual = fs::path(store->files_[it->second.first]->path()).filename();
    if (actual != shard) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", tensor,
                                                     "': the index maps it to '", shard,
                                                     "' but it is in '", actual, "'"));
    }
  }
  for (const auto& [name, location] : store->by_name_) {
    if (!shard_of.contains(std::string(name))) {
      return absl::InvalidArgumentError(
          absl::StrCat(store->files_[location.first]->path(), ": tensor '", std::string(name),
                       "': not listed in ", kIndexName, " (index and shards disagree)"));
    }
  }
  return store;
}

const TensorView* TensorStore::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return nullptr;
  return &files_[it->second.first]->tensors()[it->second.second];
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, location] : by_name_) out.emplace_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

const std::string& TensorStore::FileOf(std::string_view name) const {
  auto it = by_name_.find(name);
  SR_CHECK(it != by_name_.end());
  return files_[it->second.first]->path();
}

bool TensorStore::Owns(const void* p, size_t n) const {
  for (const auto& file : files_) {
    if (file->mapping().Contains(p, n)) return true;
  }
  return false;
}

}  // namespace saferoute
