// One vector-quantization level of RQ-VAE (van den Oord et al., "Neural Discrete Representation
// Learning", NeurIPS 2017; residual use: Lee et al., "Autoregressive Image Generation using Residual
// Quantization", CVPR 2022): the nearest codeword by squared L2 distance, the straight-through estimator, and
// the codebook + commitment loss. Parameter name `embedding.weight` (K × e_dim) as MiniOneRec's VectorQuantizer.
// With a Sinkhorn ε > 0, the training-mode forward pass assigns a batch's codes by Sinkhorn (sinkhorn.h)
// instead of argmin, as MiniOneRec's sk_epsilon does.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>

#include <cstdint>

#include "tessera/core/matrix.h"

namespace tessera::neural {

struct VQOutput {
  torch::Tensor quantized;  ///< B × e_dim: the codewords' values, with the gradient of z (straight through)
  torch::Tensor loss;       ///< scalar: codebook_loss + β · commitment_loss
  torch::Tensor codebook_loss;    ///< scalar: mse(e, sg(z)), mean over B · e_dim (moves the codebook)
  torch::Tensor commitment_loss;  ///< scalar: mse(sg(e), z) (moves the input)
  torch::Tensor codes;      ///< B int64
};

class VectorQuantizerImpl : public torch::nn::Module {
 public:
  /// codebook_size K ≥ 1, e_dim ≥ 1, beta ≥ 0. The codebook starts U(−1/K, 1/K) (MiniOneRec's), drawn from
  /// tessera's generator with `seed`; init_codebook() or set_codebook() replace it. sk_epsilon: Sinkhorn's ε
  /// while training (≤ 0: argmin; NaN or ±∞: InvalidArgument), sk_iters ≥ 1 when sk_epsilon > 0.
  VectorQuantizerImpl(int64_t codebook_size, int64_t e_dim, double beta, uint64_t seed, double sk_epsilon = 0,
                      int sk_iters = 50);

  /// z: B × e_dim. Codes: argmin_k ‖z_i − e_k‖², computed as ‖z_i‖² + ‖e_k‖² − 2 z_i·e_k (ties: the lowest k);
  /// in training mode with sk_epsilon > 0, sinkhorn_codes(those distances, sk_epsilon, sk_iters) instead.
  /// quantized = sg(e) + (z − sg(z)): the value is exactly the codeword (so the next level's residual
  /// z − quantized is exactly z − e, as RQ-KMeans computes it), and the gradients are MiniOneRec's
  /// z + sg(e − z): identity to z, none to e. Only the loss's first term reaches the codebook.
  VQOutput forward(const torch::Tensor& z) { return forward(z, true); }
  /// The same; without_commitment (with_commitment = false) leaves commitment_loss and loss undefined, for a
  /// caller that replaces the commitment term (ResidualVectorQuantizer's partial-sum commitment).
  VQOutput forward(const torch::Tensor& z, bool with_commitment);

  /// The nearest codewords' indices (argmin, never Sinkhorn, in either mode; no gradient). z: B × e_dim → B int64.
  torch::Tensor assign(const torch::Tensor& z) const;

  /// Replace the codebook (K × e_dim, finite values); InvalidArgument naming the shape otherwise.
  void set_codebook(MatrixView<const float> codebook);

  int64_t codebook_size() const { return codebook_size_; }
  int64_t e_dim() const { return e_dim_; }
  double beta() const { return beta_; }
  double sk_epsilon() const { return sk_epsilon_; }
  int sk_iters() const { return sk_iters_; }
  const torch::Tensor& codebook() const { return embedding->weight; }

  torch::nn::Embedding embedding{nullptr};

 private:
  int64_t codebook_size_, e_dim_;
  double beta_;
  double sk_epsilon_;
  int sk_iters_;
};
TORCH_MODULE(VectorQuantizer);

}  // namespace tessera::neural
