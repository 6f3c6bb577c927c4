// Dequantizers against an independent reference: the PyPI `gguf` package's
// gguf.quants.dequantize (numpy), run at test time from the test venv
// (build/venv, made by scripts/install-deps.sh) through
// testdata/gguf_dequantize.py. Random blocks; the vectorised and the scalar
// path must both equal the reference bit for bit (NaN where it has NaN).
#include "cpu/dequantize.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "util/status.h"
#include "util/test_paths.h"

namespace saferoute::cpu {
namespace {

namespace fs = std::filesystem;

const fs::path kPython = fs::path(SAFEROUTE_SOURCE_DIR) / "build" / "venv" / "bin" / "python";
const fs::path kReference =
    fs::path(SAFEROUTE_SOURCE_DIR) / "src" / "cpu" / "testdata" / "gguf_dequantize.py";

constexpr DType kQuantized[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                                DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

// Byte offsets of the f16 scales (d, dmin / m) inside one block.
std::vector<size_t> HalfScaleOffsets(DType dtype) {
  switch (dtype) {
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ5_0:
      return {0};
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ6_K:
      return {208};
    default:
      return {};
  }
}

// `blocks` random blocks. With `finite_scales`, the f16 scales get a random
// sign and mantissa and an exponent below all-ones (no inf/NaN, subnormals
// and zero included); otherwise every byte is random.
std::vector<std::byte> RandomBlocks(DType dtype, int64_t blocks, bool finite_scales,
                                    uint32_t seed) {
  const DTypeBlock layout = BlockOf(dtype);
  std::mt19937 rng(seed);
  std::vector<std::byte> data(static_cast<size_t>(blocks) * layout.bytes);
  for (std::byte& b : data) b = static_cast<std::byte>(rng());
  if (finite_scales) {
    for (int64_t i = 0; i < blocks; ++i) {
      for (size_t offset : HalfScaleOffsets(dtype)) {
        std::byte* p = data.data() + i * layout.bytes + offset;
        uint16_t bits;
        std::memcpy(&bits, p, 2);
        if (((bits >> 10) & 0x1F) == 0x1F) bits ^= 0x0400;  // exponent 31 -> 30
        std::memcpy(p, &bits, 2);
      }
    }
  }
  return data;
}

struct Reference {
  bool ran = false;
  std::string error;
  std::vector<float> values;
};

// Runs the gguf package on `data` (whole blocks of `dtype`).
Reference RunReference(DType dtype, const std::vector<std::byte>& data) {
  Reference ref;
  const std::string in = UniqueTestPath("blocks.bin"), out = UniqueTestPath("values.f32");
  std::ofstream(in, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  const std::string command = absl::StrCat(kPython.string(), " ", kReference.string(), " ",
                                           std::string(DTypeName(dtype)), " ", in, " ", out);
  const int status = std::system(command.c_str());
  fs::remove(in);
  if (status != 0) {
    ref.error = absl::StrCat("`", command, "` exited with status ", status,
                             WIFEXITED(status) && WEXITSTATUS(status) == 3
                                 ? " (the gguf package is missing from build/venv: run "
                                   "scripts/install-deps.sh)"
                                 : "");
    return ref;
  }
  std::ifstream result(out, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(result)),
                          std::istreambuf_iterator<char>());
  fs::remove(out);
  ref.values.resize(bytes.size() / sizeof(float));
  std::memcpy(ref.values.data(), bytes.data(), ref.values.size() * sizeof(float));
  ref.ran = true;
  return ref;
}

// Bitwise equal, or both NaN (NaN payloads are not part of the contract).
::testing::AssertionResult SameValues(const std::vector<float>& expected,
                                      const std::vector<float>& actual, const std::string& what) {
  if (expected.size() != actual.size()) {
    return ::testing::AssertionFailure()
           << what << ": " << actual.size() << " values, reference has " << expected.size();
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    const bool both_nan = std::isnan(expected[i]) && std::isnan(actual[i]);
    if (!both_nan && std::bit_cast<uint32_t>(expected[i]) != std::bit_cast<uint32_t>(actual[i])) {
      return ::testing::AssertionFailure() << what << ": element " << i << " is " << actual[i]
                                           << ", the reference has " << expected[i];
    }
  }
  return ::testing::AssertionSuccess();
}

class DequantizeVsGgufPackage : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!fs::exists(kPython)) {
      GTEST_SKIP() << kPython << " is missing: run scripts/install-deps.sh to make the test venv "
                   << "(the reference is the PyPI gguf package)";
    }
  }

