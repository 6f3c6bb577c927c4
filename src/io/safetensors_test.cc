// Safetensors reading and writing: hand-made corrupt images (each rejected
// with its own error), writer round trips, and sharded directories.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"
#include "util/test_mutations.h"
#include "util/test_status.h"

namespace saferoute {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kShardedGuard =
    fs::path(SAFEROUTE_SHARED_DIR) / "fixtures" / "guard" / "llama_guard_tiny_fullvocab_bf16";

// A safetensors image: u64 LE `header_length` (default: the header's size),
// the header text, then `data_bytes` bytes counting 0, 1, 2, ...
std::string Image(const std::string& header, size_t data_bytes,
                  std::optional<uint64_t> header_length = std::nullopt) {
  const uint64_t n = header_length.value_or(header.size());
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  out += header;
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<char>(i));
  return out;
}

absl::StatusOr<SafetensorsContents> Parse(const std::string& image) {
  return ParseSafetensors(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(image.data()), image.size()),
      "test.safetensors");
}

absl::Status ParseError(const std::string& header, size_t data_bytes) {
  return Parse(Image(header, data_bytes)).status();
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            absl::StrCat("saferoute_safetensors_test_", ::getpid(), "_", counter_++);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

void WriteBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

TEST(ParseSafetensorsTest, ValidImageGivesViewsIntoTheData) {
  const std::string image = Image(
      R"({"b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]},
          "a": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]},
          "__metadata__": {"format": "pt"}})",
      12);
  auto contents = Parse(image);
  ASSERT_TRUE(contents.ok()) << contents.status();
  ASSERT_EQ(contents->tensors.size(), 2u);
  const TensorView& a = contents->tensors[0];  // in offset order
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, DType::kF32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(a.nbytes, 8u);
  EXPECT_EQ(a.numel(), 2);
  const size_t data_start = image.size() - 12;
  EXPECT_EQ(reinterpret_cast<const char*>(a.data), image.data() + data_start);
  EXPECT_EQ(contents->tensors[1].name, "b");
  EXPECT_EQ(static_cast<int>(contents->tensors[1].data[0]), 8);  // byte value 8 at offset 8
  EXPECT_EQ(contents->metadata.at("format"), "pt");
  EXPECT_EQ(contents->data_bytes, 12u);
}

TEST(ParseSafetensorsTest, EmptyHeaderAndZeroSizedTensorsAreValid) {
  EXPECT_TRUE(Parse(Image("{}", 0)).ok());
  auto c = Parse(Image(R"({"e": {"dtype": "F16", "shape": [0, 5], "data_offsets": [0, 0]}})", 0));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tensors[0].numel(), 0);
}

TEST(ParseSafetensorsTest, RejectsBrokenFraming) {
  EXPECT_TRUE(ErrorContains(Parse(std::string(5, '\0')).status(), "shorter than the 8-byte"));
  EXPECT_TRUE(ErrorContains(Parse(Image("{}", 0, 3)).status(), "runs past the end"));
  EXPECT_TRUE(ErrorContains(Parse(Image("{}", 0, uint64_t{1} << 40)).status(), "absurd"));
  EXPECT_TRUE(ErrorContains(Parse(Image("{\"a\": ", 0)).status(), "not valid JSON"));
  EXPECT_TRUE(ErrorContains(Parse(Image("[1, 2]", 0)).status(), "not a JSON object"));
  EXPECT_TRUE(ErrorContains(Parse(Image("{}", 3)).status(), "3 trailing bytes"));
}

