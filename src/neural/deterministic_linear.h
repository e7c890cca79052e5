// y = x·Wᵀ + b with its gradients on tessera's GEMMs (core/blas.h): fixed chunks of 512 output rows split over
// OpenMP, OpenBLAS single-threaded in each. libtorch's own Linear calls one multi-threaded OpenBLAS GEMM,
// whose sums depend on the thread count; with these, training uses every thread and still gives the same
// weights at any thread count (tessera's convention).
#pragma once
#include <torch/types.h>

namespace tessera::neural::detail {

/// x: B × in, weight: out × in, bias: out (may be undefined) → B × out, differentiable in all three.
torch::Tensor deterministic_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace tessera::neural::detail
