// k-means (Lloyd) with k-means++, progressive-dimension or random initialisation (by default a race of the
// first two, see KMeansInit), restarts, an optional training subsample,
// empty-cluster repair and, optionally, size constraints on every cluster (balanced k-means: the
// assignment step is the exact size-constrained assignment of BalancedAssigner).
//
// k-means++: Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007
// (greedy variant with 2 + ⌊ln k⌋ local trials per centre, as scikit-learn).
// Progressive-dimension k-means: Liu, Lu & Shao, "Improved Residual Vector Quantization for
// High-dimensional Approximate Nearest Neighbor Search", AAAI 2015.
// Size-constrained k-means: Bradley, Bennett & Demiriz, "Constrained K-Means Clustering", MSR-TR-2000-65
// (the assignment step as a min-cost flow; what k-means-constrained implements).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tessera/cluster/balanced_assignment.h"
#include "tessera/core/matrix.h"
#include "tessera/core/progress.h"

namespace tessera {

/// How each restart's centres are chosen.
/// - kmeans_plus_plus: greedy k-means++ on a sample of the rows.
/// - random: k distinct rows drawn uniformly (faiss's default).
/// - progressive: progressive-dimension k-means (Liu, Lu & Shao, "Improved Residual Vector Quantization
///   for High-dimensional Approximate Nearest Neighbor Search", AAAI 2015; the default of faiss's residual
///   quantizer): k-means++ on the rows' first principal coordinate, then a few Lloyd iterations on the
///   first 2, 4, 8, ... principal coordinates, each stage starting from the last one's centres (zero in
///   the new coordinates); Lloyd on all d dimensions goes on from there. It keeps the centres spread over
///   the directions the data varies in, where k-means++ spends many on the tails of diffuse data
///   (residuals): better there, worse on data made of tight clusters.
/// - automatic (the default): for plain k-means, a race — a progressive and a k-means++ seed each run 5
///   Lloyd iterations and the lower objective goes on; for size-constrained k-means, k-means++.
enum class KMeansInit { kmeans_plus_plus, random, progressive, automatic };

/// "auto", "k-means++" (or "kmeans++"), "random", "progressive" → KMeansInit; InvalidArgument otherwise.
KMeansInit parse_kmeans_init(const std::string& name);
/// The name parse_kmeans_init reads ("auto" for automatic).
const char* kmeans_init_name(KMeansInit init);

struct KMeansParams {
  size_t k = 256;
  int max_iter = 100;
  /// Stop when the squared centroid shift Σ‖Δc‖² ≤ tol · (mean per-dimension variance of x), as scikit-learn.
  double tol = 1e-4;
  int n_init = 3;  ///< restarts; the lowest objective wins
  KMeansInit init = KMeansInit::automatic;
  uint64_t seed = 42;
  /// Train on a uniform sample of at most this many rows (0: all rows).
  size_t max_train_points = 0;
  /// From 64·k training rows on, the restarts run on a sample of min(256·k, n/2) rows and only the last
  /// quarter of the iterations (at least 4) of the best one on all rows: the early iterations, where the
  /// centroids still move far, cost a fraction, and the objective stays within about 1% of Lloyd on all
  /// rows throughout. false: every iteration on all rows.
  bool sample_warm_start = true;
  /// Size constraints: when set, every cluster's size lies within these bounds.
  std::optional<SizeBounds> size_bounds;
  /// Balanced assignments hold the n × k float distances (BalancedAssigner) while they take at most this
  /// many bytes, and above it use BoundedBalancedAssigner (the same optimum in memory O(n·c), distances
  /// computed block by block). 0: always the bounded one.
  size_t balanced_dense_max_bytes = size_t(2) << 30;
  ProgressFn progress;
  std::string progress_label = "k-means";
};

struct KMeansResult {
  FloatMatrix centroids;             ///< k × d
  std::vector<int32_t> assignment;   ///< n (for the rows the model was trained on: all rows, or the sample)
  std::vector<size_t> sample_rows;   ///< rows of x used for training when subsampled (empty: all rows)
  double objective = 0;              ///< Σ squared distance to the assigned centroid
  int iterations = 0;                ///< Lloyd iterations of the winning restart on all d dimensions (sample and
                                     ///< all rows; not the progressive init's stages nor a lost race)
  size_t warm_start_rows = 0;        ///< rows of the sample the restarts ran on (0: no sample warm start)
  int best_init = 0;                 ///< index of the winning restart
};

/// Cluster x (n × d, finite values) into p.k clusters. Deterministic for a given seed and any thread count.
KMeansResult kmeans(MatrixView<const float> x, const KMeansParams& p);

/// Initial centres (k × d) by k-means++ on x with the given seed.
/// trials: candidates drawn per centre, the best kept (greedy k-means++); 0 = scikit-learn's 2 + ln k.
FloatMatrix kmeans_plus_plus(MatrixView<const float> x, size_t k, uint64_t seed, size_t trials = 0);

/// Mean of the rows assigned to each cluster (k × d); empty clusters keep their row of `previous`.
/// counts: k output sizes. Summation in a fixed order, so results do not depend on the thread count.
void update_centroids(MatrixView<const float> x, const int32_t* assignment, size_t k, MatrixView<float> centroids,
                      std::vector<size_t>& counts);

}  // namespace tessera
