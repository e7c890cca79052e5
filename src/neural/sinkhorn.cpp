#include "tessera/neural/sinkhorn.h"

#include <torch/utils.h>

#include <cmath>

#include "tessera/core/error.h"

namespace tessera::neural {

torch::Tensor sinkhorn_normalize(const torch::Tensor& distances) {
  TESSERA_CHECK_ARG(distances.dim() == 2, "Sinkhorn needs a B × K distance matrix, got " << distances.sizes());
  torch::NoGradGuard no_grad;
  const torch::Tensor d = distances.detach().to(torch::kFloat64);
  if (d.numel() == 0) return d.clone();
  const double hi = d.max().item<double>(), lo = d.min().item<double>();
  const double middle = (hi + lo) / 2;
  const double amplitude = hi - middle + 1e-5;
  return (d - middle) / amplitude;
}

torch::Tensor sinkhorn_log(const torch::Tensor& normalized, double epsilon, int iters) {
  TESSERA_CHECK_ARG(normalized.dim() == 2, "Sinkhorn needs a B × K matrix, got " << normalized.sizes());
  TESSERA_CHECK_ARG(epsilon > 0 && std::isfinite(epsilon), "Sinkhorn's ε must be finite and > 0, got " << epsilon);
  TESSERA_CHECK_ARG(iters >= 0, "Sinkhorn's iteration count must be ≥ 0, got " << iters);
  torch::NoGradGuard no_grad;
  const int64_t b = normalized.size(0), k = normalized.size(1);
  torch::Tensor log_q = normalized.detach().to(torch::kFloat64) * (-1.0 / epsilon);  // log exp(−d'/ε)
  if (log_q.numel() == 0) return log_q;
  const double log_b = std::log(double(b)), log_k = std::log(double(k));
  log_q -= torch::logsumexp(log_q.reshape({-1}), 0);  // Q /= ΣQ
  for (int it = 0; it < iters; ++it) {
    log_q -= torch::logsumexp(log_q, 1, /*keepdim=*/true) + log_b;  // rows sum to 1/B
    log_q -= torch::logsumexp(log_q, 0, /*keepdim=*/true) + log_k;  // columns sum to 1/K
  }
  return log_q += log_b;  // Q *= B: columns B/K, rows ≈ 1
}

torch::Tensor sinkhorn(const torch::Tensor& normalized, double epsilon, int iters) {
  return sinkhorn_log(normalized, epsilon, iters).exp_();
}

torch::Tensor sinkhorn_codes(const torch::Tensor& distances, double epsilon, int iters) {
  return sinkhorn_log(sinkhorn_normalize(distances), epsilon, iters).argmax(1);
}

}  // namespace tessera::neural
