#include "cpu/dispatch.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace saferoute::cpu {
namespace {

// CPU feature flags of /proc/cpuinfo (the independent account of the CPU).
std::set<std::string> CpuFlags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  return flags;
}

std::string Cap() {
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  return cap == nullptr ? "" : cap;
}

TEST(Dispatch, PrecisionNamesRoundTrip) {
  for (Precision p : kPrecisions) {
    auto parsed = ParsePrecision(PrecisionName(p));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, p);
  }
  auto bad = ParsePrecision("fp16");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'fp16'"), std::string::npos) << bad.status();
}

// The choice as a function of what a CPU offers, for the CPU classes the
// engine meets (AMX/AVX512-BF16, VNNI without bf16, AVX2 only, no int8).
TEST(Dispatch, ChoosesByWhatTheCpuOffers) {
  CpuSupport bf16_cpu{.isa = "avx512_core_bf16",
                      .bf16_native = true,
                      .bf16_impl = "brg",
                      .int8 = true,
                      .int8_impl = "brg",
                      .int8_weight_max = 127,
                      .int8_block_isa = Q8Isa::kAvx512Vnni};
  CpuSupport avx2_cpu{.isa = "avx2",
                      .bf16_native = false,
                      .bf16_impl = "none",
                      .int8 = true,
                      .int8_impl = "gemm:jit",
                      .int8_weight_max = 63,
                      .int8_block_isa = Q8Isa::kAvx2};
  CpuSupport no_int8{.isa = "sse41",
                     .bf16_native = false,
                     .bf16_impl = "none",
                     .int8 = false,
                     .int8_impl = "none",
                     .int8_weight_max = 0};
  EXPECT_EQ(*ChoosePath(Precision::kFp32, bf16_cpu), GemmPath::kFp32);
  EXPECT_EQ(*ChoosePath(Precision::kBf16, bf16_cpu), GemmPath::kBf16Native);
  EXPECT_EQ(*ChoosePath(Precision::kBf16, avx2_cpu), GemmPath::kBf16Widened);
  EXPECT_EQ(*ChoosePath(Precision::kInt8, bf16_cpu), GemmPath::kInt8);
  EXPECT_EQ(*ChoosePath(Precision::kInt8, avx2_cpu), GemmPath::kInt8);
  auto refused = ChoosePath(Precision::kInt8, no_int8);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("sse41"), std::string::npos) << refused.status();
  EXPECT_EQ(*ChoosePath(Precision::kInt8A16, bf16_cpu), GemmPath::kInt8A16);
  EXPECT_EQ(*ChoosePath(Precision::kInt8A16, avx2_cpu), GemmPath::kInt8A16);
  auto refused_a16 = ChoosePath(Precision::kInt8A16, no_int8);
  ASSERT_FALSE(refused_a16.ok());
  EXPECT_NE(refused_a16.status().message().find("int8-a16"), std::string::npos)
      << refused_a16.status();
  EXPECT_FALSE(ChoosePath(Precision::kInt8, bf16_cpu, GemmPath::kInt8A16).ok())
      << "int8-a16 does not compute int8's numbers";
  EXPECT_EQ(*ChoosePath(Precision::kAuto, bf16_cpu), GemmPath::kBf16Native);
  EXPECT_EQ(*ChoosePath(Precision::kAuto, avx2_cpu), GemmPath::kBf16Widened);
  // Forcing: a path of the requested precision that the CPU has.
  EXPECT_EQ(*ChoosePath(Precision::kBf16, bf16_cpu, GemmPath::kBf16Widened),
            GemmPath::kBf16Widened);
  EXPECT_FALSE(ChoosePath(Precision::kBf16, avx2_cpu, GemmPath::kBf16Native).ok());
  EXPECT_FALSE(ChoosePath(Precision::kFp32, bf16_cpu, GemmPath::kInt8).ok());
  EXPECT_EQ(*ChoosePath(Precision::kInt8, avx2_cpu, GemmPath::kInt8Rows), GemmPath::kInt8Rows);
  EXPECT_FALSE(ChoosePath(Precision::kInt8, no_int8, GemmPath::kInt8Rows).ok());
  // The peak each path is compared with: its precision's library matmul.
  EXPECT_EQ(PeakPath(GemmPath::kInt8, avx2_cpu), GemmPath::kInt8Rows);
  EXPECT_EQ(PeakPath(GemmPath::kInt8, no_int8), GemmPath::kInt8);
  EXPECT_EQ(PeakPath(GemmPath::kBf16Widened, bf16_cpu), GemmPath::kFp32);
  EXPECT_EQ(PeakPath(GemmPath::kBf16Native, bf16_cpu), GemmPath::kBf16Native);
  // The LM head: int8's on bf16; every other path's on itself.
  EXPECT_EQ(HeadPath(GemmPath::kInt8, bf16_cpu), GemmPath::kBf16Native);
  EXPECT_EQ(HeadPath(GemmPath::kInt8, avx2_cpu), GemmPath::kBf16Widened);
  EXPECT_EQ(HeadPath(GemmPath::kInt8A16, bf16_cpu), GemmPath::kInt8A16);
  EXPECT_EQ(AttentionInputPath(GemmPath::kInt8A16, bf16_cpu, false), GemmPath::kBf16Native);
  EXPECT_EQ(AttentionInputPath(GemmPath::kInt8A16, avx2_cpu, false), GemmPath::kBf16Widened);
  EXPECT_EQ(AttentionInputPath(GemmPath::kInt8A16, bf16_cpu, true), GemmPath::kInt8A16)
      << "Q/K/V a checkpoint stores quantized are used as stored";
  for (GemmPath path : kGemmPaths) {
    if (path == GemmPath::kInt8A16) continue;
    EXPECT_EQ(AttentionInputPath(path, bf16_cpu, false), path);
    EXPECT_EQ(AttentionInputPath(path, bf16_cpu, true), path);
  }
  EXPECT_EQ(PeakPath(GemmPath::kInt8A16, avx2_cpu), GemmPath::kInt8Rows);
  EXPECT_EQ(PeakPath(GemmPath::kInt8A16, no_int8), GemmPath::kInt8);
  EXPECT_EQ(HeadPath(GemmPath::kInt8Rows, avx2_cpu), GemmPath::kInt8Rows);
  EXPECT_EQ(HeadPath(GemmPath::kFp32, bf16_cpu), GemmPath::kFp32);
  for (GemmPath path : kGemmPaths) {
    EXPECT_EQ(ParseGemmPath(GemmPathName(path)), path);
  }
}

