// GGUF reading: round trips through GgufWriter, every metadata type, and
// hand-made corrupt images (each refused with its own error).
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/gguf_writer.h"
#include "util/test_mutations.h"
#include "util/test_paths.h"
#include "util/test_status.h"

namespace saferoute {
namespace {

absl::StatusOr<GgufContents> Parse(const std::string& image) {
  return ParseGguf(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(image.data()), image.size()),
      "test.gguf");
}

template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}
template <typename T>
void PatchAt(std::string* image, size_t at, T v) {
  ASSERT_LE(at + sizeof(T), image->size());
  std::memcpy(image->data() + at, &v, sizeof(T));
}

void PutString(std::string* out, std::string_view s) {
  Put<uint64_t>(out, s.size());
  out->append(s);
}

// A GGUF image with no tensors and hand-encoded key/values: `kvs` is the
// encoded bytes of `count` entries.
std::string MetadataImage(uint64_t count, const std::string& kvs, uint32_t version = 3) {
  std::string out = "GGUF";
  Put<uint32_t>(&out, version);
  Put<uint64_t>(&out, 0);
  Put<uint64_t>(&out, count);
  return out + kvs;
}

std::string Kv(std::string_view key, GgufType type, const std::string& value) {
  std::string out;
  PutString(&out, key);
  Put<uint32_t>(&out, static_cast<uint32_t>(type));
  return out + value;
}

template <typename T>
std::string Bytes(T v) {
  std::string out;
  Put(&out, v);
  return out;
}

// Random-ish bytes of a tensor of `nbytes`.
std::vector<uint8_t> Data(size_t nbytes, uint8_t seed) {
  std::vector<uint8_t> d(nbytes);
  for (size_t i = 0; i < nbytes; ++i) d[i] = static_cast<uint8_t>(i * 31 + seed);
  return d;
}

// Two tensors and some metadata: the base image the corrupt cases edit.
// "a": F32 [2, 3] (ne = [3, 2], 24 bytes -> offset 0), "b": Q8_0 [2, 32]
// (68 bytes -> offset 32).
std::string ValidImage() {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 2);
  const int64_t a_shape[] = {2, 3};
  const int64_t b_shape[] = {2, 32};
  const auto a = Data(24, 1), b = Data(68, 2);
  w.AddTensor("a", DType::kF32, a_shape, a.data());
  w.AddTensor("b", DType::kQ8_0, b_shape, b.data());
  return w.Build();
}

// Offset of the field right after tensor `name`'s name in the info section.
size_t InfoOf(const std::string& image, const std::string& name) {
  // Tensor names are preceded by their u64 length; search for both.
  std::string needle;
  PutString(&needle, name);
  const size_t at = image.rfind(needle);
  EXPECT_NE(at, std::string::npos);
  return at + needle.size();
}
// Fields after the name: u32 n_dims, u64 ne[n_dims], u32 type, u64 offset.
size_t DimsAt(const std::string& image, const std::string& name) { return InfoOf(image, name) + 4; }
size_t TypeAt(const std::string& image, const std::string& name, uint32_t n_dims) {
  return InfoOf(image, name) + 4 + 8 * n_dims;
}
size_t OffsetAt(const std::string& image, const std::string& name, uint32_t n_dims) {
  return TypeAt(image, name, n_dims) + 4;
}

