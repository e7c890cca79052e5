// Size-constrained assignment: give each of n points one of k clusters, minimising the total squared
// distance, with every cluster's size in [lo, hi]. This is a transportation problem (see
// docs/balanced-assignment.md); its optimality certificate is a price per cluster p_k such that
// every point sits in a cluster minimising d(i,k) + p_k, sizes are within bounds, p_k > 0 only at
// size hi and p_k < 0 only at size lo.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

struct SizeBounds {
  size_t lo = 0;
  size_t hi = 0;
};

/// MiniOneRec's bounds: lo = max(1, n/k − 1), hi = n/k + 1 (integer division).
SizeBounds default_size_bounds(size_t n, size_t k);

/// Whether the dense engine's n × k float distances fit in max_bytes; above, the bounded-memory assigner
/// (bounded_balanced_assignment.h) gives the same optimum. The one rule balanced k-means and the residual
/// quantizer's balanced levels choose by.
inline bool dense_balanced_fits(size_t n, size_t k, size_t max_bytes) {
  return n <= max_bytes / sizeof(float) / (k > 0 ? k : 1);
}

/// Throws InvalidArgument unless k·lo ≤ n ≤ k·hi and lo ≤ hi (the message says what would be feasible).
void check_size_bounds(size_t n, size_t k, SizeBounds b);

/// Exact reference on a dense cost matrix (cost: n × k): min-cost flow by LEMON's network simplex.
/// Memory and time grow with n·k: meant for tests and small problems. Returns the optimal total cost.
double balanced_assign_exact(MatrixView<const float> cost, SizeBounds bounds, int32_t* assign);

/// The same, also returning optimal cluster prices (k values) that certify the solution, if `prices` is set.
double balanced_assign_exact(MatrixView<const float> cost, SizeBounds bounds, int32_t* assign,
                             std::vector<double>* prices);

/// How far (assign, prices) is from the certificate on a dense cost matrix (n × k): the largest
/// violation of condition 1, max_i [cost(i, assign_i) + p(assign_i) − min_j (cost(i, j) + p_j)] ≥ 0, or
/// +infinity when a size is out of bounds or condition 3 fails. The total cost is then within
/// n × (returned value) of the optimum.
double balanced_certificate_violation(MatrixView<const float> cost, SizeBounds bounds, const int32_t* assign,
                                      const std::vector<double>& prices);

/// What the last BalancedAssigner call did (for tests and benchmarks).
struct BalancedStats {
  size_t steps = 0;   ///< augmenting paths (each moves one item along a chain of clusters)
  size_t phases = 0;  ///< shortest-path computations (each serves one or more augmenting paths)
  double cost = 0;   ///< total cost of the returned assignment
};

/// The fast exact assignment used inside balanced k-means: successive shortest paths on the k-cluster
/// graph (see src/cluster/balanced_ssp.cpp), never on the n items. It keeps its cluster prices between
/// calls, so consecutive Lloyd iterations warm-start from each other. Memory: the n × k distances.
class BalancedAssigner {
 public:
  explicit BalancedAssigner(SizeBounds bounds);

  /// Assign x (n × d) to centroids (k × d) under the bounds. assign: n; dist: n squared distances to the
  /// assigned centroid (may be nullptr); x_norms: n precomputed ‖x_i‖² or nullptr. Returns Σ dist.
  double assign(MatrixView<const float> x, MatrixView<const float> centroids, int32_t* assign, float* dist,
                const float* x_norms = nullptr);

  /// The same on a dense cost matrix (n × k), for tests against balanced_assign_exact.
  double assign_costs(MatrixView<const float> cost, int32_t* assign);

  /// Cluster prices of the last solution (k values; see the certificate above).
  const std::vector<double>& prices() const { return prices_; }
  SizeBounds bounds() const { return bounds_; }
  const BalancedStats& stats() const { return stats_; }

  /// Forget the prices (the next call is cold).
  void reset() { prices_.clear(); }
  /// Start the next call from these prices (k values): e.g. a sample's, since prices do not grow with n.
  void set_prices(std::vector<double> prices) { prices_ = std::move(prices); }

 private:
  SizeBounds bounds_;
  std::vector<double> prices_;
  BalancedStats stats_;
  std::vector<float> cost_;
};

}  // namespace tessera
