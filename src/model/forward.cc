#include "model/forward.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_join.h"
#include "cpu/convert.h"
#include "cpu/dequantize.h"

namespace saferoute {
namespace {

// Tokens per MLP chunk: bounds the [chunk, 2I] gate|up buffer (32 MB for the
// 1B shape) while keeping the GEMMs large enough to run near peak.
constexpr int64_t kFfnChunkRows = 512;

absl::Status CheckReadable(const TensorView& t, const std::string& slot) {
  if (cpu::CanDequantize(t.dtype)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("engine: tensor '", t.name, "' (", slot,
                                                 "): dtype ", std::string(DTypeName(t.dtype)),
                                                 " is not supported"));
}

absl::Status CheckShape(const TensorView& t, std::vector<int64_t> expected,
                        const std::string& slot) {
  if (t.empty())
    return absl::InvalidArgumentError(absl::StrCat("engine: missing tensor for ", slot));
  if (t.shape != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: tensor '", t.name, "' (", slot, ") has shape [", absl::StrJoin(t.shape, ", "),
        "], config implies [", absl::StrJoin(expected, ", "), "]"));
  }
  const std::optional<uint64_t> needed = TensorBytes(t.dtype, t.shape);
  if (!needed || t.nbytes != *needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: tensor '", t.name, "' holds ", t.nbytes, " bytes, not what ",
        std::string(DTypeName(t.dtype)), " shape ", absl::StrJoin(t.shape, "x"), " needs"));
  }
  return absl::OkStatus();
}

absl::StatusOr<cpu::WeightMatrix> Matrix(const TensorView& t, int64_t rows, int64_t cols,
                                         const std::string& slot) {
  SR_RETURN_IF_ERROR(CheckShape(t, {rows, cols}, slot));
  SR_RETURN_IF_ERROR(CheckReadable(t, slot));
  return cpu::WeightMatrix{t.dtype, t.data, rows, cols};
}

// A 1-D gain vector widened to fp32 (tiny: H or d floats).
absl::StatusOr<std::vector<float>> Gain(const TensorView& t, int64_t n, const std::string& slot) {
  SR_RETURN_IF_ERROR(CheckShape(t, {n}, slot));
  SR_RETURN_IF_ERROR(CheckReadable(t, slot));
  std::vector<float> out(static_cast<size_t>(n));
  cpu::DequantizeToF32(t.dtype, t.data, n, out.data());
  return out;
}

template <typename T>
void Grow(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

// Whether a sequence's attention reads a contiguous copy of its keys/values
// in per-layer scratch ([nKV][past + T][d]: the prefix copied, the new
// positions scattered): without a store, and for a prefill over a shared
// prefix that keeps its own positions (so that keeping them does not change
// its numbers). A store that holds every position is read in place; so are
// a decode step's store and the shared prefix before it (no step copies the
// prefix).
bool AttendsInScratch(const ForwardSequence& seq) {
  if (seq.store == nullptr) return true;
  return seq.past_kv != nullptr && seq.past_kv->length > 0 && seq.store->length == 0;
}

}  // namespace

std::vector<float> RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t d = config.head_dim;
  std::vector<float> inv_freq(static_cast<size_t>(d / 2));
  for (int64_t j = 0; j < d / 2; ++j) {
    // 1 / base ** (arange(0, d, 2).float() / d), fp32 tensor math.
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(d);
    const float power =
        static_cast<float>(std::pow(config.rope_theta, static_cast<double>(exponent)));
    inv_freq[j] = 1.0f / power;
  }
  if (config.rope_scaling.type == RopeScaling::Type::kLlama3) {
    const RopeScaling& s = config.rope_scaling;
    const float factor = static_cast<float>(s.factor);
    const float low = static_cast<float>(s.low_freq_factor);
    const float high = static_cast<float>(s.high_freq_factor);
    const float old_context = static_cast<float>(s.original_max_position_embeddings);
    const float low_freq_wavelen = old_context / low;
    const float high_freq_wavelen = old_context / high;
    for (float& f : inv_freq) {
      const float wavelen = static_cast<float>(2 * M_PI) / f;
      // Low frequencies (long wavelengths) are divided by the factor...
      float adjusted = wavelen > low_freq_wavelen ? f / factor : f;
      // ...and the band between the two wavelengths is blended smoothly.
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      if (medium) {
        const float smooth = (old_context / wavelen - low) / (high - low);
        adjusted = (1 - smooth) * adjusted / factor + smooth * adjusted;
      }
      f = adjusted;
    }
  }
  if (config.rope_scaling.type == RopeScaling::Type::kFreqFactors) {
    // GGUF rope_freqs (ggml's freq_factors): theta_j = p * base^(-2j/d) / factor_j.
    const std::vector<float>& factors = config.rope_scaling.freq_factors;
    SR_CHECK(factors.size() == inv_freq.size());  // checked when the config is read
    for (size_t j = 0; j < inv_freq.size(); ++j) inv_freq[j] /= factors[j];
  }
  return inv_freq;
}

