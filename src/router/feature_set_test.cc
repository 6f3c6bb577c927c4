// Feature and label files: round trip, id alignment, hostile lines.
#include "router/feature_set.h"

#include <fstream>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "util/test_paths.h"

namespace saferoute {
namespace {

std::string Temp(const char* name) { return UniqueTestPath(name); }

FeatureSet ThreeRows() {
  return FeatureSet{.ids = {"a", "b", "c"},
                    .dim = 2,
                    .features = {1, 2, 3, 4, 5, 6},
                    .fingerprint = "guard:last"};
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string ErrorOf(const absl::Status& s) { return std::string(s.message()); }

TEST(FeatureSetTest, RoundTrip) {
  ASSERT_TRUE(WriteFeatureFile(Temp("f.safetensors"), ThreeRows()).ok());
  auto read = ReadFeatureFile(Temp("f.safetensors"));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->ids, ThreeRows().ids);
  EXPECT_EQ(read->features, ThreeRows().features);
  EXPECT_EQ(read->dim, 2);
  EXPECT_EQ(read->fingerprint, "guard:last");
}

TEST(FeatureSetTest, BadFeatureFilesAreRejected) {
  const std::vector<float> data = {1, 2, 3, 4};
  const TensorToWrite tensor{
      .name = "features", .dtype = DType::kF32, .shape = {2, 2}, .data = data.data(), .nbytes = 16};
  auto write = [&](std::map<std::string, std::string> meta) {
    EXPECT_TRUE(WriteSafetensors(Temp("bad.safetensors"), std::span(&tensor, 1), meta).ok());
    return ReadFeatureFile(Temp("bad.safetensors")).status();
  };
  EXPECT_NE(ErrorOf(write({{"fingerprint", "x"}})).find("'ids' missing"), std::string::npos);
  EXPECT_NE(ErrorOf(write({{"ids", "[\"a\"]"}, {"fingerprint", "x"}})).find("1 entries"),
            std::string::npos);
  EXPECT_NE(ErrorOf(write({{"ids", "[\"a\",\"a\"]"}, {"fingerprint", "x"}})).find("id 'a' appears"),
            std::string::npos);
  EXPECT_NE(ErrorOf(write({{"ids", "{}"}, {"fingerprint", "x"}})).find("not a JSON array"),
            std::string::npos);
  EXPECT_NE(ErrorOf(write({{"ids", "[\"a\",\"b\"]"}})).find("'fingerprint' missing"),
            std::string::npos);
  EXPECT_TRUE(write({{"ids", "[\"a\",\"b\"]"}, {"fingerprint", "x"}}).ok());
}

TEST(LabelsTest, AlignsToFeatureOrderWithOptionalOutcomes) {
  WriteText(Temp("l.jsonl"),
            "{\"id\":\"c\",\"t\":1,\"small_pred\":false,\"large_pred\":true,\"gold\":true}\n"
            "\n"
            "{\"id\":\"a\",\"t\":0,\"small_pred\":1,\"large_pred\":1,\"gold\":0}\n"
            "{\"id\":\"b\",\"t\":true,\"small_pred\":0,\"large_pred\":0,\"gold\":1}\n");
  auto labels = ReadLabelsFor(Temp("l.jsonl"), ThreeRows().ids);
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->t, (std::vector<uint8_t>{0, 1, 1}));
  EXPECT_TRUE(labels->has_outcomes);
  EXPECT_EQ(labels->small_pred, (std::vector<uint8_t>{1, 0, 0}));
  EXPECT_EQ(labels->large_pred, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(labels->gold, (std::vector<uint8_t>{0, 1, 1}));

  WriteText(Temp("l2.jsonl"),
            "{\"id\":\"a\",\"t\":0}\n{\"id\":\"b\",\"t\":1}\n{\"id\":\"c\",\"t\":0}\n");
  labels = ReadLabelsFor(Temp("l2.jsonl"), ThreeRows().ids);
  ASSERT_TRUE(labels.ok());
  EXPECT_FALSE(labels->has_outcomes);
}

TEST(LabelsTest, MismatchesAndBadLinesNameTheLine) {
  const std::vector<std::string> ids = ThreeRows().ids;
  auto error = [&](const std::string& text) {
    WriteText(Temp("bad.jsonl"), text);
    return ErrorOf(ReadLabelsFor(Temp("bad.jsonl"), ids).status());
  };
  const std::string ab = "{\"id\":\"a\",\"t\":0}\n{\"id\":\"b\",\"t\":1}\n";
  EXPECT_NE(error(ab).find("no label for id 'c'"), std::string::npos);
  EXPECT_NE(error(ab + "{\"id\":\"z\",\"t\":0}\n").find(":3: id 'z' is not in the feature file"),
            std::string::npos);
  EXPECT_NE(error(ab + "{\"id\":\"a\",\"t\":0}\n").find(":3: id 'a' already labelled on line 1"),
            std::string::npos);
  EXPECT_NE(error(ab + "{\"id\":\"c\",\"t\":2}\n").find(":3: field 't'"), std::string::npos);
  EXPECT_NE(error(ab + "{\"id\":\"c\"\n").find(":3: not a JSON object"), std::string::npos);
  EXPECT_NE(error(ab + "{\"id\":7,\"t\":0}\n").find(":3: field 'id'"), std::string::npos);
  EXPECT_NE(error(ab + "{\"id\":\"c\",\"t\":0,\"gold\":1}\n").find("some but not all"),
            std::string::npos);
  EXPECT_NE(error(ab + "{\"id\":\"c\",\"t\":0,\"gold\":1,\"small_pred\":0,\"large_pred\":0}\n")
                .find("1 of 3 lines"),
            std::string::npos);
  EXPECT_EQ(ReadLabelsFor(Temp("missing.jsonl"), ids).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace saferoute
