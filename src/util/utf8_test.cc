// FindInvalidUtf8 / ValidateUtf8 on the malformed forms RFC 3629 rules out.
#include "util/utf8.h"

#include <gtest/gtest.h>

namespace saferoute {
namespace {

bool Valid(std::string_view text) { return FindInvalidUtf8(text) == std::string_view::npos; }

TEST(Utf8Test, AcceptsValidRejectsOverlongSurrogatesAndTruncation) {
  EXPECT_TRUE(Valid("plain ascii"));
  EXPECT_TRUE(Valid("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_EQ(FindInvalidUtf8("ab\xC0\xAF"), 2u);       // overlong '/'
  EXPECT_EQ(FindInvalidUtf8("ok\xF0\x9F\x98 "), 2u);  // cut short: where the sequence starts
  EXPECT_FALSE(Valid("\xED\xA0\x80"));                // surrogate U+D800
  EXPECT_FALSE(Valid("\xE0\x80\xAF"));                // overlong 3-byte
  EXPECT_FALSE(Valid("\xF4\x90\x80\x80"));            // > U+10FFFF
  EXPECT_FALSE(Valid("\xE2\x82"));                    // truncated at end
  EXPECT_FALSE(Valid("\x80"));                        // lone continuation
}

TEST(Utf8Test, ValidateNamesWhatAndTheOffset) {
  EXPECT_TRUE(ValidateUtf8("caf\xC3\xA9").ok());
  const absl::Status bad = ValidateUtf8("abc\xFF", "prompt");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("prompt"), std::string_view::npos) << bad.message();
  EXPECT_NE(bad.message().find("byte offset 3 (bytes FF)"), std::string_view::npos)
      << bad.message();
}

}  // namespace
}  // namespace saferoute
