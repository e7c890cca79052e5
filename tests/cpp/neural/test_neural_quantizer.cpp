// VQ and residual VQ layers of RQ-VAE: assignment against tessera's residual quantizer (the RQ-KMeans
// encoder), losses and straight-through gradients against the formulas written out.
#include <gtest/gtest.h>

#include <vector>

#include "../test_helpers.h"
#include "neural/tensor_convert.h"
#include "tessera/core/distances.h"
#include "tessera/core/error.h"
#include "tessera/neural/residual_vector_quantizer.h"
#include "tessera/quant/residual_quantizer.h"

namespace tessera::neural {
namespace {

using detail::matrix_from;
using detail::tensor_from;

TEST(NeuralVQ, CodesAreTheNearestCodewordsTiesToTheLowestIndex) {
  const FloatMatrix z = tessera::testing::gaussian_mixture(500, 8, 10, 1);
  FloatMatrix book = tessera::testing::gaussian_mixture(16, 8, 4, 2);
  std::copy(book.row(3), book.row(3) + 8, book.row(9));  // codewords 3 and 9 are equal: 3 must win
  VectorQuantizer vq(16, 8, 0.25, 1);
  vq->set_codebook(book.view());
  const torch::Tensor codes = vq->assign(tensor_from(z.view()));
  std::vector<int32_t> ref(z.rows());
  nearest_centroids(z.view(), book.view(), ref.data(), nullptr);
  size_t nine = 0;
  for (size_t i = 0; i < z.rows(); ++i) {
    EXPECT_EQ(codes[int64_t(i)].item<int64_t>(), ref[i]) << "row " << i;
    nine += codes[int64_t(i)].item<int64_t>() == 9;
  }
  EXPECT_EQ(nine, 0u);
}

// loss = mse(e, sg(z)) + β·mse(sg(e), z); quantized has the codewords' values and z's gradient (identity);
// the codebook's gradient comes from the first term only: 2 (e − z) / (B·d) on the chosen rows.
TEST(NeuralVQ, LossAndStraightThroughGradients) {
  const int64_t B = 6, d = 4, K = 5;
  const double beta = 0.4;
  VectorQuantizer vq(K, d, beta, 3);
  torch::manual_seed(11);
  torch::Tensor z = torch::randn({B, d}).requires_grad_(true);
  VQOutput out = vq->forward(z);
  const torch::Tensor e = vq->codebook().detach().index_select(0, out.codes);
  EXPECT_TRUE(torch::equal(out.quantized.detach(), e)) << "quantized must be exactly the codewords";
  const double expected = (1 + beta) * (e - z.detach()).pow(2).mean().item<double>();
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-6 * expected);

  const torch::Tensor w = torch::randn({B, d});
  (out.loss + (w * out.quantized).sum()).backward();
  const torch::Tensor dz = w + beta * 2 * (z.detach() - e) / double(B * d);
  EXPECT_TRUE(torch::allclose(z.grad(), dz, 1e-5, 1e-7));
  torch::Tensor de = torch::zeros({K, d});
  de.index_add_(0, out.codes, 2 * (e - z.detach()) / double(B * d));
  EXPECT_TRUE(torch::allclose(vq->embedding->weight.grad(), de, 1e-5, 1e-7));
}

TEST(NeuralVQ, BadShapesAreErrors) {
  EXPECT_THROW(VectorQuantizer(0, 4, 0.25, 1), InvalidArgument);
  EXPECT_THROW(VectorQuantizer(4, 4, -1, 1), InvalidArgument);
  VectorQuantizer vq(4, 3, 0.25, 1);
  EXPECT_THROW(vq->assign(torch::zeros({2, 4})), InvalidArgument);
  FloatMatrix wrong(4, 4);
  EXPECT_THROW(vq->set_codebook(wrong.view()), InvalidArgument);
  FloatMatrix nan(4, 3);
  nan(1, 2) = std::nanf("");
  EXPECT_THROW(vq->set_codebook(nan.view()), InvalidArgument);
}

// The residual VQ's codes are the greedy RQ codes of tessera's ResidualQuantizer with the same codebooks, in
// the training forward pass and in assign(); Σ quantized is the RQ reconstruction.
TEST(NeuralRQ, CodesEqualTheResidualQuantizersGreedyCodes) {
  const size_t n = 2000, d = 16;
  const FloatMatrix x = tessera::testing::gaussian_mixture(n, d, 40, 5);
  ResidualQuantizerParams rp;
  rp.n_init = 1;
  ResidualQuantizer rq_ref(d, {32, 16, 8}, rp);
  rq_ref.train(x.view());
  std::vector<int32_t> greedy(n * 3);
  rq_ref.encode_greedy(x.view(), greedy.data());

  ResidualVectorQuantizer rq(std::vector<int64_t>{32, 16, 8}, int64_t(d), 0.25, 9);
  for (size_t l = 0; l < 3; ++l) rq->level(l)->set_codebook(rq_ref.codebook(l));
  const torch::Tensor xt = tensor_from(x.view());
  const torch::Tensor assigned = rq->assign(xt);
  const RQOutput out = rq->forward(xt);
  ASSERT_EQ(out.codes.sizes(), (std::vector<int64_t>{int64_t(n), 3}));
  std::vector<float> recon(n * d);
  rq_ref.decode(greedy.data(), n, recon.data());
  const FloatMatrix q = matrix_from(out.quantized);
  size_t mismatches = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t l = 0; l < 3; ++l) {
      mismatches += out.codes[int64_t(i)][int64_t(l)].item<int64_t>() != greedy[i * 3 + l];
      mismatches += assigned[int64_t(i)][int64_t(l)].item<int64_t>() != greedy[i * 3 + l];
    }
  EXPECT_EQ(mismatches, 0u);
  double max_err = 0;
  for (size_t i = 0; i < n * d; ++i) max_err = std::max(max_err, double(std::abs(q.data()[i] - recon[i])));
  EXPECT_LT(max_err, 1e-5);
}

