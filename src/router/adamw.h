// torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, decoupled weight decay) over
// a network's parameter tensors.
//
// A step can update a tensor whole (UpdateTensor) or in pieces (UpdateRange):
// the Bayesian router's training loop updates each chunk of its 2.6M
// posterior parameters as soon as the gradient pass has produced it, while
// it is still in cache, instead of in a second pass over ~70 MB of
// parameters, moments and gradients. Both give the same bits: each element's
// update depends only on its own value, gradient and moments.
#ifndef SAFEROUTE_ROUTER_ADAMW_H_
#define SAFEROUTE_ROUTER_ADAMW_H_

#include <cstdint>
#include <vector>

#include "router/network.h"

namespace saferoute {

class AdamW {
 public:
  static constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kEps = 1e-8f;

  // Moments start at zero, one pair per tensor of params.
  explicit AdamW(const std::vector<ParamTensor>& params);

  // Starts step t + 1 (t = steps begun so far) with learning rate lr and
  // decoupled weight decay: fixes the bias corrections every update of this
  // step uses.
  void BeginStep(double lr, double weight_decay);
  int64_t steps() const { return t_; }

  // values[0, end - begin) are elements [begin, end) of tensor `index`;
  // grad holds their gradients. Calls for disjoint ranges may run
  // concurrently.
  void UpdateRange(int index, int64_t begin, int64_t end, float* values, const float* grad);
  // The whole tensor (multi-threaded for large tensors).
  void UpdateTensor(int index, std::vector<float>& values, const std::vector<float>& grad);

 private:
  std::vector<std::vector<float>> m_, v_;
  int64_t t_ = 0;
  // Of the current step.
  float decay_ = 1.0f, step_size_ = 0.0f, inv_sqrt_bias2_ = 1.0f;
};

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_ADAMW_H_
