// RQ-VAE and RQ-KMeans+: MiniOneRec's parameter names, the loss, k-means initialisation, and the warm start
// from `tessera sid build`'s codebooks.npz (step-0 codes = the greedy RQ-KMeans codes).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../io_test_util.h"
#include "neural/tensor_convert.h"
#include "tessera/core/error.h"
#include "tessera/io/npz.h"
#include "tessera/neural/rqkmeans_plus.h"
#include "tessera/neural/rqvae.h"
#include "tessera/neural/state_dict.h"
#include "tessera/sid/pipeline.h"

namespace tessera::neural {
namespace {

using detail::matrix_from;
using detail::tensor_from;
using tessera_test::error_of;
using tessera_test::ScratchDir;

std::vector<std::string> state_names(const torch::nn::Module& m) {
  std::vector<std::string> names;
  for (const auto& [name, t] : named_state(m)) names.push_back(name);
  return names;
}

// MiniOneRec's checkpoint keys (design note §8): encoder.mlp_layers.{1,4,…}.weight|bias,
// rq.vq_layers.{l}.embedding.weight, decoder.mlp_layers.…; RQ-KMeans+: encoder.mlp.mlp_layers.….
TEST(NeuralRQVAE, StateNamesAndShapesAreMiniOneRecs) {
  RQVAEConfig c;
  c.in_dim = 40;
  c.e_dim = 8;
  c.layers = {32, 16};
  c.codebook_sizes = {16, 16, 8};
  RQVAE model(c);
  const std::vector<std::string> expected = {
      "encoder.mlp_layers.1.weight", "encoder.mlp_layers.1.bias", "encoder.mlp_layers.4.weight",
      "encoder.mlp_layers.4.bias",   "encoder.mlp_layers.7.weight", "encoder.mlp_layers.7.bias",
      "rq.vq_layers.0.embedding.weight", "rq.vq_layers.1.embedding.weight", "rq.vq_layers.2.embedding.weight",
      "decoder.mlp_layers.1.weight", "decoder.mlp_layers.1.bias", "decoder.mlp_layers.4.weight",
      "decoder.mlp_layers.4.bias",   "decoder.mlp_layers.7.weight", "decoder.mlp_layers.7.bias"};
  EXPECT_EQ(state_names(*model), expected);
  const auto state = named_state(*model);
  EXPECT_EQ(state[0].second.sizes(), (std::vector<int64_t>{32, 40}));  // Linear weights are out × in
  EXPECT_EQ(state[4].second.sizes(), (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(state[8].second.sizes(), (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(state[9].second.sizes(), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(state[14].second.sizes(), (std::vector<int64_t>{40}));

  c.e_dim = 40;
  c.residual_encoder = true;
  c.batch_norm = true;
  RQVAE plus(c);
  const std::vector<std::string> names = state_names(*plus);
  ASSERT_GE(names.size(), 7u);
  EXPECT_EQ(names[0], "encoder.mlp.mlp_layers.1.weight");
  EXPECT_EQ(names[2], "encoder.mlp.mlp_layers.2.weight");  // BatchNorm1d: weight, bias, then its buffers
  EXPECT_EQ(names[4], "encoder.mlp.mlp_layers.2.running_mean");
  EXPECT_EQ(names[6], "encoder.mlp.mlp_layers.2.num_batches_tracked");
  EXPECT_EQ(names[7], "encoder.mlp.mlp_layers.5.weight");
}

TEST(NeuralRQVAE, TotalLossIsReconstructionPlusWeightedQuantization) {
  RQVAEConfig c;
  c.in_dim = 12;
  c.e_dim = 4;
  c.layers = {8};
  c.codebook_sizes = {4, 4};
  c.quant_weight = 0.7;
  RQVAE model(c);
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({20, 12});
  const RQVAEOutput out = model->forward(x);
  const RQVAELoss loss = model->loss(out, x);
  const double recon = (out.reconstruction - x).pow(2).mean().item<double>();
  EXPECT_NEAR(loss.reconstruction.item<double>(), recon, 1e-6 * recon);
  EXPECT_NEAR(loss.total.item<double>(), recon + 0.7 * out.rq_loss.item<double>(), 1e-6 * recon);
  EXPECT_TRUE(torch::equal(model->codes(x), out.codes));
  EXPECT_THROW(model->forward(torch::zeros({3, 11})), InvalidArgument);
}

// k-means initialisation on a sample: level 0's codebook is what tessera's kmeans finds on the latents of the
// sample, and the quantization error falls far below the random codebooks'.
TEST(NeuralRQVAE, KMeansInitialisationFitsTheLatents) {
  const FloatMatrix x = tessera::testing::gaussian_mixture(3000, 10, 30, 8);
  RQVAEConfig c;
  c.in_dim = 10;
  c.e_dim = 6;
  c.layers = {16};
  c.codebook_sizes = {16, 8};
  RQVAE model(c);
  const torch::Tensor xt = tensor_from(x.view());
  const double before = model->forward(xt).rq_loss.item<double>();
  CodebookInitParams p;
  p.rows_per_centroid = 64;  // 64 × 16 = 1024 of the 3000 rows
  init_codebooks_kmeans(*model, x.view(), p);
  const double after = model->forward(xt).rq_loss.item<double>();
  EXPECT_LT(after, 0.2 * before);
  // Every code of level 0 is used on the data (k-means centroids, not the U(−1/K, 1/K) start).
  const torch::Tensor codes = model->codes(xt);
  EXPECT_EQ(std::get<0>(torch::_unique(codes.select(1, 0))).numel(), 16);
  EXPECT_THROW(init_codebooks_kmeans(*model, x.view().rows_slice(0, 10), p), InvalidArgument);
}

struct SidFixture {
  FloatMatrix x;
  SemanticIds sids;
  std::string npz;
};

// A balanced RQ-KMeans model and its files, as `tessera sid build` writes them.
SidFixture build_sids(const ScratchDir& dir, size_t n = 1500, size_t d = 12) {
  SidFixture f;
  f.x = tessera::testing::gaussian_mixture(n, d, 25, 21);
  SidParams p;
  p.codebook_sizes = {16, 8, 8};
  p.n_init = 1;
  f.sids = build_semantic_ids(f.x.view(), p);
  write_semantic_ids(dir.path() + "/sid", f.sids, nullptr);
  f.npz = dir.path() + "/sid/codebooks.npz";
  return f;
}

// An RQ-KMeans+ configuration for d-dimensional data, its codebook sizes from the npz.
RQVAEConfig plus_config(size_t d) {
  RQVAEConfig c;
  c.in_dim = c.e_dim = int64_t(d);
  c.layers = {32, 16};
  c.codebook_sizes = {};
  return c;
}

// The warm start: z = x exactly, and the codes (training forward and get_indices) are the greedy RQ-KMeans
// codes of the same codebooks, i.e. what `tessera sid encode` gives these items.
TEST(NeuralRQKMeansPlus, StepZeroCodesAreTheGreedyRQKMeansCodes) {
  ScratchDir dir;
  const SidFixture f = build_sids(dir);
  const size_t n = f.x.rows(), d = f.x.cols();
  RQVAE model = make_rqkmeans_plus(plus_config(d), f.npz);
  EXPECT_EQ(model->config().codebook_sizes, (std::vector<int64_t>{16, 8, 8}));
  for (size_t l = 0; l < 3; ++l)
    EXPECT_TRUE(torch::equal(model->rq()->level(l)->codebook(), tensor_from(f.sids.model->codebook(l))));

  const torch::Tensor xt = tensor_from(f.x.view());
  EXPECT_TRUE(torch::equal(model->encode(xt), xt)) << "z = x + MLP(x) must equal x at step 0";
  std::vector<int32_t> greedy(n * 3);
  f.sids.model->encode_greedy(f.x.view(), greedy.data());
  const torch::Tensor eval_codes = model->codes(xt);
  const torch::Tensor train_codes = model->forward(xt).codes;
  size_t mismatches = 0, differs_from_balanced = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t l = 0; l < 3; ++l) {
      mismatches += eval_codes[int64_t(i)][int64_t(l)].item<int64_t>() != greedy[i * 3 + l];
      mismatches += train_codes[int64_t(i)][int64_t(l)].item<int64_t>() != greedy[i * 3 + l];
      differs_from_balanced += greedy[i * 3 + l] != f.sids.codes(i, l);
    }
  EXPECT_EQ(mismatches, 0u);
  // Balanced codes are not greedy ones: the comparison above is with the right reference.
  EXPECT_GT(differs_from_balanced, 0u);
}

// The residual decoder x̂ = q + MLP(q), last Linear at zero: before training RQ-KMeans+ reconstructs every item
// exactly as RQ-KMeans does from its greedy codes (Σ_l codeword_l), and training reaches the decoder (the zero
// Linear gets a gradient). Its names sit under decoder.mlp.
TEST(NeuralRQKMeansPlus, ResidualDecoderStartsAtTheRQKMeansReconstruction) {
  ScratchDir dir;
  const SidFixture f = build_sids(dir);
  const size_t n = f.x.rows(), d = f.x.cols();
  RQVAEConfig c = plus_config(d);
  c.residual_decoder = true;
  RQVAE model = make_rqkmeans_plus(c, f.npz);
  const std::vector<std::string> names = state_names(*model);
  EXPECT_EQ(names.back(), "decoder.mlp.mlp_layers.7.bias");

  std::vector<int32_t> greedy(n * 3);
  f.sids.model->encode_greedy(f.x.view(), greedy.data());
  FloatMatrix rq_recon(n, d);
  f.sids.model->decode_unpacked(n, greedy.data(), rq_recon.data());
  const torch::Tensor xt = tensor_from(f.x.view());
  const RQVAEOutput out = model->forward(xt);
  EXPECT_TRUE(torch::allclose(out.reconstruction, tensor_from(rq_recon.view()), 1e-5, 1e-6));
  double rq_mse = 0;
  for (size_t i = 0; i < n * d; ++i) rq_mse += std::pow(double(f.x.data()[i]) - rq_recon.data()[i], 2);
  rq_mse /= double(n * d);
  EXPECT_NEAR(model->loss(out, xt).reconstruction.item<double>(), rq_mse, 1e-6 * rq_mse + 1e-9);

  model->loss(out, xt).total.backward();
  const torch::nn::Linear last = model->decoder_mlp()->linears().back();
  EXPECT_GT(last->weight.grad().abs().sum().item<double>(), 0.0);

  // A plain RQ-VAE (e_dim ≠ in_dim) cannot have one.
  RQVAEConfig bad;
  bad.in_dim = 12;
  bad.e_dim = 4;
  bad.layers = {8};
  bad.codebook_sizes = {4};
  bad.residual_decoder = true;
  EXPECT_NE(error_of<InvalidArgument>([&] { RQVAE m(bad); }).find("residual decoder"), std::string::npos);
}

TEST(NeuralRQKMeansPlus, BadCodebooksAndDimensionsAreErrorsThatNameThem) {
  ScratchDir dir;
  const SidFixture f = build_sids(dir, 600, 12);
  RQVAEConfig c;
  c.in_dim = c.e_dim = 12;
  c.layers = {16};
  c.codebook_sizes = {16, 8, 8};

  RQVAEConfig wrong_e = c;
  wrong_e.e_dim = 32;
  EXPECT_NE(error_of<InvalidArgument>([&] { make_rqkmeans_plus(wrong_e, f.npz); }).find("e_dim"), std::string::npos);

  RQVAEConfig four = c;
  four.codebook_sizes = {16, 8, 8, 8};
  EXPECT_NE(error_of<InvalidArgument>([&] { make_rqkmeans_plus(four, f.npz); }).find("codebook_3"),
            std::string::npos);
  RQVAEConfig two = c;
  two.codebook_sizes = {16, 8};
  EXPECT_NE(error_of<InvalidArgument>([&] { make_rqkmeans_plus(two, f.npz); }).find("codebook_2"), std::string::npos);
  RQVAEConfig k = c;
  k.codebook_sizes = {16, 16, 8};
  EXPECT_NE(error_of<InvalidArgument>([&] { make_rqkmeans_plus(k, f.npz); }).find("codebook_1"), std::string::npos);
  RQVAEConfig dim = c;
  dim.in_dim = dim.e_dim = 10;
  EXPECT_NE(error_of<InvalidArgument>([&] { make_rqkmeans_plus(dim, f.npz); }).find("dimension mismatch"),
            std::string::npos);

  // A gap: codebook_0 and codebook_2 only.
  const std::string gap = dir / "gap.npz";
  write_npz(gap, {{"codebook_0", f.sids.model->codebook(0)}, {"codebook_2", f.sids.model->codebook(2)}});
  c.codebook_sizes = {};
  EXPECT_NE(error_of<InvalidArgument>([&] { make_rqkmeans_plus(c, gap); }).find("no codebook_1"), std::string::npos);
  EXPECT_THROW(make_rqkmeans_plus(c, dir / "absent.npz"), IOError);
}

}  // namespace
}  // namespace tessera::neural
