// `saferoute tokenize`: token ids of text, as JSON, with the tokenizer of a
// tokenizer.json or of a .gguf model file.
//   saferoute tokenize --tokenizer PATH --text T          -> {"ids":[...]}
//   saferoute tokenize --tokenizer PATH --jsonl FILE      -> one {"ids":[...]} per line
// Special-token strings are plain text unless --parse-specials (HF parity).
// No BOS is added.
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>

#include "cli/command.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"

namespace saferoute::cli {
namespace {

struct TokenizeFlags {
  std::string tokenizer;
  std::optional<std::string> text;
  std::string jsonl;
  bool parse_specials = false;
};

absl::StatusOr<std::vector<int32_t>> EncodeOne(const BpeTokenizer& tok, const std::string& text,
                                               bool parse_specials) {
  return parse_specials ? tok.EncodeParsingSpecials(text) : tok.Encode(text);
}

absl::Status RunTokenize(const TokenizeFlags& flags) {
  if (flags.text.has_value() == !flags.jsonl.empty()) {
    return absl::InvalidArgumentError("give exactly one of --text or --jsonl");
  }
  SR_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tok, LoadTokenizer(flags.tokenizer));
  if (flags.text.has_value()) {
    auto ids = EncodeOne(*tok, *flags.text, flags.parse_specials);
    if (!ids.ok())
      return absl::Status(ids.status().code(), absl::StrCat("--text: ", ids.status().message()));
    std::printf("%s\n", nlohmann::json({{"ids", *ids}}).dump().c_str());
    return absl::OkStatus();
  }
  std::ifstream in(flags.jsonl, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(flags.jsonl, ": cannot open"));
  std::string line;
  for (int line_number = 1; std::getline(in, line); ++line_number) {
    const std::string where = absl::StrCat(flags.jsonl, ":", line_number);
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": not valid JSON: ", std::string(e.what())));
    }
    if (!row.is_object() || !row.contains("text") || !row["text"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": needs a string field \"text\""));
    }
    auto ids = EncodeOne(*tok, row["text"].get<std::string>(), flags.parse_specials);
    if (!ids.ok()) {
      return absl::Status(ids.status().code(), absl::StrCat(where, ": ", ids.status().message()));
    }
    std::printf("%s\n", nlohmann::json({{"ids", *ids}}).dump().c_str());
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(flags.jsonl, ": read error"));
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupTokenizeCommand(CLI::App& cmd) {
  auto flags = std::make_shared<TokenizeFlags>();
  cmd.add_option("--tokenizer", flags->tokenizer,
                 "tokenizer.json or .gguf model file (byte-level BPE)")
      ->required();
  cmd.add_option("--text", flags->text, "text to encode (UTF-8)");
  cmd.add_option("--jsonl", flags->jsonl, "JSONL file, one {\"text\": ...} per line");
  cmd.add_flag("--parse-specials", flags->parse_specials,
               "parse special-token strings like HF tokenizer(text) (parity tests only)");
  return [flags] { return RunTokenize(*flags); };
}

}  // namespace saferoute::cli
