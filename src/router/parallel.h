// OpenMP policy of the router code. Every parallel loop computes each output
// element in one thread with a fixed order, so results never depend on the
// thread count; small loops stay serial because a parallel region costs more
// than it saves there (and stalls badly when the cores are oversubscribed).
#ifndef SAFEROUTE_ROUTER_PARALLEL_H_
#define SAFEROUTE_ROUTER_PARALLEL_H_

#include <cstdint>

namespace saferoute {

// Elements of work below which a loop runs serially (`omp parallel for if(...)`).
inline constexpr int64_t kMinParallelWork = int64_t{1} << 16;

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_PARALLEL_H_