CpuForward::CpuForward(const Model& model, const EngineOptions& options, int num_threads,
                       cpu::GemmPath path)
    : config_(model.config()),
      weights_(model.weights()),
      num_threads_(num_threads),
      round_bf16_(cpu::PathPrecision(path) == Precision::kBf16),
      h_(config_.hidden_size),
      n_heads_(config_.num_heads),
      n_kv_(config_.num_kv_heads),
      d_(config_.head_dim),
      ffn_(config_.intermediate_size),
      vocab_(config_.vocab_size),
      qkv_width_((n_heads_ + 2 * n_kv_) * d_),
      eps_(static_cast<float>(config_.rms_norm_eps)),
      attn_scale_(static_cast<float>(1.0 / std::sqrt(static_cast<double>(config_.head_dim)))),
      gemm_(path, num_threads),
      qkv_gemm_(cpu::AttentionInputPath(path, cpu::DetectCpuSupport(), /*stored_quantized=*/false),
                num_threads),
      head_gemm_(cpu::HeadPath(path, cpu::DetectCpuSupport()), num_threads) {
  (void)options;
}

absl::StatusOr<std::unique_ptr<CpuForward>> CpuForward::Create(const Model& model,
                                                               const EngineOptions& options,
                                                               int num_threads,
                                                               cpu::GemmPath path) {
  std::unique_ptr<CpuForward> forward(new CpuForward(model, options, num_threads, path));
  SR_RETURN_IF_ERROR(forward->Prepare(model));
  forward->rope_ = cpu::MakeRopeTable(RopeInverseFrequencies(model.config()), options.max_tokens,
                                      forward->round_bf16_, model.weights().rope_pairing);
  return forward;
}