TEST(ParseGgufTest, ValidImageGivesRowMajorViews) {
  const std::string image = ValidImage();
  auto contents = Parse(image);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(contents->version, 3u);
  EXPECT_EQ(contents->alignment, 32u);
  EXPECT_EQ(contents->data_offset % 32, 0u);
  ASSERT_EQ(contents->tensors.size(), 2u);
  const GgufTensorInfo& a = contents->tensors[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, DType::kF32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(a.nbytes, 24u);
  const GgufTensorInfo& b = contents->tensors[1];
  EXPECT_EQ(b.dtype, DType::kQ8_0);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(b.offset, 32u);
  EXPECT_EQ(b.nbytes, 68u);
  // The data of "b" is where the offset says.
  EXPECT_EQ(static_cast<uint8_t>(image[contents->data_offset + 32 + 5]),
            static_cast<uint8_t>(5 * 31 + 2));
  EXPECT_EQ(*contents->metadata.GetString("general.architecture"), "llama");
  EXPECT_EQ(*contents->metadata.GetInt("llama.block_count", 1, 100), 2);
}

TEST(ParseGgufTest, EveryMetadataTypeDecodes) {
  std::string kvs;
  kvs += Kv("u8", GgufType::kUint8, Bytes<uint8_t>(200));
  kvs += Kv("i8", GgufType::kInt8, Bytes<int8_t>(-5));
  kvs += Kv("u16", GgufType::kUint16, Bytes<uint16_t>(60000));
  kvs += Kv("i16", GgufType::kInt16, Bytes<int16_t>(-30000));
  kvs += Kv("u32", GgufType::kUint32, Bytes<uint32_t>(4000000000u));
  kvs += Kv("i32", GgufType::kInt32, Bytes<int32_t>(-2000000000));
  kvs += Kv("f32", GgufType::kFloat32, Bytes<float>(0.25f));
  kvs += Kv("bool", GgufType::kBool, Bytes<uint8_t>(1));
  std::string s;
  PutString(&s, "h\xc3\xa9llo");
  kvs += Kv("str", GgufType::kString, s);
  kvs += Kv("u64", GgufType::kUint64, Bytes<uint64_t>(~uint64_t{0}));
  kvs += Kv("i64", GgufType::kInt64, Bytes<int64_t>(INT64_MIN));
  kvs += Kv("f64", GgufType::kFloat64, Bytes<double>(1e300));
  std::string strings = Bytes<uint32_t>(8) + Bytes<uint64_t>(3);
  PutString(&strings, "a");
  PutString(&strings, "");
  PutString(&strings, "ccc");
  kvs += Kv("strs", GgufType::kArray, strings);
  kvs += Kv("i16s", GgufType::kArray,
            Bytes<uint32_t>(3) + Bytes<uint64_t>(2) + Bytes<int16_t>(-7) + Bytes<int16_t>(9));
  kvs += Kv("f64s", GgufType::kArray,
            Bytes<uint32_t>(12) + Bytes<uint64_t>(2) + Bytes<double>(0.5) + Bytes<double>(-2));
  kvs += Kv("empty", GgufType::kArray, Bytes<uint32_t>(5) + Bytes<uint64_t>(0));
  const std::string image = MetadataImage(16, kvs);
  auto c = Parse(image);
  ASSERT_TRUE(c.ok()) << c.status();
  const GgufMetadata& m = c->metadata;
  EXPECT_EQ(m.size(), 16u);
  EXPECT_EQ(m.entries()[0].first, "u8");
  EXPECT_EQ(*m.GetInt("u8", 0, 255), 200);
  EXPECT_EQ(*m.GetInt("i8", -10, 10), -5);
  EXPECT_EQ(*m.GetInt("u16", 0, 70000), 60000);
  EXPECT_EQ(*m.GetInt("i16", -40000, 0), -30000);
  EXPECT_EQ(*m.GetInt("u32", 0, INT64_MAX), 4000000000);
  EXPECT_EQ(*m.GetInt("i32", INT64_MIN, 0), -2000000000);
  EXPECT_EQ(*m.GetFloat("f32"), 0.25);
  EXPECT_EQ(*m.GetBool("bool"), true);
  EXPECT_EQ(*m.GetString("str"), "h\xc3\xa9llo");
  EXPECT_TRUE(ErrorContains(m.GetInt("u64", 0, INT64_MAX).status(),
                            "key 'u64': value 18446744073709551615 is out of range"));
  EXPECT_EQ(*m.GetInt("i64", INT64_MIN, 0), INT64_MIN);
  EXPECT_EQ(*m.GetFloat("f64"), 1e300);
  auto strs = m.GetStringArray("strs");
  ASSERT_TRUE(strs.ok()) << strs.status();
  ASSERT_EQ(strs->size(), 3u);
  EXPECT_EQ((*strs)[0], "a");
  EXPECT_EQ((*strs)[1], "");
  EXPECT_EQ((*strs)[2], "ccc");
  EXPECT_EQ(*m.GetIntArray("i16s"), (std::vector<int64_t>{-7, 9}));
  EXPECT_EQ(*m.GetFloatArray("f64s"), (std::vector<float>{0.5f, -2.0f}));
  EXPECT_TRUE(m.GetIntArray("empty")->empty());
  // String views point into the image (no copies).
  EXPECT_GE((*strs)[2].data(), image.data());
  EXPECT_LT((*strs)[2].data(), image.data() + image.size());

  // Typed access refuses the wrong type, range or absence by key.
  EXPECT_TRUE(ErrorContains(m.GetInt("str", 0, 1).status(),
                            "test.gguf: key 'str': is STRING, expected an integer"));
  EXPECT_TRUE(ErrorContains(m.GetInt("u8", 0, 100).status(), "value 200 is out of range [0, 100]"));
  EXPECT_TRUE(ErrorContains(m.GetString("u8").status(), "is UINT8, expected STRING"));
  EXPECT_TRUE(ErrorContains(m.GetFloat("i8").status(), "is INT8, expected FLOAT32"));
  EXPECT_TRUE(ErrorContains(m.GetBool("u8").status(), "expected BOOL"));
  EXPECT_TRUE(ErrorContains(m.GetStringArray("i16s").status(), "is ARRAY of INT16"));
  EXPECT_TRUE(ErrorContains(m.GetIntArray("strs").status(), "expected an ARRAY of integers"));
  EXPECT_TRUE(ErrorContains(m.GetFloatArray("f32").status(), "is FLOAT32, expected an ARRAY"));
  EXPECT_TRUE(ErrorContains(m.GetInt("absent", 0, 1).status(), "key 'absent' is missing"));
  EXPECT_EQ(m.GetString("absent").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*m.GetInt("absent", 0, 1, 1), 1);
  EXPECT_EQ(*m.GetString("absent", "x"), "x");
}

// An empty FLOAT32 array once reached memcpy with a null destination
// (undefined behaviour, seen by UBSan in gguf_fuzz; the fuzz smoke run keeps
// that input as a seed, src/io/testdata/fuzz/gguf_fuzz/empty_f32_array.gguf).
TEST(ParseGgufTest, EmptyFloatArraysReadAsEmpty) {
  const std::string kvs = Kv("f32s", GgufType::kArray, Bytes<uint32_t>(6) + Bytes<uint64_t>(0)) +
                          Kv("f64s", GgufType::kArray, Bytes<uint32_t>(12) + Bytes<uint64_t>(0));
  auto c = Parse(MetadataImage(2, kvs));
  ASSERT_TRUE(c.ok()) << c.status();
  for (const char* key : {"f32s", "f64s"}) {
    auto values = c->metadata.GetFloatArray(key);
    ASSERT_TRUE(values.ok()) << values.status();
    EXPECT_TRUE(values->empty()) << key;
  }
}

TEST(ParseGgufTest, LargeStringArrayIsViewedInPlace) {
  // The shape of tokenizer.ggml.tokens: ~128k strings.
  constexpr int kCount = 128256;
  std::string array = Bytes<uint32_t>(8) + Bytes<uint64_t>(kCount);
  for (int i = 0; i < kCount; ++i) PutString(&array, absl::StrCat("tok", i));
  const std::string image = MetadataImage(1, Kv("tokenizer.ggml.tokens", GgufType::kArray, array));
  auto c = Parse(image);
  ASSERT_TRUE(c.ok()) << c.status();
  auto tokens = c->metadata.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), static_cast<size_t>(kCount));
  EXPECT_EQ((*tokens)[kCount - 1], "tok128255");
}

