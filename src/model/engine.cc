// Engine: request validation, batching, prefix caches and greedy decoding on
// top of the CPU forward pass (model/forward.h).
#include "model/engine.h"

#include <omp.h>

#include <algorithm>
#include <mutex>

#include "model/forward.h"
#include "model/prefix_cache.h"

namespace saferoute {

struct Engine::Impl {
  std::shared_ptr<const Model> model;
  EngineOptions options;
  std::unique_ptr<CpuForward> forward;
  std::mutex mutex;  // one call at a time (the workspace is shared)

  absl::Status CheckTokens(std::span<const int32_t> tokens, const std::string& what) const {
    const int64_t vocab = model->config().vocab_size;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: token %d at index %d is outside the vocabulary [0, %d)", what,
                            tokens[i], i, vocab));
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckPrefix(const PrefixCache* prefix, const std::string& what) const {
    if (prefix == nullptr) return absl::OkStatus();
    if (prefix->owner != model.get()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": prefix cache was computed with a different model"));
    }
    if (prefix->path != forward->path()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": prefix cache was computed on GEMM path ", cpu::GemmPathName(prefix->path),
          ", this engine runs ", cpu::GemmPathName(forward->path())));
    }
    return absl::OkStatus();
  }
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::shared_ptr<const Model> model,
                                                       const EngineOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("engine: no model");
  if (options.max_tokens <= 0 || options.max_tokens > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: max_tokens must be in [1, 1048576], got ", options.max_tokens));
  }
  if (options.num_threads < 0 || options.num_threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: num_threads must be in [0, 1024], got ", options.num_threads));
  }
  SR_ASSIGN_OR_RETURN(
      const cpu::GemmPath path,
      cpu::ChoosePath(options.precision, cpu::DetectCpuSupport(), options.force_path));
  auto impl = std::make_unique<Impl>();
  impl->model = std::move(model);
  impl->options = options;
  const int threads = options.num_threads > 0 ? options.num_threads : omp_get_num_procs();
  SR_ASSIGN_OR_RETURN(impl->forward, CpuForward::Create(*impl->model, options, threads, path));
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

const Model& Engine::model() const { return *impl_->model; }
const EngineOptions& Engine::options() const { return impl_->options; }
cpu::GemmPath Engine::path() const { return impl_->forward->path(); }
std::string Engine::path_description() const {
  return cpu::DescribePath(path(), cpu::DetectCpuSupport());
}
EngineCompute Engine::compute() const {
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  return {cpu::GemmPathName(path()), cpu::PathImplementation(path(), support), support.isa};
}
size_t Engine::packed_weight_bytes() const { return impl_->forward->packed_weight_bytes(); }

absl::StatusOr<std::vector<SequenceResult>> Engine::Prefill(
    std::span<const SequenceRequest> requests) {
  Impl& m = *impl_;
  const ModelConfig& config = m.model->config();
  const int64_t h = config.hidden_size;
  std::vector<ForwardSequence> sequences(requests.size());
  std::vector<SequenceResult> results(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const SequenceRequest& r = requests[i];
    const std::string what = absl::StrCat("request ", i);
    if (r.tokens.empty()) return absl::InvalidArgumentError(what + ": no tokens");
    SR_RETURN_IF_ERROR(m.CheckTokens(r.tokens, what));
    SR_RETURN_IF_ERROR(m.CheckPrefix(r.prefix.get(), what));
    if (r.logits == LogitsMode::kSelected) {
      SR_RETURN_IF_ERROR(m.CheckTokens(r.logit_ids, what + " logit_ids"));
    }
    const int64_t past = r.prefix ? r.prefix->kv.length : 0;
    if (past + static_cast<int64_t>(r.tokens.size()) > m.options.max_tokens) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: %d prefix + %d tokens exceed max_tokens %d", what, past,
                          r.tokens.size(), m.options.max_tokens));
    }
    sequences[i].tokens = r.tokens;
    sequences[i].past = past;
    sequences[i].past_kv = r.prefix ? &r.prefix->kv : nullptr;
    sequences[i].layer_taps = r.layer_taps ? &results[i].layers : nullptr;
  }
  if (requests.empty()) return results;

  std::lock_guard<std::mutex> lock(m.mutex);
  SR_RETURN_IF_ERROR(m.forward->Run(sequences));

  // Final norm of the rows each request needs: the last one, or all.
  std::vector<int64_t> rows;
  int64_t offset = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto t = static_cast<int64_t>(requests[i].tokens.size());
    SequenceResult& result = results[i];
    result.last_hidden.resize(static_cast<size_t>(h));
    if (requests[i].all_hidden) {
      rows.resize(static_cast<size_t>(t));
      for (int64_t j = 0; j < t; ++j) rows[static_cast<size_t>(j)] = offset + j;
      result.hidden.resize(static_cast<size_t>(t * h));
      m.forward->FinalNorm(rows, result.hidden.data());
      std::copy(result.hidden.end() - h, result.hidden.end(), result.last_hidden.begin());
    } else {
      const int64_t last = offset + t - 1;
      m.forward->FinalNorm({&last, 1}, result.last_hidden.data());
    }
    offset += t;
  }
  // Logits: a few dot products for selected ids; one GEMM over every request
  // that wants the full vocabulary, and one over those that want only its
  // log-sum-exp.
  std::vector<size_t> full, lse;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].logits == LogitsMode::kSelected) {
      results[i].logits.resize(requests[i].logit_ids.size());
      m.forward->SelectedLogits(results[i].last_hidden.data(), 1, requests[i].logit_ids,
                                results[i].logits.data());
      if (requests[i].log_sum_exp) lse.push_back(i);
    } else if (requests[i].logits == LogitsMode::kFull) {
      full.push_back(i);
    }
  }
  if (!lse.empty()) {
    std::vector<float> hidden(lse.size() * static_cast<size_t>(h)), out(lse.size());
    for (size_t j = 0; j < lse.size(); ++j) {
      std::copy(results[lse[j]].last_hidden.begin(), results[lse[j]].last_hidden.end(),
                hidden.begin() + static_cast<int64_t>(j) * h);
    }
    SR_RETURN_IF_ERROR(
        m.forward->LogSumExp(hidden.data(), static_cast<int64_t>(lse.size()), out.data()));
    for (size_t j = 0; j < lse.size(); ++j) results[lse[j]].log_sum_exp = out[j];
  }
  if (!full.empty()) {
    const int64_t vocab = config.vocab_size;
    std::vector<float> hidden(full.size() * static_cast<size_t>(h));
    for (size_t j = 0; j < full.size(); ++j) {
      std::copy(results[full[j]].last_hidden.begin(), results[full[j]].last_hidden.end(),
                hidden.begin() + static_cast<int64_t>(j) * h);
    }
    std::vector<float> logits(full.size() * static_cast<size_t>(vocab));
    SR_RETURN_IF_ERROR(
        m.forward->FullLogits(hidden.data(), static_cast<int64_t>(full.size()), logits.data()));
    for (size_t j = 0; j < full.size(); ++j) {
      results[full[j]].logits.assign(logits.begin() + static_cast<int64_t>(j) * vocab,
                                     logits.begin() + static_cast<int64_t>(j + 1) * vocab);
    }
  }
  return results;
}

