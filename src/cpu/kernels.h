// Elementwise and attention kernels of the Llama/Qwen3 forward pass (fp32
// activations). Each reproduces a Hugging Face `transformers` expression,
// cited at the declaration; each has a scalar reference in kernels_test.cc.
//
// `round_bf16` arguments give the kernel bf16 output semantics (HF running in
// bf16 rounds every op's result to bf16); the fp32 parity path passes false.
#ifndef SAFEROUTE_CPU_KERNELS_H_
#define SAFEROUTE_CPU_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace saferoute::cpu {

// out[i] = exp(x[i]) for a vector (out may be x), max relative error ~2 ulp;
// exp(x) underflows to 0 for x < -87.3 (what softmax needs for very negative
// scores).
void Exp(const float* x, float* out, size_t n);

// LlamaRMSNorm / Qwen3RMSNorm over rows of width `width`:
//   y = x * rsqrt(mean(x^2) + eps); out = weight * cast(y)
// x, out: [rows, width] with row strides; out may alias x. weight: [width].
void RmsNorm(const float* x, int64_t x_stride, const float* weight, int64_t rows, int64_t width,
             float eps, bool round_bf16, float* out, int64_t out_stride);

// Which two elements of a head RoPE rotates together with frequency j < d/2.
//   kHalves:   (j, j + d/2), HF's rotate_half (safetensors checkpoints, and
//              every architecture whose GGUF rows are not permuted).
//   kAdjacent: (2j, 2j + 1), ggml's "normal" RoPE: the row order llama.cpp's
//              converter writes attn_q / attn_k in (GGUF row 2j + s is HF row
//              j + s*d/2). Rotating the file's rows this way gives the same
//              q.k scores as un-permuting them (q and k share the order), so
//              a GGUF's Q/K need no re-ordered copy.
enum class RopePairing : uint8_t { kHalves, kAdjacent };

// Rotary tables, HF `LlamaRotaryEmbedding`: for position t and pair j < d/2,
// angle = t * inv_freq[j] (fp32 product).
// cos/sin: [max_positions, d/2] (the two halves of HF's emb are equal).
struct RopeTable {
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  RopePairing pairing = RopePairing::kHalves;
  std::vector<float> cos, sin;
};
RopeTable MakeRopeTable(const std::vector<float>& inv_freq, int64_t max_positions, bool round_bf16,
                        RopePairing pairing = RopePairing::kHalves);

// Applies RoPE in place to `rows` tokens of `n_heads` heads each:
//   x: [rows, row_stride], head h of token r at x + r*row_stride + h*d.
// Token r has position first_position + r (< table.max_positions).
// For each pair (a, b) of table.pairing with frequency j:
//   a' = a * cos_j - b * sin_j,  b' = b * cos_j + a * sin_j
// (kHalves: x_rot = x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]).
void ApplyRope(const RopeTable& table, float* x, int64_t rows, int64_t row_stride, int64_t n_heads,
               int64_t first_position, bool round_bf16);

// SwiGLU: out[i] = silu(gate[i]) * up[i], silu(z) = z * sigmoid(z), for
// `rows` rows of width n (row strides given). out may alias gate.
void SiluMul(const float* gate, const float* up, int64_t rows, int64_t n, int64_t in_stride,
             bool round_bf16, float* out, int64_t out_stride);

// Causal grouped-query attention for one sequence (HF eager path: scores
// q.k * scale, fp32 softmax over keys j <= past + i, probabilities times V).
//   q:   query rows, token i head h at q + i*q_stride + h*d        (T tokens)
//   k,v: key/value cache of this sequence, kv head g position j at
//        k + g*kv_head_stride + (j - prefix)*d; positions [prefix, past + T)
//        are filled.
//   prefix_k, prefix_v: positions [0, prefix) (a prefix shared by many
//        sequences, read in place), kv head g position j at
//        prefix_k + g*prefix_head_stride + j*d. Unused when prefix == 0.
//   out: token i head h at out + i*out_stride + h*d
// Query head h reads kv head h / (n_heads / n_kv_heads) (HF repeat_kv).
struct AttentionShape {
  int64_t tokens = 0;  // T: new tokens (queries)
  int64_t past = 0;    // positions before them (the prefix's included)
  int64_t prefix = 0;  // positions of `past` read from prefix_k/prefix_v (<= past)
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t q_stride = 0, out_stride = 0, kv_head_stride = 0, prefix_head_stride = 0;
  float scale = 0;
  const float* prefix_k = nullptr;
  const float* prefix_v = nullptr;
};
void Attention(const AttentionShape& shape, const float* q, const float* k, const float* v,
               float* out, int num_threads, bool round_bf16);

// Dot product of two fp32 vectors (8 partial sums).
float Dot(const float* a, const float* b, int64_t n);

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_KERNELS_H_