// Loss = mean over levels of each level's VQ loss on its residual; the encoder side (z) gets the commitment
// gradient of level 0 only (later residuals carry no gradient through the straight-through estimator), the
// codebook of level l its own codebook term divided by L.
TEST(NeuralRQ, LossIsTheLevelMeanAndOnlyLevelZeroCommits) {
  const int64_t B = 64, d = 6;
  const double beta = 0.25;
  ResidualVectorQuantizer rq(std::vector<int64_t>{8, 8, 4}, d, beta, 4);
  torch::Tensor z = torch::randn({B, d}).requires_grad_(true);
  RQOutput out = rq->forward(z);
  torch::Tensor r = z.detach().clone();
  double expected = 0;
  std::vector<torch::Tensor> residuals, chosen;
  for (size_t l = 0; l < 3; ++l) {
    const torch::Tensor e = rq->level(l)->codebook().detach().index_select(0, out.codes.select(1, int64_t(l)));
    expected += (1 + beta) * (e - r).pow(2).mean().item<double>() / 3;
    residuals.push_back(r.clone());
    chosen.push_back(e);
    r = r - e;
  }
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-6 * expected);
  out.loss.backward();
  const torch::Tensor dz = beta * 2 * (z.detach() - chosen[0]) / double(B * d) / 3.0;
  EXPECT_TRUE(torch::allclose(z.grad(), dz, 1e-5, 1e-8));
  for (size_t l = 0; l < 3; ++l) {
    torch::Tensor de = torch::zeros_like(rq->level(l)->codebook());
    de.index_add_(0, out.codes.select(1, int64_t(l)), 2 * (chosen[l] - residuals[l]) / double(B * d) / 3.0);
    EXPECT_TRUE(torch::allclose(rq->level(l)->embedding->weight.grad(), de, 1e-5, 1e-8)) << "level " << l;
  }
}

// Lee et al.'s commitment: level l holds z to the partial sum e_0 + … + e_l; the codebook terms are unchanged.
TEST(NeuralRQ, PartialSumCommitmentHoldsZToEveryPartialReconstruction) {
  const int64_t B = 64, d = 6;
  const double beta = 0.25;
  ResidualVectorQuantizer rq(std::vector<int64_t>{8, 8, 4}, d, beta, 4, std::vector<double>{}, 50, true);
  torch::Tensor z = torch::randn({B, d}).requires_grad_(true);
  RQOutput out = rq->forward(z);
  torch::Tensor r = z.detach().clone(), partial = torch::zeros_like(r), dz = torch::zeros_like(r);
  double expected = 0;
  std::vector<torch::Tensor> residuals, chosen;
  for (size_t l = 0; l < 3; ++l) {
    const torch::Tensor e = rq->level(l)->codebook().detach().index_select(0, out.codes.select(1, int64_t(l)));
    partial = partial + e;
    expected += ((e - r).pow(2).mean().item<double>() + beta * (partial - z.detach()).pow(2).mean().item<double>()) / 3;
    dz += beta * 2 * (z.detach() - partial) / double(B * d) / 3.0;
    residuals.push_back(r.clone());
    chosen.push_back(e);
    r = r - e;
  }
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-6 * expected);
  out.loss.backward();
  EXPECT_TRUE(torch::allclose(z.grad(), dz, 1e-5, 1e-8));
  for (size_t l = 0; l < 3; ++l) {
    torch::Tensor de = torch::zeros_like(rq->level(l)->codebook());
    de.index_add_(0, out.codes.select(1, int64_t(l)), 2 * (chosen[l] - residuals[l]) / double(B * d) / 3.0);
    EXPECT_TRUE(torch::allclose(rq->level(l)->embedding->weight.grad(), de, 1e-5, 1e-8)) << "level " << l;
  }
}

}  // namespace
}  // namespace tessera::neural
