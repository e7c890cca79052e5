// Private engine of BalancedAssigner: successive shortest paths on the k-cluster graph.
#pragma once
#include <cstdint>
#include <vector>

#include "tessera/cluster/balanced_assignment.h"

namespace tessera::detail {

/// Exact size-constrained assignment on a dense cost matrix (n × k), warm-started from `prices`
/// (k values, or empty for a cold start). Writes assign (n) and dist (n, may be nullptr), leaves the
/// certifying prices in `prices`, returns Σ cost(i, assign_i).
double balanced_ssp_solve(MatrixView<const float> cost, SizeBounds bounds, std::vector<double>& prices,
                          int32_t* assign, float* dist, BalancedStats& stats);

/// The checks of BalancedAssigner::assign and BoundedBalancedAssigner::assign (x: n × d, centroids: k × d):
/// centroids present, d equal, n and k within int32, the bounds feasible, the centroids finite.
void check_assign_inputs(MatrixView<const float> x, MatrixView<const float> centroids, SizeBounds bounds);

}  // namespace tessera::detail
