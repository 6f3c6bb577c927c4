// LocalGuard: the guard format renders the prompt and appends its verdict
// lead -> batched prefill over a cached policy prefix -> the verdict from the
// format's verdict-token logits and the full-vocabulary log-sum-exp -> for
// unsafe verdicts that want categories, a batched greedy decode continuing
// the prefill (its keys/values kept, not recomputed), parsed by the format.
#include "guard/local_guard.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_join.h"
#include "guard/guard_format.h"
#include "model/weights.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

using Clock = std::chrono::steady_clock;
double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// `status` of step `what` for the requests `indexes` of a call with `total`:
// their batch indexes in front where the call had several (a lone request's
// "request 0" names nothing the caller sent).
absl::Status NameRequests(const absl::Status& status, std::span<const size_t> indexes, size_t total,
                          absl::string_view what) {
  if (total == 1) return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
  return absl::Status(status.code(), absl::StrCat(indexes.size() == 1 ? "request " : "requests ",
                                                  absl::StrJoin(indexes, ", "), ": ", what, ": ",
                                                  status.message()));
}

// Policy prefixes kept at once; a server sees a handful of policies, and a
// client cycling through many only costs recomputation (the cache is reset).
constexpr size_t kMaxCachedPrefixes = 64;

class LocalGuard : public Guard {
 public:
  absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) override;
  int feature_dim() const override { return static_cast<int>(model_->config().hidden_size); }
  std::string fingerprint() const override {
    // The features are the final-norm output at the verdict position of this
    // format's prompt: model, layer and prompt all matter.
    return absl::StrCat(model_->fingerprint(), "/", AbslView(format_->name()),
                        "/final_norm/verdict_position");
  }
  // The model directory's (or .gguf file's) own name: responses carry it.
  std::string name() const override {
    absl::string_view dir = options_.model_dir;
    while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
    const size_t slash = dir.rfind('/');
    return std::string(slash == absl::string_view::npos ? dir : dir.substr(slash + 1));
  }
  std::string format_name() const override { return std::string(format_->name()); }
  Compute compute() const override {
    const EngineCompute c = engine_->compute();
    return {c.path, c.impl, c.isa};
  }

  LocalGuardOptions options_;
  std::unique_ptr<GuardFormat> format_;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> stop_ids_;  // the format's and config.json's eos ids

 private:
  // A request rendered for its verdict.
  struct Prepared {
    std::vector<int32_t> ids;  // rendered prompt + verdict position
    size_t prefix_tokens = 0;
    std::shared_ptr<const PrefixCache> prefix;

    std::span<const int32_t> own_tokens() const {  // what the prefill feeds after the prefix
      return std::span<const int32_t>(ids).subspan(prefix_tokens);
    }
  };

  absl::StatusOr<std::shared_ptr<const PrefixCache>> Prefix(const RenderedPrompt& rendered);
  // Memory the keys/values kept for the decode of `p` take.
  int64_t KeptBytes(const Prepared& p) const {
    return (static_cast<int64_t>(p.own_tokens().size()) + options_.max_decode_tokens) *
           engine_->kept_kv_bytes_per_position();
  }
  // Greedy decode of the unsafe verdicts verdicts[indexes[j]], continuing
  // their prefill (caches[j]) in one batch; parses categories. decode_ms
  // counts from `start`.
  absl::Status DecodeCategories(const std::vector<GuardRequest>& requests,
                                std::span<const size_t> indexes,
                                std::vector<std::shared_ptr<SequenceCache>> caches,
                                Clock::time_point start, std::vector<GuardVerdict>& verdicts);
  // For unsafe verdicts whose classification pass kept no keys/values (over
  // max_kept_kv_bytes): prefills them again, keeping them, in groups within
  // that budget, and decodes each group.
  absl::Status PrefillAndDecodeCategories(const std::vector<GuardRequest>& requests,
                                          std::span<const Prepared> prepared,
                                          std::span<const size_t> indexes,
                                          std::vector<GuardVerdict>& verdicts);

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
  std::vector<Prepared> prepared(requests.size());
  std::vector<GuardVerdict> verdicts(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto start = Clock::now();
    // The index names the input only where there are several (a lone
    // request's "request 0" would name nothing the caller sent).
    auto with_index = [i, n = requests.size()](const absl::Status& s) {
      if (n == 1) return s;
      return absl::Status(s.code(), absl::StrCat("request ", i, ": ", s.message()));
    };
    auto rendered = RenderForVerdict(*format_, requests[i]);
    if (!rendered.ok()) return with_index(rendered.status());
    const int n_tokens = static_cast<int>(rendered->ids.size());
    if (n_tokens > options_.max_input_tokens) {
      // OutOfRange: a valid input too long for this service (HTTP 400
      // "out_of_range"), not a malformed one.
      return with_index(absl::OutOfRangeError(
          absl::StrCat("the guard's prompt for this input has ", n_tokens,
                       " tokens, over the limit of ", options_.max_input_tokens, " per input")));
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

  const std::span<const VerdictToken> verdict_tokens = format_->verdict_tokens();
  std::vector<int32_t> verdict_ids;
  for (const VerdictToken& token : verdict_tokens) verdict_ids.push_back(token.id);
  const size_t batch = static_cast<size_t>(std::max(1, options_.max_batch));
  for (size_t first = 0; first < requests.size(); first += batch) {
    const size_t last = std::min(requests.size(), first + batch);
    std::vector<SequenceRequest> sequences(last - first);
    int64_t kept_bytes = 0;
    for (size_t i = first; i < last; ++i) {
      SequenceRequest& seq = sequences[i - first];
      seq.tokens = prepared[i].own_tokens();
      seq.prefix = prepared[i].prefix;
      // The two verdict logits, and for p_unsafe_full the log-sum-exp over
      // the vocabulary (the engine's one pass over the LM head for the whole
      // batch, no [V] logits per request).
      seq.logits = LogitsMode::kSelected;
      seq.logit_ids = verdict_ids;
      seq.log_sum_exp = true;
      // Categories come from a greedy decode that continues this pass (its
      // keys/values kept; the policy prefix stays shared), if the verdict is
      // unsafe and the batch's kept keys/values stay within the budget.
      if (requests[i].want_categories &&
          kept_bytes + KeptBytes(prepared[i]) <= options_.max_kept_kv_bytes) {
        seq.decode_tokens = options_.max_decode_tokens;
        kept_bytes += KeptBytes(prepared[i]);
      }
    }
    const auto start = Clock::now();
    auto results = engine_->Prefill(sequences);
    if (!results.ok()) {
      return absl::Status(results.status().code(), absl::StrCat("requests ", first, "..", last - 1,
                                                                ": ", results.status().message()));
    }
    const double forward_ms = MillisSince(start);
    std::vector<size_t> unsafe;  // requests of this batch to decode from their kept cache
    std::vector<std::shared_ptr<SequenceCache>> caches;
    std::vector<size_t> again;  // and those to prefill again for it (over the budget)
    for (size_t i = first; i < last; ++i) {
      SequenceResult& result = (*results)[i - first];
      GuardVerdict& v = verdicts[i];
      SR_CHECK(result.logits.size() == verdict_ids.size());
      v.timings.forward_ms = forward_ms;  // of the whole batch this request was in
      const std::vector<double> verdict_logits(result.logits.begin(), result.logits.end());
      ScoreVerdict(verdict_tokens, verdict_logits, result.log_sum_exp, v);
      v.unsafe = v.p_unsafe > options_.threshold;
      if (requests[i].want_feature) v.feature = std::move(result.last_hidden);
      // A safe verdict has no categories: its keys/values go now.
      if (v.unsafe && requests[i].want_categories) {
        if (result.cache) {
          unsafe.push_back(i);
          caches.push_back(std::move(result.cache));
        } else {
          again.push_back(i);
        }
      }
      result.cache.reset();
    }
    if (!unsafe.empty()) {
      SR_RETURN_IF_ERROR(
          DecodeCategories(requests, unsafe, std::move(caches), Clock::now(), verdicts));
    }
    if (!again.empty()) {
      SR_RETURN_IF_ERROR(PrefillAndDecodeCategories(requests, prepared, again, verdicts));
    }
  }
  return verdicts;
}

absl::Status LocalGuard::PrefillAndDecodeCategories(const std::vector<GuardRequest>& requests,
                                                    std::span<const Prepared> prepared,
                                                    std::span<const size_t> indexes,
                                                    std::vector<GuardVerdict>& verdicts) {
  size_t begin = 0;
  while (begin < indexes.size()) {
    // The group: at least one request, then as many as the budget takes.
    size_t end = begin + 1;
    int64_t bytes = KeptBytes(prepared[indexes[begin]]);
    while (end < indexes.size() &&
           bytes + KeptBytes(prepared[indexes[end]]) <= options_.max_kept_kv_bytes) {
      bytes += KeptBytes(prepared[indexes[end++]]);
    }
    const std::span<const size_t> group = indexes.subspan(begin, end - begin);
    const auto start = Clock::now();
    std::vector<SequenceRequest> sequences(group.size());
    for (size_t j = 0; j < group.size(); ++j) {
      sequences[j].tokens = prepared[group[j]].own_tokens();
      sequences[j].prefix = prepared[group[j]].prefix;
      sequences[j].logits = LogitsMode::kNone;
      sequences[j].decode_tokens = options_.max_decode_tokens;
    }
    auto results = engine_->Prefill(sequences);
    if (!results.ok()) {
      return NameRequests(results.status(), group, requests.size(), "decode prefill");
    }
    std::vector<std::shared_ptr<SequenceCache>> caches;
    for (SequenceResult& result : *results) caches.push_back(std::move(result.cache));
    results->clear();
    SR_RETURN_IF_ERROR(DecodeCategories(requests, group, std::move(caches), start, verdicts));
    begin = end;
  }
  return absl::OkStatus();
}

absl::Status LocalGuard::DecodeCategories(const std::vector<GuardRequest>& requests,
                                          std::span<const size_t> indexes,
                                          std::vector<std::shared_ptr<SequenceCache>> caches,
                                          Clock::time_point start,
                                          std::vector<GuardVerdict>& verdicts) {
  auto generated = engine_->ContinueGreedyDecode(caches, stop_ids_);
  caches.clear();  // the keys/values are not needed any more
  if (!generated.ok()) return NameRequests(generated.status(), indexes, requests.size(), "decode");
  const double decode_ms = MillisSince(start);  // of all the batch's decodes together
  for (size_t j = 0; j < indexes.size(); ++j) {
    const GuardRequest& request = requests[indexes[j]];
    GuardVerdict& v = verdicts[indexes[j]];
    v.generated_ids = std::move((*generated)[j]);
    v.timings.decode_ms = decode_ms;
    v.timings.decode_steps = static_cast<int>(v.generated_ids.size()) - 1;
    // Parse the text without the stop token; the verdict lead was fed, so
    // the text starts at the verdict word.
    std::vector<int32_t> text_ids = v.generated_ids;
    if (!text_ids.empty() &&
        std::find(stop_ids_.begin(), stop_ids_.end(), text_ids.back()) != stop_ids_.end()) {
      text_ids.pop_back();
    }
    auto text = format_->tokenizer().Decode(text_ids);
    // A decode that hit max_decode_tokens without a stop id is unparsed too.
    const bool stopped = text_ids.size() < v.generated_ids.size();
    const Policy* policy = request.policy.has_value() ? &*request.policy : nullptr;
    ApplyDecodedOutput(*format_, text.ok() ? *text : std::string(), policy, text.ok() && stopped,
                       v);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Guard>> OpenLocalGuard(const LocalGuardOptions& options) {
  if (options.max_input_tokens < 1 || options.max_decode_tokens < 1 || options.max_batch < 1) {
    return absl::InvalidArgumentError(
        "local guard: max_input_tokens, max_decode_tokens and max_batch must be >= 1");
  }
  if (options.max_kept_kv_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("local guard: max_kept_kv_bytes ", options.max_kept_kv_bytes, " < 0"));
  }
  if (!(options.threshold >= 0 && options.threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("local guard: threshold ", options.threshold, " is not in [0, 1]"));
  }
  auto guard = std::make_unique<LocalGuard>();
  guard->options_ = options;
  SR_ASSIGN_OR_RETURN(guard->model_, LoadModel(options.model_dir));
  const ModelConfig& config = guard->model_->config();
  std::string format_name = options.format;
  if (format_name.empty()) {
    SR_ASSIGN_OR_RETURN(format_name, GuessFormat(config, ModelConfigSource(options.model_dir)));
  }
  const std::string tokenizer_path = options.tokenizer_path.empty()
                                         ? ModelTokenizerPath(options.model_dir)
                                         : options.tokenizer_path;
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const BpeTokenizer> tokenizer, LoadTokenizer(tokenizer_path));
  if (tokenizer->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_path, ": ", tokenizer->vocab_size(), " token ids, but the model (",
                     ModelConfigSource(options.model_dir), ") has vocab_size ", config.vocab_size));
  }
  auto format = OpenGuardFormat(format_name, std::move(tokenizer));
  if (!format.ok()) {
    return absl::Status(format.status().code(),
                        absl::StrCat(tokenizer_path, ": ", format.status().message()));
  }
  guard->format_ = *std::move(format);
  // Stop at the format's end of turn and at every eos config.json names.
  guard->stop_ids_ = config.eos_token_ids;
  for (int32_t id : guard->format_->stop_ids()) {
    if (std::find(guard->stop_ids_.begin(), guard->stop_ids_.end(), id) == guard->stop_ids_.end()) {
      guard->stop_ids_.push_back(id);
    }
  }
  EngineOptions engine_options = options.engine;
  // Room for the longest accepted prompt plus the category decode.
  engine_options.max_tokens = std::max<int64_t>(
      engine_options.max_tokens, int64_t{options.max_input_tokens} + options.max_decode_tokens);
  SR_ASSIGN_OR_RETURN(guard->engine_, Engine::Create(guard->model_, engine_options));
  return guard;
}

}  // namespace saferoute
