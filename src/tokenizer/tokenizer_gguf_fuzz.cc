// libFuzzer target (-DSAFEROUTE_FUZZ=ON, clang): a GGUF image's tokenizer
// keys through TokenizerSpecFromGguf and BpeTokenizer::FromSpec, then text
// through the tokenizer built. Input: [u16 little-endian n][n bytes of text]
// [GGUF image]. Invariants: no crash or hang; a tokenizer is built or a
// Status returned; valid UTF-8 text encodes, and decodes back to the text
// less the bytes the vocabulary has no token for; invalid UTF-8 is an error.
//
// Seeds: testdata/fuzz/tokenizer_gguf_fuzz/ (made by make_tokenizer_seeds.py).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "io/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"
#include "util/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t text_size = std::min<size_t>(data[0] | (data[1] << 8), size - 2);
  const std::string text(reinterpret_cast<const char*>(data + 2), text_size);
  const std::span<const std::byte> image(reinterpret_cast<const std::byte*>(data + 2 + text_size),
                                         size - 2 - text_size);
  auto contents = saferoute::ParseGguf(image, "fuzz.gguf");
  if (!contents.ok()) return 0;
  auto spec = saferoute::TokenizerSpecFromGguf(contents->metadata);
  if (!spec.ok()) return 0;
  auto tok = saferoute::BpeTokenizer::FromSpec(*spec);
  if (!tok.ok()) return 0;
  const bool valid = saferoute::FindInvalidUtf8(text) == std::string::npos;
  auto ids = (*tok)->Encode(text);
  if (ids.ok() != valid) std::abort();
  if (!ids.ok()) return 0;
  std::string expected;
  for (char c : text) {
    bool dropped = false;
    for (uint8_t b : (*tok)->bytes_without_token()) dropped |= static_cast<uint8_t>(c) == b;
    if (!dropped) expected.push_back(c);
  }
  auto decoded = (*tok)->Decode(*ids);
  if (!decoded.ok() || *decoded != expected) std::abort();
  for (int32_t id : *ids) {
    if ((*tok)->token_type(id) != saferoute::TokenType::kNormal) std::abort();  // no special
  }
  return 0;
}