TEST(ParseSafetensorsTest, RejectsBadTensorEntries) {
  auto entry = [](const std::string& body) { return "{\"t\": " + body + "}"; };
  EXPECT_TRUE(ErrorContains(ParseError(entry("[]"), 0), "tensor 't': entry is not a JSON object"));
  EXPECT_TRUE(ErrorContains(ParseError(entry(R"({"shape": [1], "data_offsets": [0, 4]})"), 4),
                            "missing field 'dtype'"));
  EXPECT_TRUE(ErrorContains(ParseError(entry(R"({"dtype": "F32", "data_offsets": [0, 4]})"), 4),
                            "missing field 'shape'"));
  EXPECT_TRUE(ErrorContains(ParseError(entry(R"({"dtype": "F32", "shape": [1]})"), 4),
                            "missing field 'data_offsets'"));
  EXPECT_TRUE(ErrorContains(
      ParseError(entry(R"({"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 4]})"), 4),
      "tensor 't': unknown dtype 'Q4_K'"));
  EXPECT_TRUE(ErrorContains(
      ParseError(entry(R"({"dtype": "F32", "shape": [-2, 1], "data_offsets": [0, 4]})"), 4),
      "negative shape dim -2"));
  EXPECT_TRUE(ErrorContains(
      ParseError(entry(R"({"dtype": "F32", "shape": [2.5], "data_offsets": [0, 4]})"), 4),
      "not a non-negative integer"));
  EXPECT_TRUE(ErrorContains(
      ParseError(
          entry(R"({"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 4]})"),
          4),
      "overflows"));
  EXPECT_TRUE(ErrorContains(
      ParseError(
          entry(R"({"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]})"), 4),
      "absurd"));
  EXPECT_TRUE(ErrorContains(
      ParseError(entry(R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 40]})"), 4),
      "out of range"));
  EXPECT_TRUE(ErrorContains(
      ParseError(entry(R"({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]})"), 4),
      "reversed"));
  EXPECT_TRUE(ErrorContains(
      ParseError(entry(R"({"dtype": "F32", "shape": [1], "data_offsets": [-1, 3]})"), 4),
      "negative data_offsets"));
  EXPECT_TRUE(
      ErrorContains(ParseError(entry(R"({"dtype": "F32", "shape": [1], "data_offsets": [0]})"), 4),
                    "not [begin, end]"));
  EXPECT_TRUE(ErrorContains(
      ParseError(entry(R"({"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]})"), 4),
      "span 4 bytes but BF16 [3] needs 6 bytes"));
}

TEST(ParseSafetensorsTest, RejectsOverlapsGapsAndDuplicates) {
  EXPECT_TRUE(
      ErrorContains(ParseError(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                               12),
                    "tensor 'b': data_offsets [4, 12] overlap tensor 'a'"));
  EXPECT_TRUE(
      ErrorContains(ParseError(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                               12),
                    "gap of 4 unused bytes after tensor 'a'"));
  EXPECT_TRUE(ErrorContains(
      ParseError(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8),
      "gap of 4 unused bytes after the header"));
  EXPECT_TRUE(
      ErrorContains(ParseError(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                     "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                               8),
                    "tensor 'a': duplicate name"));
  EXPECT_TRUE(ErrorContains(ParseError(R"({"__metadata__": {"k": 1}})", 0),
                            "'__metadata__' key 'k' has a non-string value"));
  EXPECT_TRUE(ErrorContains(ParseError(R"({"__metadata__": [1]})", 0),
                            "'__metadata__' is not a string-to-string object"));
}

// A bounded in-test fuzz (the libFuzzer target is safetensors_fuzz.cc): random
// byte and header edits of a valid image must give an error or views inside
// the image, never a crash. Deterministic seed; runs in milliseconds.
TEST(ParseSafetensorsTest, MutatedImagesNeverEscapeTheBuffer) {
  const std::string valid = Image(
      R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
          "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]}})",
      24);
  ImageMutator mutator(12345, "0123456789-[]{},:\" e.");  // JSON-ish bytes
  int accepted = 0;
  for (int round = 0; round < 3000; ++round) {
    const std::string image = mutator.Mutate(valid, 4);
    auto contents = Parse(image);
    if (!contents.ok()) continue;
    ++accepted;
    const auto* begin = reinterpret_cast<const std::byte*>(image.data());
    for (const TensorView& t : contents->tensors) {
      ASSERT_GE(t.data, begin);
      ASSERT_LE(static_cast<size_t>(t.data - begin) + t.nbytes, image.size());
      ASSERT_EQ(static_cast<size_t>(t.numel()) * DTypeSize(t.dtype), t.nbytes);
    }
  }
  EXPECT_GT(accepted, 0);  // some edits (data bytes) keep the image valid
}

TEST(SafetensorsFileTest, OpenNamesThePathInErrors) {
  TempDir dir;
  EXPECT_TRUE(ErrorContains(SafetensorsFile::Open((dir / "absent.safetensors").string()).status(),
                            "absent.safetensors: no such file"));
  EXPECT_TRUE(
      ErrorContains(SafetensorsFile::Open(dir.path().string()).status(), "not a regular file"));
  WriteBytes(dir / "empty.safetensors", "");
  EXPECT_TRUE(ErrorContains(SafetensorsFile::Open((dir / "empty.safetensors").string()).status(),
                            "empty.safetensors: file is 0 bytes"));
}

TEST(SafetensorsFileTest, TruncatedRealShardIsRejected) {
  TempDir dir;
  const fs::path source = kShardedGuard / "model-00002-of-00002.safetensors";
  std::ifstream in(source, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  WriteBytes(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 1));
  EXPECT_TRUE(ErrorContains(SafetensorsFile::Open((dir / "cut.safetensors").string()).status(),
                            "out of range"));
  WriteBytes(dir / "header_cut.safetensors", bytes.substr(0, 100));
  EXPECT_TRUE(
      ErrorContains(SafetensorsFile::Open((dir / "header_cut.safetensors").string()).status(),
                    "runs past the end of the file"));
}

TEST(WriteSafetensorsTest, RoundTripsMixedDtypesAndMetadata) {
  TempDir dir;
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
  const std::vector<uint16_t> half = {0x3f80, 0xc000, 0x1234};
  std::vector<TensorToWrite> tensors = {
      {.name = "w.f32", .dtype = DType::kF32, .shape = {2, 3}, .data = f32.data(), .nbytes = 24},
      {.name = "w.bf16", .dtype = DType::kBF16, .shape = {3}, .data = half.data(), .nbytes = 6},
      {.name = "w.f16", .dtype = DType::kF16, .shape = {1, 3}, .data = half.data(), .nbytes = 6},
      {.name = "empty", .dtype = DType::kF32, .shape = {0}, .data = nullptr, .nbytes = 0},
  };
  const std::string path = (dir / "out.safetensors").string();
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}, {"kind", "features"}}).ok());
  // No temporary file is left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("kind"), "features");
  for (const TensorToWrite& t : tensors) {
    const TensorView* v = (*file)->Find(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    EXPECT_EQ(v->dtype, t.dtype);
    EXPECT_EQ(v->shape, t.shape);
    ASSERT_EQ(v->nbytes, t.nbytes);
    if (t.nbytes) {
      EXPECT_EQ(std::memcmp(v->data, t.data, t.nbytes), 0) << t.name;
    }
  }
  // The header is space-padded so the data buffer starts 8-byte aligned.
  const TensorView* first = (*file)->Find("w.f32");
  EXPECT_EQ((first->data - (*file)->mapping().data()) % 8, 0);
  // An independent reader (plain JSON) sees the same header.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  const json h = json::parse(header);
  EXPECT_EQ(h["w.bf16"]["data_offsets"], json::array({24, 30}));
  EXPECT_EQ(h["__metadata__"]["format"], "pt");
}

