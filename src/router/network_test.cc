// Router networks: gradients against finite differences, KL and loss against
// values computed here by hand from closed-form formulas.
#include "router/network.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "router/random.h"

namespace saferoute {
namespace {

std::vector<float> RandomVector(uint64_t key, size_t n, double scale = 1.0) {
  std::vector<float> v(n);
  FillNormal(key, v.data(), n);
  for (float& x : v) x = static_cast<float>(x * scale);
  return v;
}

void SetParam(RouterNetwork& net, std::string_view name, std::vector<float> values) {
  for (ParamTensor& p : net.params()) {
    if (p.name == name) {
      ASSERT_EQ(p.values.size(), values.size()) << name;
      p.values = std::move(values);
      return;
    }
  }
  FAIL() << "no parameter " << name;
}

TEST(RouterNetworkTest, ParameterNamesAndShapes) {
  RouterNetwork bnn(RouterType::kBayesianMlp, 7, 5);
  std::vector<std::string> names;
  for (const ParamTensor& p : bnn.params()) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "fc0.weight", "fc0.bias", "fc0.weight_log_sigma", "fc0.bias_log_sigma",
                       "ln0.weight", "ln0.bias", "fc1.weight", "fc1.bias", "fc1.weight_log_sigma",
                       "fc1.bias_log_sigma", "ln1.weight", "ln1.bias", "fc2.weight", "fc2.bias",
                       "fc2.weight_log_sigma", "fc2.bias_log_sigma"}));
  EXPECT_EQ(bnn.FindParam("fc0.weight")->shape, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(bnn.FindParam("fc2.weight")->shape, (std::vector<int64_t>{1, 5}));
  // KL denominator: weights + biases of the three Bayesian layers only.
  EXPECT_EQ(bnn.num_bayesian_params(), 7 * 5 + 5 + 5 * 5 + 5 + 5 + 1);
  RouterNetwork logistic(RouterType::kLogistic, 7, 99);
  ASSERT_EQ(logistic.params().size(), 2u);
  EXPECT_EQ(logistic.params()[0].shape, (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(logistic.num_bayesian_params(), 0);
}

TEST(RouterNetworkTest, InitialisationFollowsTheReleasedCode) {
  RouterNetwork bnn(RouterType::kBayesianMlp, 400, 300);
  bnn.Initialize(3);
  // kaiming-normal weight means: std sqrt(2/fan_in).
  const std::vector<float>& w = bnn.FindParam("fc0.weight")->values;
  double sq = 0;
  for (float v : w) sq += double(v) * v;
  EXPECT_NEAR(std::sqrt(sq / w.size()), std::sqrt(2.0 / 400), 0.01 * std::sqrt(2.0 / 400));
  for (float v : bnn.FindParam("fc1.bias")->values) EXPECT_LE(std::abs(v), 1.0 / std::sqrt(300.0));
  for (float v : bnn.FindParam("fc1.weight_log_sigma")->values) EXPECT_FLOAT_EQ(v, std::log(0.1f));
  for (float v : bnn.FindParam("ln0.weight")->values) EXPECT_EQ(v, 1.0f);
  // The prior's sigma equals the initial sigma, so KL at init is mu^2 / (2 * 0.01) per element.
  EXPECT_GT(bnn.MeanKl(), 0.0);
}

TEST(RouterNetworkTest, KlMatchesClosedFormByHand) {
  RouterNetwork bnn(RouterType::kBayesianMlp, 2, 2);
  // mu = 0 and sigma = prior sigma: KL is exactly zero.
  for (ParamTensor& p : bnn.params()) {
    const bool is_log_sigma = p.name.find("log_sigma") != std::string::npos;
    std::fill(p.values.begin(), p.values.end(), is_log_sigma ? std::log(0.1f) : 0.0f);
  }
  EXPECT_NEAR(bnn.MeanKl(), 0.0, 1e-6);
  // Every mu = 0.3, sigma = 0.2 (LayerNorm params must not count):
  // KL = 0.5 * (s^2/p^2 + mu^2/p^2 - 1 + ln(p^2/s^2)) = 0.5 * (4 + 9 - 1 - ln 4).
  for (ParamTensor& p : bnn.params()) {
    const bool is_log_sigma = p.name.find("log_sigma") != std::string::npos;
    std::fill(p.values.begin(), p.values.end(), is_log_sigma ? std::log(0.2f) : 0.3f);
  }
  const double expected = 0.5 * (4.0 + 9.0 - 1.0 - std::log(4.0));
  EXPECT_NEAR(bnn.MeanKl(), expected, 1e-5);
  // A mean, not a sum: one differing element moves it by (its KL - expected) / count.
  SetParam(bnn, "fc2.bias", {0.0f});
  const double kl_zero_mu = 0.5 * (4.0 + 0.0 - 1.0 - std::log(4.0));
  EXPECT_NEAR(bnn.MeanKl(), expected + (kl_zero_mu - expected) / bnn.num_bayesian_params(), 1e-5);
}

// Independent forward of the 2 -> 2 -> 2 -> 1 network in double, written out.
double HandLoss(const std::vector<double>& w0, const std::vector<double>& b0,
                const std::vector<double>& w1, const std::vector<double>& b1,
                const std::vector<double>& w2, double b2, const std::vector<double>& gamma0,
                const std::vector<double>& beta0, const std::vector<double>& gamma1,
                const std::vector<double>& beta1, const std::vector<std::vector<double>>& x,
                const std::vector<double>& t) {
  auto layer_norm_relu = [&](double h0, double h1, const std::vector<double>& gamma,
                             const std::vector<double>& beta) {
    const double mean = (h0 + h1) / 2;
    const double var = ((h0 - mean) * (h0 - mean) + (h1 - mean) * (h1 - mean)) / 2;
    const double r = 1 / std::sqrt(var + 1e-5);
    return std::pair{std::max(0.0, gamma[0] * (h0 - mean) * r + beta[0]),
                     std::max(0.0, gamma[1] * (h1 - mean) * r + beta[1])};
  };
  double loss = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    auto [a0, a1] = layer_norm_relu(w0[0] * x[i][0] + w0[1] * x[i][1] + b0[0],
                                    w0[2] * x[i][0] + w0[3] * x[i][1] + b0[1], gamma0, beta0);
    auto [c0, c1] = layer_norm_relu(w1[0] * a0 + w1[1] * a1 + b1[0],
                                    w1[2] * a0 + w1[3] * a1 + b1[1], gamma1, beta1);
    const double z = w2[0] * c0 + w2[1] * c1 + b2;
    const double p = 1 / (1 + std::exp(-z));
    loss += -(t[i] * std::log(p) + (1 - t[i]) * std::log(1 - p));
  }
  return loss / x.size();
}

TEST(RouterNetworkTest, BayesianLossMatchesHandComputation) {
  RouterNetwork bnn(RouterType::kBayesianMlp, 2, 2);
  // LayerNorm over 2 units maps (h0, h1) to +-1 (sign of h0 - h1), so use
  // gamma/beta that keep both units alive for some inputs.
  SetParam(bnn, "fc0.weight", {0.5f, -0.3f, 0.2f, 0.8f});
  SetParam(bnn, "fc0.bias", {0.1f, -0.2f});
  SetParam(bnn, "ln0.weight", {1.5f, 0.7f});
  SetParam(bnn, "ln0.bias", {0.2f, 0.4f});
  SetParam(bnn, "fc1.weight", {0.3f, -0.6f, 0.9f, 0.1f});
  SetParam(bnn, "fc1.bias", {0.05f, 0.0f});
  SetParam(bnn, "ln1.weight", {1.0f, 2.0f});
  SetParam(bnn, "ln1.bias", {0.5f, 0.1f});
  SetParam(bnn, "fc2.weight", {1.2f, -0.7f});
  SetParam(bnn, "fc2.bias", {0.3f});
  const float ls = std::log(0.2f);
  for (const char* name : {"fc0.weight_log_sigma", "fc1.weight_log_sigma"})
    SetParam(bnn, name, {ls, ls, ls, ls});
  for (const char* name : {"fc0.bias_log_sigma", "fc2.weight_log_sigma"})
    SetParam(bnn, name, {ls, ls});
  SetParam(bnn, "fc1.bias_log_sigma", {ls, ls});
  SetParam(bnn, "fc2.bias_log_sigma", {ls});

  const std::vector<float> x = {1.0f, 2.0f, -1.5f, 0.5f, 0.3f, -0.8f};  // [3, 2]
  const std::vector<float> t = {1.0f, 0.0f, 1.0f};
  const std::vector<std::vector<double>> xs = {{1.0, 2.0}, {-1.5, 0.5}, {0.3, -0.8}};
  const std::vector<double> ts = {1, 0, 1};

  // KL by hand: 17 elements; mu^2 summed over all Bayesian means.
  double kl_sum = 0;
  const std::vector<double> mus = {0.5, -0.3, 0.2,  0.8, 0.1, -0.2, 0.3, -0.6,
                                   0.9, 0.1,  0.05, 0.0, 1.2, -0.7, 0.3};
  for (double mu : mus) kl_sum += 0.5 * (4.0 + mu * mu / 0.01 - 1.0 - std::log(4.0));
  const double kl_mean = kl_sum / 15.0;
  ASSERT_EQ(bnn.num_bayesian_params(), 15);

  // Posterior mean (no noise).
  std::vector<std::vector<float>> grads;
  double bce = 0;
  double loss = bnn.LossAndGradients(x.data(), t.data(), 3, nullptr, 0.01, &grads, &bce);
  const double hand =
      HandLoss({0.5, -0.3, 0.2, 0.8}, {0.1, -0.2}, {0.3, -0.6, 0.9, 0.1}, {0.05, 0.0}, {1.2, -0.7},
               0.3, {1.5, 0.7}, {0.2, 0.4}, {1.0, 2.0}, {0.5, 0.1}, xs, ts);
  EXPECT_NEAR(bce, hand, 1e-5);
  EXPECT_NEAR(loss, hand + 0.01 * kl_mean, 1e-5);
  EXPECT_NEAR(bnn.MeanKl(), kl_mean, 1e-5);

  // One weight sample: w = mu + sigma * eps with sigma = 0.2.
  WeightSample sample;
  bnn.DrawWeightSample(42, 7, &sample);
  auto sampled = [&](std::string_view name, std::vector<double> mu) {
    size_t index = 0;
    while (bnn.params()[index].name != name) ++index;
    for (size_t i = 0; i < mu.size(); ++i) mu[i] += 0.2 * sample.noise[index][i];
    return mu;
  };
  loss = bnn.LossAndGradients(x.data(), t.data(), 3, &sample, 0.01, &grads, &bce);
  const double hand_sampled =
      HandLoss(sampled("fc0.weight", {0.5, -0.3, 0.2, 0.8}), sampled("fc0.bias", {0.1, -0.2}),
               sampled("fc1.weight", {0.3, -0.6, 0.9, 0.1}), sampled("fc1.bias", {0.05, 0.0}),
               sampled("fc2.weight", {1.2, -0.7}), sampled("fc2.bias", {0.3})[0], {1.5, 0.7},
               {0.2, 0.4}, {1.0, 2.0}, {0.5, 0.1}, xs, ts);
  EXPECT_NEAR(bce, hand_sampled, 1e-4);
  EXPECT_NEAR(loss, hand_sampled + 0.01 * kl_mean, 1e-4);
  EXPECT_GT(std::abs(hand_sampled - hand), 1e-4);  // the noise really changed the weights
}

// Central finite differences of the loss against the analytic gradient, for
// every parameter element. The noise is held fixed, so the Bayesian loss is a
// smooth function of mu and log_sigma (reparameterisation).
void CheckGradients(RouterType type, double kl_weight) {
  const int dim = 5, hidden = 4, n = 6;
  RouterNetwork net(type, dim, hidden);
  net.Initialize(11);
  // Move log-sigmas and LayerNorm params off their init so their gradients are generic.
  for (ParamTensor& p : net.params()) {
    std::vector<float> jitter =
        RandomVector(MixKey(5, p.values.size(), p.name.size()), p.values.size(), 0.2);
    for (size_t i = 0; i < p.values.size(); ++i) p.values[i] += jitter[i];
  }
  const std::vector<float> x = RandomVector(99, n * dim);
  const std::vector<float> t = {1, 0, 0, 1, 1, 0};
  // The same noise (seed 1, step 2) every time; the weights are redrawn from
  // the perturbed parameters.
  WeightSample sample;
  auto loss_and_gradients = [&](std::vector<std::vector<float>>* grads) {
    if (!net.bayesian())
      return net.LossAndGradients(x.data(), t.data(), n, nullptr, kl_weight, grads);
    net.DrawWeightSample(1, 2, &sample);
    return net.LossAndGradients(x.data(), t.data(), n, &sample, kl_weight, grads);
  };
  std::vector<std::vector<float>> grads, scratch;
  loss_and_gradients(&grads);
  const float h = 2e-3f;
  int checked = 0;
  for (size_t p = 0; p < net.params().size(); ++p) {
    for (size_t i = 0; i < net.params()[p].values.size(); ++i) {
      float& v = net.params()[p].values[i];
      const float saved = v;
      v = saved + h;
      const double up = loss_and_gradients(&scratch);
      v = saved - h;
      const double down = loss_and_gradients(&scratch);
      v = saved;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(grads[p][i], numeric, 2e-3 + 2e-2 * std::abs(numeric))
          << RouterTypeName(type) << " " << net.params()[p].name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(RouterNetworkTest, BayesianGradientsMatchFiniteDifferences) {
  CheckGradients(RouterType::kBayesianMlp, 0.01);
  // A large KL weight makes the KL part of the gradient dominate: checks it too.
  CheckGradients(RouterType::kBayesianMlp, 50.0);
}
TEST(RouterNetworkTest, MlpGradientsMatchFiniteDifferences) {
  CheckGradients(RouterType::kMlp, 0.0);
}
TEST(RouterNetworkTest, LogisticGradientsMatchFiniteDifferences) {
  CheckGradients(RouterType::kLogistic, 0.0);
}

TEST(RouterNetworkTest, BatchedLogitsEqualRowByRow) {
  RouterNetwork net(RouterType::kBayesianMlp, 9, 6);
  net.Initialize(4);
  const int n = 1100;  // more than two inference chunks (512 rows)
  const std::vector<float> x = RandomVector(8, n * 9);
  std::vector<float> batch(n);
  net.Logits(x.data(), n, batch.data());
  for (int i = 0; i < n; i += 37) {
    float single = 0;
    net.Logits(x.data() + i * 9, 1, &single);
    EXPECT_NEAR(batch[i], single, 1e-5) << i;
  }
}

TEST(RouterNetworkTest, SigmoidAndBceAreStable) {
  EXPECT_FLOAT_EQ(Sigmoid(0), 0.5f);
  EXPECT_EQ(Sigmoid(-1000), 0.0f);
  EXPECT_EQ(Sigmoid(1000), 1.0f);
  EXPECT_NEAR(BceWithLogits(-1000, 1), 1000, 1e-9);
  EXPECT_NEAR(BceWithLogits(2, 1), std::log1p(std::exp(-2.0)), 1e-12);
}

TEST(RouterNetworkTest, ParseRouterType) {
  EXPECT_EQ(*ParseRouterType("bnn"), RouterType::kBayesianMlp);
  EXPECT_EQ(*ParseRouterType("logistic"), RouterType::kLogistic);
  EXPECT_FALSE(ParseRouterType("BNN ").ok());
}

}  // namespace
}  // namespace saferoute
