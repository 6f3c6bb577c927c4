// The three router networks (parameters, forward, backward), shared by
// training (router/train.h) and inference (router files, router/router.h).
//
//   kLogistic:    logit = x·w + b                                  (D -> 1)
//   kMlp:         Linear D->H -> LayerNorm -> ReLU -> Linear H->H -> LayerNorm
//                 -> ReLU -> Linear H->1
//   kBayesianMlp: the same shape with every Linear a Bayes-by-Backprop layer
//                 (torchbnn BayesLinear, as in the SafeRoute code): diagonal
//                 Gaussian posterior N(mu, exp(log_sigma)^2) over weights AND
//                 biases, prior N(0, prior_sigma^2). LayerNorm gamma/beta are
//                 ordinary (deterministic) parameters, as nn.LayerNorm is.
//                 Training draws one weight sample per step; inference uses
//                 the posterior mean (the released code's freeze(zero=True)).
//
// Parameters are a flat, ordered list of named fp32 tensors so the optimiser,
// the router file and the finite-difference test treat them uniformly.
// Names: "fc{i}.weight" [out, in], "fc{i}.bias" [out] (posterior means for the
// Bayesian MLP), "fc{i}.weight_log_sigma", "fc{i}.bias_log_sigma" (Bayesian
// only), "ln{i}.weight", "ln{i}.bias" [H].
//
// Thread-safety: const methods may be called concurrently; GEMMs run on
// oneDNN's threads, element-wise work on OpenMP with fixed partitioning, so a
// result never depends on how threads were scheduled.
#ifndef SAFEROUTE_ROUTER_NETWORK_H_
#define SAFEROUTE_ROUTER_NETWORK_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "router/router.h"
#include "util/status.h"

namespace saferoute {

std::string_view RouterTypeName(RouterType type);  // "bnn", "mlp", "logistic"
absl::StatusOr<RouterType> ParseRouterType(std::string_view name);

struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major, numel(shape) elements
};

// Prior and KL settings of the Bayesian MLP (paper / released code values).
struct BayesSettings {
  double prior_sigma = 0.1;                    // prior N(0, prior_sigma^2) on every weight and bias
  double init_log_sigma = -2.302585092994046;  // log(0.1)
};

// Per-parameter N(0,1) noise for one training step of the Bayesian MLP:
// eps[p] has the size of params()[p] for each posterior-mean tensor of a
// Bayesian layer and is empty otherwise.
using WeightNoise = std::vector<std::vector<float>>;

class RouterNetwork {
 public:
  // hidden_dim is ignored for kLogistic. Parameters start at zero; call
  // Initialize() or fill params() (e.g. from a file).
  RouterNetwork(RouterType type, int feature_dim, int hidden_dim, BayesSettings bayes = {});

  RouterType type() const { return type_; }
  int feature_dim() const { return feature_dim_; }
  int hidden_dim() const { return hidden_dim_; }
  bool bayesian() const { return type_ == RouterType::kBayesianMlp; }
  const BayesSettings& bayes() const { return bayes_; }

  std::vector<ParamTensor>& params() { return params_; }
  const std::vector<ParamTensor>& params() const { return params_; }
  const ParamTensor* FindParam(std::string_view name) const;

  // Initialisation of the released code: weight means kaiming-normal
  // (std sqrt(2/fan_in)), bias means U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
  // log-sigmas init_log_sigma, LayerNorm gamma 1 / beta 0. The logistic
  // router uses U(+-1/sqrt(D)) for its weight (torch nn.Linear's default).
  void Initialize(uint64_t seed);

  // Number of Bayesian weight + bias elements (the KL mean's denominator).
  int64_t num_bayesian_params() const;
  // KL(q || prior) summed over Bayesian weights and biases, divided by
  // num_bayesian_params() (torchbnn BKLLoss, reduction "mean"); 0 otherwise.
  double MeanKl() const;

  // Draws the N(0,1) noise for one training step from a counter-based
  // generator keyed by (seed, step): reproducible and thread-count independent.
  WeightNoise DrawNoise(uint64_t seed, uint64_t step) const;
  // The same values into *noise, reusing its buffers (the training loop).
  void DrawNoise(uint64_t seed, uint64_t step, WeightNoise* noise) const;

  // Activations of one forward pass, kept for the backward pass.
  struct Activations {
    // Per hidden layer l (each [n, H] unless noted):
    std::vector<std::vector<float>> normalized;  // x̂ = (h - mean) * rstd
    std::vector<std::vector<float>> rstd;        // [n]
    std::vector<std::vector<float>> activated;   // ReLU(gamma * x̂ + beta)
    std::vector<float> logits;                   // [n]
  };
  // Buffers a training loop passes to every LossAndGradients call: without
  // them each step of the paper's router allocates and page-faults ~30 MB.
  struct StepBuffers {
    std::vector<std::vector<float>> sigma;    // per Bayesian tensor: exp(log_sigma)
    std::vector<std::vector<float>> sampled;  // per Bayesian tensor: mu + sigma * eps
    Activations activations;
    std::vector<float> d_out, d_input;
  };

  // Posterior-mean logits. features: [n, feature_dim] row-major; logits: [n].
  void Logits(const float* features, int64_t n, float* logits) const;

  // loss = mean_i BCEWithLogits(logit_i, t_i) + kl_weight * MeanKl(), with the
  // weights of Bayesian layers set to mu + exp(log_sigma) * noise (noise may
  // be null: posterior mean). Writes d loss / d param into grads (resized to
  // match params()). Returns the loss; *bce_out (optional) gets the BCE part.
  // buffers (optional) are reused across calls; results do not depend on it.
  double LossAndGradients(const float* features, const float* targets, int64_t n,
                          const WeightNoise* noise, double kl_weight,
                          std::vector<std::vector<float>>* grads, double* bce_out = nullptr,
                          StepBuffers* buffers = nullptr) const;

 private:
  struct Dense {
    int in = 0, out = 0;
    int weight = -1, bias = -1;                      // indices into params_
    int weight_log_sigma = -1, bias_log_sigma = -1;  // Bayesian only
  };
  struct Norm {
    int gamma = -1, beta = -1;
  };
  int AddParam(std::string name, std::vector<int64_t> shape);
  // Runs the layers with the given effective weights/biases (one per dense
  // layer); fills cache->logits [n] and, for backward, the hidden activations.
  void Forward(const float* features, int64_t n, const std::vector<const float*>& weights,
               const std::vector<const float*>& biases, Activations* cache) const;

  RouterType type_;
  int feature_dim_;
  int hidden_dim_;
  BayesSettings bayes_;
  std::vector<ParamTensor> params_;
  std::vector<Dense> dense_;  // 1 (logistic) or 3 layers
  std::vector<Norm> norms_;   // 0 or 2
};

// Numerically stable sigmoid and BCE-with-logits (the torch formulas).
float Sigmoid(float logit);
double BceWithLogits(double logit, double target);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_NETWORK_H_
