#include "router/network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "cpu/kernels.h"
#include "cpu/sgemm.h"
#include "router/parallel.h"
#include "router/random.h"
#include "router/vector_math.h"

namespace saferoute {
namespace {

constexpr float kLayerNormEps = 1e-5f;  // torch nn.LayerNorm default
// Padding of the rows of backward-pass gradient matrices (floats).
constexpr int64_t kRowPad = 16;
// sums[j] = sum_i m[i, j] and, when mult is given, product_sums[j] =
// sum_i m[i, j] * mult[i, j]; m: [rows, cols] with rows m_stride apart,
// mult: [rows, cols] dense. One pass over m. Each column is summed by one
// thread in row order, so the result does not depend on the thread count.
void ColumnSums(const float* m, int64_t m_stride, const float* mult, int64_t rows, int64_t cols,
                float* sums, float* product_sums = nullptr) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * cols >= kMinParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * kBlock, width = std::min(cols, begin + kBlock) - begin;
    double acc[kBlock] = {}, product_acc[kBlock] = {};
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = m + i * m_stride + begin;
      for (int64_t j = 0; j < width; ++j) acc[j] += row[j];
      if (mult == nullptr) continue;
      const float* mult_row = mult + i * cols + begin;
      for (int64_t j = 0; j < width; ++j) product_acc[j] += row[j] * mult_row[j];
    }
    for (int64_t j = 0; j < width; ++j) {
      sums[begin + j] = static_cast<float>(acc[j]);
      if (mult != nullptr) product_sums[begin + j] = static_cast<float>(product_acc[j]);
    }
  }
}

// Element-wise passes over Bayesian tensors work in chunks of this many
// elements: a chunk's sigma fits in L1 next to the chunk itself.
constexpr int64_t kBayesChunk = 4096;