// What oneDNN reports against /proc/cpuinfo and the ONEDNN_MAX_CPU_ISA cap
// this test runs under (ctest runs it uncapped and capped at AVX512_CORE and
// AVX2).
TEST(Dispatch, DetectionAgreesWithCpuidAndCap) {
  const CpuSupport& s = DetectCpuSupport();
  const std::set<std::string> flags = CpuFlags();
  const std::string cap = Cap();
  std::printf("cpu support: isa %s; bf16 %s (%s); int8 %s (%s), weight max %d; cap '%s'\n",
              s.isa.c_str(), s.bf16_native ? "native" : "widened", s.bf16_impl.c_str(),
              s.int8 ? "yes" : "no", s.int8_impl.c_str(), s.int8_weight_max, cap.c_str());
  const bool cpu_bf16 = flags.count("avx512_bf16") || flags.count("amx_bf16");
  const bool cap_allows_bf16 =
      cap.empty() || cap == "AVX512_CORE_BF16" || cap == "AVX512_CORE_AMX" || cap == "ALL";
  EXPECT_EQ(s.bf16_native, cpu_bf16 && cap_allows_bf16);
  const bool cpu_vnni = flags.count("avx512_vnni") || flags.count("amx_int8");
  const bool cap_allows_vnni = cap.empty() || cap == "ALL" || cap == "AVX512_CORE_VNNI" ||
                               cap == "AVX512_CORE_BF16" || cap == "AVX512_CORE_AMX";
  const bool cpu_avx_vnni = flags.count("avx_vnni") > 0;
  const bool full_range =
      (cpu_vnni && cap_allows_vnni) || (cpu_avx_vnni && (cap.empty() || cap == "AVX2_VNNI"));
  if (flags.count("avx2")) {
    EXPECT_TRUE(s.int8) << s.int8_impl;
    EXPECT_EQ(s.int8_weight_max, full_range ? 127 : 63) << s.int8_impl;
  }
  if (cap == "AVX2") {
    EXPECT_EQ(s.isa, "avx2");
  }
  if (cap == "AVX512_CORE") {
    EXPECT_EQ(s.isa, "avx512_core");
  }
  // Every path the CPU offers is chosen when asked for.
  EXPECT_EQ(*ChoosePath(Precision::kBf16, s),
            s.bf16_native ? GemmPath::kBf16Native : GemmPath::kBf16Widened);
  // The block-scaled int8 kernel: the CPU's best under the cap (the cap
  // AVX512_CORE has no VNNI: the AVX2 kernel).
  const bool cpu_avx512_vnni = flags.count("avx512_vnni") && flags.count("avx512bw") &&
                               flags.count("avx512vl") && flags.count("avx512dq");
  Q8Isa want_block = Q8Isa::kNone;
  if (cpu_avx512_vnni && cap_allows_vnni) {
    want_block = Q8Isa::kAvx512Vnni;
  } else if (cpu_avx_vnni && (cap_allows_vnni || cap == "AVX2_VNNI")) {
    want_block = Q8Isa::kAvxVnni;
  } else if (flags.count("avx2") && flags.count("fma")) {
    want_block = Q8Isa::kAvx2;
  }
  EXPECT_STREQ(Q8IsaName(s.int8_block_isa), Q8IsaName(want_block));
  if (s.int8_block_isa != Q8Isa::kNone) {
    EXPECT_EQ(*ChoosePath(Precision::kInt8, s), GemmPath::kInt8);
    EXPECT_EQ(*ChoosePath(Precision::kInt8A16, s), GemmPath::kInt8A16);
    EXPECT_NE(DescribePath(GemmPath::kInt8, s).find(Q8IsaName(s.int8_block_isa)),
              std::string::npos);
    EXPECT_NE(DescribePath(GemmPath::kInt8A16, s).find("16-bit activations"), std::string::npos);
  }
  EXPECT_NE(DescribePath(GemmPath::kInt8Rows, s).find(s.isa), std::string::npos);
}

}  // namespace
}  // namespace saferoute::cpu
