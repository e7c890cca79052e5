// The multilayer perceptron of RQ-VAE's encoder and decoder (RQ-VAE: Lee et al., "Autoregressive Image
// Generation using Residual Quantization", CVPR 2022; as an item tokenizer in TIGER: Rajput et al.,
// "Recommender Systems with Generative Retrieval", NeurIPS 2023). The layout is MiniOneRec's / LC-Rec's, so
// that parameter names match theirs: one Sequential `mlp_layers` holding, for each consecutive pair of
// dims d_i → d_{i+1}: Dropout(p) (present even at p = 0), Linear, BatchNorm1d (when batch_norm, not after the
// last Linear), ReLU (not after the last Linear). Names: `mlp_layers.{j}.weight|bias`, j counting every
// module (batch norm off: the Linears are at j = 1, 4, 7, …; on: at 1, 5, 9, … with BatchNorm1d at 2, 6, …).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <vector>

namespace tessera::neural {

struct MLPConfig {
  std::vector<int64_t> dims;  ///< [input, hidden…, output]: at least 2 entries, each ≥ 1
  double dropout = 0;         ///< in [0, 1)
  bool batch_norm = false;
};

/// Weights Xavier-normal (gain 1: N(0, 2 / (fan_in + fan_out))), biases 0, batch norm at PyTorch's
/// defaults (eps 1e-5, momentum 0.1). The weights are drawn from tessera's generator (Linear j from
/// derive_seed(seed, j)), so they are the same for every torch version and thread count.
class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(MLPConfig config, uint64_t seed);

  /// x: B × dims.front() → B × dims.back().
  torch::Tensor forward(const torch::Tensor& x);
  /// x + forward(x) (dims.front() == dims.back(), else InvalidArgument), the sum done inside the last Linear.
  torch::Tensor forward_residual(const torch::Tensor& x);

  const MLPConfig& config() const { return config_; }
  /// The Linears in order (dims.size() − 1 of them).
  const std::vector<torch::nn::Linear>& linears() const { return linears_; }

 private:
  torch::Tensor run(const torch::Tensor& x, bool plus_input);
  MLPConfig config_;
  torch::nn::Sequential mlp_layers_;
  std::vector<torch::nn::Linear> linears_;
};
TORCH_MODULE(MLP);

/// Xavier-normal weights (out × in, gain 1) and zero bias for one Linear, from tessera's generator.
void init_linear_xavier_normal(torch::nn::Linear& linear, uint64_t seed);

}  // namespace tessera::neural
