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
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "router/router.h"
#include "router/sgemm_buffer.h"
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

// One weight sample of the Bayesian MLP for one training step, per
// posterior-mean tensor p of a Bayesian layer (empty vectors for the other
// tensors): noise[p] ~ N(0, 1) and weights[p] = mu + exp(log_sigma) * noise[p],
// each the size of params()[p].
struct WeightSample {
  std::vector<std::vector<float>> noise;
  std::vector<SgemmOperandBuffer> weights;  // a GEMM operand (router/sgemm_buffer.h)
};

// A parameter tensor's name and shape.
struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
};

class RouterNetwork {
 public:
  // hidden_dim is ignored for kLogistic. Parameters start at zero; call
  // Initialize() or fill params() (e.g. from a file).
  RouterNetwork(RouterType type, int feature_dim, int hidden_dim, BayesSettings bayes = {});

  // The parameters of such a network, in params() order, without allocating
  // them (a router file is checked against them before the network is built).
  static std::vector<ParamSpec> Layout(RouterType type, int feature_dim, int hidden_dim);

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

  // Draws the sample of one training step from the current parameters. The
  // noise comes from a counter-based generator keyed by (seed, step, tensor):
  // reproducible and thread-count independent. Reuses sample's buffers.
  void DrawWeightSample(uint64_t seed, uint64_t step, WeightSample* sample) const;
  // The same for elements [begin, end) of posterior-mean tensor mean_index
  // only (begin even), on the calling thread; *sample must already have been
  // sized by DrawWeightSample. The training loop redraws each chunk for the
  // next step right after updating it.
  void DrawWeightSampleRange(uint64_t seed, uint64_t step, int mean_index, int64_t begin,
                             int64_t end, WeightSample* sample) const;

  // Activations of one forward pass, kept for the backward pass.
  struct Activations {
    // Per hidden layer l (each [n, H] unless noted):
    std::vector<std::vector<float>> normalized;  // x̂ = (h - mean) * rstd
    std::vector<std::vector<float>> rstd;        // [n]
    std::vector<SgemmOperandBuffer> activated;   // ReLU(gamma * x̂ + beta), a GEMM operand
    std::vector<float> logits;                   // [n]
  };
  // Buffers a training loop passes to every LossAndGradients call: without
  // them each step of the paper's router allocates and page-faults ~30 MB.
  struct StepBuffers {
    Activations activations;
    std::vector<float> d_out, d_input;
  };
  // Final gradients of elements [begin, end) of a Bayesian layer's posterior
  // mean tensor and of its log-sigma tensor (same shape, same elements).
  struct BayesianGradientChunk {
    int mean_index = -1, log_sigma_index = -1;  // into params()
    int64_t begin = 0, end = 0;
    const float* d_mean = nullptr;       // [end - begin]
    const float* d_log_sigma = nullptr;  // [end - begin]
  };
  // Called from several threads at once, each with its own chunk.
  using BayesianGradientSink = std::function<void(const BayesianGradientChunk&)>;

  // True for the posterior mean and log-sigma tensors of Bayesian layers: the
  // tensors whose gradients go to a BayesianGradientSink when one is given.
  bool is_bayesian_param(int index) const;

  // Posterior-mean logits. features: [n, feature_dim] row-major; logits: [n].
  void Logits(const float* features, int64_t n, float* logits) const;

  // loss = mean_i BCEWithLogits(logit_i, t_i) + kl_weight * MeanKl(), with the
  // weights of Bayesian layers taken from sample, which must have been drawn
  // from the current parameters (null: the posterior mean). Writes d loss /
  // d param into grads (resized to match params()). Returns the loss;
  // *bce_out (optional) gets the BCE part. buffers (optional) are reused
  // across calls; results do not depend on it.
  //
  // With a sink (Bayesian MLP only), the gradients of the Bayesian tensors
  // (is_bayesian_param) are not written to grads: each chunk goes to the sink
  // as soon as it is final, while it is in cache, so a training loop can apply
  // its optimiser there. The call reads none of a chunk's parameters or
  // sample values after passing it on, so the sink may update the parameters
  // in place and redraw the chunk's sample for the next step.
  double LossAndGradients(const float* features, const float* targets, int64_t n,
                          const WeightSample* sample, double kl_weight,
                          std::vector<std::vector<float>>* grads, double* bce_out = nullptr,
                          StepBuffers* buffers = nullptr,
                          const BayesianGradientSink* sink = nullptr) const;

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
  int ParamIndex(std::string_view name) const;  // of a parameter that exists
  // The log-sigma tensor of a Bayesian posterior-mean tensor.
  int LogSigmaIndex(int mean_index) const;
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
