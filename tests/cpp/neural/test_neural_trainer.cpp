// The trainer: the learning-rate schedule, that training lowers the loss, determinism, and RQ-KMeans+'s first
// step (only the zeroed Linear, the decoder and the codebooks move).
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <map>
#include <vector>

#include "../test_helpers.h"
#include "neural/tensor_convert.h"
#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/neural/rqkmeans_plus.h"
#include "tessera/neural/state_dict.h"
#include "tessera/neural/trainer.h"

namespace tessera::neural {
namespace {

// Hugging Face's get_constant_schedule_with_warmup / get_linear_schedule_with_warmup, by hand.
TEST(NeuralTrainer, LearningRateFactors) {
  EXPECT_EQ(lr_factor(LrSchedule::constant, 0, 10, 100), 0.0);
  EXPECT_EQ(lr_factor(LrSchedule::constant, 5, 10, 100), 0.5);
  EXPECT_EQ(lr_factor(LrSchedule::constant, 10, 10, 100), 1.0);
  EXPECT_EQ(lr_factor(LrSchedule::constant, 0, 0, 100), 1.0);
  EXPECT_EQ(lr_factor(LrSchedule::linear, 5, 10, 100), 0.5);
  EXPECT_EQ(lr_factor(LrSchedule::linear, 10, 10, 100), 1.0);
  EXPECT_EQ(lr_factor(LrSchedule::linear, 55, 10, 100), 0.5);
  EXPECT_EQ(lr_factor(LrSchedule::linear, 100, 10, 100), 0.0);
  EXPECT_EQ(lr_factor(LrSchedule::linear, 0, 0, 4), 1.0);
  EXPECT_EQ(lr_factor(LrSchedule::linear, 3, 0, 4), 0.25);
}

RQVAEConfig trainer_config() {
  RQVAEConfig c;
  c.in_dim = 16;
  c.e_dim = 8;
  c.layers = {32};
  c.codebook_sizes = {16, 16};
  c.seed = 5;
  return c;
}

TEST(NeuralTrainer, LossFallsAndRunsAreDeterministic) {
  const FloatMatrix x = tessera::testing::gaussian_mixture(1000, 16, 20, 6);
  TrainerParams p;
  p.batch_size = 128;
  p.epochs = 15;
  p.lr = 3e-3;
  p.seed = 9;
  size_t events = 0, epochs_reported = 0;
  p.progress = [&](const ProgressEvent& ev) { events += ev.stage.rfind("epoch ", 0) == 0 && ev.total == 8; };
  p.on_epoch = [&](const EpochReport& r) { epochs_reported += r.epoch == int(epochs_reported + 1); };
  RQVAE a(trainer_config()), b(trainer_config());
  init_codebooks_kmeans(*a, x.view());
  init_codebooks_kmeans(*b, x.view());
  const std::vector<EpochReport> ra = train(*a, x.view(), p);
  ASSERT_EQ(ra.size(), 15u);
  EXPECT_EQ(events, 15u * 8u);  // 1000 rows: 8 batches per epoch
  EXPECT_EQ(epochs_reported, 15u);
  // The reconstruction error falls. The total may rise for a while: the encoder spreads the latents faster than
  // the codebooks follow, so the VQ loss grows (as MiniOneRec's users report, MiniOneRec #60, LC-Rec #8); it
  // falls again once the codebooks catch up.
  EXPECT_LT(ra.back().reconstruction, 0.5 * ra.front().reconstruction);
  double peak = 0;
  for (const EpochReport& r : ra) peak = std::max(peak, r.loss);
  EXPECT_LT(ra.back().loss, 0.8 * peak);
  EXPECT_FALSE(a->is_training());

  const std::vector<EpochReport> rb = train(*b, x.view(), p);
  for (size_t e = 0; e < ra.size(); ++e) EXPECT_EQ(ra[e].loss, rb[e].loss) << "epoch " << e;
  const auto sa = named_state(*a), sb = named_state(*b);
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;

  const CodeStats s = evaluate_codes(*a, x.view(), 300);
  const torch::Tensor direct = a->codes(detail::tensor_from(x.view())).to(torch::kInt32);
  EXPECT_TRUE(torch::equal(direct, torch::from_blob(const_cast<int32_t*>(s.codes.data()), {1000, 2}, torch::kInt32)));
  std::map<std::pair<int32_t, int32_t>, int> distinct;
  for (size_t i = 0; i < 1000; ++i) distinct[{s.codes(i, 0), s.codes(i, 1)}]++;
  EXPECT_DOUBLE_EQ(s.collision_rate, 1.0 - double(distinct.size()) / 1000.0);
  ASSERT_EQ(s.codes_used.size(), 2u);
  EXPECT_LE(s.codes_used[0], 16u);
  EXPECT_GE(s.codes_used[0], 8u);

  TrainerParams bad = p;
  bad.batch_size = 0;
  EXPECT_THROW(train(*a, x.view(), bad), InvalidArgument);
  const FloatMatrix narrow(10, 15);
  EXPECT_THROW(train(*a, narrow.view(), TrainerParams{}), InvalidArgument);
}

// The project's convention: the same results for any thread count. Batches of 4096 × 16 values exceed torch's
// grain size (32,768 elements), so its reductions do run on two threads here.
TEST(NeuralTrainer, SameWeightsForOneAndTwoThreads) {
  const FloatMatrix x = tessera::testing::gaussian_mixture(8192, 16, 20, 6);
  TrainerParams p;
  p.batch_size = 4096;
  p.epochs = 2;
  const int before = torch::get_num_threads();
  auto trained = [&](int threads) {  // torch's element-wise work and tessera's GEMMs (deterministic_linear)
    torch::set_num_threads(threads);
    ScopedThreads scoped(threads);
    RQVAE m(trainer_config());
    init_codebooks_kmeans(*m, x.view());
    train(*m, x.view(), p);
    return m;
  };
  RQVAE a = trained(1), b = trained(2);
  torch::set_num_threads(before);
  const auto sa = named_state(*a), sb = named_state(*b);
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

// At step 0 of RQ-KMeans+, the encoder MLP's last Linear is zero, so no gradient reaches its earlier layers:
// the first update moves only that Linear, the decoder and the codebooks.
TEST(NeuralTrainer, RQKMeansPlusFirstStepMovesOnlyTheZeroedLinearDecoderAndCodebooks) {
  const FloatMatrix x = tessera::testing::gaussian_mixture(400, 12, 10, 3);
  std::vector<FloatMatrix> books;
  for (size_t l = 0; l < 2; ++l) books.push_back(tessera::testing::gaussian_mixture(8, 12, 8, 40 + l));
  RQVAEConfig c;
  c.in_dim = c.e_dim = 12;
  c.layers = {16, 8};
  c.codebook_sizes = {};
  RQVAE model = make_rqkmeans_plus(c, books);
  std::map<std::string, torch::Tensor> before;
  for (const auto& [name, t] : named_state(*model)) before[name] = t.clone();
  TrainerParams p;
  p.batch_size = 400;  // one step
  p.epochs = 1;
  p.lr = 1e-3;
  train(*model, x.view(), p);
  for (const auto& [name, t] : named_state(*model)) {
    const bool moved = !torch::equal(t, before[name]);
    const bool may_move = name.rfind("encoder.mlp.mlp_layers.7.", 0) == 0 || name.rfind("decoder.", 0) == 0 ||
                          name.rfind("rq.", 0) == 0;
    if (may_move)
      EXPECT_TRUE(moved) << name << " did not move";
    else
      EXPECT_FALSE(moved) << name << " moved";
  }
}

}  // namespace
}  // namespace tessera::neural
