// RQ-VAE: an MLP encoder, a residual vector quantizer and an MLP decoder, trained end to end (Lee et al.,
// "Autoregressive Image Generation using Residual Quantization", CVPR 2022; as the item tokenizer of TIGER:
// Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023). Layout, defaults and
// parameter names follow MiniOneRec's / LC-Rec's RQVAE (`encoder.mlp_layers.…`, `rq.vq_layers.{l}.embedding.
// weight`, `decoder.mlp_layers.…`), so state_dicts move between them (neural/state_dict.h).
//
// With `residual_encoder` the model is RQ-KMeans+'s (rqkmeans_plus.h): the encoder is z = x + MLP(x), its
// MLP a child `mlp` (names `encoder.mlp.mlp_layers.…`) whose last Linear starts at zero. `residual_decoder`
// does the same for the decoder: x̂ = q + MLP(q) (names `decoder.mlp.mlp_layers.…`), last Linear at zero.
#pragma once
#include <torch/nn/module.h>

#include <cstdint>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/neural/config.h"
#include "tessera/neural/mlp.h"
#include "tessera/neural/residual_vector_quantizer.h"

namespace tessera::neural {

struct RQVAEOutput {
  torch::Tensor reconstruction;  ///< B × in_dim: dec(Σ_l quantized_l)
  torch::Tensor rq_loss;         ///< scalar: VQ loss averaged over levels
  torch::Tensor codes;           ///< B × L int64
};

struct RQVAELoss {
  torch::Tensor total;           ///< reconstruction + quant_weight · quantization
  torch::Tensor reconstruction;  ///< mse(x̂, x), mean over B · in_dim
  torch::Tensor quantization;    ///< the VQ loss averaged over levels
};

class RQVAEImpl : public torch::nn::Module {
 public:
  explicit RQVAEImpl(RQVAEConfig config);

  /// x: B × in_dim.
  RQVAEOutput forward(const torch::Tensor& x);
  /// Total loss of a forward pass on x (MiniOneRec's compute_loss with loss_type mse).
  RQVAELoss loss(const RQVAEOutput& out, const torch::Tensor& x) const;
  /// z = enc(x) (or x + MLP(x)): B × in_dim → B × e_dim.
  torch::Tensor encode(const torch::Tensor& x);
  /// x̂ = dec(q) (or q + MLP(q)): B × e_dim → B × in_dim.
  torch::Tensor decode(const torch::Tensor& q);
  /// Greedy residual codes of x without gradient, in evaluation mode (batch norm's running statistics, no
  /// dropout; the module's mode is restored): B × in_dim → B × L int64. MiniOneRec's get_indices.
  torch::Tensor codes(const torch::Tensor& x);

  const RQVAEConfig& config() const { return config_; }
  MLP encoder_mlp() const { return encoder_mlp_; }
  /// The decoder's MLP (with residual_decoder, the MLP inside x̂ = q + MLP(q)).
  MLP decoder_mlp() const { return decoder_; }
  ResidualVectorQuantizer rq() const { return rq_; }

 private:
  RQVAEConfig config_;
  MLP encoder_mlp_{nullptr}, decoder_{nullptr};
  ResidualVectorQuantizer rq_{nullptr};
};
TORCH_MODULE(RQVAE);

/// y = x + mlp(x): RQ-KMeans+'s residual encoder, and the residual decoder. Child name `mlp`, as MiniOneRec's
/// encoder wrapper.
class ResidualMLPImpl : public torch::nn::Module {
 public:
  explicit ResidualMLPImpl(MLP mlp);
  torch::Tensor forward(const torch::Tensor& x) { return mlp_->forward_residual(x); }
  MLP mlp() const { return mlp_; }

 private:
  MLP mlp_;
};
TORCH_MODULE(ResidualMLP);

/// k-means initialisation of every level's codebook (MiniOneRec's kmeans_init, on a sample instead of one
/// batch, with tessera's kmeans): encode a sample of x (n × in_dim, finite) in evaluation mode, then for
/// each level l: k-means with K_l centres on the residuals, codebook ← centroids, residual −= the
/// assigned centroid. InvalidArgument when n < max_l K_l.
void init_codebooks_kmeans(RQVAEImpl& model, MatrixView<const float> x, const CodebookInitParams& p = {});

}  // namespace tessera::neural
