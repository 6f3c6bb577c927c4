// The CPU forward pass of a Llama / Qwen3 decoder over a packed batch of
// sequences (internal to model/; the public API is engine.h).
//
// Data flow of one call (sumT = tokens of all sequences, packed row-wise):
//   x [sumT, H] residual stream (fp32)
//   per layer: xn = RMSNorm(x); q|k|v = xn [Wq|Wk|Wv]^T (one stacked GEMM);
//              [Qwen3: per-head RMSNorm of q, k]; RoPE(q, k);
//              per sequence: k, v -> its KV area; causal GQA attention;
//              x += attn Wo^T (residual fused into the GEMM, beta = 1);
//              xn = RMSNorm(x); per row chunk: g|u = xn [Wg|Wu]^T,
//              a = silu(g) * u, x += a Wd^T.
// The caller then applies the final norm to the rows it needs.
//
// The layer sequence is described here once; how each linear layer runs is
// the GEMM path's business (cpu/linear.h), chosen at run time
// (cpu/dispatch.h). The bf16 paths round every GEMM input (norm outputs,
// attention output, silu*up) and the rotated q/k, v and attention
// probabilities to bf16, so the GEMMs compute exactly what a bf16 x bf16 ->
// fp32 GEMM computes; the residual stream stays fp32 (HF keeps it in bf16:
// one source of the documented bf16 tolerance). The int8 path quantizes GEMM
// inputs per row inside the GEMM; everything else runs in fp32.
#ifndef SAFEROUTE_MODEL_FORWARD_H_
#define SAFEROUTE_MODEL_FORWARD_H_

#include <cstdint>
#include <span>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/kernels.h"
#include "cpu/linear.h"
#include "model/engine.h"
#include "model/prefix_cache.h"

namespace saferoute {

// One sequence of a forward call.
// Its keys/values: positions [0, prefix) in `past_kv` (a prefix shared by
// many sequences; prefix = past_kv->length, 0 without one), positions
// [prefix, past + T) in `store` at index position - prefix (a persistent
// cache that already holds [prefix, past) and receives the new positions: a
// prefix being computed, a sequence kept for decoding), or without a store
// only in per-call scratch (then past == prefix). A decode step reads the
// prefix where it is; a prefill attends over a per-layer copy (forward.cc,
// AttendsInScratch).
struct ForwardSequence {
  std::span<const int32_t> tokens;   // new tokens (>= 1), already validated < V
  int64_t past = 0;                  // positions before them (their positions start here)
  const KvCache* past_kv = nullptr;  // the shared prefix, or null
  KvCache* store = nullptr;          // this sequence's own positions, or null
  std::vector<std::vector<float>>* layer_taps =
      nullptr;  // if set: [L][T*H] residual after each layer
};

class CpuForward {
 public:
  // Validates every tensor the forward reads (shape, dtype) against the
  // config and prepares the weights for `path` (native paths: packed copies,
  // the checkpoint's pages of those weights released).
  static absl::StatusOr<std::unique_ptr<CpuForward>> Create(const Model& model,
                                                            const EngineOptions& options,
                                                            int num_threads, cpu::GemmPath path);

  // Runs all layers. Afterwards residual() holds x [sumT, H], sequence i at
  // rows starting at the sum of the previous sequences' token counts.
  absl::Status Run(std::span<const ForwardSequence> sequences);
  const float* residual() const { return x_.data(); }

  // out[r] = final RMSNorm of rows[r] of the residual.  out: [rows.size(), H]
  void FinalNorm(std::span<const int64_t> rows, float* out);
  // logits[r, i] = hidden[r] . lm_head[ids[i]]  (ids validated < V)
  void SelectedLogits(const float* hidden, int64_t rows, std::span<const int32_t> ids,
                      float* logits);
  // logits [rows, V] = hidden [rows, H] lm_head^T (on the GEMM path: int8
  // logits on the int8 path)
  absl::Status FullLogits(const float* hidden, int64_t rows, float* logits);
  // out[r] = log(sum_i exp(logits[r, i])) of FullLogits(hidden) without
  // keeping the [rows, V] logits anywhere but in reused scratch; and, if
  // given, argmax[r] = the index of the largest logit (first on ties).
  absl::Status LogSumExp(const float* hidden, int64_t rows, float* out, int32_t* argmax = nullptr);

  int num_threads() const { return num_threads_; }
  bool round_bf16() const { return round_bf16_; }
  cpu::GemmPath path() const { return gemm_.path(); }
  // The path each layer's Q/K/V projection runs on (see Prepare).
  std::vector<cpu::GemmPath> attention_input_paths() const;
  size_t packed_weight_bytes() const;

 private:
  CpuForward(const Model& model, const EngineOptions& options, int num_threads, cpu::GemmPath path);
  absl::Status Prepare(const Model& model);
  void Embed(std::span<const ForwardSequence> sequences);
  absl::Status Layer(int64_t layer, std::span<const ForwardSequence> sequences);
  // Runs fn(r0, r1) over [0, rows) split across the threads.
  template <typename Fn>
  void ParallelRows(int64_t rows, Fn fn);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  int num_threads_;
  bool round_bf16_;
  int64_t h_, n_heads_, n_kv_, d_, ffn_, vocab_;
  int64_t qkv_width_;  // nH*d + 2*nKV*d: one row of q|k|v
  float eps_, attn_scale_;
  cpu::LinearRunner gemm_;
  cpu::LinearRunner qkv_gemm_;   // Q/K/V, on cpu::AttentionInputPath (int8-a16: bf16)
  cpu::LinearRunner head_gemm_;  // full logits, on cpu::HeadPath (int8: bf16)
  cpu::RopeTable rope_;
  cpu::WeightMatrix token_embd_, lm_head_;  // checkpoint views (rows read on demand)
  cpu::PackedLinear lm_head_packed_;        // for full logits, on head_gemm_'s path
  struct LayerPlan {
    std::vector<float> attn_norm, ffn_norm, q_norm, k_norm;  // widened gains
    cpu::PackedLinear qkv;                                   // [Wq|Wk|Wv]   [nH*d + 2*nKV*d, H]
    cpu::PackedLinear wo;                                    //              [H, nH*d]
    cpu::PackedLinear gate_up;                               // [Wgate|Wup]  [2I, H]
    cpu::PackedLinear down;                                  //              [H, I]
  };
  std::vector<LayerPlan> layers_;
  std::vector<float> output_norm_;

  // Workspace, grown on demand and reused across calls.
  int64_t rows_ = 0;
  std::vector<float> x_, xn_, qkv_, attn_, ffn_buf_, kv_scratch_, row_, logits_;
  std::vector<int64_t> seq_offset_, kv_offset_;
};

// Rotary inverse frequencies of the config (HF `_compute_default_rope_parameters`
// and, for rope_scaling llama3, `_compute_llama3_parameters`; for GGUF
// rope_freqs, llama.cpp's division by freq_factors), fp32.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_FORWARD_H_
