// The MLP of RQ-VAE: MiniOneRec's layer layout and parameter names, initialisation, forward.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tessera/core/error.h"
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/linear.h>

#include "neural/deterministic_linear.h"
#include "tessera/core/threading.h"
#include "tessera/neural/mlp.h"

namespace tessera::neural {
namespace {

std::vector<std::string> parameter_names(const torch::nn::Module& m) {
  std::vector<std::string> names;
  for (const auto& p : m.named_parameters()) names.push_back(p.key());
  return names;
}

// MiniOneRec's default encoder has 7 Linears: with batch norm off they sit at Sequential indices 1, 4, …, 19
// (Dropout, Linear, ReLU per pair; no ReLU after the last), with batch norm on at 1, 5, …, 25.
TEST(NeuralMLP, ParameterNamesFollowMiniOneRecsLayout) {
  const std::vector<int64_t> dims = {768, 2048, 1024, 512, 256, 128, 64, 32};
  MLP plain(MLPConfig{dims, 0.0, false}, 1);
  std::vector<std::string> expected;
  for (int j = 1; j <= 19; j += 3) {
    expected.push_back("mlp_layers." + std::to_string(j) + ".weight");
    expected.push_back("mlp_layers." + std::to_string(j) + ".bias");
  }
  EXPECT_EQ(parameter_names(*plain), expected);

  MLP bn(MLPConfig{dims, 0.1, true}, 1);
  expected.clear();
  for (int j = 1; j <= 25; j += 4) {
    expected.push_back("mlp_layers." + std::to_string(j) + ".weight");
    expected.push_back("mlp_layers." + std::to_string(j) + ".bias");
    if (j < 25) {
      expected.push_back("mlp_layers." + std::to_string(j + 1) + ".weight");
      expected.push_back("mlp_layers." + std::to_string(j + 1) + ".bias");
    }
  }
  EXPECT_EQ(parameter_names(*bn), expected);
  std::vector<std::string> buffers;
  for (const auto& b : bn->named_buffers()) buffers.push_back(b.key());
  ASSERT_EQ(buffers.size(), 6u * 3u);
  EXPECT_EQ(buffers[0], "mlp_layers.2.running_mean");
  EXPECT_EQ(buffers[1], "mlp_layers.2.running_var");
  EXPECT_EQ(buffers[2], "mlp_layers.2.num_batches_tracked");
}

TEST(NeuralMLP, XavierNormalWeightsZeroBiasDeterministic) {
  MLP a(MLPConfig{{300, 200, 100}, 0.0, false}, 7), b(MLPConfig{{300, 200, 100}, 0.0, false}, 7),
      c(MLPConfig{{300, 200, 100}, 0.0, false}, 8);
  for (size_t i = 0; i < a->linears().size(); ++i) {
    const torch::Tensor w = a->linears()[i]->weight;
    const double fan_in = double(w.size(1)), fan_out = double(w.size(0));
    const double expected_std = std::sqrt(2.0 / (fan_in + fan_out));
    // 60,000 and 20,000 draws: the sample std is within 2% of the target, the mean within 3 standard errors.
    EXPECT_NEAR(w.std().item<double>(), expected_std, 0.02 * expected_std);
    EXPECT_NEAR(w.mean().item<double>(), 0.0, 3 * expected_std / std::sqrt(double(w.numel())));
    EXPECT_EQ(a->linears()[i]->bias.abs().max().item<float>(), 0.0f);
    EXPECT_TRUE(torch::equal(w, b->linears()[i]->weight)) << "same seed, different weights";
    EXPECT_FALSE(torch::equal(w, c->linears()[i]->weight)) << "different seeds, same weights";
  }
  // Linears do not share a stream.
  EXPECT_FALSE(torch::equal(a->linears()[0]->weight.flatten().slice(0, 0, 100),
                            a->linears()[1]->weight.flatten().slice(0, 0, 100)));
}

// The forward pass against the same computation written out: Linear, ReLU, Linear (no activation at the end).
TEST(NeuralMLP, ForwardIsLinearReluLinearWithoutFinalActivation) {
  MLP mlp(MLPConfig{{5, 7, 3}, 0.0, false}, 3);
  {
    torch::NoGradGuard g;
    for (auto& l : mlp->linears()) l->bias.uniform_(-1, 1);  // non-zero biases, so they are exercised
  }
  const torch::Tensor x = torch::randn({11, 5});
  const auto& L = mlp->linears();
  const torch::Tensor h = torch::clamp_min(torch::matmul(x, L[0]->weight.t()) + L[0]->bias, 0);
  const torch::Tensor ref = torch::matmul(h, L[1]->weight.t()) + L[1]->bias;
  const torch::Tensor y = mlp->forward(x);
  EXPECT_TRUE(torch::allclose(y, ref, 1e-5, 1e-6));
  EXPECT_LT(y.min().item<float>(), 0.0f) << "an activation after the last Linear";
}

TEST(NeuralMLP, BadConfigurationAndInputAreErrors) {
  EXPECT_THROW(MLP(MLPConfig{{5}, 0.0, false}, 1), InvalidArgument);
  EXPECT_THROW(MLP(MLPConfig{{5, 0, 3}, 0.0, false}, 1), InvalidArgument);
  EXPECT_THROW(MLP(MLPConfig{{5, 3}, 1.0, false}, 1), InvalidArgument);
  MLP mlp(MLPConfig{{5, 3}, 0.0, false}, 1);
  EXPECT_THROW(mlp->forward(torch::zeros({2, 4})), InvalidArgument);
}

}  // namespace
}  // namespace tessera::neural

