#include "server/api_keys.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace saferoute::server {
namespace {

constexpr char kKeyA[] = "sk-aaaaaaaaaaaaaaaaaaaa";
constexpr char kKeyB[] = "sk-bbbbbbbbbbbbbbbbbbbb";

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path =
      (std::filesystem::temp_directory_path() / absl::StrCat("saferoute-", ::getpid(), "-", name))
          .string();
  std::ofstream(path) << text;
  return path;
}

TEST(ApiKeys, MatchesOnlyTheExactKeys) {
  absl::StatusOr<std::shared_ptr<const ApiKeySet>> keys = ApiKeySet::FromKeys({kKeyA, kKeyB});
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE((*keys)->Matches(kKeyA));
  EXPECT_TRUE((*keys)->Matches(kKeyB));
  const std::string a = kKeyA;
  for (const std::string& wrong :
       {a.substr(0, a.size() - 1), a + "a", std::string(""), std::string("sk-"),
        std::string("SK-AAAAAAAAAAAAAAAAAAAA"), a.substr(1)}) {
    EXPECT_FALSE((*keys)->Matches(wrong)) << wrong;
  }
}

TEST(ApiKeys, LoadsFromFileAndEnvironment) {
  const std::string file = WriteFile("keys", absl::StrCat("# service keys\n\n  ", kKeyA, "  \n"));
  ::setenv("SAFEROUTE_TEST_KEYS", absl::StrCat(kKeyB, ",", kKeyA).c_str(), 1);
  absl::StatusOr<std::shared_ptr<const ApiKeySet>> keys =
      ApiKeySet::Load(file, "SAFEROUTE_TEST_KEYS");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ((*keys)->size(), 3u);
  EXPECT_TRUE((*keys)->Matches(kKeyA));
  EXPECT_TRUE((*keys)->Matches(kKeyB));
  EXPECT_FALSE((*keys)->Matches("# service keys"));
  std::filesystem::remove(file);
  ::unsetenv("SAFEROUTE_TEST_KEYS");
}

TEST(ApiKeys, BadSourcesAreErrorsThatNameThePlaceButNotTheKey) {
  const std::string short_key = WriteFile("short", absl::StrCat(kKeyA, "\nshort-secret\n"));
  const std::string empty = WriteFile("empty", "# nothing\n");
  ::setenv("SAFEROUTE_TEST_EMPTY", " ", 1);
  ::setenv("SAFEROUTE_TEST_SPACE", "has\x01control-character-x", 1);
  struct Case {
    std::string file, env, expect;
  };
  for (const Case& c : std::vector<Case>{
           {short_key, "", short_key + ":2"},
           {empty, "", "holds no key"},
           {"/nonexistent/keys", "", "/nonexistent/keys"},
           {"", "SAFEROUTE_TEST_UNSET_VARIABLE", "SAFEROUTE_TEST_UNSET_VARIABLE"},
           {"", "SAFEROUTE_TEST_EMPTY", "SAFEROUTE_TEST_EMPTY"},
           {"", "SAFEROUTE_TEST_SPACE", "printable"},
           {"", "", "no key"},
       }) {
    absl::StatusOr<std::shared_ptr<const ApiKeySet>> keys = ApiKeySet::Load(c.file, c.env);
    ASSERT_FALSE(keys.ok()) << c.expect;
    EXPECT_TRUE(absl::StrContains(keys.status().message(), c.expect)) << keys.status();
    EXPECT_FALSE(absl::StrContains(keys.status().message(), "short-secret")) << keys.status();
  }
  std::filesystem::remove(short_key);
  std::filesystem::remove(empty);
}

TEST(ApiKeys, BearerTokenParsing) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer   abc  "), "abc");
  EXPECT_EQ(BearerToken("BEARER abc"), "abc");
  EXPECT_FALSE(BearerToken("Basic abc").has_value());
  EXPECT_FALSE(BearerToken("Bearer ").has_value());
  EXPECT_FALSE(BearerToken("Bearer").has_value());
  EXPECT_FALSE(BearerToken("abc").has_value());
}

}  // namespace
}  // namespace saferoute::server
