#include "server/request_id.h"

#include <openssl/rand.h>

#include <array>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "util/status.h"

namespace saferoute::server {

bool IsValidRequestId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdLength) return false;
  for (char c : id) {
    const bool allowed = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                         c == '_' || c == '.' || c == ':' || c == '+' || c == '/' || c == '=';
    if (!allowed) return false;
  }
  return true;
}

std::string RandomId(absl::string_view prefix) {
  std::array<uint8_t, 16> bytes{};
  // RAND_bytes fails only if the CSPRNG cannot be seeded: no safe fallback.
  SR_CHECK(RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) == 1);
  return absl::StrCat(prefix, absl::BytesToHexString(absl::string_view(
                                  reinterpret_cast<const char*>(bytes.data()), bytes.size())));
}

}  // namespace saferoute::server
