// AdamW against torch's formulas by hand, and the fused training step (the
// optimiser applied chunk by chunk inside the gradient pass, each chunk's
// sample redrawn right after) against the plain one: same bits.
#include "router/adamw.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "router/network.h"
#include "router/random.h"

namespace saferoute {
namespace {

TEST(AdamWTest, MatchesTorchFormulasByHand) {
  std::vector<ParamTensor> params = {{.name = "w", .shape = {3}, .values = {0.5f, -1.0f, 2.0f}}};
  AdamW adam(params);
  const std::vector<std::vector<float>> grads = {{0.1f, -0.2f, 0.0f}, {-0.3f, 0.4f, 1e-3f}};
  const double lr[2] = {1e-2, 5e-3}, wd = 0.1;
  // torch.optim.AdamW, written out in double.
  std::vector<double> p = {0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
  for (int t = 1; t <= 2; ++t) {
    adam.BeginStep(lr[t - 1], wd);
    adam.UpdateTensor(0, params[0].values, grads[t - 1]);
    for (int i = 0; i < 3; ++i) {
      const double g = grads[t - 1][i];
      p[i] *= 1 - lr[t - 1] * wd;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const double m_hat = m[i] / (1 - std::pow(0.9, t));
      const double v_hat = v[i] / (1 - std::pow(0.999, t));
      p[i] -= lr[t - 1] * m_hat / (std::sqrt(v_hat) + 1e-8);
      EXPECT_NEAR(params[0].values[i], p[i], 2e-6) << "step " << t << " element " << i;
    }
    // Element 2's first gradient is 0: its first step is the decay alone.
    if (t == 1) {
      EXPECT_FLOAT_EQ(params[0].values[2], 2.0f * (1 - 1e-3f));
    }
  }
  EXPECT_EQ(adam.steps(), 2);
}

TEST(AdamWTest, UpdateRangeEqualsUpdateTensor) {
  std::vector<ParamTensor> params = {{.name = "w", .shape = {10000}, .values = {}}};
  params[0].values.resize(10000);
  FillNormal(3, params[0].values.data(), 10000);
  std::vector<ParamTensor> copy = params;
  std::vector<float> grad(10000);
  FillNormal(4, grad.data(), grad.size());
  AdamW whole(params), pieces(copy);
  for (int t = 0; t < 3; ++t) {
    whole.BeginStep(1e-3, 0.01);
    whole.UpdateTensor(0, params[0].values, grad);
    pieces.BeginStep(1e-3, 0.01);
    for (int64_t begin = 0; begin < 10000; begin += 999) {
      const int64_t end = std::min<int64_t>(10000, begin + 999);
      pieces.UpdateRange(0, begin, end, copy[0].values.data() + begin, grad.data() + begin);
    }
  }
  EXPECT_EQ(params[0].values, copy[0].values);
}

// Three training steps of a Bayesian MLP whose first layer spans several
// chunks: (a) draw the sample, compute all gradients, update every tensor;
// (b) the training loop's way (router/train.cc), updating and redrawing each
// chunk inside the gradient pass. Every parameter must end bit-identical.
TEST(AdamWTest, FusedBayesianStepEqualsSeparatePasses) {
  const int dim = 300, hidden = 32, n = 64;  // fc0: 9,600 elements = 3 chunks
  RouterNetwork plain(RouterType::kBayesianMlp, dim, hidden);
  plain.Initialize(21);
  RouterNetwork fused = plain;
  std::vector<float> x(n * dim), t(n);
  FillNormal(8, x.data(), x.size());
  for (int i = 0; i < n; ++i) t[i] = x[i * dim] > 0 ? 1.0f : 0.0f;
  AdamW plain_adam(plain.params()), fused_adam(fused.params());
  std::vector<std::vector<float>> grads;
  WeightSample plain_sample, fused_sample;
  int64_t step = 0;
  const RouterNetwork::BayesianGradientSink sink =
      [&](const RouterNetwork::BayesianGradientChunk& c) {
        fused_adam.UpdateRange(c.mean_index, c.begin, c.end,
                               fused.params()[c.mean_index].values.data() + c.begin, c.d_mean);
        fused_adam.UpdateRange(c.log_sigma_index, c.begin, c.end,
                               fused.params()[c.log_sigma_index].values.data() + c.begin,
                               c.d_log_sigma);
        fused.DrawWeightSampleRange(77, step + 1, c.mean_index, c.begin, c.end, &fused_sample);
      };
  fused.DrawWeightSample(77, 0, &fused_sample);
  for (step = 0; step < 3; ++step) {
    plain.DrawWeightSample(77, step, &plain_sample);
    EXPECT_EQ(plain_sample.weights, fused_sample.weights) << "step " << step;
    const double lr = 1e-2 * (step + 1);
    plain_adam.BeginStep(lr, 0.01);
    const double plain_loss =
        plain.LossAndGradients(x.data(), t.data(), n, &plain_sample, 0.01, &grads);
    for (size_t p = 0; p < plain.params().size(); ++p) {
      plain_adam.UpdateTensor(static_cast<int>(p), plain.params()[p].values, grads[p]);
    }
    fused_adam.BeginStep(lr, 0.01);
    const double fused_loss = fused.LossAndGradients(x.data(), t.data(), n, &fused_sample, 0.01,
                                                     &grads, nullptr, nullptr, &sink);
    for (size_t p = 0; p < fused.params().size(); ++p) {
      if (fused.is_bayesian_param(static_cast<int>(p))) continue;
      fused_adam.UpdateTensor(static_cast<int>(p), fused.params()[p].values, grads[p]);
    }
    EXPECT_EQ(plain_loss, fused_loss) << "step " << step;
  }
  int bayesian = 0;
  for (size_t p = 0; p < plain.params().size(); ++p) {
    EXPECT_EQ(plain.params()[p].values, fused.params()[p].values) << plain.params()[p].name;
    bayesian += plain.is_bayesian_param(static_cast<int>(p));
  }
  EXPECT_EQ(bayesian, 12);  // 3 layers x (weight, bias) x (mean, log-sigma)
  // The steps really moved the parameters.
  RouterNetwork initial(RouterType::kBayesianMlp, dim, hidden);
  initial.Initialize(21);
  EXPECT_NE(initial.params()[0].values, fused.params()[0].values);
  EXPECT_NE(initial.params()[1].values, fused.params()[1].values);
}

}  // namespace
}  // namespace saferoute
