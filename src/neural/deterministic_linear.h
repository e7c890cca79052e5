// y = x·Wᵀ + b with its gradients on tessera's GEMMs (core/blas.h): fixed chunks of 512 output rows split over
// OpenMP, OpenBLAS single-threaded in each. libtorch's own Linear calls one multi-threaded OpenBLAS GEMM,
// whose sums depend on the thread count; with these, training uses every thread and still gives the same
// weights at any thread count (tessera's convention).
//
// The element-wise work around the product is fused into it, done on each block of rows while it is still in
// cache: the bias, an optional ReLU after it and an optional residual input added last. The values and
// gradients are bit for bit those of the unfused graph (linear, then torch::relu, then `residual + y`); only
// the separate passes over the B × out activations and their temporaries are gone.
#pragma once
#include <torch/types.h>

namespace tessera::neural::detail {

/// x: B × in, weight: out × in, bias: out (may be undefined) → B × out, differentiable in all three.
torch::Tensor deterministic_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

/// relu(x·Wᵀ + b) when `relu`, else x·Wᵀ + b, plus `residual` (B × out, may be undefined) when given:
/// residual + (x·Wᵀ + b). Differentiable in x, weight, bias and residual. `relu` and `residual` exclude each
/// other (a residual MLP ends on a Linear without activation).
torch::Tensor deterministic_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                   bool relu, const torch::Tensor& residual);

}  // namespace tessera::neural::detail