TEST(ParseGgufTest, WriterRoundTripsEveryEngineTypeAndAlignment) {
  GgufWriter w(/*alignment=*/64);
  w.AddStringArray("s", std::vector<std::string>{"x", "yz"});
  w.AddInt32Array("i", std::vector<int32_t>{1, -2, 3});
  w.AddFloat32Array("f", std::vector<float>{1.5f});
  w.AddBool("b", false);
  w.AddFloat32("e", 1e-5f);
  w.AddInt32("n", -1);
  w.AddUint64("u", 7);
  struct Case {
    DType dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {
      {DType::kF32, {3}},         {DType::kF16, {2, 5}},    {DType::kBF16, {1, 1, 4}},
      {DType::kQ8_0, {3, 64}},    {DType::kQ4_0, {1, 32}},  {DType::kQ4_1, {2, 32}},
      {DType::kQ5_0, {1, 2, 32}}, {DType::kQ5_1, {32}},     {DType::kQ4_K, {2, 256}},
      {DType::kQ5_K, {1, 512}},   {DType::kQ6_K, {2, 256}},
  };
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < cases.size(); ++i) {
    data.push_back(Data(*TensorBytes(cases[i].dtype, cases[i].shape), static_cast<uint8_t>(i)));
    w.AddTensor(absl::StrCat("t", i), cases[i].dtype, cases[i].shape, data.back().data());
  }
  const std::string path = UniqueTestPath("roundtrip.gguf");
  ASSERT_TRUE(w.Write(path).ok());
  EXPECT_TRUE(HasGgufMagic(path));
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*(*file)->metadata().GetInt("general.alignment", 0, 1 << 20), 64);
  EXPECT_EQ((*(*file)->metadata().GetStringArray("s"))[1], "yz");
  EXPECT_EQ(*(*file)->metadata().GetIntArray("i"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*(*file)->metadata().GetFloatArray("f"), (std::vector<float>{1.5f}));
  EXPECT_EQ(*(*file)->metadata().GetBool("b"), false);
  EXPECT_EQ(*(*file)->metadata().GetFloat("e"), static_cast<double>(1e-5f));
  EXPECT_EQ(*(*file)->metadata().GetInt("n", -1, 0), -1);
  EXPECT_EQ(*(*file)->metadata().GetInt("u", 0, 7), 7);
  uint64_t total = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto view = (*file)->Tensor(absl::StrCat("t", i));
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, cases[i].dtype);
    EXPECT_EQ(view->shape, cases[i].shape);
    ASSERT_EQ(view->nbytes, data[i].size());
    EXPECT_EQ(std::memcmp(view->data, data[i].data(), view->nbytes), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data) % 64, 0u);
    total += view->nbytes;
  }
  EXPECT_EQ((*file)->tensor_bytes(), total);
  EXPECT_TRUE(ErrorContains((*file)->Tensor("absent").status(), "tensor 'absent' is missing"));
  std::filesystem::remove(path);
}

