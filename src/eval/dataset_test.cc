#include "eval/dataset.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace saferoute::eval {
namespace {

using ::testing::HasSubstr;

class DatasetTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sr_dataset_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(DatasetTest, BenchShapePromptAndResponse) {
  const std::string path = Write(
      "a.jsonl",
      "{\"id\":\"a-0\",\"prompt\":\"hi\",\"response\":null,\"unsafe\":false}\n"
      "\n"
      "{\"id\":\"a-1\",\"prompt\":\"p\",\"response\":\"r\",\"unsafe\":true,\"source\":\"x\"}\n");
  auto ex = LoadDatasets({path});
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_EQ((*ex)[0].id, "a-0");
  EXPECT_FALSE((*ex)[0].response.has_value());
  EXPECT_FALSE((*ex)[0].unsafe);
  EXPECT_EQ((*ex)[1].response.value(), "r");
  EXPECT_TRUE((*ex)[1].unsafe);
  EXPECT_EQ((*ex)[1].line, 3);
}

TEST_F(DatasetTest, RealBenchFileLoads) {
  const std::string path = std::string(SAFEROUTE_SHARED_DIR) + "/bench/eval/xstest_response.jsonl";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
  auto ex = LoadDatasets({path});
  ASSERT_TRUE(ex.ok()) << ex.status();
  // MANIFEST / README: 446 rows, 78 unsafe, all with responses.
  EXPECT_EQ(ex->size(), 446u);
  int unsafe = 0;
  for (const Example& e : *ex) {
    unsafe += e.unsafe;
    EXPECT_TRUE(e.response.has_value()) << e.id;
  }
  EXPECT_EQ(unsafe, 78);
}

TEST_F(DatasetTest, MappedJsonlWithLabelSpellings) {
  const std::string path = Write("tc.jsonl",
                                 "{\"conv_id\":7,\"user_input\":\"a\",\"toxicity\":1}\n"
                                 "{\"conv_id\":8,\"user_input\":\"b\",\"toxicity\":0}\n"
                                 "{\"conv_id\":9,\"user_input\":\"c\",\"toxicity\":\"Unsafe\"}\n"
                                 "{\"conv_id\":10,\"user_input\":\"d\",\"toxicity\":\"false\"}\n");
  FieldMapping m{.id_field = "conv_id",
                 .text_field = "user_input",
                 .response_field = "model_output",
                 .label_field = "toxicity"};
  auto ex = LoadDatasets({path}, m);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 4u);
  EXPECT_EQ((*ex)[0].id, "7");
  EXPECT_TRUE((*ex)[0].unsafe);
  EXPECT_FALSE((*ex)[1].unsafe);
  EXPECT_TRUE((*ex)[2].unsafe);
  EXPECT_FALSE((*ex)[3].unsafe);
}

TEST_F(DatasetTest, CsvWithMappingQuotesAndGeneratedIds) {
  const std::string path = Write("oai.csv",
                                 "text,label,answer\n"
                                 "\"hello, world\",safe,\n"
                                 "\"multi\nline\",unsafe,\"an \"\"answer\"\"\"\n");
  FieldMapping m{
      .id_field = "", .text_field = "text", .response_field = "answer", .label_field = "label"};
  auto ex = LoadDatasets({path}, m);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_EQ((*ex)[0].id, "oai-0");
  EXPECT_EQ((*ex)[0].prompt, "hello, world");
  EXPECT_FALSE((*ex)[0].response.has_value());
  EXPECT_EQ((*ex)[1].id, "oai-1");
  EXPECT_EQ((*ex)[1].prompt, "multi\nline");
  EXPECT_EQ((*ex)[1].response.value(), "an \"answer\"");
  EXPECT_TRUE((*ex)[1].unsafe);
  EXPECT_EQ((*ex)[1].line, 3);
}

TEST_F(DatasetTest, HostileInputsNameFileAndLine) {
  struct Case {
    std::string name, contents, expected;
  };
  const std::vector<Case> cases = {
      {"nolabel.jsonl", "{\"id\":\"a\",\"prompt\":\"x\"}\n",
       "nolabel.jsonl:1: missing label field 'unsafe'"},
      {"noid.jsonl",
       "{\"id\":\"a\",\"prompt\":\"x\",\"unsafe\":true}\n{\"prompt\":\"x\",\"unsafe\":true}\n",
       "noid.jsonl:2: missing id field 'id'"},
      {"badlabel.jsonl", "{\"id\":\"a\",\"prompt\":\"x\",\"unsafe\":\"maybe\"}\n",
       "badlabel.jsonl:1: field 'unsafe': label \"maybe\" is not one of"},
      {"two.jsonl", "{\"id\":\"a\",\"prompt\":\"x\",\"unsafe\":2}\n",
       "two.jsonl:1: field 'unsafe': label 2 is neither"},
      {"badjson.jsonl", "{\"id\":\"a\",\"prompt\":\"x\",\"unsafe\":true}\n{\"id\":\"b\",\n",
       "badjson.jsonl:2: invalid JSON"},
      {"utf8.jsonl", "{\"id\":\"a\",\"prompt\":\"\xC3(\",\"unsafe\":true}\n",
       "utf8.jsonl:1: invalid JSON"},
      {"empty.jsonl", "\n\n", "empty.jsonl: no examples"},
      {"dup.jsonl",
       "{\"id\":\"a\",\"prompt\":\"x\",\"unsafe\":true}\n{\"id\":\"a\",\"prompt\":\"y\",\"unsafe\":"
       "false}\n",
       "dup.jsonl:2: duplicate id 'a'"},
      {"array.jsonl", "[1,2]\n", "array.jsonl:1: expected a JSON object"},
      {"resp.jsonl", "{\"id\":\"a\",\"prompt\":\"x\",\"response\":3,\"unsafe\":true}\n",
       "resp.jsonl:1: response field 'response' is not a string or null"},
      {"short.csv", "id,prompt,unsafe\n1,x\n",
       "short.csv:2: record has 2 fields, the header has 3"},
      {"nocol.csv", "id,text,unsafe\n1,x,true\n",
       "nocol.csv:1: header has no text column 'prompt'"},
      {"empty.csv", "", "empty.csv: empty CSV file"},
      {"badlabel.csv", "id,prompt,unsafe\n1,x,true\n2,y,yes\n",
       "badlabel.csv:3: column 'unsafe': label \"yes\""},
  };
  for (const Case& c : cases) {
    auto ex = LoadDatasets({Write(c.name, c.contents)});
    ASSERT_FALSE(ex.ok()) << c.name;
    EXPECT_THAT(ex.status().message(), HasSubstr(c.expected)) << c.name;
  }
  auto missing = LoadDatasets({(dir_ / "nope.jsonl").string()});
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.jsonl: cannot open"));
}

TEST_F(DatasetTest, DuplicateIdsAcrossFiles) {
  const std::string a = Write("a.jsonl", "{\"id\":\"x\",\"prompt\":\"p\",\"unsafe\":true}\n");
  const std::string b = Write("b.jsonl",
                              "{\"id\":\"y\",\"prompt\":\"p\",\"unsafe\":true}\n{\"id\":\"x\","
                              "\"prompt\":\"q\",\"unsafe\":false}\n");
  auto ex = LoadDatasets({a, b});
  ASSERT_FALSE(ex.ok());
  EXPECT_THAT(ex.status().message(), HasSubstr("b.jsonl:2: duplicate id 'x' (first at "));
  EXPECT_THAT(ex.status().message(), HasSubstr("a.jsonl:1)"));
}

}  // namespace
}  // namespace saferoute::eval
