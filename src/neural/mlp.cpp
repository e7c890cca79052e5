#include "tessera/neural/mlp.h"

#include "neural/deterministic_linear.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>

#include <cmath>
#include <iterator>
#include <string>

#include "core/blas.h"
#include "tessera/core/error.h"
#include "tessera/core/rng.h"

namespace tessera::neural {

void init_linear_xavier_normal(torch::nn::Linear& linear, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::Tensor& w = linear->weight;
  const int64_t fan_out = w.size(0), fan_in = w.size(1);
  const double stdev = std::sqrt(2.0 / double(fan_in + fan_out));
  std::vector<float> values(size_t(fan_out * fan_in));
  Rng rng(seed);
  fill_standard_normal(values.data(), values.size(), rng);
  for (float& v : values) v = float(v * stdev);
  w.copy_(torch::from_blob(values.data(), {fan_out, fan_in}, torch::kFloat32));
  if (linear->bias.defined()) linear->bias.zero_();
}

MLPImpl::MLPImpl(MLPConfig config, uint64_t seed) : config_(std::move(config)) {
  // libtorch computes its matrix products with the same OpenBLAS as tessera, which tessera sets up on its
  // first BLAS call (kernels for the CPU, one thread: src/core/blas_setup.cpp). Done here, before any
  // model computes, so that a model's results do not depend on whether tessera's BLAS ran before.
  ::tessera::detail::prepare_blas();
  const std::vector<int64_t>& dims = config_.dims;
  TESSERA_CHECK_ARG(dims.size() >= 2, "an MLP needs at least an input and an output dimension, got "
                                          << dims.size() << " dimension(s)");
  for (size_t i = 0; i < dims.size(); ++i)
    TESSERA_CHECK_ARG(dims[i] >= 1, "MLP dimension " << i << " is " << dims[i] << ", expected at least 1");
  TESSERA_CHECK_ARG(config_.dropout >= 0 && config_.dropout < 1,
                    "dropout must lie in [0, 1), got " << config_.dropout);
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    const bool last = i + 2 == dims.size();
    mlp_layers_->push_back(torch::nn::Dropout(torch::nn::DropoutOptions(config_.dropout)));
    torch::nn::Linear linear(torch::nn::LinearOptions(dims[i], dims[i + 1]));
    init_linear_xavier_normal(linear, derive_seed(seed, i));
    mlp_layers_->push_back(linear);
    linears_.push_back(linear);
    if (!last && config_.batch_norm) mlp_layers_->push_back(torch::nn::BatchNorm1d(dims[i + 1]));
    if (!last) mlp_layers_->push_back(torch::nn::ReLU());
  }
  register_module("mlp_layers", mlp_layers_);
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) { return run(x, false); }

torch::Tensor MLPImpl::forward_residual(const torch::Tensor& x) {
  TESSERA_CHECK_ARG(config_.dims.front() == config_.dims.back(),
                    "x + MLP(x) needs an MLP that maps a dimension to itself, got " << config_.dims.front() << " → "
                                                                                     << config_.dims.back());
  return run(x, true);
}

torch::Tensor MLPImpl::run(const torch::Tensor& x, bool plus_input) {
  TESSERA_CHECK_ARG(x.dim() == 2 && x.size(1) == config_.dims.front(),
                    "MLP input must be B × " << config_.dims.front() << ", got " << x.sizes());
  // The Sequential's modules in order, its Linears on deterministic_linear (the same weights, names and
  // results at every thread count). A ReLU right after a Linear (no batch norm between) is applied inside the
  // Linear's product, and so is x + … on the last Linear: the same values and gradients, fewer passes.
  torch::Tensor h = x;
  const auto end = mlp_layers_->end();
  for (auto it = mlp_layers_->begin(); it != end; ++it) {
    if (auto* linear = it->ptr()->as<torch::nn::LinearImpl>()) {
      const auto next = std::next(it);
      const bool relu = next != end && next->ptr()->as<torch::nn::ReLUImpl>() != nullptr;
      const bool residual = plus_input && next == end;
      h = detail::deterministic_linear(h, linear->weight, linear->bias, relu, residual ? x : torch::Tensor());
      if (residual) return h;
      if (relu) ++it;  // done inside the Linear
    } else {
      h = it->forward(h);
    }
  }
  return plus_input ? x + h : h;
}

}  // namespace tessera::neural
