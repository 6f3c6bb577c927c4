// LocalGuard: render (llama_guard_format) -> tokenize -> append the verdict
// position (271, "\n\n") -> batched prefill over a cached policy prefix ->
// verdict from the "safe"/"unsafe" logits and the full-vocabulary
// log-sum-exp; optional greedy decode for categories.
#include "guard/local_guard.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "guard/llama_guard_format.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/utf8.h"

namespace saferoute {
namespace {

using Clock = std::chrono::steady_clock;
double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Policy prefixes kept at once; a server sees a handful of policies, and a
// client cycling through many only costs recomputation (the cache is reset).
constexpr size_t kMaxCachedPrefixes = 64;

// Format from the model's shape: Llama-Guard-3-1B is Llama-3.2-1B shaped
// (16 layers, hidden 2048), -8B is Llama-3.1-8B shaped (32 layers, 4096).
absl::StatusOr<GuardFormat> GuessFormat(const ModelConfig& config, const std::string& dir) {
  if (config.num_layers == 16 && config.hidden_size == 2048) return GuardFormat::kLlamaGuard3_1B;
  if (config.num_layers == 32 && config.hidden_size == 4096) return GuardFormat::kLlamaGuard3_8B;
  return absl::InvalidArgumentError(
      absl::StrCat(dir, "/config.json: cannot tell the guard format from the shape (",
                   config.num_layers, " layers, hidden ", config.hidden_size,
                   "); give the format (llama-guard-3-1b or llama-guard-3-8b)"));
}

class LocalGuard : public Guard {
 public:
  absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) override;
  int feature_dim() const override { return static_cast<int>(model_->config().hidden_size); }
  std::string fingerprint() const override {
    // The features are the final-norm output at the verdict position of this
    // format's prompt: model, layer and prompt all matter.
    return absl::StrCat(model_->fingerprint(), "/", AbslView(GuardFormatName(format_)),
                        "/final_norm/verdict_position");
  }
  std::string name() const override {
    return absl::StrCat(AbslView(GuardFormatName(format_)), "@", options_.model_dir);
  }

  LocalGuardOptions options_;
  GuardFormat format_ = GuardFormat::kLlamaGuard3_1B;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<BpeTokenizer> tokenizer_;
  std::vector<int32_t> stop_ids_;     // eos ids from config.json
  int32_t verdict_position_id_ = 0;   // "\n\n" (271)
  std::vector<int32_t> verdict_ids_;  // {"safe" 19193, "unsafe" 39257}

 private:
  absl::StatusOr<std::shared_ptr<const PrefixCache>> Prefix(const RenderedPrompt& rendered);

  std::mutex prefix_mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<const PrefixCache>> prefixes_;  // by prefix text
};

absl::StatusOr<std::shared_ptr<const PrefixCache>> LocalGuard::Prefix(
    const RenderedPrompt& rendered) {
  {
    std::lock_guard<std::mutex> lock(prefix_mutex_);
    auto it = prefixes_.find(rendered.prefix_text);
    if (it != prefixes_.end()) return it->second;
  }
  // Computed outside the lock (the engine serialises itself); two threads may
  // compute the same prefix once each, which is harmless.
  std::span<const int32_t> prefix_ids(rendered.ids.data(), rendered.prefix_tokens);
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const PrefixCache> cache, engine_->ComputePrefix(prefix_ids));
  std::lock_guard<std::mutex> lock(prefix_mutex_);
  if (prefixes_.size() >= kMaxCachedPrefixes) prefixes_.clear();
  prefixes_.emplace(rendered.prefix_text, cache);
  return cache;
}