TEST(WriteSafetensorsTest, RejectsInconsistentInput) {
  TempDir dir;
  const float x[2] = {1, 2};
  const std::string path = (dir / "bad.safetensors").string();
  std::vector<TensorToWrite> wrong_size = {
      {.name = "x", .dtype = DType::kF32, .shape = {3}, .data = x, .nbytes = 8}};
  EXPECT_TRUE(ErrorContains(WriteSafetensors(path, wrong_size, {}), "tensor 'x': nbytes 8"));
  std::vector<TensorToWrite> duplicate = {
      {.name = "x", .dtype = DType::kF32, .shape = {2}, .data = x, .nbytes = 8},
      {.name = "x", .dtype = DType::kF32, .shape = {2}, .data = x, .nbytes = 8}};
  EXPECT_TRUE(ErrorContains(WriteSafetensors(path, duplicate, {}), "duplicate tensor name"));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(
      ErrorContains(WriteSafetensors((dir / "no/such/dir.st").string(), {}, {}), "cannot create"));
}

// --- TensorStore -----------------------------------------------------------

// Copies the sharded fixture into a temp dir so the index can be edited.
void CopyShardedFixture(const TempDir& dir) {
  for (const auto& e : fs::directory_iterator(kShardedGuard)) {
    if (e.path().extension() == ".safetensors" || e.path().filename() == "config.json" ||
        e.path().filename() == "model.safetensors.index.json") {
      fs::copy_file(e.path(), dir / e.path().filename().string());
      fs::permissions(dir / e.path().filename().string(), fs::perms::owner_write,
                      fs::perm_options::add);
    }
  }
}

json ReadIndex(const TempDir& dir) {
  std::ifstream in(dir / "model.safetensors.index.json");
  return json::parse(in);
}

void WriteIndex(const TempDir& dir, const json& index) {
  WriteBytes(dir / "model.safetensors.index.json", index.dump());
}

