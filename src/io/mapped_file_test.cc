#include "io/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

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