TEST(ParseGgufTest, EveryPrefixOfAValidImageIsRefused) {
  const std::string image = ValidImage();
  // The last 28 bytes are padding after "b" (68 bytes, padded to 96); cutting
  // them leaves a valid image. Every shorter prefix is truncated somewhere.
  const size_t last_data_end = image.size() - (96 - 68);
  for (size_t n = 0; n < last_data_end; ++n) {
    const absl::Status status = Parse(image.substr(0, n)).status();
    ASSERT_FALSE(status.ok()) << "prefix of " << n << " bytes parsed";
    const std::string message(status.message());
    EXPECT_TRUE(message.find("truncated") != std::string::npos ||
                message.find("runs past the end") != std::string::npos ||
                message.find("not a GGUF file") != std::string::npos ||
                message.find("cannot fit") != std::string::npos)
        << n << ": " << message;
  }
  EXPECT_TRUE(Parse(image.substr(0, last_data_end)).ok());
}

TEST(ParseGgufTest, RejectsBadHeaders) {
  std::string image = ValidImage();
  EXPECT_TRUE(ErrorContains(Parse("GGU").status(), "not a GGUF file"));
  image[0] = 'X';
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "test.gguf: not a GGUF file"));
  image = ValidImage();
  PatchAt<uint32_t>(&image, 4, 1);
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "GGUF version 1 is not supported"));
  PatchAt<uint32_t>(&image, 4, 4);
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "GGUF version 4 is not supported"));
  PatchAt<uint32_t>(&image, 4, 0x03000000);
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "big-endian GGUF"));
  image = ValidImage();
  PatchAt<uint32_t>(&image, 4, 2);  // version 2 has the same layout
  EXPECT_TRUE(Parse(image).ok());
}