TEST(TensorStoreTest, OpensTheShardedFixture) {
  auto store = TensorStore::Open(kShardedGuard.string());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->files().size(), 2u);
  EXPECT_EQ((*store)->names().size(), 20u);  // embed + 2 x 9 + norm (tied)
  const TensorView* embed = (*store)->Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{128256, 64}));
  EXPECT_TRUE(
      (*store)->FileOf("model.embed_tokens.weight").ends_with("model-00001-of-00002.safetensors"));
  uint64_t sum = 0;
  for (const std::string& name : (*store)->names()) sum += (*store)->Find(name)->nbytes;
  EXPECT_EQ((*store)->total_bytes(), sum);
  EXPECT_EQ((*store)->Find("lm_head.weight"), nullptr);
}

TEST(TensorStoreTest, RejectsIndexesThatDisagreeWithTheShards) {
  {
    TempDir dir;
    CopyShardedFixture(dir);
    fs::remove(dir / "model-00002-of-00002.safetensors");
    EXPECT_TRUE(
        ErrorContains(TensorStore::Open(dir.path().string()).status(),
                      "shard 'model-00002-of-00002.safetensors' named in the index is missing"));
  }
  {
    TempDir dir;
    CopyShardedFixture(dir);
    json index = ReadIndex(dir);
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
    WriteIndex(dir, index);
    EXPECT_TRUE(ErrorContains(TensorStore::Open(dir.path().string()).status(),
                              "tensor 'model.norm.weight': the index maps it to "
                              "'model-00001-of-00002.safetensors' but it is in "
                              "'model-00002-of-00002.safetensors'"));
  }
  {
    TempDir dir;
    CopyShardedFixture(dir);
    json index = ReadIndex(dir);
    index["weight_map"]["model.layers.2.mlp.up_proj.weight"] = "model-00002-of-00002.safetensors";
    WriteIndex(dir, index);
    EXPECT_TRUE(ErrorContains(TensorStore::Open(dir.path().string()).status(),
                              "tensor 'model.layers.2.mlp.up_proj.weight': the index maps it to "
                              "'model-00002-of-00002.safetensors' but no shard contains it"));
  }
  {
    TempDir dir;
    CopyShardedFixture(dir);
    json index = ReadIndex(dir);
    index["weight_map"].erase("model.norm.weight");
    WriteIndex(dir, index);
    EXPECT_TRUE(ErrorContains(TensorStore::Open(dir.path().string()).status(),
                              "tensor 'model.norm.weight': not listed in"));
  }
  for (const char* escape : {"../model-00001-of-00002.safetensors", "/etc/passwd", "..", ""}) {
    TempDir dir;
    CopyShardedFixture(dir);
    json index = ReadIndex(dir);
    index["weight_map"]["model.norm.weight"] = escape;
    WriteIndex(dir, index);
    EXPECT_TRUE(
        ErrorContains(TensorStore::Open(dir.path().string()).status(), "is not a plain file name"))
        << escape;
  }
  {
    TempDir dir;
    WriteBytes(dir / "model.safetensors.index.json", "{\"weight_map\": 3}");
    EXPECT_TRUE(ErrorContains(TensorStore::Open(dir.path().string()).status(),
                              "missing object 'weight_map'"));
    WriteBytes(dir / "model.safetensors.index.json", "not json");
    EXPECT_TRUE(
        ErrorContains(TensorStore::Open(dir.path().string()).status(), "not a JSON object"));
  }
  {
    TempDir dir;
    EXPECT_TRUE(ErrorContains(TensorStore::Open(dir.path().string()).status(),
                              "neither model.safetensors nor model.safetensors.index.json"));
  }
}

TEST(TensorStoreTest, RejectsATensorInTwoShards) {
  TempDir dir;
  const float x[1] = {1};
  std::vector<TensorToWrite> t = {
      {.name = "x", .dtype = DType::kF32, .shape = {1}, .data = x, .nbytes = 4}};
  ASSERT_TRUE(WriteSafetensors((dir / "a.safetensors").string(), t, {}).ok());
  ASSERT_TRUE(WriteSafetensors((dir / "b.safetensors").string(), t, {}).ok());
  WriteIndex(dir, json{{"weight_map", {{"x", "a.safetensors"}, {"y", "b.safetensors"}}}});
  EXPECT_TRUE(ErrorContains(TensorStore::Open(dir.path().string()).status(),
                            "tensor 'x': also present in"));
}

}  // namespace
}  // namespace saferoute
