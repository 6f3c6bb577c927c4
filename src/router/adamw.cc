#include "router/adamw.h"

#include <algorithm>
#include <cmath>

#include "router/parallel.h"
#include "util/status.h"

namespace saferoute {

AdamW::AdamW(const std::vector<ParamTensor>& params) {
  for (const ParamTensor& p : params) {
    m_.emplace_back(p.values.size(), 0.0f);
    v_.emplace_back(p.values.size(), 0.0f);
  }
}

void AdamW::BeginStep(double lr, double weight_decay) {
  ++t_;
  const double bias1 = 1.0 - std::pow(kBeta1, t_);
  const double bias2 = 1.0 - std::pow(kBeta2, t_);
  decay_ = static_cast<float>(1.0 - lr * weight_decay);
  step_size_ = static_cast<float>(lr / bias1);
  inv_sqrt_bias2_ = static_cast<float>(1.0 / std::sqrt(bias2));
}

void AdamW::UpdateRange(int index, int64_t begin, int64_t end, float* __restrict values,
                        const float* __restrict grad) {
  SR_CHECK(t_ > 0);  // BeginStep first
  SR_CHECK(begin >= 0 && begin <= end && end <= static_cast<int64_t>(m_[index].size()));
  float* __restrict m = m_[index].data() + begin;
  float* __restrict v = v_[index].data() + begin;
  const float decay = decay_, step = step_size_, inv_sqrt_bias2 = inv_sqrt_bias2_;
  const int64_t size = end - begin;
  for (int64_t i = 0; i < size; ++i) {
    values[i] *= decay;
    m[i] = kBeta1 * m[i] + (1 - kBeta1) * grad[i];
    v[i] = kBeta2 * v[i] + (1 - kBeta2) * grad[i] * grad[i];
    values[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_bias2 + kEps);
  }
}

void AdamW::UpdateTensor(int index, std::vector<float>& values, const std::vector<float>& grad) {
  SR_CHECK(values.size() == m_[index].size() && grad.size() == values.size());
  constexpr int64_t kChunk = 4096;
  const int64_t size = static_cast<int64_t>(values.size());
  const int64_t chunks = (size + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (size >= kMinParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, end = std::min(size, begin + kChunk);
    UpdateRange(index, begin, end, values.data() + begin, grad.data() + begin);
  }
}

}  // namespace saferoute