// sigma[0, size) = exp(log_sigma[0, size)): the engine's AVX2 exp. Computed
// where it is needed rather than stored: recomputing is cheaper than another
// 5 MB stream through memory per step.
void Sigmas(const float* log_sigma, int64_t size, float* sigma) {
  cpu::Exp(log_sigma, sigma, static_cast<size_t>(size));
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::string_view RouterTypeName(RouterType type) {
  switch (type) {
    case RouterType::kBayesianMlp:
      return "bnn";
    case RouterType::kMlp:
      return "mlp";
    case RouterType::kLogistic:
      return "logistic";
  }
  return "unknown";
}

absl::StatusOr<RouterType> ParseRouterType(std::string_view name) {
  if (name == "bnn") return RouterType::kBayesianMlp;
  if (name == "mlp") return RouterType::kMlp;
  if (name == "logistic") return RouterType::kLogistic;
  return absl::InvalidArgumentError(absl::StrCat("unknown router type '", std::string(name),
                                                 "' (expected bnn, mlp or logistic)"));
}

float Sigmoid(float logit) {
  if (logit >= 0) return 1.0f / (1.0f + std::exp(-logit));
  const float e = std::exp(logit);
  return e / (1.0f + e);
}

// torch BCEWithLogits: max(z, 0) - z*t + log(1 + exp(-|z|)).
double BceWithLogits(double logit, double target) {
  return std::max(logit, 0.0) - logit * target + std::log1p(std::exp(-std::abs(logit)));
}

std::vector<ParamSpec> RouterNetwork::Layout(RouterType type, int feature_dim, int hidden_dim) {
  std::vector<std::pair<int64_t, int64_t>> layer_dims;  // (in, out)
  if (type == RouterType::kLogistic) {
    layer_dims = {{feature_dim, 1}};
  } else {
    layer_dims = {{feature_dim, hidden_dim}, {hidden_dim, hidden_dim}, {hidden_dim, 1}};
  }
  std::vector<ParamSpec> layout;
  for (size_t i = 0; i < layer_dims.size(); ++i) {
    const auto [in, out] = layer_dims[i];
    const std::string fc = absl::StrCat("fc", i, ".");
    layout.push_back({fc + "weight", {out, in}});
    layout.push_back({fc + "bias", {out}});
    if (type == RouterType::kBayesianMlp) {
      layout.push_back({fc + "weight_log_sigma", {out, in}});
      layout.push_back({fc + "bias_log_sigma", {out}});
    }
    if (i + 1 < layer_dims.size()) {
      const std::string ln = absl::StrCat("ln", i, ".");
      layout.push_back({ln + "weight", {out}});
      layout.push_back({ln + "bias", {out}});
    }
  }
  return layout;
}

RouterNetwork::RouterNetwork(RouterType type, int feature_dim, int hidden_dim, BayesSettings bayes)
    : type_(type),
      feature_dim_(feature_dim),
      hidden_dim_(type == RouterType::kLogistic ? 0 : hidden_dim),
      bayes_(bayes) {
  SR_CHECK(feature_dim > 0);
  SR_CHECK(type == RouterType::kLogistic || hidden_dim > 0);
  for (ParamSpec& spec : Layout(type, feature_dim, hidden_dim)) {
    AddParam(std::move(spec.name), std::move(spec.shape));
  }
  // The layers' tensors, by the names Layout() gives them.
  const int layers = type == RouterType::kLogistic ? 1 : 3;
  for (int i = 0; i < layers; ++i) {
    const std::string fc = absl::StrCat("fc", i, ".");
    Dense dense{.weight = ParamIndex(fc + "weight"), .bias = ParamIndex(fc + "bias")};
    dense.out = static_cast<int>(params_[dense.weight].shape[0]);
    dense.in = static_cast<int>(params_[dense.weight].shape[1]);
    if (bayesian()) {
      dense.weight_log_sigma = ParamIndex(fc + "weight_log_sigma");
      dense.bias_log_sigma = ParamIndex(fc + "bias_log_sigma");
    }
    dense_.push_back(dense);
    if (i + 1 < layers) {
      const std::string ln = absl::StrCat("ln", i, ".");
      norms_.push_back({.gamma = ParamIndex(ln + "weight"), .beta = ParamIndex(ln + "bias")});
    }
  }
}

bool RouterNetwork::is_bayesian_param(int index) const {
  if (!bayesian()) return false;
  for (const Dense& d : dense_) {
    if (index == d.weight || index == d.bias || index == d.weight_log_sigma ||
        index == d.bias_log_sigma) {
      return true;
    }
  }
  return false;
}

int RouterNetwork::AddParam(std::string name, std::vector<int64_t> shape) {
  ParamTensor p{.name = std::move(name), .shape = std::move(shape), .values = {}};
  p.values.assign(Numel(p.shape), 0.0f);
  params_.push_back(std::move(p));
  return static_cast<int>(params_.size()) - 1;
}

int RouterNetwork::ParamIndex(std::string_view name) const {
  const ParamTensor* p = FindParam(name);
  SR_CHECK(p != nullptr);
  return static_cast<int>(p - params_.data());
}

const ParamTensor* RouterNetwork::FindParam(std::string_view name) const {
  for (const ParamTensor& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void RouterNetwork::Initialize(uint64_t seed) {
  for (const Dense& d : dense_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(d.in));
    std::vector<float>& w = params_[d.weight].values;
    std::vector<float>& b = params_[d.bias].values;
    const uint64_t key = MixKey(seed, /*stream=*/0x1417, d.weight);
    if (type_ == RouterType::kLogistic) {
      FillUniform(key, -bound, bound, w.data(), w.size());
    } else {
      FillNormal(key, w.data(), w.size());
      const float std_dev =
          static_cast<float>(std::sqrt(2.0 / d.in));  // kaiming, fan_in, ReLU gain
      for (float& v : w) v *= std_dev;
    }
    FillUniform(MixKey(seed, 0x1417, d.bias), -bound, bound, b.data(), b.size());
    if (bayesian()) {
      std::fill(params_[d.weight_log_sigma].values.begin(),
                params_[d.weight_log_sigma].values.end(),
                static_cast<float>(bayes_.init_log_sigma));
      std::fill(params_[d.bias_log_sigma].values.begin(), params_[d.bias_log_sigma].values.end(),
                static_cast<float>(bayes_.init_log_sigma));
    }
  }
  for (const Norm& n : norms_) {
    std::fill(params_[n.gamma].values.begin(), params_[n.gamma].values.end(), 1.0f);
    std::fill(params_[n.beta].values.begin(), params_[n.beta].values.end(), 0.0f);
  }
}

int64_t RouterNetwork::num_bayesian_params() const {
  if (!bayesian()) return 0;
  int64_t n = 0;
  for (const Dense& d : dense_) {
    n += static_cast<int64_t>(params_[d.weight].values.size() + params_[d.bias].values.size());
  }
  return n;
}

double RouterNetwork::MeanKl() const {
  if (!bayesian()) return 0.0;
  // KL(N(mu, s^2) || N(0, p^2)) = log p - log s + (s^2 + mu^2) / (2 p^2) - 1/2.
  const double log_prior = std::log(bayes_.prior_sigma);
  const double inv_two_prior_var = 1.0 / (2.0 * bayes_.prior_sigma * bayes_.prior_sigma);
  double total = 0;
  for (const Dense& d : dense_) {
    for (auto [mu_index, ls_index] :
         {std::pair{d.weight, d.weight_log_sigma}, std::pair{d.bias, d.bias_log_sigma}}) {
      const std::vector<float>& mu = params_[mu_index].values;
      const std::vector<float>& ls = params_[ls_index].values;
      // Fixed chunks summed in order: deterministic for any thread count.
      constexpr int64_t kChunk = 4096;
      const int64_t size = static_cast<int64_t>(mu.size());
      const int64_t chunks = (size + kChunk - 1) / kChunk;
      std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static) if (size >= kMinParallelWork)
      for (int64_t c = 0; c < chunks; ++c) {
        double acc = 0;
        for (int64_t i = c * kChunk; i < std::min(size, (c + 1) * kChunk); ++i) {
          const double s2 = std::exp(2.0 * ls[i]);
          acc += log_prior - ls[i] + (s2 + double(mu[i]) * mu[i]) * inv_two_prior_var - 0.5;
        }
        partial[c] = acc;
      }
      for (double p : partial) total += p;
    }
  }
  return total / static_cast<double>(num_bayesian_params());
}

int RouterNetwork::LogSigmaIndex(int mean_index) const {
  for (const Dense& d : dense_) {
    if (mean_index == d.weight) return d.weight_log_sigma;
    if (mean_index == d.bias) return d.bias_log_sigma;
  }
  SR_CHECK(false);  // not a posterior-mean tensor: a programming error
  return -1;
}

void RouterNetwork::DrawWeightSample(uint64_t seed, uint64_t step, WeightSample* sample) const {
  sample->noise.resize(params_.size());
  sample->weights.resize(params_.size());
  if (!bayesian()) return;
  for (const Dense& d : dense_) {
    for (int index : {d.weight, d.bias}) {
      const int64_t size = static_cast<int64_t>(params_[index].values.size());
      sample->noise[index].resize(size);
      sample->weights[index].resize(size);
      const int64_t chunks = (size + kBayesChunk - 1) / kBayesChunk;
#pragma omp parallel for schedule(static) if (size >= kMinParallelWork)
      for (int64_t c = 0; c < chunks; ++c) {
        DrawWeightSampleRange(seed, step, index, c * kBayesChunk,
                              std::min(size, (c + 1) * kBayesChunk), sample);
      }
    }
  }
}

void RouterNetwork::DrawWeightSampleRange(uint64_t seed, uint64_t step, int mean_index,
                                          int64_t begin, int64_t end, WeightSample* sample) const {
  const float* __restrict mu = params_[mean_index].values.data();
  const float* __restrict log_sigma = params_[LogSigmaIndex(mean_index)].values.data();
  float* __restrict eps = sample->noise[mean_index].data();
  float* __restrict w = sample->weights[mean_index].data();
  SR_CHECK(end <= static_cast<int64_t>(sample->noise[mean_index].size()));
  FillNormalRange(MixKey(seed, step, mean_index), begin, end, eps + begin);
  for (int64_t sub = begin; sub < end; sub += kBayesChunk) {
    const int64_t count = std::min(end - sub, kBayesChunk);
    float sigma[kBayesChunk];
    Sigmas(log_sigma + sub, count, sigma);
    for (int64_t k = 0; k < count; ++k) w[sub + k] = mu[sub + k] + sigma[k] * eps[sub + k];
  }
}

void RouterNetwork::Forward(const float* features, int64_t n,
                            const std::vector<const float*>& weights,
                            const std::vector<const float*>& biases, Activations* cache) const {
  const size_t hidden_layers = norms_.size();
  cache->normalized.resize(hidden_layers);
  cache->rstd.resize(hidden_layers);
  cache->activated.resize(hidden_layers);
  const float* input = features;  // [n, in]
  for (size_t l = 0; l < hidden_layers; ++l) {
    const Dense& d = dense_[l];
    const int64_t h = d.out;
    std::vector<float>& xhat = cache->normalized[l];
    std::vector<float>& rstd = cache->rstd[l];
    SgemmOperandBuffer& act = cache->activated[l];
    xhat.resize(n * h);
    rstd.resize(n);
    act.resize(n * h);
    // pre = input @ W^T: [n, h]; written into xhat, normalised in place below.
    cpu::Sgemm('N', 'T', n, h, d.in, input, d.in, weights[l], d.in, 0.0f, xhat.data(), h);
    const float* bias = biases[l];
    const float* gamma = params_[norms_[l].gamma].values.data();
    const float* beta = params_[norms_[l].beta].values.data();
#pragma omp parallel for schedule(static) if (n * h >= kMinParallelWork)
    for (int64_t i = 0; i < n; ++i) {
      float* row = xhat.data() + i * h;
      // Sums in double, in vector lanes (omp simd: a fixed order, so still
      // independent of the thread count).
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < h; ++j) {
        row[j] += bias[j];
        sum += row[j];
      }
      const double mean = sum / h;
      double sq = 0;
#pragma omp simd reduction(+ : sq)
      for (int64_t j = 0; j < h; ++j) sq += (row[j] - mean) * (row[j] - mean);
      const float r = static_cast<float>(1.0 / std::sqrt(sq / h + kLayerNormEps));  // biased var
      rstd[i] = r;
      float* out = act.data() + i * h;
      for (int64_t j = 0; j < h; ++j) {
        row[j] = static_cast<float>((row[j] - mean) * r);
        out[j] = std::max(0.0f, gamma[j] * row[j] + beta[j]);
      }
    }
    input = act.data();
  }
  const Dense& last = dense_.back();
  cache->logits.resize(n);
  cpu::Sgemm('N', 'T', n, 1, last.in, input, last.in, weights.back(), last.in, 0.0f,
             cache->logits.data(), 1);
  for (int64_t i = 0; i < n; ++i) cache->logits[i] += biases.back()[0];
}

