// Engine: request validation, batching, prefix caches and greedy decoding on
// top of the CPU forward pass (model/forward.h).
#include "model/engine.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/forward.h"
#include "model/prefix_cache.h"

namespace saferoute {
namespace {

// For a path whose Q/K/V may run elsewhere (int8-a16: cpu::AttentionInputPath),
// where they do: "; Q/K/V on bf16-native (oneDNN ...)", or "on int8-a16 (as
// stored)" for a checkpoint that holds them quantized, with the layer count
// per path where the layers differ. "" for every other path.
std::string AttentionInputNote(const CpuForward& forward) {
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  if (cpu::AttentionInputPath(forward.path(), support, false) == forward.path()) return "";
  std::map<cpu::GemmPath, int> layers;
  for (cpu::GemmPath qkv : forward.attention_input_paths()) ++layers[qkv];
  std::vector<std::string> parts;
  for (const auto& [qkv, count] : layers) {
    const std::string where =
        qkv == forward.path() ? "as stored" : cpu::PathImplementation(qkv, support);
    parts.push_back(layers.size() == 1 ? absl::StrCat(cpu::GemmPathName(qkv), " (", where, ")")
                                       : absl::StrCat(cpu::GemmPathName(qkv), " (", where, ") in ",
                                                      count, " layers"));
  }
  return absl::StrCat("; Q/K/V on ", absl::StrJoin(parts, ", "));
}

// Index of the largest of n values, the first one on ties (torch.argmax).
int32_t ArgMax(const float* values, int64_t n) {
  return static_cast<int32_t>(std::max_element(values, values + n) - values);
}

}  // namespace

struct Engine::Impl {
  std::shared_ptr<const Model> model;
  EngineOptions options;
  std::unique_ptr<CpuForward> forward;
  std::mutex mutex;  // one call at a time (the workspace is shared)
  std::atomic<int64_t> decode_steps{0};

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
  return cpu::DescribePath(path(), cpu::DetectCpuSupport(), compute().impl);
}
EngineCompute Engine::compute() const {
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  return {cpu::GemmPathName(path()),
          cpu::PathImplementation(path(), support) + AttentionInputNote(*impl_->forward),
          support.isa};
}
size_t Engine::packed_weight_bytes() const { return impl_->forward->packed_weight_bytes(); }
int64_t Engine::kept_kv_bytes_per_position() const {
  const ModelConfig& c = impl_->model->config();
  return 2 * c.num_layers * c.num_kv_heads * c.head_dim * int64_t{sizeof(float)};  // keys + values
}

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
    const auto t = static_cast<int64_t>(r.tokens.size());
    if (r.decode_tokens < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": decode_tokens ", r.decode_tokens, " < 0"));
    }
    if (past + t + r.decode_tokens > m.options.max_tokens) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: %d prefix + %d tokens + %d to decode exceed max_tokens %d", what,
                          past, t, r.decode_tokens, m.options.max_tokens));
    }
    sequences[i].tokens = r.tokens;
    sequences[i].past = past;
    sequences[i].past_kv = r.prefix ? &r.prefix->kv : nullptr;
    sequences[i].layer_taps = r.layer_taps ? &results[i].layers : nullptr;
    if (r.decode_tokens > 0) {  // its own positions, the prompt's and the decode's
      auto cache = std::make_shared<SequenceCache>();
      cache->owner = m.model.get();
      cache->path = m.forward->path();
      cache->prefix = r.prefix;
      cache->room = r.decode_tokens;
      cache->kv.Allocate(config.num_layers, config.num_kv_heads, config.head_dim,
                         t + r.decode_tokens);
      sequences[i].store = &cache->kv;
      results[i].cache = std::move(cache);
    }
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
  // log-sum-exp or its argmax (the first token of a decode).
  std::vector<size_t> full, lse;
  for (size_t i = 0; i < requests.size(); ++i) {
    const bool decode = requests[i].decode_tokens > 0;
    if (requests[i].logits == LogitsMode::kSelected) {
      results[i].logits.resize(requests[i].logit_ids.size());
      m.forward->SelectedLogits(results[i].last_hidden.data(), 1, requests[i].logit_ids,
                                results[i].logits.data());
      if (requests[i].log_sum_exp || decode) lse.push_back(i);
    } else if (requests[i].logits == LogitsMode::kFull) {
      full.push_back(i);
    } else if (decode) {
      lse.push_back(i);
    }
  }
  if (!lse.empty()) {
    std::vector<float> hidden(lse.size() * static_cast<size_t>(h)), out(lse.size());
    std::vector<int32_t> argmax(lse.size());
    for (size_t j = 0; j < lse.size(); ++j) {
      std::copy(results[lse[j]].last_hidden.begin(), results[lse[j]].last_hidden.end(),
                hidden.begin() + static_cast<int64_t>(j) * h);
    }
    SR_RETURN_IF_ERROR(m.forward->LogSumExp(hidden.data(), static_cast<int64_t>(lse.size()),
                                            out.data(), argmax.data()));
    for (size_t j = 0; j < lse.size(); ++j) {
      SequenceResult& result = results[lse[j]];
      if (requests[lse[j]].log_sum_exp) result.log_sum_exp = out[j];
      if (result.cache) result.cache->next_token = argmax[j];
    }
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
      SequenceResult& result = results[full[j]];
      result.logits.assign(logits.begin() + static_cast<int64_t>(j) * vocab,
                           logits.begin() + static_cast<int64_t>(j + 1) * vocab);
      if (result.cache) result.cache->next_token = ArgMax(result.logits.data(), vocab);
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
  if (tokens.empty()) return absl::InvalidArgumentError("decode: no tokens");
  if (max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode: max_new_tokens ", max_new_tokens, " < 0"));
  }
  if (max_new_tokens == 0) {
    SR_RETURN_IF_ERROR(impl_->CheckTokens(tokens, "decode"));
    return std::vector<int32_t>();
  }
  SequenceRequest request;
  request.tokens = tokens;
  request.prefix = std::move(prefix);
  request.logits = LogitsMode::kNone;
  request.decode_tokens = max_new_tokens;
  auto prefilled = Prefill({&request, 1});
  if (!prefilled.ok()) {
    return absl::Status(prefilled.status().code(),
                        absl::StrCat("decode: ", prefilled.status().message()));
  }
  SR_ASSIGN_OR_RETURN(auto generated, ContinueGreedyDecode({&(*prefilled)[0].cache, 1}, stop_ids));
  return std::move(generated[0]);
}

