#include "tessera/neural/rqvae.h"

#include <torch/nn/functional/loss.h>

#include <algorithm>

#include "neural/tensor_convert.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/core/error.h"
#include "tessera/core/rng.h"

namespace tessera::neural {

namespace {
MLPConfig encoder_config(const RQVAEConfig& c) {
  MLPConfig m{{c.in_dim}, c.dropout, c.batch_norm};
  m.dims.insert(m.dims.end(), c.layers.begin(), c.layers.end());
  m.dims.push_back(c.e_dim);
  return m;
}
}  // namespace

RQVAEImpl::RQVAEImpl(RQVAEConfig config) : config_(std::move(config)) {
  TESSERA_CHECK_ARG(config_.in_dim >= 1, "in_dim must be at least 1, got " << config_.in_dim);
  TESSERA_CHECK_ARG(config_.e_dim >= 1, "e_dim must be at least 1, got " << config_.e_dim);
  TESSERA_CHECK_ARG(config_.quant_weight >= 0 && std::isfinite(config_.quant_weight),
                    "quant_weight must be finite and ≥ 0, got " << config_.quant_weight);
  TESSERA_CHECK_ARG(!config_.residual_encoder || config_.e_dim == config_.in_dim,
                    "a residual encoder (RQ-KMeans+: z = x + MLP(x)) needs e_dim equal to the input dimension "
                        << config_.in_dim << ", got e_dim = " << config_.e_dim);
  TESSERA_CHECK_ARG(!config_.residual_decoder || config_.e_dim == config_.in_dim,
                    "a residual decoder (x̂ = q + MLP(q)) needs e_dim equal to the input dimension "
                        << config_.in_dim << ", got e_dim = " << config_.e_dim);
  const std::vector<double>& eps = config_.sk_epsilons;
  TESSERA_CHECK_ARG(eps.empty() || eps.size() == config_.codebook_sizes.size(),
                    "sk_epsilons has " << eps.size() << " entries but codebook_sizes has "
                                       << config_.codebook_sizes.size()
                                       << " levels: give one Sinkhorn ε per level (0: argmin), or none");
  for (size_t l = 0; l < eps.size(); ++l)
    TESSERA_CHECK_ARG(std::isfinite(eps[l]),
                      "sk_epsilons[" << l << "] must be finite (≤ 0 for argmin codes), got " << eps[l]);
  TESSERA_CHECK_ARG(std::none_of(eps.begin(), eps.end(), [](double e) { return e > 0; }) || config_.sk_iters >= 1,
                    "sk_iters must be at least 1 when a Sinkhorn ε is > 0, got " << config_.sk_iters);
  const MLPConfig enc = encoder_config(config_);
  MLPConfig dec = enc;
  std::reverse(dec.dims.begin(), dec.dims.end());
  encoder_mlp_ = MLP(enc, derive_seed(config_.seed, 0));
  if (config_.residual_encoder)
    register_module("encoder", ResidualMLP(encoder_mlp_));
  else
    register_module("encoder", encoder_mlp_);
  rq_ = register_module("rq", ResidualVectorQuantizer(config_.codebook_sizes, config_.e_dim, config_.beta,
                                                      derive_seed(config_.seed, 1), config_.sk_epsilons,
                                                      config_.sk_iters, config_.partial_sum_commitment));
  decoder_ = MLP(dec, derive_seed(config_.seed, 2));
  if (config_.residual_decoder) {
    torch::NoGradGuard no_grad;
    torch::nn::Linear last = decoder_->linears().back();
    last->weight.zero_();
    last->bias.zero_();
    register_module("decoder", ResidualMLP(decoder_));
  } else {
    register_module("decoder", decoder_);
  }
}

torch::Tensor RQVAEImpl::encode(const torch::Tensor& x) {
  TESSERA_CHECK_ARG(x.dim() == 2 && x.size(1) == config_.in_dim,
                    "RQ-VAE input must be B × " << config_.in_dim << ", got " << x.sizes());
  return config_.residual_encoder ? encoder_mlp_->forward_residual(x) : encoder_mlp_->forward(x);
}

torch::Tensor RQVAEImpl::decode(const torch::Tensor& q) {
  return config_.residual_decoder ? decoder_->forward_residual(q) : decoder_->forward(q);
}

RQVAEOutput RQVAEImpl::forward(const torch::Tensor& x) {
  RQOutput q = rq_->forward(encode(x));
  return {decode(q.quantized), q.loss, q.codes};
}

RQVAELoss RQVAEImpl::loss(const RQVAEOutput& out, const torch::Tensor& x) const {
  RQVAELoss l;
  l.reconstruction = torch::nn::functional::mse_loss(out.reconstruction, x);
  l.quantization = out.rq_loss;
  l.total = l.reconstruction + config_.quant_weight * l.quantization;
  return l;
}

torch::Tensor RQVAEImpl::codes(const torch::Tensor& x) {
  const bool was_training = is_training();
  eval();
  torch::Tensor c;
  try {
    torch::NoGradGuard no_grad;
    c = rq_->assign(encode(x));
  } catch (...) {
    train(was_training);
    throw;
  }
  train(was_training);
  return c;
}

ResidualMLPImpl::ResidualMLPImpl(MLP mlp) : mlp_(std::move(mlp)) {
  const MLPConfig& c = mlp_->config();
  TESSERA_CHECK_ARG(c.dims.front() == c.dims.back(), "a residual MLP must map a dimension to itself, got "
                                                         << c.dims.front() << " → " << c.dims.back());
  register_module("mlp", mlp_);
}

void init_codebooks_kmeans(RQVAEImpl& model, MatrixView<const float> x, const CodebookInitParams& p) {
  const RQVAEConfig& c = model.config();
  TESSERA_CHECK_ARG(int64_t(x.cols) == c.in_dim, "dimension mismatch: data has " << x.cols
                                                                                 << " columns, the model " << c.in_dim);
  check_finite(x, "data");
  const int64_t k_max = *std::max_element(c.codebook_sizes.begin(), c.codebook_sizes.end());
  TESSERA_CHECK_ARG(x.rows >= size_t(k_max), "k-means initialisation needs at least as many rows as codewords: "
                                                 << x.rows << " rows, codebook size " << k_max);
  const size_t want = std::max(p.rows_per_centroid * size_t(k_max), p.sample);
  std::vector<size_t> rows;
  if (want < x.rows) rows = sample_rows(x.rows, want, derive_seed(p.seed, 0));
  const size_t n = rows.empty() ? x.rows : rows.size();

  // The sample's latents z (n × e_dim), encoded in batches in evaluation mode.
  const bool was_training = model.is_training();
  model.eval();
  FloatMatrix r(n, size_t(c.e_dim));
  {
    torch::NoGradGuard no_grad;
    const size_t bs = std::max<size_t>(1, p.batch_size);
    FloatMatrix batch(std::min(bs, n), x.cols);
    for (size_t b0 = 0; b0 < n; b0 += bs) {
      const size_t nb = std::min(bs, n - b0);
      for (size_t i = 0; i < nb; ++i) {
        const float* src = x.row(rows.empty() ? b0 + i : rows[b0 + i]);
        std::copy(src, src + x.cols, batch.row(i));
      }
      const torch::Tensor z = model.encode(detail::tensor_from(batch.view().rows_slice(0, nb))).contiguous();
      std::copy(z.data_ptr<float>(), z.data_ptr<float>() + z.numel(), r.row(b0));
    }
  }
  model.train(was_training);

  for (size_t l = 0; l < c.codebook_sizes.size(); ++l) {
    KMeansParams kp;
    kp.k = size_t(c.codebook_sizes[l]);
    kp.max_iter = p.max_iter;
    kp.n_init = p.n_init;
    kp.seed = derive_seed(p.seed, l + 1);
    const KMeansResult km = kmeans(r.view(), kp);
    model.rq()->level(l)->set_codebook(km.centroids.view());
    for (size_t i = 0; i < n; ++i) {
      const float* ci = km.centroids.row(size_t(km.assignment[i]));
      float* ri = r.row(i);
      for (size_t j = 0; j < r.cols(); ++j) ri[j] -= ci[j];
    }
  }
}

}  // namespace tessera::neural
