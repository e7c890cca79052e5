// LSQ / LSQ++ additive quantization: x ≈ Σ_m C_m[c_m] with the M codes chosen jointly. Encoding minimises
// ‖x − Σ_m C_m[c_m]‖² by iterated local search around iterated conditional modes (ICM); training alternates
// that encoding with a ridge least-squares codebook update, with noise on the codebooks (SR-D) or on the
// data (SR-C) that decays over the iterations like an annealing temperature.
// Martinez, Clement, Hoos & Little, "Revisiting additive quantization", ECCV 2016;
// Martinez, Zakhmi, Hoos & Little, "LSQ++: lower running time and higher recall in multi-codebook
// quantization", ECCV 2018. The surface (names, parameters, defaults) follows faiss's LocalSearchQuantizer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/progress.h"
#include "tessera/quant/additive_quantizer.h"

namespace tessera {

/// How training starts.
enum class LsqInit {
  random,    ///< uniform random codes, as faiss
  residual,  ///< codes of a greedy residual quantizer trained first (k-means per level)
  automatic  ///< residual for codebooks of more than 4 bits, random for 4 bits or fewer (docs/lsq.md)
};

/// Stochastic relaxation in training (LSQ++ §3): noise that decays as (1 − (i+1)/train_iters)^p.
enum class LsqAnnealing {
  codebooks,  ///< SR-D: N(0, (T·σ_j/M)²) added to every codeword after the update (faiss)
  data        ///< SR-C: N(0, (T·σ_j)²) added to the data before the update
};

struct LocalSearchQuantizerParams {
  size_t train_iters = 25;       ///< training iterations (update, perturb, encode)
  size_t encode_ils_iters = 16;  ///< ILS steps when encoding (compute_codes / encode)
  size_t train_ils_iters = 8;    ///< ILS steps per training iteration
  size_t icm_iters = 4;          ///< ICM sweeps per ILS step
  float p = 0.5f;                ///< temperature decay exponent
  float lambd = 1e-2f;           ///< ridge regularisation of the codebook update
  size_t chunk_size = 10000;     ///< vectors per encoding chunk (faiss name; tessera blocks finer inside)
  uint64_t random_seed = 0x12345;
  size_t nperts = 4;             ///< codes perturbed per ILS step (positions drawn with replacement, so any
                                 ///< count is valid; faiss refuses nperts > M when encoding)
  bool update_codebooks_with_double = true;
  /// Training's codebook updates: conjugate gradients started from the previous iteration's codebooks,
  /// stopped at this relative residual (‖BᵀX − (BᵀB + λI)C‖ / ‖BᵀX‖), with the exact solve as fallback, where
  /// that is estimated to be faster than the exact solve (large M·K, few training vectors);
  /// 0: the exact (Cholesky) solve every iteration, as faiss. update_codebooks() is always exact.
  double codebook_cg_tol = 1e-5;
  // Beyond faiss. On by default where the benchmark shows lower error (bench/bench_aq.py, 8 × 8 bits:
  // MSE −8% on siftsmall, −10% on bigann10k, recall@1 +6 points); random / false is faiss's behaviour.
  LsqInit init = LsqInit::automatic;
  /// Codes encode() starts its search from: greedy residual codes (at each codebook in turn, the codeword
  /// nearest to what the previous ones left) or random codes (faiss).
  bool encode_greedy_init = true;
  LsqAnnealing annealing = LsqAnnealing::codebooks;
  bool final_refit = false;      ///< one more codebook update after the last encoding of the training set
  ProgressFn progress;
};

class LocalSearchQuantizer : public AdditiveQuantizer {
 public:
  /// M codebooks of K = 2^nbits codewords (nbits in 1..16) for d-dimensional vectors (faiss's order).
  LocalSearchQuantizer(size_t d, size_t M, size_t nbits, SearchType search_type = SearchType::ST_decompress);
  LocalSearchQuantizer(size_t d, size_t M, size_t nbits, LocalSearchQuantizerParams params,
                       SearchType search_type = SearchType::ST_decompress);

  std::string type_name() const override { return "lsq"; }
  const LocalSearchQuantizerParams& params() const { return params_; }
  LocalSearchQuantizerParams& params() { return params_; }
  size_t K() const { return K_; }

  /// LSQ++ training on x (n × d); then the norm encoder of the search type, from the training
  /// reconstructions.
  void train(MatrixView<const float> x) override;
  /// codes (n × M) by ILS from random codes (seeded by random_seed: the same batch gives the same codes).
  void encode(MatrixView<const float> x, int32_t* codes) const override;

  // --- the algorithm's steps (faiss names), for tests and for users who compose their own loop ----------
  /// Ridge least-squares codebooks for fixed codes: C = (BᵀB + λI)⁻¹BᵀX. x: n × d, codes: n × M.
  void update_codebooks(MatrixView<const float> x, const int32_t* codes);
  /// ILS from the given codes (n × M, in place) with `ils_iters` steps; `seed` keys the perturbations.
  void icm_encode(int32_t* codes, MatrixView<const float> x, size_t ils_iters, uint64_t seed) const;
  /// `n_iters` ICM sweeps on codes (n × M) given unaries (faiss layout M × n × K) and binaries
  /// (M × M × K × K, compute_binary_terms).
  void icm_encode_step(int32_t* codes, const float* unaries, const float* binaries, size_t n, size_t n_iters) const;
  /// Replace nperts random positions of every code by random codewords.
  void perturb_codes(int32_t* codes, size_t n, uint64_t seed) const;
  /// Add N(0, (T·stddev_j/M)²) to every coordinate j of every codeword.
  void perturb_codebooks(float T, const std::vector<float>& stddev, uint64_t seed);
  /// binaries (M × M × K × K): 2⟨C_m1[k1], C_m2[k2]⟩.
  void compute_binary_terms(float* binaries) const;
  /// unaries (M × n × K): ‖C_m[k]‖² − 2⟨x_i, C_m[k]⟩.
  void compute_unary_terms(MatrixView<const float> x, float* unaries) const;
  /// Mean over vectors of ‖x_i − x'_i‖² (faiss's convention: per vector, not per component); objs
  /// (optional, n): each vector's squared error.
  double evaluate(const int32_t* codes, MatrixView<const float> x, float* objs = nullptr) const;

  /// Per-iteration training record: mean squared error per vector after each encoding.
  const std::vector<double>& training_errors() const { return train_errors_; }

 private:
  /// The training's codebook update: by CG from `start` (codebooks_flat() layout) when codebook_cg_tol > 0,
  /// else (or if it does not converge) update_codebooks(); the solution is also left in `start`.
  void update_codebooks_from(MatrixView<const float> x, const int32_t* codes, FloatMatrix& start);

  size_t K_;
  LocalSearchQuantizerParams params_;
  std::vector<double> train_errors_;
};

/// "random" / "residual" / "auto"; "codebooks" / "data".
LsqInit parse_lsq_init(const std::string& name);
std::string lsq_init_name(LsqInit init);
LsqAnnealing parse_lsq_annealing(const std::string& name);
std::string lsq_annealing_name(LsqAnnealing a);

}  // namespace tessera
