// Size-constrained assignment in bounded memory: the same exact optimum as BalancedAssigner (see
// balanced_assignment.h and docs/balanced-assignment.md, section 7) without ever holding the n × k cost
// matrix. Costs are produced in row blocks; every item keeps a short list of candidate clusters (its c
// cheapest under the current prices); the problem is solved exactly on those candidate arcs, and the
// dual certificate is then checked against the full rows, block by block, adding every violating arc,
// until it holds. Memory: O(n·c + k·d + block·k + k²).
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "tessera/cluster/balanced_assignment.h"
#include "tessera/core/matrix.h"

namespace tessera {

struct BoundedBalancedParams {
  /// Candidate clusters kept per item (c): the c cheapest under the current prices. Larger c means fewer
  /// certificate rounds and more memory (8 bytes per candidate and item).
  size_t candidates = 12;
  /// Rows per block of distances (one GEMM each): block_rows × k floats are held at a time.
  size_t block_rows = 8192;
  /// Rows of the uniform sample whose exact (dense) solution gives the first prices of a cold start; 0: no
  /// sample (cold starts from zero prices); kAuto: n/8 clamped to [32·k, 2^24 / k] (at most 64 MB of costs),
  /// and no sample when that is more than half the rows.
  size_t sample_rows = kAuto;
  /// An arc outside the candidates violates the certificate when it is cheaper, with prices, than the
  /// item's cluster by more than tolerance × (|cost| + |price|) of the item's cluster.
  double tolerance = 1e-6;

  static constexpr size_t kAuto = std::numeric_limits<size_t>::max();
};

/// What the last BoundedBalancedAssigner call did.
struct BoundedBalancedStats {
  size_t steps = 0;        ///< augmenting paths, over all restricted solves
  size_t phases = 0;       ///< shortest-path computations, over all restricted solves
  size_t row_refills = 0;  ///< mover-table rows rebuilt after a push emptied one of their lists
  size_t rounds = 0;       ///< certificate checks (the last one found no violation)
  size_t rows_checked = 0; ///< rows whose distances the checks recomputed (the others are safe by a bound)
  size_t arcs = 0;         ///< candidate arcs at the end
  size_t joiner_arcs = 0;  ///< arcs of the first lists beyond each item's c cheapest (every cluster's joiners)
  size_t arcs_added = 0;   ///< arcs added after the first candidate lists (violations and connectivity)
  size_t reconnects = 0;   ///< restricted solves that had to add arcs to reach a cluster short of items
  bool sampled = false;    ///< a cold start took its first prices from a sample
  double cost = 0;         ///< total cost of the returned assignment
};

/// Exact balanced assignment in memory O(n·c + k·d + block·k + k²), never O(n·k): successive shortest
/// paths on the k-cluster graph restricted to each item's candidate clusters, checked by the dual
/// certificate on the full rows. Keeps its prices between calls (a warm start for the next Lloyd iteration).
class BoundedBalancedAssigner {
 public:
  explicit BoundedBalancedAssigner(SizeBounds bounds, BoundedBalancedParams params = {});

  /// Assign x (n × d) to centroids (k × d) under the bounds, squared L2 costs computed block by block.
  /// assign: n; dist: n squared distances to the assigned centroid (may be nullptr); x_norms: n ‖x_i‖² or
  /// nullptr. Returns Σ dist.
  double assign(MatrixView<const float> x, MatrixView<const float> centroids, int32_t* assign, float* dist,
                const float* x_norms = nullptr);

  /// The same on a given cost matrix (n × k), read block by block exactly as computed costs would be: for
  /// tests against balanced_assign_exact and BalancedAssigner.
  double assign_costs(MatrixView<const float> cost, int32_t* assign);

  /// Cluster prices of the last solution (k values; the certificate of balanced_assignment.h).
  const std::vector<double>& prices() const { return prices_; }
  SizeBounds bounds() const { return bounds_; }
  const BoundedBalancedParams& params() const { return params_; }
  const BoundedBalancedStats& stats() const { return stats_; }

  /// Forget the prices (the next call is cold).
  void reset() { prices_.clear(); }
  /// Start the next call from these prices (k values).
  void set_prices(std::vector<double> prices) { prices_ = std::move(prices); }

 private:
  SizeBounds bounds_;
  BoundedBalancedParams params_;
  std::vector<double> prices_;
  BoundedBalancedStats stats_;
};

}  // namespace tessera
