// Size-constrained assignment on a sparse set of candidate arcs, with a size window per cluster: the
// "restricted problem" of a price-and-certificate method (docs/balanced-assignment.md, section 2). Item i
// may only join the clusters listed for it; cluster j must end with between lo[j] and hi[j] items. It is
// the piece a distributed balanced assignment solves centrally on the few items near a price boundary,
// after every other item has been fixed at its cheapest priced cluster (which shifts each cluster's window
// by the number of items fixed there, hence one window per cluster).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tessera {

/// Candidate arcs in compressed rows (CSR): item i's clusters are cluster[offsets[i] .. offsets[i+1]) with
/// the costs in the same positions. offsets: n + 1 values (offsets[0] = 0); cluster ids in [0, k).
struct SparseCostsView {
  size_t n = 0;  ///< items
  size_t k = 0;  ///< clusters
  const int64_t* offsets = nullptr;
  const int32_t* cluster = nullptr;
  const float* cost = nullptr;
};

/// Result of balanced_assign_sparse_exact.
struct SparseBalancedResult {
  bool feasible = false;       ///< false: no assignment over the listed arcs meets every window
  double cost = 0;             ///< Σ_i cost(i, assign_i), in double from the float costs
  std::vector<double> prices;  ///< k cluster prices certifying the optimum (see below)
};

/// Exact min-cost assignment of the n items to clusters over the listed arcs with lo[j] ≤ size_j ≤ hi[j]
/// (lo, hi: k values each): the bounded engine's restricted solve (bounded_balanced_assignment.h) — Jacobi
/// price rounds over the arcs, then successive shortest paths on the k-cluster graph — from start_prices (k
/// values; empty: zeros; a good start, such as the prices of the problem the arcs were cut from, saves most
/// of the work). Memory and time grow with the arcs and k², not with n·k; duplicate arcs of an item keep the
/// cheapest.
///
/// assign: n cluster ids (written when feasible). The returned prices p certify the solution: every item sits
/// in a listed cluster minimising cost(i, j) + p_j over its listed clusters (up to float rounding, relative
/// 1e-7), p_j > 0 only where size_j = hi[j], p_j < 0 only where size_j = lo[j].
/// Infeasible windows (Σ lo > n, Σ hi < n, lo[j] > hi[j], an item without arcs, or arcs that cannot fill a
/// cluster's minimum) return feasible = false, not an exception; malformed input (a cluster id out of range,
/// non-finite costs, offsets not ascending) throws InvalidArgument.
SparseBalancedResult balanced_assign_sparse_exact(const SparseCostsView& costs, const std::vector<size_t>& lo,
                                                  const std::vector<size_t>& hi, int32_t* assign,
                                                  const std::vector<double>& start_prices = {});

}  // namespace tessera
