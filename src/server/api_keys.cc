#include "server/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace saferoute::server {
namespace {

// A key travels in an HTTP header: printable ASCII without spaces.
bool IsKeyChar(char c) { return c > 0x20 && c < 0x7f; }

absl::Status CheckKey(absl::string_view key, absl::string_view where) {
  for (char c : key) {
    if (!IsKeyChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": a key holds a character that is not printable ASCII (or a space)"));
    }
  }
  if (key.size() < ApiKeySet::kMinKeyLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a key is shorter than ", ApiKeySet::kMinKeyLength, " characters"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ApiKeySet>> ApiKeySet::FromKeys(
    const std::vector<std::string>& keys) {
  if (keys.empty()) return absl::InvalidArgumentError("api keys: no key given");
  auto set = std::make_shared<ApiKeySet>();
  for (const std::string& key : keys) {
    SR_RETURN_IF_ERROR(CheckKey(key, "api keys"));
    Digest digest{};
    unsigned int length = 0;
    SR_CHECK(EVP_Digest(key.data(), key.size(), digest.data(), &length, EVP_sha256(), nullptr) ==
                 1 &&
             length == digest.size());
    set->digests_.push_back(digest);
  }
  return std::shared_ptr<const ApiKeySet>(std::move(set));
}

absl::StatusOr<std::shared_ptr<const ApiKeySet>> ApiKeySet::Load(const std::string& file,
                                                                 const std::string& env_var) {
  std::vector<std::string> keys;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return absl::NotFoundError(absl::StrCat("api keys file ", file, ": cannot open"));
    std::string line;
    for (int line_number = 1; std::getline(in, line); ++line_number) {
      absl::string_view key = absl::StripAsciiWhitespace(line);
      if (key.empty() || key[0] == '#') continue;
      SR_RETURN_IF_ERROR(CheckKey(key, absl::StrCat("api keys file ", file, ":", line_number)));
      keys.emplace_back(key);
    }
    if (keys.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("api keys file ", file, ": holds no key"));
    }
  }
  if (!env_var.empty()) {
    const char* value = std::getenv(env_var.c_str());
    if (value == nullptr || absl::StripAsciiWhitespace(value).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("api keys: environment variable ", env_var, " is not set or empty"));
    }
    for (absl::string_view key :
         absl::StrSplit(value, absl::ByAnyChar(", \t\n"), absl::SkipEmpty())) {
      SR_RETURN_IF_ERROR(CheckKey(key, absl::StrCat("api keys: environment variable ", env_var)));
      keys.emplace_back(key);
    }
  }
  return FromKeys(keys);
}

bool ApiKeySet::Matches(absl::string_view key) const {
  Digest presented{};
  unsigned int length = 0;
  SR_CHECK(EVP_Digest(key.data(), key.size(), presented.data(), &length, EVP_sha256(), nullptr) ==
           1);
  // Every stored digest is compared in full, whatever matched before.
  int matched = 0;
  for (const Digest& digest : digests_) {
    matched |= CRYPTO_memcmp(presented.data(), digest.data(), digest.size()) == 0;
  }
  return matched != 0;
}

std::optional<absl::string_view> BearerToken(absl::string_view authorization) {
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  absl::string_view token = absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  if (token.empty()) return std::nullopt;
  return token;
}

}  // namespace saferoute::server