TEST(ParseGgufTest, RejectsCountsPastTheEnd) {
  std::string image = ValidImage();
  PatchAt<uint64_t>(&image, 8, uint64_t{1} << 40);
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "tensor count 1099511627776 cannot fit"));
  image = ValidImage();
  PatchAt<uint64_t>(&image, 16, ~uint64_t{0});
  EXPECT_TRUE(
      ErrorContains(Parse(image).status(), "metadata key/value count 18446744073709551615"));
  // One more key than the file holds: the tensor info is read as a key.
  image = ValidImage();
  PatchAt<uint64_t>(&image, 16, 3);
  EXPECT_FALSE(Parse(image).ok());
  // An array count the file cannot hold.
  std::string kv = Kv("arr", GgufType::kArray, Bytes<uint32_t>(4) + Bytes<uint64_t>(1000));
  EXPECT_TRUE(ErrorContains(Parse(MetadataImage(1, kv + std::string(12, '\0'))).status(),
                            "key 'arr': array count 1000 cannot fit"));
  kv = Kv("strs", GgufType::kArray, Bytes<uint32_t>(8) + Bytes<uint64_t>(uint64_t{1} << 62));
  EXPECT_TRUE(ErrorContains(Parse(MetadataImage(1, kv)).status(), "array count"));
}

TEST(ParseGgufTest, RejectsStringLengthsPastTheEnd) {
  std::string image = ValidImage();
  PatchAt<uint64_t>(&image, 24, 1u << 30);  // the first key's length
  EXPECT_TRUE(ErrorContains(Parse(image).status(),
                            "metadata key #0 length 1073741824 at offset 24 runs past the end"));
  std::string value;
  PutString(&value, "abc");
  PatchAt<uint64_t>(&value, 0, 100);
  EXPECT_TRUE(ErrorContains(Parse(MetadataImage(1, Kv("k", GgufType::kString, value))).status(),
                            "key 'k': string length 100"));
  std::string array = Bytes<uint32_t>(8) + Bytes<uint64_t>(2);
  PutString(&array, "ok");
  Put<uint64_t>(&array, 50);
  array += "short";
  EXPECT_TRUE(ErrorContains(Parse(MetadataImage(1, Kv("a", GgufType::kArray, array))).status(),
                            "key 'a': element 1 length 50"));
  image = ValidImage();
  PatchAt<uint64_t>(&image, InfoOf(image, "b") - 1 - 8, 1u << 20);  // tensor name length
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "tensor #1 name length 1048576"));
  image = ValidImage() + std::string(70000, '\0');
  PatchAt<uint64_t>(&image, 24, 70000);
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "is 70000 bytes long (at most 65535)"));
}

