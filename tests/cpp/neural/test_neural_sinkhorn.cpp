// Sinkhorn balanced assignment per level (MiniOneRec's sk_epsilons): the plan's marginals, the log domain
// against the plain formula and against PyTorch, small ε, the codes of the training and evaluation passes, and
// the configuration's checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../io_test_util.h"
#include "neural/tensor_convert.h"
#include "neural_test_util.h"
#include "tessera/core/error.h"
#include "tessera/neural/rqvae.h"
#include "tessera/neural/sinkhorn.h"

namespace tessera::neural {
namespace {

using tessera_test::error_of;

// The design note's plain-domain formula, written out (MiniOneRec's sinkhorn_algorithm): overflows for small ε.
torch::Tensor sk_plain_reference(const torch::Tensor& normalized, double eps, int iters) {
  torch::Tensor q = torch::exp(-normalized.to(torch::kFloat64) / eps);
  const double b = double(q.size(0)), k = double(q.size(1));
  q /= q.sum();
  for (int it = 0; it < iters; ++it) {
    q /= q.sum(1, true);
    q /= b;
    q /= q.sum(0, true);
    q /= k;
  }
  return q * b;
}

// Squared distances of B random latents to K random codewords (float32, as in a VQ level).
torch::Tensor sk_random_distances(int64_t b, int64_t k, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor z = torch::randn({b, d}), e = torch::randn({k, d});
  return z.pow(2).sum(1, true) + e.pow(2).sum(1).unsqueeze(0) - 2 * torch::matmul(z, e.t());
}

size_t sk_largest_cluster(const torch::Tensor& codes, int64_t k) {
  const torch::Tensor counts = torch::bincount(codes, {}, k);
  return size_t(counts.max().item<int64_t>());
}

TEST(NeuralSinkhorn, NormalisationIsCentredOnTheMidRange) {
  const torch::Tensor d = sk_random_distances(20, 7, 3, 1);
  const torch::Tensor n = sinkhorn_normalize(d);
  ASSERT_EQ(n.scalar_type(), torch::kFloat64);
  const torch::Tensor d64 = d.to(torch::kFloat64);
  const double hi = d64.max().item<double>(), lo = d64.min().item<double>(), m = (hi + lo) / 2;
  EXPECT_TRUE(torch::allclose(n, (d64 - m) / (hi - m + 1e-5), 0, 1e-15));
  EXPECT_LE(n.max().item<double>(), 1.0);
  EXPECT_GE(n.min().item<double>(), -1.0);
  // All distances equal: amplitude 1e-5, d' = 0 (uniform plan; argmax = code 0, as MiniOneRec).
  EXPECT_EQ(sinkhorn_normalize(torch::full({3, 4}, 2.5f)).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(sinkhorn_codes(torch::full({3, 4}, 2.5f), 0.01, 5), torch::zeros({3}, torch::kLong)));
}

// Ending on the column step, each column carries exactly B/K; after enough iterations the rows carry ≈ 1.
TEST(NeuralSinkhorn, ColumnsSumToBOverKAndRowsToAboutOne) {
  const int64_t b = 96, k = 16;
  const torch::Tensor n = sinkhorn_normalize(sk_random_distances(b, k, 4, 2));
  for (int iters : {1, 3, 500}) {
    const torch::Tensor q = sinkhorn(n, 0.05, iters);
    ASSERT_EQ(q.scalar_type(), torch::kFloat64);
    const double col_err = (q.sum(0) - double(b) / double(k)).abs().max().item<double>();
    EXPECT_LT(col_err, 1e-9) << iters << " iterations";
    if (iters == 500) {
      EXPECT_LT((q.sum(1) - 1).abs().max().item<double>(), 1e-6);
    }
  }
  EXPECT_THROW(sinkhorn(n, 0, 3), InvalidArgument);
  EXPECT_THROW(sinkhorn(n, std::nan(""), 3), InvalidArgument);
  EXPECT_THROW(sinkhorn(n, 0.1, -1), InvalidArgument);
}

// Where exp(−d'/ε) does not overflow, the log-domain plan is the plain formula's.
// ε ≥ 2/700 runs in scaling form, smaller ε on log Q (0.0025): both equal the plain formula.
TEST(NeuralSinkhorn, LogDomainEqualsThePlainFormula) {
  for (uint64_t seed : {3, 4}) {
    const torch::Tensor n = sinkhorn_normalize(sk_random_distances(64, 12, 5, seed));
    for (double eps : {0.0025, 0.003, 0.05}) {
      for (int iters : {1, 50}) {
        const torch::Tensor plain = sk_plain_reference(n, eps, iters);
        ASSERT_TRUE(torch::isfinite(plain).all().item<bool>());
        const torch::Tensor q = sinkhorn(n, eps, iters);
        EXPECT_LT((q - plain).abs().max().item<double>(), 1e-9) << "ε " << eps << ", " << iters << " iterations";
        EXPECT_TRUE(torch::equal(q.argmax(1), plain.argmax(1)));
      }
    }
  }
}

// ε = 1e-4: exp(1/ε) overflows float64, so the plain formula gives NaN; the log domain stays finite and keeps
// its column marginals.
TEST(NeuralSinkhorn, NoNaNAtTinyEpsilon) {
  const int64_t b = 64, k = 8;
  const torch::Tensor n = sinkhorn_normalize(sk_random_distances(b, k, 4, 5));
  EXPECT_FALSE(torch::isfinite(sk_plain_reference(n, 1e-4, 50)).all().item<bool>());
  const torch::Tensor log_q = sinkhorn_log(n, 1e-4, 50);
  EXPECT_TRUE(torch::isfinite(log_q).all().item<bool>());
  const torch::Tensor q = log_q.exp();
  EXPECT_FALSE(torch::isnan(q).any().item<bool>());
  EXPECT_LT((q.sum(0) - double(b) / double(k)).abs().max().item<double>(), 1e-9);
  const torch::Tensor codes = sinkhorn_codes(sk_random_distances(b, k, 4, 5), 1e-4, 50);
  EXPECT_GE(codes.min().item<int64_t>(), 0);
  EXPECT_LT(codes.max().item<int64_t>(), k);
}

// A skewed batch (three quarters of the rows near codeword 0): in training mode a level with ε > 0 spreads the
// codes (its largest cluster shrinks); in evaluation mode, and with ε = 0, the codes are argmin's.
TEST(NeuralSinkhorn, TrainingCodesOfAQuantizerAreMoreBalancedThanArgmin) {
  const int64_t b = 256, k = 8, d = 4;
  torch::manual_seed(6);
  const torch::Tensor book = torch::randn({k, d});
  torch::Tensor z = torch::randn({b, d});
  z.slice(0, 0, 3 * b / 4).copy_(book[0] + 0.3 * z.slice(0, 0, 3 * b / 4));
  FloatMatrix book_m = detail::matrix_from(book);

  VectorQuantizer sk(k, d, 0.25, 1, 0.05, 50), plain(k, d, 0.25, 1);
  sk->set_codebook(book_m.view());
  plain->set_codebook(book_m.view());
  const torch::Tensor argmin = plain->assign(z);
  EXPECT_TRUE(torch::equal(plain->forward(z).codes, argmin)) << "ε = 0 trains with argmin";
  ASSERT_TRUE(sk->is_training());
  const VQOutput out = sk->forward(z);
  const size_t before = sk_largest_cluster(argmin, k), after = sk_largest_cluster(out.codes, k);
  EXPECT_GE(before, size_t(3 * b / 4));
  EXPECT_LT(after, before / 2) << "argmin's largest cluster " << before << ", Sinkhorn's " << after;
  EXPECT_TRUE(torch::equal(out.codes, sinkhorn_codes(
                                          z.pow(2).sum(1, true) + book.pow(2).sum(1).unsqueeze(0) - 2 * z.matmul(book.t()),
                                          0.05, 50)));
  EXPECT_TRUE(torch::equal(out.quantized, book.index_select(0, out.codes)));

  sk->eval();
  EXPECT_TRUE(torch::equal(sk->forward(z).codes, argmin)) << "evaluation mode uses argmin";
  EXPECT_TRUE(torch::equal(sk->assign(z), argmin));

  EXPECT_THROW(VectorQuantizer(k, d, 0.25, 1, std::nan(""), 50), InvalidArgument);
  EXPECT_THROW(VectorQuantizer(k, d, 0.25, 1, 0.01, 0), InvalidArgument);
  EXPECT_NO_THROW(VectorQuantizer(k, d, 0.25, 1, 0, 0));
  EXPECT_NO_THROW(VectorQuantizer(k, d, 0.25, 1, -1, 0));
}

RQVAEConfig sk_small_config() {
  RQVAEConfig c;
  c.in_dim = 6;
  c.e_dim = 4;
  c.layers = {8};
  c.codebook_sizes = {8, 8, 4};
  return c;
}

// The model's levels get their ε: in training mode level 1 (ε > 0) takes Sinkhorn's codes of its residuals and
// levels 0 and 2 (ε = 0) argmin; in evaluation mode and in codes() every level is argmin.
TEST(NeuralSinkhorn, RQVAEUsesSinkhornOnlyOnItsLevelsAndOnlyInTraining) {
  RQVAEConfig c = sk_small_config();
  c.sk_epsilons = {0, 0.003, -1};
  c.sk_iters = 30;
  RQVAE model(c);
  torch::manual_seed(7);
  const torch::Tensor x = torch::randn({200, c.in_dim});
  ASSERT_TRUE(model->is_training());
  const RQVAEOutput out = model->forward(x);

  torch::NoGradGuard no_grad;
  const torch::Tensor z = model->encode(x);  // no dropout or batch norm: the same in both modes
  const auto rq = model->rq();
  std::vector<torch::Tensor> expected;
  torch::Tensor r = z;
  for (size_t l = 0; l < 3; ++l) {
    const torch::Tensor e = rq->level(l)->codebook();
    const torch::Tensor dist = r.pow(2).sum(1, true) + e.pow(2).sum(1).unsqueeze(0) - 2 * r.matmul(e.t());
    expected.push_back(l == 1 ? sinkhorn_codes(dist, 0.003, 30) : dist.argmin(1));
    r = r - e.index_select(0, expected.back());
  }
  EXPECT_TRUE(torch::equal(out.codes, torch::stack(expected, 1)));
  const torch::Tensor greedy = model->codes(x);
  EXPECT_FALSE(torch::equal(out.codes.select(1, 1), greedy.select(1, 1))) << "level 1 should differ from argmin";
  EXPECT_TRUE(torch::equal(out.codes.select(1, 0), greedy.select(1, 0)));
  model->eval();
  EXPECT_TRUE(torch::equal(model->forward(x).codes, greedy));
}

TEST(NeuralSinkhorn, ConfigurationIsChecked) {
  RQVAEConfig c = sk_small_config();
  EXPECT_NO_THROW(RQVAE{c});  // empty: no Sinkhorn
  c.sk_epsilons = {0, 0.003};
  const std::string msg = error_of<InvalidArgument>([&] { RQVAE m(c); });
  EXPECT_NE(msg.find("sk_epsilons has 2 entries"), std::string::npos) << msg;
  EXPECT_NE(msg.find("codebook_sizes has 3 levels"), std::string::npos) << msg;
  c.sk_epsilons = {0, 0.003, 0, 0};
  EXPECT_NE(error_of<InvalidArgument>([&] { RQVAE m(c); }).find("4 entries"), std::string::npos);
  c.sk_epsilons = {0, std::nan(""), 0};
  EXPECT_NE(error_of<InvalidArgument>([&] { RQVAE m(c); }).find("sk_epsilons[1]"), std::string::npos);
  c.sk_epsilons = {0, std::numeric_limits<double>::infinity(), 0};
  EXPECT_THROW(RQVAE{c}, InvalidArgument);
  c.sk_epsilons = {0, 0.003, 0};
  c.sk_iters = 0;
  EXPECT_NE(error_of<InvalidArgument>([&] { RQVAE m(c); }).find("sk_iters"), std::string::npos);
  c.sk_epsilons = {0, -0.5, 0};  // no ε > 0: the iteration count is not used
  EXPECT_NO_THROW(RQVAE{c});
  EXPECT_THROW(ResidualVectorQuantizer(std::vector<int64_t>{8, 8}, 4, 0.25, 1, std::vector<double>{0.1}),
               InvalidArgument);
}

// PyTorch running the note's plain formula (MiniOneRec's center_distance_for_constraint + sinkhorn_algorithm,
// written out here) on the same distances gives the same Q and codes.
TEST(NeuralSinkhorn, MatchesAPyTorchReference) {
  const int64_t b = 12, k = 5;
  const double eps = 0.003;
  const int iters = 50;
  const torch::Tensor d = sk_random_distances(b, k, 3, 8).to(torch::kFloat64);
  std::ostringstream script;
  script.precision(17);
  script << "import torch\nd = torch.tensor([";
  for (int64_t i = 0; i < b; ++i) {
    script << "[";
    for (int64_t j = 0; j < k; ++j) script << d[i][j].item<double>() << ",";
    script << "],";
  }
  script << "], dtype=torch.float64)\n"
            "hi, lo = d.max(), d.min()\n"
            "mid = (hi + lo) / 2\n"
            "d = (d - mid) / (hi - mid + 1e-5)\n"
            "Q = torch.exp(-d / " << eps << ")\n"
            "B, K = Q.shape\n"
            "Q /= Q.sum()\n"
            "for _ in range(" << iters << "):\n"
            "    Q /= Q.sum(dim=1, keepdim=True)\n"
            "    Q /= B\n"
            "    Q /= Q.sum(dim=0, keepdim=True)\n"
            "    Q /= K\n"
            "Q *= B\n"
            "print(' '.join(repr(v) for v in Q.flatten().tolist()))\n"
            "print(' '.join(str(v) for v in Q.argmax(dim=1).tolist()))\n";
  const auto [status, out] = testing::run_python(script.str());
  if (status != 0) {
    if (const std::string why = testing::missing_torch_python(); !why.empty()) GTEST_SKIP() << why;
  }
  ASSERT_EQ(status, 0) << out;
  std::istringstream in(out);
  const torch::Tensor q = sinkhorn(sinkhorn_normalize(d), eps, iters);
  const torch::Tensor codes = sinkhorn_codes(d, eps, iters);
  for (int64_t i = 0; i < b * k; ++i) {
    double v = std::nan("");
    in >> v;
    EXPECT_NEAR(q[i / k][i % k].item<double>(), v, 1e-9) << "entry " << i << "\n" << out;
  }
  for (int64_t i = 0; i < b; ++i) {
    int64_t c = -1;
    in >> c;
    EXPECT_EQ(codes[i].item<int64_t>(), c) << "row " << i;
  }
}

}  // namespace
}  // namespace tessera::neural