absl::Status CpuForward::Prepare(const Model& model) {
  const ModelConfig& c = config_;
  if (h_ <= 0 || n_heads_ <= 0 || n_kv_ <= 0 || d_ <= 0 || d_ % 2 != 0 || n_heads_ % n_kv_ != 0 ||
      ffn_ <= 0 || vocab_ <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "engine: unusable config (hidden %d, heads %d/%d, head_dim %d, ffn %d, vocab %d)", h_,
        n_heads_, n_kv_, d_, ffn_, vocab_));
  }
  if (static_cast<int64_t>(weights_.layers.size()) != c.num_layers) {
    return absl::InvalidArgumentError(absl::StrFormat("engine: model has %d layers, config says %d",
                                                      weights_.layers.size(), c.num_layers));
  }
  const bool qwen3 = c.architecture == Architecture::kQwen3;
  if (qwen3 && weights_.rope_pairing != cpu::RopePairing::kHalves) {
    // The q/k norms' gains are in HF order; rows in another order would need
    // them permuted too (no loader makes such a model).
    return absl::InvalidArgumentError("engine: q/k norms need Q/K rows in HF order");
  }
  const cpu::GemmPath path = gemm_.path();
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  // Packs `parts` for the path; on the native paths the checkpoint's pages of
  // those weights are then released (the packed copy replaces them; the
  // widened paths read the checkpoint's pages themselves).
  auto pack = [&](std::initializer_list<cpu::WeightMatrix> parts, const std::string& name,
                  cpu::GemmPath on) -> absl::StatusOr<cpu::PackedLinear> {
    SR_ASSIGN_OR_RETURN(cpu::PackedLinear packed,
                        cpu::PackedLinear::Pack(on, std::vector<cpu::WeightMatrix>(parts), support,
                                                "engine: " + name));
    if (packed.owned_bytes() > 0) {
      for (const cpu::WeightMatrix& part : packed.parts()) {
        model.ReleaseWeightPages(part.data, static_cast<size_t>(part.rows) * part.row_bytes());
      }
    }
    return packed;
  };
  SR_ASSIGN_OR_RETURN(output_norm_, Gain(weights_.output_norm, h_, "output_norm"));
  SR_ASSIGN_OR_RETURN(token_embd_, Matrix(weights_.token_embd, vocab_, h_, "token_embd"));
  SR_ASSIGN_OR_RETURN(lm_head_, Matrix(weights_.lm_head, vocab_, h_, "lm_head"));
  // The head first: packing a matrix holds its checkpoint pages and its
  // packed copy at once, and the head is the largest matrix (an 8B's: 1.05
  // GB of bf16 pages). Packed last, that came on top of every layer's packed
  // weights: the 8B's int8-a16 peaked at 10.23 GB against 9.20 resident
  // after loading. With tied embeddings the released pages are the embedding
  // table's too: a lookup faults in the few rows it reads.
  SR_ASSIGN_OR_RETURN(lm_head_packed_, pack({lm_head_}, "lm_head", head_gemm_.path()));
  layers_.resize(weights_.layers.size());
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& w = weights_.layers[l];
    LayerPlan& p = layers_[l];
    const std::string at = absl::StrCat("layer ", l, " ");
    SR_ASSIGN_OR_RETURN(p.attn_norm, Gain(w.attn_norm, h_, at + "attn_norm"));
    SR_ASSIGN_OR_RETURN(p.ffn_norm, Gain(w.ffn_norm, h_, at + "ffn_norm"));
    if (qwen3) {
      SR_ASSIGN_OR_RETURN(p.q_norm, Gain(w.q_norm, d_, at + "q_norm"));
      SR_ASSIGN_OR_RETURN(p.k_norm, Gain(w.k_norm, d_, at + "k_norm"));
    }
    SR_ASSIGN_OR_RETURN(cpu::WeightMatrix wq, Matrix(w.wq, n_heads_ * d_, h_, at + "wq"));
    SR_ASSIGN_OR_RETURN(cpu::WeightMatrix wk, Matrix(w.wk, n_kv_ * d_, h_, at + "wk"));
    SR_ASSIGN_OR_RETURN(cpu::WeightMatrix wv, Matrix(w.wv, n_kv_ * d_, h_, at + "wv"));
    SR_ASSIGN_OR_RETURN(cpu::WeightMatrix wo, Matrix(w.wo, h_, n_heads_ * d_, at + "wo"));
    SR_ASSIGN_OR_RETURN(cpu::WeightMatrix w_gate, Matrix(w.w_gate, ffn_, h_, at + "w_gate"));
    SR_ASSIGN_OR_RETURN(cpu::WeightMatrix w_up, Matrix(w.w_up, ffn_, h_, at + "w_up"));
    SR_ASSIGN_OR_RETURN(cpu::WeightMatrix w_down, Matrix(w.w_down, h_, ffn_, at + "w_down"));
    const bool stored_quantized =
        IsQuantized(wq.dtype) || IsQuantized(wk.dtype) || IsQuantized(wv.dtype);
    SR_ASSIGN_OR_RETURN(p.qkv, pack({wq, wk, wv}, at + "wq|wk|wv",
                                    cpu::AttentionInputPath(path, support, stored_quantized)));
    SR_ASSIGN_OR_RETURN(p.wo, pack({wo}, at + "wo", path));
    SR_ASSIGN_OR_RETURN(p.gate_up, pack({w_gate, w_up}, at + "w_gate|w_up", path));
    SR_ASSIGN_OR_RETURN(p.down, pack({w_down}, at + "w_down", path));
  }
  return absl::OkStatus();
}

std::vector<cpu::GemmPath> CpuForward::attention_input_paths() const {
  std::vector<cpu::GemmPath> paths;
  paths.reserve(layers_.size());
  for (const LayerPlan& p : layers_) paths.push_back(p.qkv.path());
  return paths;
}

size_t CpuForward::packed_weight_bytes() const {
  size_t bytes = lm_head_packed_.owned_bytes();
  for (const LayerPlan& p : layers_) {
    bytes +=
        p.qkv.owned_bytes() + p.wo.owned_bytes() + p.gate_up.owned_bytes() + p.down.owned_bytes();
  }
  return bytes;
}

template <typename Fn>
void CpuForward::ParallelRows(int64_t rows, Fn fn) {
  if (rows <= 0) return;
  // Elementwise passes over fewer than ~16 rows of a 2048-wide model are not
  // worth a fork/join.
  const int64_t parts = rows * h_ < (int64_t{1} << 15) ? 1 : std::min<int64_t>(num_threads_, rows);
#pragma omp parallel for num_threads(static_cast <int>(parts)) schedule(static)
  for (int64_t p = 0; p < parts; ++p) {
    fn(rows * p / parts, rows * (p + 1) / parts);
  }
}

