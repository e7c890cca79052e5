// Exact k-means in one dimension. Sorted, the optimal clusters are contiguous runs, so dynamic programming
// over (clusters used, values covered) finds the global optimum; the best split point is monotone in the
// number of values covered, which lets each DP layer be filled by divide and conquer in O(n log n).
// Used to learn non-uniform scalar codes (the cqint norm encodings of additive quantizers).
// Wang & Song, "Ckmeans.1d.dp: Optimal k-means clustering in one dimension by dynamic programming",
// The R Journal 2011; Grønlund et al., "Fast exact k-means, k-medians and Bregman divergence clustering
// in 1D", arXiv:1701.07204.
#pragma once
#include <cstddef>
#include <vector>

namespace tessera {

struct KMeans1DResult {
  std::vector<double> centroids;  ///< k cluster means, ascending
  std::vector<size_t> sizes;      ///< k cluster sizes (each ≥ 1)
  double inertia = 0;             ///< Σ (x_i − its centroid)²
};

/// The partition of x (n finite values) into k non-empty clusters with the least inertia. 1 ≤ k ≤ n.
/// Deterministic: the result depends only on the multiset of values, not on their order.
KMeans1DResult kmeans1d(size_t n, const float* x, size_t k);

}  // namespace tessera
