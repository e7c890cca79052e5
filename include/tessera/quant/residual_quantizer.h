// Residual quantization (RQ, and RQ-KMeans for semantic IDs): level m quantizes what levels 0..m−1 left
// over, x ≈ C_0[i_0] + C_1[i_1] + …, each level's codebook learned by k-means on the residuals — or by
// size-constrained (balanced) k-means, so every code of a level is used by about n/K_m items.
// Juang & Gray, "Multiple stage vector quantization for speech coding", ICASSP 1982;
// Chen, Guan & Wang, "Approximate Nearest Neighbor Search by Residual Vector Quantization", Sensors 2010;
// RQ-KMeans semantic IDs as in OneRec / MiniOneRec (balanced levels through size-constrained k-means).
#pragma once
#include <optional>
#include <vector>

#include "tessera/cluster/kmeans.h"
#include "tessera/quant/additive_quantizer.h"

namespace tessera {

struct ResidualQuantizerParams {
  int max_iter = 100;
  double tol = 1e-4;
  int n_init = 3;
  KMeansInit init = KMeansInit::automatic;
  /// Level m trains with seed derive_seed(seed, m).
  uint64_t seed = 42;
  /// Train levels with size-constrained k-means.
  bool balance = false;
  /// Size bounds for every level (default per level: default_size_bounds(n, K_m)).
  std::optional<size_t> size_min, size_max;
  /// Train the codebooks on this many sampled rows (0: all rows); fit() then assigns every row.
  size_t train_sample = 0;
  /// Large inputs start each level's k-means on a sample (KMeansParams::sample_warm_start).
  bool sample_warm_start = true;
  /// Beam width of encode() (faiss's max_beam_size, same default): at each level the max_beam_size best
  /// partial encodings of a vector are extended by every codeword of the next level; 1 is greedy. At least 1.
  /// Training and fit()'s codes stay level by level whatever it is (k-means or balanced assignment per level),
  /// and semantic IDs are encoded greedily (encode_greedy), so a token prefix is always its coarse cluster.
  int max_beam_size = 5;
  /// Balanced assignment of all rows (assign_balanced, and fit() after a training sample) holds the n × K_m
  /// float distances of a level (BalancedAssigner) while they take at most this many bytes, and above it uses
  /// BoundedBalancedAssigner (the same optimum in memory O(n·c), distances computed block by block; its first
  /// prices from an exact solve on min(n/2, 2^26/K) rows). 0: always the bounded one. Measured on 1M × 128,
  /// K = 256, cold (no prices to start from): dense 4.4 s and 1 GB of distances, bounded 43–54 s; so the
  /// dense one while it fits this budget (1 GiB: up to 1,048,576 rows at K = 256).
  size_t balanced_dense_max_bytes = size_t(1) << 30;
  ProgressFn progress;
};

/// What training did at one level.
struct LevelReport {
  size_t codebook_size = 0;
  double mse_before = 0;  ///< residual MSE entering the level (over the rows fit() assigned)
  double mse_after = 0;   ///< residual MSE after the level
  double seconds = 0;
  int iterations = 0;
  size_t warm_start_rows = 0;  ///< k-means restarts ran on a sample of this many rows (0: on all rows)
  SizeBounds bounds;      ///< size bounds used (balanced levels; {0, n} otherwise)
};

class ResidualQuantizer : public AdditiveQuantizer {
 public:
  ResidualQuantizer(size_t d, std::vector<size_t> codebook_sizes, ResidualQuantizerParams params = {},
                    SearchType search_type = SearchType::ST_decompress);
  /// faiss's shape: M levels of 2^nbits codewords (nbits in 1..16).
  ResidualQuantizer(size_t d, size_t M, size_t nbits, SearchType search_type = SearchType::ST_decompress,
                    ResidualQuantizerParams params = {});

  std::string type_name() const override { return "residual"; }
  const ResidualQuantizerParams& params() const { return params_; }
  ResidualQuantizerParams& params() { return params_; }

  void train(MatrixView<const float> x) override { fit(x, nullptr); }

  /// Train on x (n × d) and give every row its codes (codes: n × M, may be nullptr). The norm encoder of
  /// the search type learns from the training rows' reconstructions (as faiss). With balance, every
  /// level's code sizes over the n rows lie within the level's bounds — also when training used a
  /// sample, because then all rows are assigned by assign_balanced().
  std::vector<LevelReport> fit(MatrixView<const float> x, int32_t* codes);

  /// Codes by beam search with params().max_beam_size (faiss's compute_codes). x: n × d, codes: n × M.
  void encode(MatrixView<const float> x, int32_t* codes) const override;

  /// Beam-search encoding: at each level keep the beam_size partial encodings of each vector with the
  /// smallest squared error ‖x − Σ codewords‖², extend each by every codeword of the next level, and at the
  /// end take the best (ties: the lower index); then, per vector, the greedy codes where they are better
  /// (a narrow beam can lose the greedy path; faiss's does), so a beam is never worse than greedy.
  /// beam_size ≥ Π_{m<M−1} K_m is exhaustive. beam_size 1 is encode_greedy(). Cost per vector: about
  /// (beam_size + 1) × Σ_m K_m × d multiply-adds. x: n × d, codes: n × M; the same codes for any thread count.
  void encode_beam(MatrixView<const float> x, int32_t* codes, int beam_size) const;

  /// Greedy residual encoding: at each level the nearest codeword to the residual (ties: the lowest index),
  /// the codes fit() gives its unbalanced training rows. x: n × d, codes: n × M.
  void encode_greedy(MatrixView<const float> x, int32_t* codes) const { encode_beam(x, codes, 1); }

  /// Size-constrained encoding with the trained codebooks: at each level the assignment of all n
  /// residuals that minimises the squared error with code sizes within `bounds[m]` (default bounds for
  /// n when empty). codes: n × M. reports (optional): per-level MSE.
  void assign_balanced(MatrixView<const float> x, int32_t* codes, const std::vector<SizeBounds>& bounds = {},
                       std::vector<LevelReport>* reports = nullptr) const {
    assign_balanced_from(0, x, codes, bounds, reports);
  }
  /// assign_balanced for levels first_level … M−1 only: the levels before keep the codes given in `codes`
  /// (e.g. greedy ones), and the later levels assign what they leave. bounds: one per level (those of the kept
  /// levels are unused) or empty; reports: per-level MSE of the assigned levels.
  void assign_balanced_from(size_t first_level, MatrixView<const float> x, int32_t* codes,
                            const std::vector<SizeBounds>& bounds = {},
                            std::vector<LevelReport>* reports = nullptr) const;

  /// assign_balanced_from on residuals the caller holds, in place (no copy of the input): r (n × d) is what
  /// enters level first_level (the input minus the codewords of the levels before it, as codes give them)
  /// and leaves as the input minus the codewords of all M levels. Codes and reports as assign_balanced_from,
  /// which is this on a copy of x. codes: n × M.
  void assign_balanced_residuals(size_t first_level, MatrixView<float> r, int32_t* codes,
                                 const std::vector<SizeBounds>& bounds = {},
                                 std::vector<LevelReport>* reports = nullptr) const;

  /// The bounds level m uses for n rows under these params.
  SizeBounds level_bounds(size_t m, size_t n) const;

 private:
  /// Per vector, the greedy codes where they reconstruct x better than codes (n × M, in place).
  void keep_greedy_where_better(MatrixView<const float> x, int32_t* codes) const;

  ResidualQuantizerParams params_;
};

}  // namespace tessera