void CpuForward::Embed(std::span<const ForwardSequence> sequences) {
  for (size_t s = 0; s < sequences.size(); ++s) {
    const ForwardSequence& seq = sequences[s];
    for (size_t t = 0; t < seq.tokens.size(); ++t) {
      cpu::DequantizeRows(token_embd_, seq.tokens[t], 1,
                          x_.data() + (seq_offset_[s] + static_cast<int64_t>(t)) * h_);
    }
  }
}

absl::Status CpuForward::Run(std::span<const ForwardSequence> sequences) {
  // Workspace sizes for this batch (grown, never shrunk: steady-state calls
  // allocate nothing).
  seq_offset_.assign(sequences.size() + 1, 0);
  kv_offset_.assign(sequences.size() + 1, 0);
  for (size_t s = 0; s < sequences.size(); ++s) {
    const ForwardSequence& seq = sequences[s];
    const auto t = static_cast<int64_t>(seq.tokens.size());
    seq_offset_[s + 1] = seq_offset_[s] + t;
    kv_offset_[s + 1] = kv_offset_[s] + (AttendsInScratch(seq) ? n_kv_ * (seq.past + t) * d_ : 0);
    const int64_t prefix = seq.past_kv ? seq.past_kv->length : 0;
    SR_CHECK(prefix <= seq.past);
    SR_CHECK(seq.store ? seq.store->length == seq.past - prefix &&
                             seq.store->capacity >= seq.past - prefix + t
                       : seq.past == prefix);
    if (seq.past + t > rope_.max_positions) {
      return absl::InvalidArgumentError(
          absl::StrFormat("engine: sequence %d needs %d positions, max_tokens is %d", s,
                          seq.past + t, rope_.max_positions));
    }
  }
  rows_ = seq_offset_.back();
  Grow(x_, rows_ * h_);
  Grow(xn_, rows_ * h_);
  Grow(qkv_, rows_ * qkv_width_);
  Grow(attn_, rows_ * n_heads_ * d_);
  Grow(ffn_buf_, std::min(rows_, kFfnChunkRows) * 2 * ffn_);
  Grow(kv_scratch_, 2 * kv_offset_.back());
  for (const ForwardSequence& seq : sequences) {
    if (seq.layer_taps) {
      seq.layer_taps->assign(static_cast<size_t>(config_.num_layers), {});
    }
  }
  Embed(sequences);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    SR_RETURN_IF_ERROR(Layer(l, sequences));
    for (size_t s = 0; s < sequences.size(); ++s) {
      const ForwardSequence& seq = sequences[s];
      if (!seq.layer_taps) continue;
      const float* begin = x_.data() + seq_offset_[s] * h_;
      (*seq.layer_taps)[static_cast<size_t>(l)].assign(
          begin, begin + static_cast<int64_t>(seq.tokens.size()) * h_);
    }
  }
  for (const ForwardSequence& seq : sequences) {
    if (seq.store) seq.store->length += static_cast<int64_t>(seq.tokens.size());
  }
  return absl::OkStatus();
}

