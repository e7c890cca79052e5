// Quality figures of a set of semantic IDs: per-level code usage (utilisation, cluster sizes, entropy),
// reconstruction error, collisions and — given a category per item — how semantic the prefixes are
// (purity of each prefix group's majority label, against the purity of randomly permuted labels).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/sid/collisions.h"

namespace tessera {

struct LevelMetrics {
  size_t level = 0;
  size_t codebook_size = 0;
  size_t unique_codes = 0;
  double utilisation = 0;    ///< unique_codes / codebook_size
  size_t min_cluster_size = 0;
  size_t max_cluster_size = 0;
  double entropy_bits = 0;   ///< entropy of the code distribution
  double perplexity = 0;     ///< 2^entropy
  double mse_before = 0, mse_after = 0, seconds = 0;
  std::optional<int> iterations;       ///< Lloyd iterations (training only)
  size_t warm_start_rows = 0;          ///< k-means restarts ran on a sample of this many rows (0: all rows)
  size_t size_lo = 0, size_hi = 0;    ///< bounds used (balanced)
  std::optional<double> purity;        ///< share of items carrying their prefix group's majority label
  std::optional<double> purity_chance; ///< the same with labels randomly permuted
};

struct SidMetrics {
  size_t n_items = 0, dim = 0;
  std::vector<size_t> codebook_sizes;
  std::string balance = "none", dedup = "append";
  double seconds_total = 0;
  double mse_before = 0;          ///< mean square of the input (what "no code" would cost)
  double mse = 0;                 ///< final reconstruction MSE of the codes written to codes.npy
  /// A neural model's reconstruction MSE of the input by its decoder (mse is then its latents' quantization
  /// error); written to metrics.json when set.
  std::optional<double> recon_mse;
  CollisionStats before;          ///< collisions of the raw codes
  size_t final_collisions = 0;    ///< items still sharing an ID after resolution
  size_t max_id_length = 0;
  size_t reassigned_items = 0;    ///< reassign: items moved at the last level
  double mse_after_resolution = 0;///< reassign: MSE with the moved codes
  /// Peak resident memory of the process (peak_rss_bytes()) when the front end records it; written when > 0.
  size_t peak_rss_bytes = 0;
  std::vector<LevelMetrics> levels;

  std::string to_json() const;
};

/// Per-level code usage of codes (n × L) with codebook sizes K_l.
std::vector<LevelMetrics> code_usage(MatrixView<const int32_t> codes, const std::vector<size_t>& codebook_sizes);

/// Purity of the prefix groups of depth `depth` (1..L): Σ_groups (majority label count) / n.
/// labels: n category indices.
double prefix_purity(MatrixView<const int32_t> codes, size_t depth, const std::vector<int32_t>& labels);

/// Adds purity and chance purity (mean over `trials` seeded label permutations) to every level.
void add_purity(std::vector<LevelMetrics>& levels, MatrixView<const int32_t> codes,
                const std::vector<std::string>& labels, uint64_t seed = 42, int trials = 3);

}  // namespace tessera
