// Sinkhorn balanced assignment of one RQ-VAE level (MiniOneRec's / LC-Rec's sinkhorn_algorithm, after
// Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013, as SwAV uses it):
// a batch's B × K distance matrix becomes a transport plan Q whose K columns carry equal mass, and each row's
// code is argmax_k Q_ik, so the codes of a batch are spread over the codebook more evenly than argmin.
//
// MiniOneRec computes Q = exp(−d'/ε) in the plain domain, which overflows float64 for ε below about 0.0014
// (NaN codes). Here the same iterations run on log Q (log-sum-exp row and column normalisation): the same Q
// where the plain formula does not overflow, and finite values for any ε > 0. No gradient anywhere.
#pragma once
#include <torch/types.h>

namespace tessera::neural {

/// MiniOneRec's center_distance_for_constraint, in float64: with m = (max + min) / 2 and a = max − m + 1e-5
/// over the whole matrix, d' = (d − m) / a ∈ [−1, 1]. d: B × K (any floating type) → B × K float64.
torch::Tensor sinkhorn_normalize(const torch::Tensor& distances);

/// log Q of Sinkhorn(d', ε, iters) (float64, B × K), d' normalised distances (sinkhorn_normalize):
///   Q = exp(−d'/ε); Q /= ΣQ; repeat iters: Q_ik /= Σ_k Q_ik, Q /= B; Q_ik /= Σ_i Q_ik, Q /= K; Q *= B,
/// computed in scaling form (Q = diag(u) G diag(v), two matrix-vector products per iteration) where float64
/// holds G = exp(−(d' − min d')/ε) without zeros (ε ≥ 2/700) and u, v stay finite, else on log Q with
/// log-sum-exp. Ending on the column step, every column of Q sums to B/K (up to rounding) and the rows to about
/// 1. ε > 0 and finite, iters ≥ 0; InvalidArgument otherwise.
torch::Tensor sinkhorn_log(const torch::Tensor& normalized, double epsilon, int iters);

/// Q = exp(sinkhorn_log(normalized, epsilon, iters)).
torch::Tensor sinkhorn(const torch::Tensor& normalized, double epsilon, int iters);

/// The balanced codes of a level: argmax_k Q_ik of Sinkhorn(sinkhorn_normalize(distances), ε, iters) (taken on
/// log Q, so also where Q underflows to 0; ties: the lowest k). distances: B × K → B int64.
torch::Tensor sinkhorn_codes(const torch::Tensor& distances, double epsilon, int iters);

}  // namespace tessera::neural
