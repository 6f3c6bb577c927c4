// API keys for the HTTP service: `Authorization: Bearer <key>`.
//
// Keys come from a file (one per line; blank lines and lines starting with
// '#' are skipped) and/or from an environment variable (keys separated by
// commas or whitespace), never from the command line or the config file,
// where they would show in `ps`, shell history and --print-config. Only the
// SHA-256 digest of each key is kept; a presented key is hashed and compared
// with every stored digest in constant time (CRYPTO_memcmp, no early exit),
// so neither the response time nor its length reveals how much of a key
// matched or how long the keys are.
//
// Thread-safe after construction (immutable).
#ifndef SAFEROUTE_SERVER_API_KEYS_H_
#define SAFEROUTE_SERVER_API_KEYS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "util/status.h"

namespace saferoute::server {

class ApiKeySet {
 public:
  // Keys shorter than this are refused when loading: a short key is guessable.
  static constexpr size_t kMinKeyLength = 16;

  // `file` and `env_var` may each be empty (not used); at least one key must
  // result. Errors name the file (and line) or the variable, never a key.
  static absl::StatusOr<std::shared_ptr<const ApiKeySet>> Load(const std::string& file,
                                                               const std::string& env_var);
  // From keys in memory (tests).
  static absl::StatusOr<std::shared_ptr<const ApiKeySet>> FromKeys(
      const std::vector<std::string>& keys);

  // True iff `key` is one of the keys. Constant time in the key's content.
  bool Matches(absl::string_view key) const;
  size_t size() const { return digests_.size(); }

 private:
  using Digest = std::array<uint8_t, 32>;
  std::vector<Digest> digests_;
};

// The token of an "Authorization: Bearer <token>" header value (scheme
// case-insensitive, as RFC 6750 allows); nullopt for any other form.
std::optional<absl::string_view> BearerToken(absl::string_view authorization);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_API_KEYS_H_
