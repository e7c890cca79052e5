// Candidate lists for a balanced assignment solved piecewise (tessera.distributed; docs/balanced-assignment.md,
// section 7): every row keeps its c cheapest clusters under the prices of the moment, and the per-cluster
// sums the price rounds and the boundary solve need are read off those lists, not off the full rows. One
// pass of GEMMs makes the lists of a level; every later pass costs O(rows · c).
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

/// Row i's arcs are [offsets[i], offsets[i + 1]) of cluster and cost (squared distances): first its `width`
/// cheapest clusters under prices p0 (cheapest priced first, ties to the lower cluster), then the joiners:
/// every other cluster j whose priced cost is within join_limit[j] of the row's cheapest (so that a cluster
/// the prices undervalue still has enough rows listing it). theta: the (width + 1)-th cheapest priced cost.
/// Under p0 no unlisted cluster is cheaper than theta; under prices p, none is cheaper than
/// theta + min_j (p_j − p0_j). theta = +inf when width = k.
struct CandidateLists {
  size_t rows = 0, width = 0;
  std::vector<int64_t> offsets;
  std::vector<int32_t> cluster;
  std::vector<float> cost;
  std::vector<float> theta;
};

/// The lists of x (n × d) against centroids (k × d) under prices (k values); join_limit: k values or empty
/// (no joiners). One GEMM per block of rows (block_rows × k floats held at a time), the same distances as
/// l2_sqr_distances.
CandidateLists make_candidate_lists(MatrixView<const float> x, MatrixView<const float> centroids,
                                    const std::vector<double>& prices, size_t width,
                                    const std::vector<float>& join_limit = {}, size_t block_rows = 8192);

/// Lists held elsewhere (numpy arrays on a Dask worker), in CandidateLists' layout (theta is not needed to
/// scan them).
struct CandidateListsView {
  size_t rows = 0, k = 0;
  const int64_t* offsets = nullptr;
  const int32_t* cluster = nullptr;
  const float* cost = nullptr;
};

struct ListScanParams {
  size_t top = 128;  ///< per cluster, how many of the smallest gaps and joining costs to keep
  /// Boundary rows: gap ≤ margin, or gap ≤ own_margin[its cluster], or a joining cost to some listed j at
  /// most join_margin[j] (own_margin, join_margin: k values, or nullptr). Unlisted clusters are not looked at:
  /// a row they would move is found by the certificate check, not here.
  double margin = -std::numeric_limits<double>::infinity();
  const double* own_margin = nullptr;
  const double* join_margin = nullptr;
};

/// What one pass over the lists under prices p finds. Every row sits at its cheapest listed cluster (ties to
/// the lower cluster). k × top tables are ascending, padded with +inf (rows: −1).
struct ListScan {
  size_t k = 0, top = 0;
  std::vector<int64_t> counts;  ///< rows per cluster
  std::vector<int64_t> fixed;   ///< of them, rows that are not boundary rows
  std::vector<double> gaps;     ///< members' smallest gaps to their second listed cluster
  std::vector<double> joins;    ///< non-members' smallest joining costs (priced cost − their cheapest)
  std::vector<int64_t> join_row;      ///< the joiners' rows
  std::vector<float> join_cost;       ///< their distance to the cluster
  std::vector<int32_t> join_own;      ///< their own (cheapest) cluster
  std::vector<float> join_own_cost;   ///< their distance to it
  std::vector<int64_t> boundary;      ///< boundary rows, ascending
};

ListScan scan_candidate_lists(const CandidateListsView& lists, const std::vector<double>& prices,
                              const ListScanParams& params);

}  // namespace tessera