absl::Status CpuForward::Layer(int64_t layer, std::span<const ForwardSequence> sequences) {
  const LayerPlan& p = layers_[static_cast<size_t>(layer)];
  const int64_t q_width = n_heads_ * d_, kv_width = n_kv_ * d_;
  const bool round = round_bf16_;
  // Q/K/V on cpu::AttentionInputPath where they were packed for it (see Prepare).
  cpu::LinearRunner& qkv_gemm = p.qkv.path() == gemm_.path() ? gemm_ : qkv_gemm_;
  const bool round_qkv_input = cpu::PathPrecision(qkv_gemm.path()) == Precision::kBf16;
  // Row r of q|k|v: q at qkv + r*qkv_width_, k after it, v after k.
  float* q = qkv_.data();
  float* k = q + q_width;
  float* v = k + kv_width;

  // --- attention block ---
  ParallelRows(rows_, [&](int64_t r0, int64_t r1) {
    cpu::RmsNorm(x_.data() + r0 * h_, h_, p.attn_norm.data(), r1 - r0, h_, eps_, round_qkv_input,
                 xn_.data() + r0 * h_, h_);
  });
  SR_RETURN_IF_ERROR(qkv_gemm.Run(xn_.data(), rows_, h_, p.qkv, q, qkv_width_, false));

  // Qwen3: RMSNorm over each head of q and k, before RoPE. RoPE per sequence
  // (positions continue after its past).
  ParallelRows(rows_, [&](int64_t r0, int64_t r1) {
    if (!p.q_norm.empty()) {
      for (int64_t r = r0; r < r1; ++r) {
        cpu::RmsNorm(q + r * qkv_width_, d_, p.q_norm.data(), n_heads_, d_, eps_, round,
                     q + r * qkv_width_, d_);
        cpu::RmsNorm(k + r * qkv_width_, d_, p.k_norm.data(), n_kv_, d_, eps_, round,
                     k + r * qkv_width_, d_);
      }
    }
    // Find the sequence of each row range piecewise.
    for (size_t s = 0; s < sequences.size(); ++s) {
      const int64_t a = std::max(r0, seq_offset_[s]), b = std::min(r1, seq_offset_[s + 1]);
      if (a >= b) continue;
      const int64_t first_position = sequences[s].past + (a - seq_offset_[s]);
      cpu::ApplyRope(rope_, q + a * qkv_width_, b - a, qkv_width_, n_heads_, first_position, round);
      cpu::ApplyRope(rope_, k + a * qkv_width_, b - a, qkv_width_, n_kv_, first_position, round);
      if (round) {
        for (int64_t r = a; r < b; ++r) {
          cpu::RoundToBf16InPlace(v + r * qkv_width_, static_cast<size_t>(kv_width));
        }
      }
    }
  });

  for (size_t s = 0; s < sequences.size(); ++s) {
    const ForwardSequence& seq = sequences[s];
    const auto t = static_cast<int64_t>(seq.tokens.size());
    const int64_t prefix = seq.past_kv ? seq.past_kv->length : 0;
    const bool in_scratch = AttendsInScratch(seq);
    // The area attention reads, head-major, holds positions from `first` on.
    float *k_area, *v_area;
    int64_t head_stride, first;
    if (in_scratch) {
      const int64_t total = seq.past + t;
      k_area = kv_scratch_.data() + 2 * kv_offset_[s];
      v_area = k_area + n_kv_ * total * d_;
      head_stride = total * d_;
      first = 0;
      if (prefix > 0) {  // copy the prefix positions of this layer
        const KvCache& src = *seq.past_kv;
        for (int64_t g = 0; g < n_kv_; ++g) {
          std::memcpy(k_area + g * head_stride, src.k_layer(layer) + g * src.head_stride(),
                      static_cast<size_t>(prefix * d_) * sizeof(float));
          std::memcpy(v_area + g * head_stride, src.v_layer(layer) + g * src.head_stride(),
                      static_cast<size_t>(prefix * d_) * sizeof(float));
        }
      }
    } else {
      k_area = seq.store->k_layer(layer);
      v_area = seq.store->v_layer(layer);
      head_stride = seq.store->head_stride();
      first = prefix;
    }
    // Scatter the new keys/values, token-major [T, nKV, d] -> head-major at
    // index `at` onwards; into the store too if attention reads scratch.
    auto scatter = [&](float* k_dst, float* v_dst, int64_t stride, int64_t at) {
      for (int64_t i = 0; i < t; ++i) {
        const int64_t row = seq_offset_[s] + i;
        for (int64_t g = 0; g < n_kv_; ++g) {
          std::memcpy(k_dst + g * stride + (at + i) * d_, k + row * qkv_width_ + g * d_,
                      static_cast<size_t>(d_) * sizeof(float));
          std::memcpy(v_dst + g * stride + (at + i) * d_, v + row * qkv_width_ + g * d_,
                      static_cast<size_t>(d_) * sizeof(float));
        }
      }
    };
    scatter(k_area, v_area, head_stride, seq.past - first);
    if (in_scratch && seq.store) {
      scatter(seq.store->k_layer(layer), seq.store->v_layer(layer), seq.store->head_stride(),
              seq.past - prefix);
    }
    cpu::AttentionShape shape;
    shape.tokens = t;
    shape.past = seq.past;
    if (first > 0) {  // the shared prefix, read where it is
      shape.prefix = first;
      shape.prefix_k = seq.past_kv->k_layer(layer);
      shape.prefix_v = seq.past_kv->v_layer(layer);
      shape.prefix_head_stride = seq.past_kv->head_stride();
    }
    shape.n_heads = n_heads_;
    shape.n_kv_heads = n_kv_;
    shape.head_dim = d_;
    shape.q_stride = qkv_width_;
    shape.out_stride = q_width;
    shape.kv_head_stride = head_stride;
    shape.scale = attn_scale_;
    cpu::Attention(shape, q + seq_offset_[s] * qkv_width_, k_area, v_area,
                   attn_.data() + seq_offset_[s] * q_width, num_threads_, round);
  }
  SR_RETURN_IF_ERROR(gemm_.Run(attn_.data(), rows_, q_width, p.wo, x_.data(), h_,
                               /*accumulate=*/true));

  // --- MLP block, in row chunks ---
  ParallelRows(rows_, [&](int64_t r0, int64_t r1) {
    cpu::RmsNorm(x_.data() + r0 * h_, h_, p.ffn_norm.data(), r1 - r0, h_, eps_, round,
                 xn_.data() + r0 * h_, h_);
  });
  for (int64_t c0 = 0; c0 < rows_; c0 += kFfnChunkRows) {
    const int64_t rows = std::min(kFfnChunkRows, rows_ - c0);
    float* gate = ffn_buf_.data();       // [rows, 2I]: gate in columns [0, I)
    float* up = ffn_buf_.data() + ffn_;  //              up in columns [I, 2I)
    SR_RETURN_IF_ERROR(gemm_.Run(xn_.data() + c0 * h_, rows, h_, p.gate_up, gate, 2 * ffn_, false));
    ParallelRows(rows, [&](int64_t r0, int64_t r1) {
      cpu::SiluMul(gate + r0 * 2 * ffn_, up + r0 * 2 * ffn_, r1 - r0, ffn_, 2 * ffn_, round,
                   gate + r0 * 2 * ffn_, 2 * ffn_);
    });
    SR_RETURN_IF_ERROR(gemm_.Run(gate, rows, 2 * ffn_, p.down, x_.data() + c0 * h_, h_,
                                 /*accumulate=*/true));
  }
  return absl::OkStatus();
}

