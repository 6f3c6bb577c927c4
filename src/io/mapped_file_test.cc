#include "io/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace saferoute {
namespace {

namespace fs = std::filesystem;

fs::path TempPath(const std::string& name) {
  return fs::temp_directory_path() /
         absl::StrCat("saferoute_mapped_file_test_", ::getpid(), "_", name);
}

TEST(MappedFileTest, MapsTheFileBytes) {
  const fs::path path = TempPath("data");
  {
    std::ofstream out(path, std::ios::binary);
    out << "hello, mapping";
  }
  auto file = MappedFile::Open(path.string());
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->size(), 14u);
  EXPECT_EQ(std::memcmp((*file)->data(), "hello, mapping", 14), 0);
  EXPECT_EQ((*file)->path(), path.string());
  EXPECT_TRUE((*file)->Contains((*file)->data(), 14));
  EXPECT_TRUE((*file)->Contains((*file)->data() + 14, 0));
  EXPECT_FALSE((*file)->Contains((*file)->data() + 10, 5));
  EXPECT_FALSE((*file)->Contains((*file)->data() - 1, 1));
  (*file)->Advise(AccessHint::kWillNeed);  // hints never fail
  (*file)->Advise(AccessHint::kRandom, 3, 100);
  (*file)->Advise(AccessHint::kSequential, 1000);
  fs::remove(path);
  // The mapping outlives the directory entry.
  EXPECT_EQ(std::memcmp((*file)->data(), "hello", 5), 0);
}

// kDontNeed drops the mapping's pages: they read back the same (from the page
// cache or the file), and the mapping's resident size falls.
TEST(MappedFileTest, DroppedPagesReadBackTheSame) {
  const fs::path path = TempPath("dontneed");
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE)), size = 64 * page;
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i * 7 + i / page);
  std::ofstream(path, std::ios::binary) << bytes;
  auto file = MappedFile::Open(path.string());
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(std::memcmp((*file)->data(), bytes.data(), size), 0);  // every page touched
  auto resident_pages = [&] {
    // mincore on a file mapping reports page-cache residency, not the
    // mapping's; read the mapping's own share from /proc/self/smaps instead.
    std::ifstream smaps("/proc/self/smaps");
    const auto begin = reinterpret_cast<uintptr_t>((*file)->data());
    std::string line;
    bool ours = false;
    while (std::getline(smaps, line)) {
      uintptr_t lo = 0, hi = 0;
      if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) ours = lo == begin;
      if (ours && line.rfind("Rss:", 0) == 0) return std::stol(line.substr(4)) * 1024 / long(page);
    }
    return -1L;
  };
  EXPECT_EQ(resident_pages(), 64);
  (*file)->Advise(AccessHint::kDontNeed, page + 5, 10 * page);  // rounds out to whole pages
  EXPECT_LT(resident_pages(), 64);
  EXPECT_EQ(std::memcmp((*file)->data(), bytes.data(), size), 0);
  fs::remove(path);
}

TEST(MappedFileTest, EmptyFileIsAnEmptyMapping) {
  const fs::path path = TempPath("empty");
  { std::ofstream out(path, std::ios::binary); }
  auto file = MappedFile::Open(path.string());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->size(), 0u);
  EXPECT_TRUE((*file)->bytes().empty());
  fs::remove(path);
}

TEST(MappedFileTest, ErrorsNameThePath) {
  auto missing = MappedFile::Open("/nonexistent/dir/model.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find("/nonexistent/dir/model.safetensors"),
            std::string::npos);
  auto dir = MappedFile::Open(fs::temp_directory_path().string());
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(std::string(dir.status().message()).find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace saferoute
