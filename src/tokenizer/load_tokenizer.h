// A tokenizer from a path: a Hugging Face tokenizer.json, or a .gguf file
// (told apart by the GGUF magic), whose tokenizer.ggml.* keys hold the
// vocabulary. Where a model or a tokenizer is named, a .gguf file works.
#ifndef SAFEROUTE_TOKENIZER_LOAD_TOKENIZER_H_
#define SAFEROUTE_TOKENIZER_LOAD_TOKENIZER_H_

#include <memory>
#include <string>

#include "io/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/tokenizer_spec.h"
#include "util/status.h"

namespace saferoute {

// Errors name the file and the key or field ("x.gguf: tokenizer.ggml.merges[17]:
// ...", "tokenizer.json: model.vocab[...]: ...").
absl::StatusOr<std::unique_ptr<BpeTokenizer>> LoadTokenizer(const std::string& path,
                                                            const TokenizerOptions& options = {});

// The spec that the tokenizer.ggml.* keys describe, read as llama.cpp reads
// them (llama-vocab.cpp, c392e509):
//   model            "gpt2" (byte-level BPE); any other model is refused by name
//   pre              pre-tokenizer name (llama-bpe, qwen2, smollm); required
//   tokens           string array, the vocabulary
//   token_type       int array, one per token (absent: all normal)
//   merges           string array "a b", rank order; required
//   bos/eos/eot/eom/unknown/seperator/padding/mask_token_id   optional ids
//   add_bos_token, add_eos_token   optional bools (absent: add_bos as llama.cpp
//                    defaults it for the pre-tokenizer, add_eos false)
// Ignored as llama.cpp ignores them for gpt2: scores, add_space_prefix,
// remove_extra_whitespaces, chat_template. Errors name metadata.source().
absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(const GgufMetadata& metadata);

}  // namespace saferoute

#endif  // SAFEROUTE_TOKENIZER_LOAD_TOKENIZER_H_
