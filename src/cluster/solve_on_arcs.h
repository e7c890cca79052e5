// The bounded engine's exact restricted solve (bounded_balanced.cpp) on a problem given only as arcs, with a
// size window per cluster: what balanced_assign_sparse_exact runs.
#pragma once
#include <cstdint>
#include <vector>

#include "tessera/cluster/sparse_balanced_assignment.h"

namespace tessera::detail {

/// Exact min-cost assignment over the arcs (each item's clusters distinct, every item with at least one) with
/// lo[j] ≤ size_j ≤ hi[j], by successive shortest paths on the cluster graph from `prices` (k values, or
/// empty: zeros), which it leaves certifying the optimum (relative to the sink: positive only at hi[j],
/// negative only at lo[j]). Returns false when no assignment over the arcs meets the windows.
bool solve_on_arcs(const SparseCostsView& arcs, const std::vector<size_t>& lo, const std::vector<size_t>& hi,
                   std::vector<double>& prices, int32_t* assign, double& cost);

}  // namespace tessera::detail