void CpuForward::FinalNorm(std::span<const int64_t> rows, float* out) {
  for (size_t r = 0; r < rows.size(); ++r) {
    // The final norm output is the router feature; HF returns it in the model
    // dtype, so bf16 mode rounds it like every other activation.
    cpu::RmsNorm(x_.data() + rows[r] * h_, h_, output_norm_.data(), 1, h_, eps_, round_bf16_,
                 out + static_cast<int64_t>(r) * h_, h_);
  }
}

void CpuForward::SelectedLogits(const float* hidden, int64_t rows, std::span<const int32_t> ids,
                                float* logits) {
  Grow(row_, h_);
  for (size_t i = 0; i < ids.size(); ++i) {
    cpu::DequantizeRows(lm_head_, ids[i], 1, row_.data());
    // bf16 paths multiply bf16 weights (what they pack for the full logits).
    if (round_bf16_) cpu::RoundToBf16InPlace(row_.data(), static_cast<size_t>(h_));
    for (int64_t r = 0; r < rows; ++r) {
      logits[r * static_cast<int64_t>(ids.size()) + static_cast<int64_t>(i)] =
          cpu::Dot(hidden + r * h_, row_.data(), h_);
    }
  }
}

absl::Status CpuForward::FullLogits(const float* hidden, int64_t rows, float* logits) {
  return head_gemm_.Run(hidden, rows, h_, lm_head_packed_, logits, vocab_, false);
}

absl::Status CpuForward::LogSumExp(const float* hidden, int64_t rows, float* out, int32_t* argmax) {
  Grow(logits_, rows * vocab_);
  SR_RETURN_IF_ERROR(FullLogits(hidden, rows, logits_.data()));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits_.data() + r * vocab_;
    const float* largest = std::max_element(row, row + vocab_);  // the first on ties
    if (argmax != nullptr) argmax[r] = static_cast<int32_t>(largest - row);
    const float max_logit = *largest;
    for (int64_t i = 0; i < vocab_; ++i) row[i] -= max_logit;
    cpu::Exp(row, row, static_cast<size_t>(vocab_));
    double sum = 0;  // 128k terms: summed in double
    for (int64_t i = 0; i < vocab_; ++i) sum += row[i];
    out[r] = max_logit + static_cast<float>(std::log(sum));
  }
  return absl::OkStatus();
}

}  // namespace saferoute