TEST(ParseGgufTest, RejectsBadValues) {
  EXPECT_TRUE(ErrorContains(Parse(MetadataImage(1, Kv("t", GgufType{13}, ""))).status(),
                            "key 't': value type 13 is not a GGUF value type"));
  EXPECT_TRUE(
      ErrorContains(Parse(MetadataImage(1, Kv("b", GgufType::kBool, Bytes<uint8_t>(2)))).status(),
                    "key 'b': BOOL value 2 is not 0 or 1"));
  EXPECT_TRUE(ErrorContains(
      Parse(MetadataImage(1, Kv("n", GgufType::kArray, Bytes<uint32_t>(9) + Bytes<uint64_t>(0))))
          .status(),
      "key 'n': arrays of arrays are not supported"));
  EXPECT_TRUE(
      ErrorContains(Parse(MetadataImage(2, Kv("k", GgufType::kUint8, Bytes<uint8_t>(1)) +
                                               Kv("k", GgufType::kUint8, Bytes<uint8_t>(2))))
                        .status(),
                    "key 'k': duplicate key"));
  EXPECT_TRUE(
      ErrorContains(Parse(MetadataImage(1, Kv("", GgufType::kUint8, Bytes<uint8_t>(1)))).status(),
                    "metadata key #0 is empty"));
  EXPECT_TRUE(ErrorContains(
      Parse(MetadataImage(1, Kv("general.alignment", GgufType::kUint32, Bytes<uint32_t>(48))))
          .status(),
      "key 'general.alignment': 48 is not a power of two"));
  EXPECT_TRUE(ErrorContains(
      Parse(MetadataImage(1, Kv("general.alignment", GgufType::kUint64, Bytes<uint64_t>(32))))
          .status(),
      "key 'general.alignment': is UINT64, expected UINT32"));
  auto nan = Parse(MetadataImage(1, Kv("f", GgufType::kFloat32, Bytes<float>(NAN))));
  ASSERT_TRUE(nan.ok()) << nan.status();
  EXPECT_TRUE(
      ErrorContains(nan->metadata.GetFloat("f").status(), "key 'f': value nan is not finite"));
}

TEST(ParseGgufTest, RejectsBadTensorInfos) {
  std::string image = ValidImage();
  PatchAt<uint32_t>(&image, InfoOf(image, "a"), 5);
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "tensor 'a': 5 dims (GGUF allows at most 4)"));

  image = ValidImage();  // ne = [2^62, 4]: the product overflows int64
  PatchAt<uint64_t>(&image, DimsAt(image, "a"), uint64_t{1} << 62);
  PatchAt<uint64_t>(&image, DimsAt(image, "a") + 8, 4);
  EXPECT_TRUE(ErrorContains(Parse(image).status(),
                            "tensor 'a': shape [4, 4611686018427387904] overflows int64 elements"));

  image = ValidImage();  // elements fit int64, bytes do not: ne = [2^61, 2] F32
  PatchAt<uint64_t>(&image, DimsAt(image, "a"), uint64_t{1} << 61);
  PatchAt<uint64_t>(&image, DimsAt(image, "a") + 8, 2);
  EXPECT_TRUE(ErrorContains(Parse(image).status(),
                            "tensor 'a': shape [2, 2305843009213693952] overflows the byte count"));

  // A zero dim does not hide the others (gguf_fuzz: [0, 7089774,
  // 8028075826559844352] F32 passed with 0 bytes while its row's bytes
  // overflow; readers size rows from the dims).
  image = ValidImage();  // ne = [2^62, 0] F32: no elements, a row of 2^64 bytes
  PatchAt<uint64_t>(&image, DimsAt(image, "a"), uint64_t{1} << 62);
  PatchAt<uint64_t>(&image, DimsAt(image, "a") + 8, 0);
  EXPECT_TRUE(ErrorContains(Parse(image).status(),
                            "tensor 'a': shape [0, 4611686018427387904] overflows the byte count"));

  image = ValidImage();
  PatchAt<uint64_t>(&image, DimsAt(image, "a"), ~uint64_t{0});
  EXPECT_TRUE(
      ErrorContains(Parse(image).status(), "tensor 'a': ne[0] = 18446744073709551615 is absurd"));

  image = ValidImage();
  PatchAt<uint32_t>(&image, TypeAt(image, "b", 2), 99);
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "tensor 'b': unknown ggml type 99"));
  PatchAt<uint32_t>(&image, TypeAt(image, "b", 2), 4);  // Q4_2, removed from ggml
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "tensor 'b': unknown ggml type 4"));

  image = ValidImage();  // Q8_0 rows must be whole 32-element blocks
  PatchAt<uint64_t>(&image, DimsAt(image, "b"), 33);
  EXPECT_TRUE(
      ErrorContains(Parse(image).status(),
                    "tensor 'b': innermost dim 33 is not a multiple of the Q8_0 block size 32"));

  image = ValidImage();
  std::string dup = image;
  const size_t b_name = InfoOf(dup, "b") - 1;
  dup[b_name] = 'a';
  EXPECT_TRUE(ErrorContains(Parse(dup).status(), "tensor 'a': duplicate name"));
}