void RouterNetwork::Logits(const float* features, int64_t n, float* logits) const {
  std::vector<const float*> weights, biases;
  for (const Dense& d : dense_) {
    weights.push_back(params_[d.weight].values.data());
    biases.push_back(params_[d.bias].values.data());
  }
  // Bounded memory: activations for at most kChunk rows at a time (4 MB for
  // the paper's router: x̂ and activations, 2 layers x [512, 512] floats);
  // the training batch's shape, which oneDNN runs faster than 256 rows.
  constexpr int64_t kChunk = 512;
  Activations cache;
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t rows = std::min(kChunk, n - begin);
    Forward(features + begin * feature_dim_, rows, weights, biases, &cache);
    std::copy(cache.logits.begin(), cache.logits.end(), logits + begin);
  }
}

double RouterNetwork::LossAndGradients(const float* features, const float* targets, int64_t n,
                                       const WeightSample* sample, double kl_weight,
                                       std::vector<std::vector<float>>* grads, double* bce_out,
                                       StepBuffers* buffers,
                                       const BayesianGradientSink* sink) const {
  SR_CHECK(n > 0);
  const bool sampled = bayesian() && sample != nullptr;
  SR_CHECK(sink == nullptr || bayesian());
  StepBuffers local_buffers;
  StepBuffers& buf = buffers != nullptr ? *buffers : local_buffers;
  // Effective weights: the sample's for Bayesian tensors, else the values.
  auto effective = [&](int index) -> const float* {
    if (!sampled) return params_[index].values.data();
    SR_CHECK(sample->weights.size() == params_.size() && sample->noise.size() == params_.size() &&
             sample->weights[index].size() == params_[index].values.size() &&
             sample->noise[index].size() == params_[index].values.size());
    return sample->weights[index].data();
  };
  std::vector<const float*> weights, biases;
  for (const Dense& d : dense_) {
    weights.push_back(effective(d.weight));
    biases.push_back(effective(d.bias));
  }
  Activations& cache = buf.activations;
  Forward(features, n, weights, biases, &cache);

  // Every gradient below is written in full (GEMMs with beta 0, column sums,
  // the Bayesian loop), so the buffers are only sized, not cleared. With a
  // sink, the buffers of Bayesian means hold dL/dw (an intermediate) and
  // those of log-sigmas are not written.
  grads->resize(params_.size());
  for (size_t p = 0; p < params_.size(); ++p) (*grads)[p].resize(params_[p].values.size());

  // d mean-BCE / d logit = (sigmoid(z) - t) / n.
  double bce = 0;
  std::vector<float>& d_out = buf.d_out;
  d_out.resize(n);  // [n, 1]
  for (int64_t i = 0; i < n; ++i) {
    bce += BceWithLogits(cache.logits[i], targets[i]);
    d_out[i] = static_cast<float>((Sigmoid(cache.logits[i]) - targets[i]) / n);
  }
  bce /= n;

  // Walk the layers backwards. d_out holds d loss / d (output of dense l),
  // rows d_out_stride apart.
  std::vector<float>& d_input = buf.d_input;
  int64_t d_out_stride = 1;
  for (int l = static_cast<int>(dense_.size()) - 1; l >= 0; --l) {
    const Dense& d = dense_[l];
    const float* input = l == 0 ? features : cache.activated[l - 1].data();  // [n, in]
    // dW [out, in] = d_out^T @ input; db [out] = column sums of d_out.
    cpu::Sgemm('T', 'N', d.out, d.in, n, d_out.data(), d_out_stride, input, d.in, 0.0f,
               (*grads)[d.weight].data(), d.in);
    ColumnSums(d_out.data(), d_out_stride, nullptr, n, d.out, (*grads)[d.bias].data());
    if (l == 0) break;
    // d input [n, in] = d_out @ W.
    d_input.resize(n * d.in);
    cpu::Sgemm('N', 'N', n, d.in, d.out, d_out.data(), d_out_stride, weights[l], d.in, 0.0f,
               d_input.data(), d.in);
    // Back through ReLU and LayerNorm of hidden layer l-1 (width h = d.in).
    const int64_t h = d.in;
    const Norm& norm = norms_[l - 1];
    const std::vector<float>& xhat = cache.normalized[l - 1];
    const SgemmOperandBuffer& act = cache.activated[l - 1];
    const std::vector<float>& rstd = cache.rstd[l - 1];
    const float* gamma = params_[norm.gamma].values.data();
    // Rows of d_out are padded: with 512 floats (2 KB) apart, reading its
    // columns for the transposed ('T','N') product at the top of the loop
    // hits the same cache sets
    // (measured: the 512^3 'T','N' sgemm took 3.5 ms with a 512 stride,
    // 2.5 ms with 528).
    d_out_stride = h + kRowPad;
    d_out.resize(n * d_out_stride);
#pragma omp parallel for schedule(static) if (n * h >= kMinParallelWork)
    for (int64_t i = 0; i < n; ++i) {
      // ReLU mask: act > 0 exactly where gamma*x̂+beta > 0. dy is kept masked
      // for the gamma/beta sums below.
      float* dy = d_input.data() + i * h;
      const float* act_row = act.data() + i * h;
      for (int64_t j = 0; j < h; ++j) dy[j] = act_row[j] > 0.0f ? dy[j] : 0.0f;
      // dh = rstd * (dx̂ - mean(dx̂) - x̂ * mean(dx̂ * x̂)), dx̂ = dy * gamma.
      const float* xh = xhat.data() + i * h;
      double mean_dxhat = 0, mean_dxhat_xhat = 0;
#pragma omp simd reduction(+ : mean_dxhat, mean_dxhat_xhat)
      for (int64_t j = 0; j < h; ++j) {
        const double dxh = double(dy[j]) * gamma[j];
        mean_dxhat += dxh;
        mean_dxhat_xhat += dxh * xh[j];
      }
      mean_dxhat /= h;
      mean_dxhat_xhat /= h;
      float* dh = d_out.data() + i * d_out_stride;
      for (int64_t j = 0; j < h; ++j) {
        dh[j] = static_cast<float>(
            rstd[i] * (double(dy[j]) * gamma[j] - mean_dxhat - xh[j] * mean_dxhat_xhat));
      }
    }
    ColumnSums(d_input.data(), h, xhat.data(), n, h, (*grads)[norm.beta].data(),
               (*grads)[norm.gamma].data());
  }

  double kl = 0;
  if (bayesian()) {
    // One pass per Bayesian tensor computes the KL (as MeanKl()) and both
    // gradients, chunk by chunk:
    //   KL_i = log p - log_sigma + (sigma^2 + mu^2) / (2 p^2) - 1/2,
    //   d/d mu = dL/dw + c * mu / p^2,
    //   d/d log_sigma = dL/dw * eps * sigma + c * (sigma^2 / p^2 - 1),
    // c = kl_weight / num_bayesian_params. With a sink the chunk's gradients
    // go there instead of into grads.
    const double c = kl_weight / static_cast<double>(num_bayesian_params());
    const float c_f = static_cast<float>(c);
    const double log_prior = std::log(bayes_.prior_sigma);
    const float inv_prior_var = static_cast<float>(1.0 / (bayes_.prior_sigma * bayes_.prior_sigma));
    const float half_inv_prior_var_f = 0.5f * inv_prior_var;
    double kl_total = 0;
    for (const Dense& d : dense_) {
      for (const std::pair<int, int>& mean_and_log_sigma :
           {std::pair{d.weight, d.weight_log_sigma}, std::pair{d.bias, d.bias_log_sigma}}) {
        // Plain variables, not a structured binding: the OpenMP region below
        // captures them, which clang 14 refuses for bindings (C++20 P1091).
        const int mu_index = mean_and_log_sigma.first, ls_index = mean_and_log_sigma.second;
        const float* g_w = (*grads)[mu_index].data();  // dL/dw from the backward pass
        float* g_mu = (*grads)[mu_index].data();
        float* g_ls = (*grads)[ls_index].data();
        const float* mu = params_[mu_index].values.data();
        const float* ls = params_[ls_index].values.data();
        const float* eps = sampled ? sample->noise[mu_index].data() : nullptr;
        const int64_t size = static_cast<int64_t>(params_[mu_index].values.size());
        // Fixed chunks summed in order: the KL does not depend on threads.
        const int64_t chunks = (size + kBayesChunk - 1) / kBayesChunk;
        std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static) if (size >= kMinParallelWork)
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
          const int64_t begin = chunk * kBayesChunk, count = std::min(size - begin, kBayesChunk);
          float sigma[kBayesChunk], sink_d_mu[kBayesChunk], sink_d_ls[kBayesChunk];
          Sigmas(ls + begin, count, sigma);
          float* out_mu = sink ? sink_d_mu : g_mu + begin;
          float* out_ls = sink ? sink_d_ls : g_ls + begin;
          // Each KL term in float (rounding ~1e-7 of it), summed in double:
          // the loss feeds finite-difference checks, and a float sum over a
          // layer loses ~1e-5 of it.
          double kl_acc = 0;
#pragma omp simd reduction(+ : kl_acc)
          for (int64_t k = 0; k < count; ++k) {
            const int64_t i = begin + k;
            const float s2 = sigma[k] * sigma[k];
            const float dw = g_w[i];
            kl_acc += (s2 + mu[i] * mu[i]) * half_inv_prior_var_f - ls[i];
            out_ls[k] = (eps ? dw * eps[i] * sigma[k] : 0.0f) + c_f * (s2 * inv_prior_var - 1.0f);
            out_mu[k] = dw + c_f * mu[i] * inv_prior_var;
          }
          partial[chunk] = kl_acc + count * (log_prior - 0.5);
          if (sink) {
            (*sink)({.mean_index = mu_index,
                     .log_sigma_index = ls_index,
                     .begin = begin,
                     .end = begin + count,
                     .d_mean = sink_d_mu,
                     .d_log_sigma = sink_d_ls});
          }
        }
        for (double p : partial) kl_total += p;
      }
    }
    kl = kl_total / static_cast<double>(num_bayesian_params());
  }
  if (bce_out) *bce_out = bce;
  return bce + kl_weight * kl;
}

}  // namespace saferoute