absl::StatusOr<std::shared_ptr<const PrefixCache>> Engine::ComputePrefix(
    std::span<const int32_t> tokens) {
  Impl& m = *impl_;
  if (tokens.empty()) return absl::InvalidArgumentError("prefix: no tokens");
  SR_RETURN_IF_ERROR(m.CheckTokens(tokens, "prefix"));
  if (static_cast<int64_t>(tokens.size()) > m.options.max_tokens) {
    return absl::InvalidArgumentError(absl::StrFormat("prefix: %d tokens exceed max_tokens %d",
                                                      tokens.size(), m.options.max_tokens));
  }
  const ModelConfig& c = m.model->config();
  auto prefix = std::make_shared<PrefixCache>();
  prefix->owner = m.model.get();
  prefix->path = m.forward->path();
  prefix->tokens.assign(tokens.begin(), tokens.end());
  prefix->kv.Allocate(c.num_layers, c.num_kv_heads, c.head_dim,
                      static_cast<int64_t>(tokens.size()));
  ForwardSequence seq;
  seq.tokens = tokens;
  seq.store = &prefix->kv;
  std::lock_guard<std::mutex> lock(m.mutex);
  SR_RETURN_IF_ERROR(m.forward->Run({&seq, 1}));
  return std::shared_ptr<const PrefixCache>(std::move(prefix));
}

absl::StatusOr<std::vector<int32_t>> Engine::GreedyDecode(std::span<const int32_t> tokens,
                                                          std::shared_ptr<const PrefixCache> prefix,
                                                          int max_new_tokens,
                                                          std::span<const int32_t> stop_ids) {
  Impl& m = *impl_;
  if (tokens.empty()) return absl::InvalidArgumentError("decode: no tokens");
  if (max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode: max_new_tokens ", max_new_tokens, " < 0"));
  }
  SR_RETURN_IF_ERROR(m.CheckTokens(tokens, "decode"));
  SR_RETURN_IF_ERROR(m.CheckPrefix(prefix.get(), "decode"));
  const ModelConfig& c = m.model->config();
  const int64_t past = prefix ? prefix->kv.length : 0;
  const int64_t capacity = past + static_cast<int64_t>(tokens.size()) + max_new_tokens;
  if (capacity > m.options.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrFormat("decode: %d prefix + %d tokens + %d new exceed max_tokens %d", past,
                        tokens.size(), max_new_tokens, m.options.max_tokens));
  }
  std::vector<int32_t> generated;
  if (max_new_tokens == 0) return generated;

  // One cache for the whole decode: the prefix positions copied in, then the
  // prompt and each generated token appended.
  KvCache cache;
  cache.Allocate(c.num_layers, c.num_kv_heads, c.head_dim, capacity);
  if (prefix) cache.CopyPrefix(prefix->kv, past);
  std::lock_guard<std::mutex> lock(m.mutex);
  std::vector<float> hidden(static_cast<size_t>(c.hidden_size));
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  std::span<const int32_t> feed = tokens;
  int32_t next = 0;
  for (int step = 0; step < max_new_tokens; ++step) {
    ForwardSequence seq;
    seq.tokens = feed;
    seq.past = cache.length;
    seq.store = &cache;
    SR_RETURN_IF_ERROR(m.forward->Run({&seq, 1}));
    const int64_t last = static_cast<int64_t>(feed.size()) - 1;
    m.forward->FinalNorm({&last, 1}, hidden.data());
    SR_RETURN_IF_ERROR(m.forward->FullLogits(hidden.data(), 1, logits.data()));
    // argmax, first index on ties (torch.argmax).
    next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    generated.push_back(next);
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) break;
    feed = {&next, 1};
  }
  return generated;
}

}  // namespace saferoute
