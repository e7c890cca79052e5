// The residual vector quantizer of RQ-VAE (Lee et al., "Autoregressive Image Generation using Residual
// Quantization", CVPR 2022; in TIGER: Rajput et al., "Recommender Systems with Generative Retrieval",
// NeurIPS 2023): L VectorQuantizer levels with per-level codebook sizes, level l quantizing what levels
// 0..l−1 left over. Parameter names `vq_layers.{l}.embedding.weight` (K_l × e_dim) as MiniOneRec's.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cstdint>
#include <vector>

#include "tessera/neural/vector_quantizer.h"

namespace tessera::neural {

struct RQOutput {
  torch::Tensor quantized;  ///< B × e_dim: Σ_l quantized_l
  torch::Tensor loss;       ///< scalar: the levels' VQ losses averaged over the L levels
  torch::Tensor codes;      ///< B × L int64
};

class ResidualVectorQuantizerImpl : public torch::nn::Module {
 public:
  /// codebook_sizes: K_l ≥ 1 for each of the L ≥ 1 levels; level l's codebook from derive_seed(seed, l).
  /// sk_epsilons: empty (no Sinkhorn) or one ε per level (level l's VectorQuantizer sk_epsilon; another length
  /// is an InvalidArgument naming both: MiniOneRec's zip drops levels silently); sk_iters for every level.
  /// partial_sum_commitment: level l's commitment term is mse(sg(Σ_{i≤l} e_i), z) (Lee et al.'s RQ-VAE)
  /// instead of mse(sg(e_l), r_l) (MiniOneRec's).
  ResidualVectorQuantizerImpl(std::vector<int64_t> codebook_sizes, int64_t e_dim, double beta, uint64_t seed,
                              const std::vector<double>& sk_epsilons = {}, int sk_iters = 50,
                              bool partial_sum_commitment = false);

  /// z: B × e_dim. r_0 = z, (q_l, loss_l, k_l) = VQ_l(r_l), r_{l+1} = r_l − q_l. With the straight-through
  /// estimator, r_{l+1} has no gradient: the encoder learns through level 0 only (as MiniOneRec). In training
  /// mode, levels with ε > 0 take Sinkhorn's balanced codes of the batch. loss_l = mse(e_l, sg(r_l)) +
  /// β · mse(sg(e_l), r_l), or with partial_sum_commitment mse(e_l, sg(r_l)) + β · mse(sg(Σ_{i≤l} e_i), z):
  /// the encoder is then held to every partial reconstruction, not only to the first codeword.
  RQOutput forward(const torch::Tensor& z);

  /// Greedy residual codes (argmin on every level, never Sinkhorn; no gradient): z: B × e_dim → B × L int64.
  torch::Tensor assign(const torch::Tensor& z) const;

  size_t num_levels() const { return levels_.size(); }
  VectorQuantizer level(size_t l) const { return levels_.at(l); }
  const std::vector<int64_t>& codebook_sizes() const { return codebook_sizes_; }
  int64_t e_dim() const { return e_dim_; }

 private:
  std::vector<int64_t> codebook_sizes_;
  int64_t e_dim_;
  bool partial_sum_commitment_;
  torch::nn::ModuleList vq_layers_;
  std::vector<VectorQuantizer> levels_;
};
TORCH_MODULE(ResidualVectorQuantizer);

}  // namespace tessera::neural
