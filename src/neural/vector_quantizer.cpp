#include "tessera/neural/vector_quantizer.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>

#include <vector>

#include "core/blas.h"
#include "neural/tensor_convert.h"
#include "tessera/core/error.h"
#include "tessera/core/rng.h"
#include "tessera/neural/sinkhorn.h"

namespace tessera::neural {

VectorQuantizerImpl::VectorQuantizerImpl(int64_t codebook_size, int64_t e_dim, double beta, uint64_t seed,
                                         double sk_epsilon, int sk_iters)
    : codebook_size_(codebook_size), e_dim_(e_dim), beta_(beta), sk_epsilon_(sk_epsilon), sk_iters_(sk_iters) {
  ::tessera::detail::prepare_blas();  // as MLPImpl's constructor says
  TESSERA_CHECK_ARG(codebook_size >= 1, "codebook size must be at least 1, got " << codebook_size);
  TESSERA_CHECK_ARG(e_dim >= 1, "e_dim must be at least 1, got " << e_dim);
  TESSERA_CHECK_ARG(beta >= 0 && std::isfinite(beta), "beta must be finite and ≥ 0, got " << beta);
  TESSERA_CHECK_ARG(std::isfinite(sk_epsilon),
                    "Sinkhorn ε must be finite (≤ 0 for argmin codes), got " << sk_epsilon);
  TESSERA_CHECK_ARG(sk_epsilon <= 0 || sk_iters >= 1,
                    "Sinkhorn needs at least one iteration (sk_iters) when ε > 0, got " << sk_iters);
  embedding = register_module("embedding", torch::nn::Embedding(codebook_size, e_dim));
  std::vector<float> init(size_t(codebook_size * e_dim));
  Rng rng(seed);
  const double a = 1.0 / double(codebook_size);
  for (float& v : init) v = float(-a + 2 * a * (double(rng() >> 11) * 0x1.0p-53));
  torch::NoGradGuard no_grad;
  embedding->weight.copy_(torch::from_blob(init.data(), {codebook_size, e_dim}, torch::kFloat32));
}

namespace {

// sg(e) + (z − sg(z)) in one pass: the value e + (z − z), element by element as torch computes it (e itself,
// but −0 becomes +0), and the gradient to z the incoming one (the graph's AddBackward and SubBackward pass
// it on unchanged); e gets none. The same bits as the two-operation graph, without its temporaries.
class StraightThrough : public torch::autograd::Function<StraightThrough> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& e_in, const torch::Tensor& z_in) {
    const torch::Tensor e = e_in.contiguous(), z = z_in.contiguous();
    TESSERA_CHECK_ARG(e.sizes() == z.sizes() && e.scalar_type() == torch::kFloat32 &&
                          z.scalar_type() == torch::kFloat32,
                      "straight-through: codewords " << e.sizes() << " and input " << z.sizes() << " differ");
    torch::Tensor q = torch::empty_like(e);
    const float *ep = e.data_ptr<float>(), *zp = z.data_ptr<float>();
    float* qp = q.data_ptr<float>();
    at::parallel_for(0, e.numel(), 32768, [&](int64_t b, int64_t end) {  // element-wise: any split, same bits
      for (int64_t i = b; i < end; ++i) qp[i] = ep[i] + (zp[i] - zp[i]);
    });
    return q;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext*,
                                               torch::autograd::tensor_list grads) {
    return {torch::Tensor(), grads[0]};
  }
};

// z · eᵀ (B × K) on tessera's row-chunked GEMM: torch::matmul calls OpenBLAS, which tessera keeps on one
// thread, so at e_dim = 768 (RQ-KMeans+) this product ran on one thread at any thread count. Each element is
// the same dot product as in one GEMM call.
torch::Tensor dot_products(const torch::Tensor& z_in, const torch::Tensor& e_in) {
  const torch::Tensor z = z_in.contiguous(), e = e_in.contiguous();
  const int64_t b = z.size(0), k = e.size(0), d = z.size(1);
  torch::Tensor out = torch::empty({b, k}, z.options());
  ::tessera::detail::gemm_abt(size_t(b), size_t(k), size_t(d), 1.0f, z.data_ptr<float>(), size_t(d),
                              e.data_ptr<float>(), size_t(d), 0.0f, out.data_ptr<float>(), size_t(k));
  return out;
}

// B × K squared distances ‖z_i‖² + ‖e_k‖² − 2 z_i·e_k (MiniOneRec's formula).
torch::Tensor squared_distances(const torch::Tensor& z, const torch::Tensor& e) {
  return z.pow(2).sum(1, true) + e.pow(2).sum(1).unsqueeze(0) - 2 * dot_products(z, e);
}
}  // namespace

torch::Tensor VectorQuantizerImpl::assign(const torch::Tensor& z) const {
  TESSERA_CHECK_ARG(z.dim() == 2 && z.size(1) == e_dim_,
                    "vector quantizer input must be B × " << e_dim_ << ", got " << z.sizes());
  torch::NoGradGuard no_grad;
  return squared_distances(z.detach(), embedding->weight.detach()).argmin(1);
}

VQOutput VectorQuantizerImpl::forward(const torch::Tensor& z, bool with_commitment) {
  VQOutput out;
  if (is_training() && sk_epsilon_ > 0) {
    TESSERA_CHECK_ARG(z.dim() == 2 && z.size(1) == e_dim_,
                      "vector quantizer input must be B × " << e_dim_ << ", got " << z.sizes());
    torch::NoGradGuard no_grad;
    out.codes = sinkhorn_codes(squared_distances(z.detach(), embedding->weight.detach()), sk_epsilon_, sk_iters_);
  } else {
    out.codes = assign(z);
  }
  const torch::Tensor e = embedding->forward(out.codes);
  namespace F = torch::nn::functional;
  out.codebook_loss = F::mse_loss(e, z.detach());
  if (with_commitment) {
    out.commitment_loss = F::mse_loss(e.detach(), z);
    out.loss = out.codebook_loss + beta_ * out.commitment_loss;
  }
  out.quantized = StraightThrough::apply(e.detach(), z);
  return out;
}

void VectorQuantizerImpl::set_codebook(MatrixView<const float> codebook) {
  TESSERA_CHECK_ARG(int64_t(codebook.rows) == codebook_size_ && int64_t(codebook.cols) == e_dim_,
                    "codebook must be " << codebook_size_ << " × " << e_dim_ << ", got " << codebook.rows << " × "
                                        << codebook.cols);
  check_finite(codebook, "codebook");
  torch::NoGradGuard no_grad;
  embedding->weight.copy_(detail::tensor_from(codebook));
}

}  // namespace tessera::neural
