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

namespace {

// The iterations on log Q with log-sum-exp: finite for any ε > 0, two exp passes over B × K per iteration.
torch::Tensor sinkhorn_log_domain(const torch::Tensor& normalized, double epsilon, int iters) {
  const int64_t b = normalized.size(0), k = normalized.size(1);
  torch::Tensor log_q = normalized.detach().to(torch::kFloat64) * (-1.0 / epsilon);  // log exp(−d'/ε)
  const double log_b = std::log(double(b)), log_k = std::log(double(k));
  log_q -= torch::logsumexp(log_q.reshape({-1}), 0);  // Q /= ΣQ
  for (int it = 0; it < iters; ++it) {
    log_q -= torch::logsumexp(log_q, 1, /*keepdim=*/true) + log_b;  // rows sum to 1/B
    log_q -= torch::logsumexp(log_q, 0, /*keepdim=*/true) + log_k;  // columns sum to 1/K
  }
  return log_q += log_b;  // Q *= B: columns B/K, rows ≈ 1
}

// The same iterations in scaling form: Q = diag(u) G diag(v) with G = exp(−(d' − min d')/ε) computed once, the row
// step u = 1 / (B · G v), the column step v = 1 / (K · Gᵀ u) — two matrix-vector products per iteration instead
// of two passes of exp (the initial Q /= ΣQ and the constant shift only scale u). G ∈ [e^{−2/ε}, 1] has no zero
// for ε ≥ 2/700; undefined (empty) when some u or v leaves float64's range.
torch::Tensor sinkhorn_scaling(const torch::Tensor& normalized, double epsilon, int iters) {
  const int64_t b = normalized.size(0), k = normalized.size(1);
  const torch::Tensor d = normalized.detach().to(torch::kFloat64);
  const torch::Tensor log_g = (d - d.min()) * (-1.0 / epsilon);
  const torch::Tensor g = log_g.exp();
  torch::Tensor u, v = torch::ones({k}, torch::kFloat64);
  for (int it = 0; it < iters; ++it) {
    u = torch::mv(g, v).mul_(double(b)).reciprocal_();
    v = torch::mv(g.t(), u).mul_(double(k)).reciprocal_();
  }
  if (!torch::isfinite(u).all().item<bool>() || !torch::isfinite(v).all().item<bool>() ||
      !(u > 0).all().item<bool>() || !(v > 0).all().item<bool>())
    return {};
  return log_g + u.log().unsqueeze(1) + v.log().unsqueeze(0) + std::log(double(b));
}

}  // namespace

torch::Tensor sinkhorn_log(const torch::Tensor& normalized, double epsilon, int iters) {
  TESSERA_CHECK_ARG(normalized.dim() == 2, "Sinkhorn needs a B × K matrix, got " << normalized.sizes());
  TESSERA_CHECK_ARG(epsilon > 0 && std::isfinite(epsilon), "Sinkhorn's ε must be finite and > 0, got " << epsilon);
  TESSERA_CHECK_ARG(iters >= 0, "Sinkhorn's iteration count must be ≥ 0, got " << iters);
  torch::NoGradGuard no_grad;
  if (normalized.numel() == 0) return normalized.detach().to(torch::kFloat64);
  if (iters > 0 && epsilon >= 2.0 / 700.0) {
    torch::Tensor q = sinkhorn_scaling(normalized, epsilon, iters);
    if (q.defined()) return q;
  }
  return sinkhorn_log_domain(normalized, epsilon, iters);
}

torch::Tensor sinkhorn(const torch::Tensor& normalized, double epsilon, int iters) {
  return sinkhorn_log(normalized, epsilon, iters).exp_();
}

torch::Tensor sinkhorn_codes(const torch::Tensor& distances, double epsilon, int iters) {
  return sinkhorn_log(sinkhorn_normalize(distances), epsilon, iters).argmax(1);
}

}  // namespace tessera::neural