  void Check(bool finite_scales, uint32_t seed) {
    const DType dtype = GetParam();
    const DTypeBlock layout = BlockOf(dtype);
    // ~64k elements: every nibble/bit pattern position many times over.
    const int64_t blocks = (int64_t{1} << 16) / layout.elements + 3;
    const std::vector<std::byte> data = RandomBlocks(dtype, blocks, finite_scales, seed);
    const Reference ref = RunReference(dtype, data);
    ASSERT_TRUE(ref.ran) << ref.error;
    const int64_t count = blocks * layout.elements;
    std::vector<float> fast(static_cast<size_t>(count)), scalar(static_cast<size_t>(count));
    DequantizeToF32(dtype, data.data(), count, fast.data());
    DequantizeToF32Scalar(dtype, data.data(), count, scalar.data());
    const std::string name(DTypeName(dtype));
    EXPECT_TRUE(SameValues(ref.values, scalar, name + " scalar"));
    EXPECT_TRUE(SameValues(ref.values, fast, name + " " + std::string(DequantizePath())));
    size_t non_finite = 0;
    for (float v : ref.values) non_finite += std::isfinite(v) ? 0 : 1;
    if (finite_scales) {
      EXPECT_EQ(non_finite, 0u) << "finite scales gave non-finite elements";
    } else {
      // Random scale bits include inf/NaN halves (1 in 32): those blocks come
      // out inf/NaN in the reference and here alike (see dequantize.cc).
      EXPECT_GT(non_finite, 0u);
    }
  }
};

TEST_P(DequantizeVsGgufPackage, RandomBlocksWithFiniteScales) { Check(true, 7); }

TEST_P(DequantizeVsGgufPackage, RandomBytesIncludingInfAndNanScales) { Check(false, 11); }

INSTANTIATE_TEST_SUITE_P(AllBlockTypes, DequantizeVsGgufPackage, ::testing::ValuesIn(kQuantized),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(DequantizePlainTypes, F16AndBf16MatchTheGgufPackage) {
  if (!fs::exists(kPython)) GTEST_SKIP() << kPython << " is missing: run scripts/install-deps.sh";
  for (DType dtype : {DType::kF16, DType::kBF16, DType::kF32}) {
    const std::vector<std::byte> data = RandomBlocks(dtype, 4099, false, 3);
    const Reference ref = RunReference(dtype, data);
    ASSERT_TRUE(ref.ran) << ref.error;
    const int64_t count = static_cast<int64_t>(data.size() / BlockOf(dtype).bytes);
    std::vector<float> out(static_cast<size_t>(count));
    DequantizeToF32(dtype, data.data(), count, out.data());
    EXPECT_TRUE(SameValues(ref.values, out, std::string(DTypeName(dtype))));
  }
}

// Rows of a GGUF tensor start wherever the previous row ended: the
// vectorised path must read blocks at any byte address and any count.
TEST(Dequantize, VectorPathEqualsScalarAtAnyAddressAndCount) {
  for (DType dtype : kQuantized) {
    const DTypeBlock layout = BlockOf(dtype);
    for (int64_t blocks : {1, 2, 3, 17}) {
      std::vector<std::byte> data = RandomBlocks(dtype, blocks, true, 5);
      data.insert(data.begin(), std::byte{0x55});  // start one byte off
      const int64_t count = blocks * layout.elements;
      std::vector<float> fast(static_cast<size_t>(count) + 1, -1.0f), scalar(fast.size(), -1.0f);
      DequantizeToF32(dtype, data.data() + 1, count, fast.data());
      DequantizeToF32Scalar(dtype, data.data() + 1, count, scalar.data());
      EXPECT_TRUE(SameValues(scalar, fast, std::string(DTypeName(dtype))));
      EXPECT_EQ(fast.back(), -1.0f) << "wrote past the end";
    }
  }
}

TEST(Dequantize, KnownBlocks) {
  std::printf("dequantize path of this build: %s\n", std::string(DequantizePath()).c_str());
  // Q8_0: d = 0.5 (f16 0x3800), q = -128, 1, 127, 0...
  std::vector<std::byte> q8(34, std::byte{0});
  q8[0] = std::byte{0x00};
  q8[1] = std::byte{0x38};
  q8[2] = std::byte{0x80};
  q8[3] = std::byte{0x01};
  q8[4] = std::byte{0x7F};
  float y[32];
  DequantizeToF32(DType::kQ8_0, q8.data(), 32, y);
  EXPECT_EQ(y[0], -64.0f);
  EXPECT_EQ(y[1], 0.5f);
  EXPECT_EQ(y[2], 63.5f);
  EXPECT_EQ(y[3], 0.0f);
  // Q4_1: d = 1, m = -2 (f16 0xC000), qs[0] = 0xF3: element 0 = 3 - 2, element 16 = 15 - 2.
  std::vector<std::byte> q41(20, std::byte{0});
  q41[1] = std::byte{0x3C};
  q41[3] = std::byte{0xC0};
  q41[4] = std::byte{0xF3};
  DequantizeToF32(DType::kQ4_1, q41.data(), 32, y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[16], 13.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_TRUE(CanDequantize(DType::kQ6_K));
}

}  // namespace
}  // namespace saferoute::cpu
