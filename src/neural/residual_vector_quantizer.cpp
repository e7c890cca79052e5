#include "tessera/neural/residual_vector_quantizer.h"

#include <torch/nn/functional/loss.h>

#include "tessera/core/error.h"
#include "tessera/core/rng.h"

namespace tessera::neural {

ResidualVectorQuantizerImpl::ResidualVectorQuantizerImpl(std::vector<int64_t> codebook_sizes, int64_t e_dim,
                                                         double beta, uint64_t seed,
                                                         const std::vector<double>& sk_epsilons, int sk_iters,
                                                         bool partial_sum_commitment)
    : codebook_sizes_(std::move(codebook_sizes)), e_dim_(e_dim), partial_sum_commitment_(partial_sum_commitment) {
  TESSERA_CHECK_ARG(!codebook_sizes_.empty(), "a residual quantizer needs at least one level");
  TESSERA_CHECK_ARG(sk_epsilons.empty() || sk_epsilons.size() == codebook_sizes_.size(),
                    "sk_epsilons has " << sk_epsilons.size() << " entries but codebook_sizes has "
                                       << codebook_sizes_.size()
                                       << " levels: give one Sinkhorn ε per level (0: argmin), or none");
  for (size_t l = 0; l < codebook_sizes_.size(); ++l) {
    VectorQuantizer vq(codebook_sizes_[l], e_dim, beta, derive_seed(seed, l),
                       sk_epsilons.empty() ? 0.0 : sk_epsilons[l], sk_iters);
    vq_layers_->push_back(vq);
    levels_.push_back(vq);
  }
  register_module("vq_layers", vq_layers_);
}

RQOutput ResidualVectorQuantizerImpl::forward(const torch::Tensor& z) {
  RQOutput out;
  torch::Tensor r = z;
  std::vector<torch::Tensor> codes, losses;
  torch::Tensor partial_sum;  // Σ_{i≤l} e_i, without gradient
  for (VectorQuantizer& vq : levels_) {
    // With the partial-sum commitment the level's own commitment term would be computed and dropped.
    VQOutput o = vq->forward(r, !partial_sum_commitment_);
    if (partial_sum_commitment_) {
      const torch::Tensor e = o.quantized.detach();
      partial_sum = partial_sum.defined() ? partial_sum + e : e;
      o.commitment_loss = torch::nn::functional::mse_loss(partial_sum, z);
      o.loss = o.codebook_loss + vq->beta() * o.commitment_loss;
    }
    r = r - o.quantized;
    out.quantized = out.quantized.defined() ? out.quantized + o.quantized : o.quantized;
    codes.push_back(o.codes);
    losses.push_back(o.loss);
  }
  out.loss = torch::stack(losses).mean();
  out.codes = torch::stack(codes, 1);
  return out;
}

torch::Tensor ResidualVectorQuantizerImpl::assign(const torch::Tensor& z) const {
  torch::NoGradGuard no_grad;
  torch::Tensor r = z.detach();
  std::vector<torch::Tensor> codes;
  for (const VectorQuantizer& vq : levels_) {
    codes.push_back(vq->assign(r));
    r = r - vq->codebook().detach().index_select(0, codes.back());
  }
  return torch::stack(codes, 1);
}

}  // namespace tessera::neural
