#include "eval/csv.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace saferoute::eval {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CsvTest, PlainAndQuotedFields) {
  auto r = ParseCsv("a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n", "t.csv");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_THAT((*r)[0].fields, ElementsAre("a", "b", "c"));
  EXPECT_THAT((*r)[1].fields, ElementsAre("1", "x, y", "say \"hi\""));
  EXPECT_EQ((*r)[1].line, 2);
}

TEST(CsvTest, QuotedLineBreaksCrlfAndLineNumbers) {
  auto r = ParseCsv("id,text\r\n1,\"two\r\nlines\"\r\n2,z\r\n", "t.csv");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_THAT((*r)[1].fields, ElementsAre("1", "two\r\nlines"));
  EXPECT_EQ((*r)[2].line, 4);  // the quoted line break counts
  EXPECT_THAT((*r)[2].fields, ElementsAre("2", "z"));
}

TEST(CsvTest, EmptyFieldsBomNoFinalNewlineBlankLines) {
  auto r = ParseCsv(
      "\xEF\xBB\xBF"
      "a,b\n\n,\n\"\",x",
      "t.csv");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_THAT((*r)[0].fields, ElementsAre("a", "b"));
  EXPECT_THAT((*r)[1].fields, ElementsAre("", ""));
  EXPECT_EQ((*r)[1].line, 3);
  EXPECT_THAT((*r)[2].fields, ElementsAre("", "x"));
}

TEST(CsvTest, MalformedInputNamesFileAndLine) {
  auto unterminated = ParseCsv("a\n\"open\n", "bad.csv");
  ASSERT_FALSE(unterminated.ok());
  EXPECT_THAT(unterminated.status().message(), HasSubstr("bad.csv:2"));
  EXPECT_THAT(unterminated.status().message(), HasSubstr("never closed"));

  auto trailing = ParseCsv("a\n\"x\"y\n", "bad.csv");
  ASSERT_FALSE(trailing.ok());
  EXPECT_THAT(trailing.status().message(),
              HasSubstr("bad.csv:2: unexpected text after a closing quote"));

  auto bare = ParseCsv("a\nx\"y\n", "bad.csv");
  ASSERT_FALSE(bare.ok());
  EXPECT_THAT(bare.status().message(), HasSubstr("bad.csv:2: quote inside an unquoted field"));

  auto utf8 = ParseCsv("a\nok\n\xC3(\n", "bad.csv");
  ASSERT_FALSE(utf8.ok());
  EXPECT_THAT(utf8.status().message(), HasSubstr("bad.csv:3: invalid UTF-8"));
}

}  // namespace
}  // namespace saferoute::eval
