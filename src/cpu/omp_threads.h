// Scoped OpenMP team size for this thread.
//
// oneDNN's sgemm uses omp_get_max_threads() threads when it is called outside
// an active parallel region, and the calling thread only inside one. Callers
// that want a single-threaded sgemm outside a region (small products) or a
// given team size (the bench's peak probe) set it for a scope with this.
#ifndef SAFEROUTE_CPU_OMP_THREADS_H_
#define SAFEROUTE_CPU_OMP_THREADS_H_

#include <omp.h>

#include <algorithm>

namespace saferoute::cpu {

class ScopedOmpMaxThreads {
 public:
  explicit ScopedOmpMaxThreads(int threads) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(std::max(1, threads));
  }
  ~ScopedOmpMaxThreads() { omp_set_num_threads(saved_); }
  ScopedOmpMaxThreads(const ScopedOmpMaxThreads&) = delete;
  ScopedOmpMaxThreads& operator=(const ScopedOmpMaxThreads&) = delete;

 private:
  int saved_;
};

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_OMP_THREADS_H_