TEST(ParseGgufTest, KnownTypesTheEngineDoesNotReadParseButCannotBeViewed) {
  // "b" as Q3_K would need 256-element rows; make it Q4_0 [2, 32] = 36 bytes
  // first, then check a real unsupported type with a fitting row: IQ4_NL has
  // Q4_0's block layout (32 elements, 18 bytes).
  std::string image = ValidImage();
  PatchAt<uint32_t>(&image, TypeAt(image, "b", 2), 20);  // IQ4_NL: 36 bytes
  image.resize(image.size() - 32);                       // padded to 64, not 96
  auto c = Parse(image);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tensors[1].ggml_type, 20u);
  EXPECT_FALSE(c->tensors[1].dtype.has_value());
  EXPECT_EQ(c->tensors[1].nbytes, 36u);
  const std::string path = UniqueTestPath("iq4.gguf");
  std::ofstream(path, std::ios::binary) << image;
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(ErrorContains((*file)->Tensor("b").status(),
                            "iq4.gguf: tensor 'b': ggml type IQ4_NL (20) is not supported"));
  EXPECT_TRUE((*file)->Tensor("a").ok());
  std::filesystem::remove(path);
}

TEST(ParseGgufTest, RejectsBadDataLayout) {
  std::string image = ValidImage();
  PatchAt<uint64_t>(&image, OffsetAt(image, "b", 2), 40);
  EXPECT_TRUE(ErrorContains(Parse(image).status(),
                            "tensor 'b': offset 40 is not a multiple of the alignment 32"));
  image = ValidImage();
  PatchAt<uint64_t>(&image, OffsetAt(image, "b", 2), 0);
  EXPECT_TRUE(ErrorContains(Parse(image).status(),
                            "tensor 'b': data at offset 0 overlaps tensor 'a' (which ends at 24)"));
  image = ValidImage();
  PatchAt<uint64_t>(&image, OffsetAt(image, "a", 2), 64);  // inside b = [0, 68)
  PatchAt<uint64_t>(&image, OffsetAt(image, "b", 2), 0);
  EXPECT_TRUE(
      ErrorContains(Parse(image).status(),
                    "tensor 'a': data at offset 64 overlaps tensor 'b' (which ends at 68)"));
  image = ValidImage();
  PatchAt<uint64_t>(&image, OffsetAt(image, "b", 2), 1u << 20);
  EXPECT_TRUE(
      ErrorContains(Parse(image).status(),
                    "tensor 'b': data [1048576, 1048576 + 68) runs past the end of the data "
                    "section (128 bytes): truncated download?"));
  image = ValidImage();
  PatchAt<uint64_t>(&image, OffsetAt(image, "b", 2), ~uint64_t{0} - 31);  // offset + size wraps
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "runs past the end of the data section"));
  image = ValidImage();
  image.resize(image.size() - 30);  // b's data cut short
  EXPECT_TRUE(ErrorContains(Parse(image).status(), "tensor 'b': data [32, 32 + 68) runs past"));
  image = ValidImage() + std::string(64, '\0');
  PatchAt<uint64_t>(&image, OffsetAt(image, "b", 2), 64);  // a 32-byte hole before b
  EXPECT_TRUE(ErrorContains(Parse(image).status(),
                            "tensor 'b': 40 unused bytes before it at offset 24 (more than the "
                            "alignment padding of 32)"));
  image = ValidImage() + std::string(32, '\0');
  EXPECT_TRUE(
      ErrorContains(Parse(image).status(), "60 trailing bytes after the last tensor's data"));
  // Tensors listed out of offset order are fine if they tile the section.
  image = ValidImage();
  PatchAt<uint64_t>(&image, OffsetAt(image, "a", 2), 96);
  PatchAt<uint64_t>(&image, OffsetAt(image, "b", 2), 0);
  EXPECT_TRUE(Parse(image).ok()) << Parse(image).status();
}

