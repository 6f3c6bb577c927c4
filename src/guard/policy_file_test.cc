// Category files: JSON object (file order kept) or "KEY: NAME" lines; errors
// name the file and the line or key.
#include "guard/policy_file.h"

#include "gtest/gtest.h"

namespace saferoute {
namespace {

using Categories = std::vector<std::pair<std::string, std::string>>;

TEST(PolicyFile, JsonKeepsFileOrder) {
  auto policy = ParsePolicyCategories(
      R"({"S2": "Medical advice.", "S10": "Hate.", "S1": "Phishing."})", "cats.json");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->categories,
            (Categories{{"S2", "Medical advice."}, {"S10", "Hate."}, {"S1", "Phishing."}}));
}

TEST(PolicyFile, Lines) {
  auto policy = ParsePolicyCategories(
      "# custom\nS1: Phishing.\r\n\n  S2 :  Medical advice: dosing.  \n", "cats.txt");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->categories,
            (Categories{{"S1", "Phishing."}, {"S2", "Medical advice: dosing."}}));
}

TEST(PolicyFile, ErrorsNameFileAndPlace) {
  struct Case {
    const char* content;
    const char* expect;
  };
  const Case cases[] = {
      {"S1: A.\nno colon here\n", "cats:2: expected \"KEY: NAME\""},
      {"S1: A.\n: B.\n", "cats:2: empty key or name"},
      {"S1: A.\nS1: B.\n", "\"S1\" is listed twice"},
      {R"({"S1": 5})", "category \"S1\": the name must be a string"},
      {R"({"S1": "A.\nS2: forged."})", "line break"},
      // Found by policy_file_fuzz: blank JSON keys and names were accepted
      // and only refused when rendering, without the file's name.
      {R"({"": "A."})", "category \"\": empty key or name"},
      {R"({"S1": " \u00a0"})", "category \"S1\": empty key or name"},
      {R"({"S1": )", "not valid JSON"},
      {"\n# only a comment\n", "no categories"},
      {"S1: \xC3(", "invalid UTF-8 at byte offset 4"},
  };
  for (const Case& c : cases) {
    auto policy = ParsePolicyCategories(c.content, "cats");
    ASSERT_FALSE(policy.ok()) << c.content;
    EXPECT_NE(policy.status().message().find(c.expect), std::string::npos) << policy.status();
    EXPECT_NE(policy.status().message().find("cats"), std::string::npos) << policy.status();
  }
  EXPECT_FALSE(LoadPolicyCategories("/nonexistent/cats.json").ok());
}

}  // namespace
}  // namespace saferoute