absl::StatusOr<std::vector<GuardVerdict>> LocalGuard::Classify(
    const std::vector<GuardRequest>& requests) {
  struct Prepared {
    std::vector<int32_t> ids;  // rendered prompt + verdict position
    size_t prefix_tokens = 0;
    std::shared_ptr<const PrefixCache> prefix;
  };
  std::vector<Prepared> prepared(requests.size());
  std::vector<GuardVerdict> verdicts(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto start = Clock::now();
    auto with_index = [i](const absl::Status& s) {
      return absl::Status(s.code(), absl::StrCat("request ", i, ": ", s.message()));
    };
    auto turns = RequestTurns(requests[i]);
    if (!turns.ok()) return with_index(turns.status());
    const Policy* policy = requests[i].policy.has_value() ? &*requests[i].policy : nullptr;
    auto rendered = RenderLlamaGuard3(format_, *turns, policy, *tokenizer_);
    if (!rendered.ok()) return with_index(rendered.status());
    rendered->ids.push_back(verdict_position_id_);
    const int n_tokens = static_cast<int>(rendered->ids.size());
    if (n_tokens > options_.max_input_tokens) {
      return with_index(absl::InvalidArgumentError(
          absl::StrCat("the rendered prompt has ", n_tokens, " tokens, over the limit of ",
                       options_.max_input_tokens, " (max_input_tokens)")));
    }
    verdicts[i].n_tokens = n_tokens;
    verdicts[i].timings.tokenize_ms = MillisSince(start);
    prepared[i].prefix_tokens = rendered->prefix_tokens;
    if (rendered->prefix_tokens > 0) {
      auto prefix = Prefix(*rendered);
      if (!prefix.ok()) return with_index(prefix.status());
      prepared[i].prefix = *prefix;
    }
    prepared[i].ids = std::move(rendered->ids);
  }

  const size_t batch = static_cast<size_t>(std::max(1, options_.max_batch));
  for (size_t first = 0; first < requests.size(); first += batch) {
    const size_t last = std::min(requests.size(), first + batch);
    std::vector<SequenceRequest> sequences(last - first);
    for (size_t i = first; i < last; ++i) {
      SequenceRequest& seq = sequences[i - first];
      seq.tokens = std::span<const int32_t>(prepared[i].ids).subspan(prepared[i].prefix_tokens);
      seq.prefix = prepared[i].prefix;
      // Full logits: p_unsafe_full needs the log-sum-exp over the vocabulary.
      seq.logits = LogitsMode::kFull;
    }
    const auto start = Clock::now();
    auto results = engine_->Prefill(sequences);
    if (!results.ok()) {
      return absl::Status(results.status().code(), absl::StrCat("requests ", first, "..", last - 1,
                                                                ": ", results.status().message()));
    }
    const double forward_ms = MillisSince(start);
    for (size_t i = first; i < last; ++i) {
      SequenceResult& result = (*results)[i - first];
      GuardVerdict& v = verdicts[i];
      const std::vector<float>& logits = result.logits;  // [V]
      SR_CHECK(logits.size() == static_cast<size_t>(model_->config().vocab_size));
      v.timings.forward_ms = forward_ms;  // of the whole batch this request was in
      v.logit_safe = logits[verdict_ids_[0]];
      v.logit_unsafe = logits[verdict_ids_[1]];
      // Log-sum-exp in double around the max, so no logit range overflows.
      const float max_logit = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
      const double lse = max_logit + std::log(sum);
      v.p_unsafe_full = static_cast<float>(std::exp(v.logit_unsafe - lse));
      v.p_safe_full = static_cast<float>(std::exp(v.logit_safe - lse));
      // Two-way softmax over {safe, unsafe}: the logistic of the difference.
      v.p_unsafe = static_cast<float>(
          1.0 / (1.0 + std::exp(static_cast<double>(v.logit_safe) - v.logit_unsafe)));
      v.unsafe = v.p_unsafe > options_.threshold;
      if (requests[i].want_feature) v.feature = std::move(result.last_hidden);
    }
  }

  for (size_t i = 0; i < requests.size(); ++i) {
    if (!requests[i].want_categories) continue;
    const auto start = Clock::now();
    const Prepared& p = prepared[i];
    auto generated = engine_->GreedyDecode(std::span<const int32_t>(p.ids).subspan(p.prefix_tokens),
                                           p.prefix, options_.max_decode_tokens, stop_ids_);
    if (!generated.ok()) {
      return absl::Status(generated.status().code(),
                          absl::StrCat("request ", i, ": decode: ", generated.status().message()));
    }
    GuardVerdict& v = verdicts[i];
    v.generated_ids = *generated;
    // Parse the text without the stop token; the verdict position's "\n\n"
    // was fed, so the text starts at the verdict word.
    std::vector<int32_t> text_ids = *generated;
    if (!text_ids.empty() &&
        std::find(stop_ids_.begin(), stop_ids_.end(), text_ids.back()) != stop_ids_.end()) {
      text_ids.pop_back();
    }
    auto text = tokenizer_->Decode(text_ids);
    ParsedVerdict parsed;
    const bool stopped = text_ids.size() < generated->size();
    if (text.ok() && stopped && ParseVerdictText(*text, parsed)) {
      v.categories = std::move(parsed.categories);
    } else {
      // Not "safe" / "unsafe\nS..": kept verbatim, nothing guessed (a decode
      // that hit max_decode_tokens without an eos is unparsed too).
      v.unparsed_output = text.ok() ? *text : std::string();
    }
    v.timings.decode_ms = MillisSince(start);
  }
  return verdicts;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Guard>> OpenLocalGuard(const LocalGuardOptions& options) {
  if (options.max_input_tokens < 1 || options.max_decode_tokens < 1 || options.max_batch < 1) {
    return absl::InvalidArgumentError(
        "local guard: max_input_tokens, max_decode_tokens and max_batch must be >= 1");
  }
  if (!(options.threshold >= 0 && options.threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("local guard: threshold ", options.threshold, " is not in [0, 1]"));
  }
  auto guard = std::make_unique<LocalGuard>();
  guard->options_ = options;
  SR_ASSIGN_OR_RETURN(guard->model_, LoadModel(options.model_dir));
  const ModelConfig& config = guard->model_->config();
  if (options.format.empty()) {
    SR_ASSIGN_OR_RETURN(guard->format_, GuessFormat(config, options.model_dir));
  } else {
    SR_ASSIGN_OR_RETURN(guard->format_, ParseGuardFormat(options.format));
  }
  const std::string tokenizer_path = options.tokenizer_path.empty()
                                         ? options.model_dir + "/tokenizer.json"
                                         : options.tokenizer_path;
  SR_ASSIGN_OR_RETURN(guard->tokenizer_, BpeTokenizer::Load(tokenizer_path));
  if (guard->tokenizer_->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        tokenizer_path, ": ", guard->tokenizer_->vocab_size(), " token ids, but the model (",
        options.model_dir, "/config.json) has vocab_size ", config.vocab_size));
  }
  auto token = [&](std::string_view bytes) -> absl::StatusOr<int32_t> {
    if (auto id = guard->tokenizer_->TokenIdOfBytes(bytes)) return *id;
    return absl::InvalidArgumentError(absl::StrCat(
        tokenizer_path, ": no token for \"", AbslView(bytes), "\" (not a Llama 3 vocabulary?)"));
  };
  SR_ASSIGN_OR_RETURN(guard->verdict_position_id_, token("\n\n"));
  SR_ASSIGN_OR_RETURN(const int32_t safe_id, token("safe"));
  SR_ASSIGN_OR_RETURN(const int32_t unsafe_id, token("unsafe"));
  guard->verdict_ids_ = {safe_id, unsafe_id};
  guard->stop_ids_ = config.eos_token_ids;
  if (guard->stop_ids_.empty()) {
    SR_ASSIGN_OR_RETURN(const int32_t eot, guard->tokenizer_->RequireSpecialTokenId("<|eot_id|>"));
    guard->stop_ids_ = {eot};
  }
  EngineOptions engine_options = options.engine;
  // Room for the longest accepted prompt plus the category decode.
  engine_options.max_tokens = std::max<int64_t>(
      engine_options.max_tokens, int64_t{options.max_input_tokens} + options.max_decode_tokens);
  SR_ASSIGN_OR_RETURN(guard->engine_, Engine::Create(guard->model_, engine_options));
  return guard;
}

}  // namespace saferoute