namespace tessera::neural {
namespace {

// deterministic_linear is torch's linear (values and the three gradients), and gives the same bits with one
// and two threads on shapes whose GEMMs split into several row chunks.
TEST(NeuralDeterministicLinear, EqualsTorchLinearAndIgnoresTheThreadCount) {
  torch::manual_seed(3);
  const torch::Tensor x0 = torch::randn({1100, 70}), w0 = torch::randn({600, 70}), b0 = torch::randn({600});
  const torch::Tensor upstream = torch::randn({1100, 600});
  auto run = [&](bool ours, int threads) {
    ScopedThreads scoped(threads);
    torch::Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    torch::Tensor y = ours ? detail::deterministic_linear(x, w, b) : torch::nn::functional::linear(x, w, b);
    (y * upstream).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), x.grad(), w.grad(), b.grad()};
  };
  const auto ref = run(false, 1), one = run(true, 1), two = run(true, 2);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_TRUE(torch::allclose(one[i], ref[i], 1e-4, 1e-3)) << "tensor " << i;
    EXPECT_TRUE(torch::equal(one[i], two[i])) << "tensor " << i << " differs between 1 and 2 threads";
  }
  // Without gradient (evaluation) it is the same function.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(detail::deterministic_linear(x0, w0, b0), one[0]));
}

// The fused forms (ReLU after the product, a residual input added last) give the very bits of the unfused
// graph they replace — values and every gradient — with one and two threads: the training of RQ-KMeans+ and
// RQ-VAE is unchanged by the fusion.
TEST(NeuralDeterministicLinear, FusedReluAndResidualEqualTheUnfusedGraphBitForBit) {
  torch::manual_seed(5);
  const torch::Tensor x0 = torch::randn({1100, 70}), w0 = torch::randn({600, 70}), b0 = torch::randn({600});
  const torch::Tensor r0 = torch::randn({1100, 600}), upstream = torch::randn({1100, 600});
  for (const bool relu : {true, false}) {
    auto run = [&](bool fused, int threads) {
      ScopedThreads scoped(threads);
      torch::Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(),
                    b = b0.clone().requires_grad_(), r = r0.clone().requires_grad_();
      torch::Tensor y;
      if (fused)
        y = detail::deterministic_linear(x, w, b, relu, relu ? torch::Tensor() : r);
      else if (relu)
        y = torch::relu(detail::deterministic_linear(x, w, b));
      else
        y = r + detail::deterministic_linear(x, w, b);
      (y * upstream).sum().backward();
      std::vector<torch::Tensor> out{y.detach(), x.grad(), w.grad(), b.grad()};
      if (!relu) out.push_back(r.grad());
      return out;
    };
    const auto ref = run(false, 1), one = run(true, 1), two = run(true, 2);
    ASSERT_EQ(ref.size(), one.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_TRUE(torch::equal(one[i], ref[i])) << (relu ? "relu" : "residual") << ": tensor " << i;
      EXPECT_TRUE(torch::equal(one[i], two[i])) << (relu ? "relu" : "residual") << ": tensor " << i << " differs "
                                                << "between 1 and 2 threads";
    }
  }
  EXPECT_THROW(detail::deterministic_linear(x0, w0, b0, true, r0), InvalidArgument);
  EXPECT_THROW(detail::deterministic_linear(x0, w0, b0, false, torch::randn({1100, 5})), InvalidArgument);
}

// An MLP's forward (ReLUs fused into the Linears) and forward_residual (x + … fused into the last Linear) are
// the module-by-module computation of the Sequential.
TEST(NeuralMLP, FusedForwardEqualsTheSequentialModuleByModule) {
  MLP mlp(MLPConfig{{24, 40, 16, 24}, 0.0, false}, 9);
  torch::manual_seed(2);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : mlp->parameters()) p.add_(torch::randn_like(p) * 0.1);  // non-zero biases
  }
  const torch::Tensor x = torch::randn({300, 24});
  torch::Tensor h = x;
  const auto& linears = mlp->linears();
  for (size_t i = 0; i < linears.size(); ++i) {
    h = detail::deterministic_linear(h, linears[i]->weight, linears[i]->bias);
    if (i + 1 < linears.size()) h = torch::relu(h);
  }
  EXPECT_TRUE(torch::equal(mlp->forward(x), h));
  EXPECT_TRUE(torch::equal(mlp->forward_residual(x), x + h));
  MLP narrowing(MLPConfig{{24, 8}, 0.0, false}, 1);
  EXPECT_THROW(narrowing->forward_residual(x), InvalidArgument);
}

}  // namespace
}  // namespace tessera::neural
