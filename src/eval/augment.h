// Paraphrase augmentation (paper §3.3): an instruction-tuned LLM behind an
// OpenAI-compatible chat endpoint rewrites every example k times; each
// paraphrase inherits the gold label and is re-scored by both guards later.
//
// Output: JSONL rows in the dataset shape plus "parent_id", with ids
// "<id>#p<j>" (j = 1..k). Resumable: rows already in the output are skipped,
// a torn last line is dropped. Replies that do not parse as
// "prompt: ... response: ..." are counted and dropped (as the paper's code
// does). Transport errors, HTTP 429 and 5xx are retried with exponential
// backoff up to `max_retries`; after that, or on any other HTTP error, the run
// stops with an error (what is written stays and a rerun continues).
#ifndef SAFEROUTE_EVAL_AUGMENT_H_
#define SAFEROUTE_EVAL_AUGMENT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eval/dataset.h"
#include "util/status.h"

namespace saferoute::eval {

struct AugmentOptions {
  std::string url;           // base URL of the API, e.g. "http://127.0.0.1:8000/v1"
  std::string model;         // the "model" field of each request
  int k = 7;                 // paraphrases per example (the paper: 7 rounds)
  double temperature = 1.0;  // sampling temperature (the paper: 1.0)
  int max_tokens = 1024;     // per reply (the paper: 1024)
  double timeout_s = 120;    // connect / read / write timeout per request
  int max_retries = 3;       // retries after the first try, per request
  double backoff_s = 1.0;    // first retry delay; doubles each retry
  bool progress = true;      // progress on stderr
};

struct AugmentSummary {
  int64_t skipped_existing = 0;  // paraphrases already in the output
  int64_t requested = 0;         // successful HTTP exchanges
  int64_t written = 0;           // rows appended
  int64_t parse_failures = 0;    // replies dropped
  int64_t retries = 0;
};

absl::StatusOr<AugmentSummary> AugmentDataset(const std::vector<Example>& examples,
                                              const std::string& out_path,
                                              const AugmentOptions& options);

// The user message sent for one example (our own wording of the paper's
// instruction: paraphrase prompt and response separately, keep the meaning,
// answer as "prompt: ...\n\nresponse: ...", "None" for a missing response).
std::string ParaphraseInstruction(const Example& example);

struct Paraphrase {
  std::string prompt;
  std::optional<std::string> response;
};

// Parses a reply: the text after the first "prompt:" up to the first
// "response:" after it, and the rest (both trimmed). For a prompt-only
// example the response is dropped. Fails (nullopt) on a missing marker, an
// empty prompt, or an empty/"None" response where the example has one.
std::optional<Paraphrase> ParseParaphrase(std::string_view reply, bool has_response);

// "http://host:port/base" -> {"http://host:port", "/base"} (http or https).
struct ApiUrl {
  std::string scheme_host_port;
  std::string base_path;  // no trailing '/', may be empty
};
absl::StatusOr<ApiUrl> ParseApiUrl(std::string_view url);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_AUGMENT_H_
