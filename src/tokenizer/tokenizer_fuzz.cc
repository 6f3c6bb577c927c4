// libFuzzer target (-DSAFEROUTE_FUZZ=ON, clang): arbitrary bytes through
// Encode / EncodeParsingSpecials / Decode. Invariants: no crash; valid UTF-8
// encodes and round-trips; invalid UTF-8 is an error naming the offset.
// The tokenizer file: $SAFEROUTE_TOKENIZER, else ../shared/tokenizers/llama3/
// relative to the working directory (run from the repository root).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tokenizer/bpe_tokenizer.h"
#include "util/utf8.h"

namespace {

const saferoute::BpeTokenizer& Tokenizer() {
  static const saferoute::BpeTokenizer* tok = [] {
    const char* env = std::getenv("SAFEROUTE_TOKENIZER");
    const std::string path = env != nullptr ? env : "../shared/tokenizers/llama3/tokenizer.json";
    auto t = saferoute::BpeTokenizer::Load(path);
    if (!t.ok()) {
      std::fprintf(stderr, "tokenizer_fuzz: %s\n", std::string(t.status().message()).c_str());
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

}  // namespace

// Loads the tokenizer (seconds under ASan) before libFuzzer's per-input
// timeout starts counting.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  Tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const saferoute::BpeTokenizer& tok = Tokenizer();
  const bool valid = saferoute::FindInvalidUtf8(text) == std::string::npos;
  auto ids = tok.Encode(text);
  if (ids.ok() != valid) std::abort();
  if (ids.ok()) {
    auto decoded = tok.Decode(*ids);
    if (!decoded.ok() || *decoded != text) std::abort();
  }
  auto parsed = tok.EncodeParsingSpecials(text);
  if (parsed.ok() != valid) std::abort();
  if (parsed.ok()) {
    auto decoded = tok.Decode(*parsed);
    if (!decoded.ok() || *decoded != text) std::abort();
  }
  return 0;
}