// A bounded in-test fuzz (the libFuzzer target is gguf_fuzz.cc): random edits
// of a valid image give an error or views inside the image, never a crash.
TEST(ParseGgufTest, MutatedImagesNeverEscapeTheBuffer) {
  const std::string valid = ValidImage();
  ImageMutator mutator(2024, std::string("\0\1\2\3", 4));  // small integers
  int accepted = 0;
  for (int round = 0; round < 5000; ++round) {
    const std::string image = mutator.Mutate(valid, 3);
    auto contents = Parse(image);
    if (!contents.ok()) continue;
    ++accepted;
    for (const GgufTensorInfo& t : contents->tensors) {
      ASSERT_LE(contents->data_offset + t.offset + t.nbytes, image.size());
    }
  }
  EXPECT_GT(accepted, 0);
}

// Files written by an independent writer (the PyPI gguf package's
// GGUFWriter; testdata/fuzz/make_gguf_seeds.py, also the fuzz seeds).
TEST(GgufFileTest, ReadsFilesWrittenByGgufPy) {
  const std::string dir = std::string(SAFEROUTE_SOURCE_DIR) + "/src/io/testdata/fuzz/gguf_fuzz/";
  auto small = GgufFile::Open(dir + "small_f32.gguf");
  ASSERT_TRUE(small.ok()) << small.status();
  const GgufMetadata& m = (*small)->metadata();
  EXPECT_EQ(*m.GetString("general.architecture"), "llama");
  EXPECT_EQ(*m.GetInt("llama.block_count", 0, 10), 1);
  EXPECT_FLOAT_EQ(static_cast<float>(*m.GetFloat("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  auto tokens = m.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(std::vector<std::string_view>(tokens->begin(), tokens->end()),
            (std::vector<std::string_view>{"a", "b", "<s>", "\xc4\xa0x"}));
  EXPECT_EQ(*m.GetIntArray("tokenizer.ggml.token_type"), (std::vector<int64_t>{1, 1, 3, 1}));
  EXPECT_EQ(*m.GetBool("tokenizer.ggml.add_bos_token"), true);
  auto embd = (*small)->Tensor("token_embd.weight");
  ASSERT_TRUE(embd.ok()) << embd.status();
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{4, 32}));  // numpy (4, 32) -> ne [32, 4]
  EXPECT_EQ(embd->dtype, DType::kF32);

  auto quantized = GgufFile::Open(dir + "quantized.gguf");
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  EXPECT_EQ(*(*quantized)->metadata().GetInt("general.alignment", 0, 1 << 20), 64);
  EXPECT_EQ((*quantized)->Tensor("a")->shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ((*quantized)->Tensor("a")->dtype, DType::kQ8_0);
  EXPECT_EQ((*quantized)->Tensor("b")->shape, (std::vector<int64_t>{1, 256}));
  EXPECT_EQ((*quantized)->Tensor("b")->dtype, DType::kQ4_K);
  EXPECT_EQ((*quantized)->Tensor("c")->dtype, DType::kF16);
  EXPECT_TRUE(GgufFile::Open(dir + "metadata_only.gguf").ok());
}

TEST(GgufFileTest, OpenNamesThePathInErrors) {
  const std::string dir = UniqueTestPath("dir");
  std::filesystem::create_directories(dir);
  EXPECT_TRUE(
      ErrorContains(GgufFile::Open(dir + "/absent.gguf").status(), "absent.gguf: no such file"));
  EXPECT_FALSE(HasGgufMagic(dir + "/absent.gguf"));
  EXPECT_FALSE(HasGgufMagic(dir));
  std::ofstream(dir + "/empty.gguf") << "";
  EXPECT_TRUE(
      ErrorContains(GgufFile::Open(dir + "/empty.gguf").status(), "empty.gguf: not a GGUF file"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace saferoute