absl::StatusOr<std::vector<std::vector<int32_t>>> Engine::ContinueGreedyDecode(
    std::span<const std::shared_ptr<SequenceCache>> caches, std::span<const int32_t> stop_ids) {
  Impl& m = *impl_;
  for (size_t i = 0; i < caches.size(); ++i) {
    const std::string what = absl::StrCat("sequence ", i);
    const SequenceCache* cache = caches[i].get();
    if (cache == nullptr || cache->owner == nullptr) {
      return absl::InvalidArgumentError(
          what + ": no cache (the prefill did not ask for decode_tokens, or it was released)");
    }
    if (cache->owner != m.model.get() || cache->path != m.forward->path()) {
      return absl::InvalidArgumentError(
          what + ": the cache was computed by an engine of another model or GEMM path");
    }
    if (cache->spent) return absl::InvalidArgumentError(what + ": already decoded");
  }
  auto stops = [&](int32_t id) {
    return std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end();
  };
  // Every sequence starts with its prefill's argmax; those not stopped by it
  // run. generated[i] is reserved whole: `feed` points at its last token.
  std::vector<std::vector<int32_t>> generated(caches.size());
  std::vector<size_t> running;
  for (size_t i = 0; i < caches.size(); ++i) {
    SequenceCache& cache = *caches[i];
    cache.spent = true;
    generated[i].reserve(static_cast<size_t>(cache.room));
    generated[i].push_back(cache.next_token);
    if (!stops(cache.next_token) && cache.room > 1) running.push_back(i);
  }
  const int64_t h = m.model->config().hidden_size, vocab = m.model->config().vocab_size;
  std::vector<ForwardSequence> step;
  std::vector<int64_t> rows;
  std::vector<float> hidden, logits;
  std::lock_guard<std::mutex> lock(m.mutex);
  while (!running.empty()) {
    // One forward pass: the last token of each running sequence, after its
    // prefix (shared) and its own cached positions.
    const auto n = static_cast<int64_t>(running.size());
    step.assign(running.size(), {});
    rows.resize(running.size());
    for (size_t r = 0; r < running.size(); ++r) {
      SequenceCache& cache = *caches[running[r]];
      step[r].tokens = {&generated[running[r]].back(), 1};
      step[r].past = cache.prefix_length() + cache.kv.length;
      step[r].past_kv = cache.prefix ? &cache.prefix->kv : nullptr;
      step[r].store = &cache.kv;
      rows[r] = static_cast<int64_t>(r);
    }
    SR_RETURN_IF_ERROR(m.forward->Run(step));
    m.decode_steps.fetch_add(1, std::memory_order_relaxed);
    hidden.resize(static_cast<size_t>(n * h));
    logits.resize(static_cast<size_t>(n * vocab));
    m.forward->FinalNorm(rows, hidden.data());
    SR_RETURN_IF_ERROR(m.forward->FullLogits(hidden.data(), n, logits.data()));
    std::vector<size_t> still;
    for (size_t r = 0; r < running.size(); ++r) {
      std::vector<int32_t>& out = generated[running[r]];
      out.push_back(ArgMax(logits.data() + static_cast<int64_t>(r) * vocab, vocab));
      if (!stops(out.back()) && static_cast<int>(out.size()) < caches[running[r]]->room) {
        still.push_back(running[r]);
      }
    }
    running = std::move(still);
  }
  return generated;
}

int64_t Engine::decode_steps() const { return impl_->decode_steps.load(std::memory_order_relaxed); }

}  // namespace saferoute
