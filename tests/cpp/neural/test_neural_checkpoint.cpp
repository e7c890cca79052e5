// Training checkpoints: a resumed run ends bit for bit where the run that never stopped ends; which files are
// kept; the round trip of every field; errors for a checkpoint of other data, another model, a damaged or
// foreign file; and Python's torch.load reads one (with weights_only=True from torch 2.0 on).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../test_helpers.h"
#include "neural_test_util.h"
#include "tessera/core/error.h"
#include "tessera/neural/checkpoint.h"
#include "tessera/neural/model.h"
#include "tessera/neural/rqvae.h"
#include "tessera/neural/state_dict.h"
#include "tessera/neural/trainer.h"

namespace tessera::neural {
namespace {

using tessera_test::error_of;
using tessera_test::ScratchDir;

// Dropout, batch norm, warm-up and a linear schedule: every piece of state a resume must restore.
RQVAEConfig checkpoint_config() {
  RQVAEConfig c;
  c.in_dim = 12;
  c.e_dim = 6;
  c.layers = {24};
  c.codebook_sizes = {8, 8};
  c.dropout = 0.1;
  c.batch_norm = true;
  c.seed = 3;
  return c;
}

TrainerParams checkpoint_params(const std::string& dir) {
  TrainerParams p;
  p.batch_size = 100;  // 450 rows: 5 batches, the last of 50
  p.epochs = 6;
  p.lr = 2e-3;
  p.warmup_epochs = 1;
  p.schedule = LrSchedule::linear;
  p.seed = 11;
  p.eval_every = 2;
  p.keep_last = 3;
  p.checkpoint_dir = dir;
  return p;
}

RQVAE fresh_model(const FloatMatrix& x) {
  RQVAE m(checkpoint_config());
  init_codebooks_kmeans(*m, x.view());
  return m;
}

void expect_same_weights(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto sa = named_state(a), sb = named_state(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

std::vector<int32_t> codes_of(const CodeMatrix& c) {
  return std::vector<int32_t>(c.data(), c.data() + c.rows() * c.cols());
}

std::vector<std::string> sorted_entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(NeuralCheckpoint, ResumedRunEndsWhereTheUninterruptedRunEnds) {
  const FloatMatrix x = tessera::testing::gaussian_mixture(450, 12, 12, 21);
  ScratchDir full_dir, stopped_dir;
  RQVAE full = fresh_model(x);
  const std::vector<EpochReport> full_reports = train(*full, x.view(), checkpoint_params(full_dir / "ckpt"));
  ASSERT_EQ(full_reports.size(), 6u);

  // A run killed after epoch 3 (its last checkpoint is epoch 2's), resumed from that checkpoint.
  RQVAE stopped = fresh_model(x);
  TrainerParams p = checkpoint_params(stopped_dir / "ckpt");
  p.on_epoch = [](const EpochReport& r) {
    if (r.epoch == 3) throw Error("killed");
  };
  EXPECT_THROW(train(*stopped, x.view(), p), Error);
  EXPECT_EQ(sorted_entries(stopped_dir / "ckpt"),
            (std::vector<std::string>{"best_collision.ckpt", "best_loss.ckpt", "epoch_2.ckpt"}));
  RQVAE resumed(checkpoint_config());  // weights from the checkpoint, not from k-means
  p.on_epoch = nullptr;
  p.resume = stopped_dir / "ckpt/epoch_2.ckpt";
  const std::vector<EpochReport> resumed_reports = train(*resumed, x.view(), p);
  expect_same_weights(*full, *resumed);
  ASSERT_EQ(resumed_reports.size(), 6u);
  for (size_t e = 0; e < 6; ++e) {
    EXPECT_EQ(resumed_reports[e].epoch, int(e + 1));
    EXPECT_EQ(resumed_reports[e].loss, full_reports[e].loss) << "epoch " << e + 1;
    EXPECT_EQ(resumed_reports[e].evaluated, full_reports[e].evaluated) << "epoch " << e + 1;
    EXPECT_EQ(resumed_reports[e].collision_rate, full_reports[e].collision_rate) << "epoch " << e + 1;
    EXPECT_EQ(resumed_reports[e].codes_used, full_reports[e].codes_used) << "epoch " << e + 1;
  }
  // A run resumed from its last checkpoint at the end has nothing left to do: the same weights.
  RQVAE again(checkpoint_config());
  TrainerParams done = checkpoint_params(full_dir / "ckpt");
  done.resume = full_dir / "ckpt/epoch_6.ckpt";
  EXPECT_EQ(train(*again, x.view(), done).size(), 6u);
  expect_same_weights(*full, *again);
}

TEST(NeuralCheckpoint, KeepsTheNewestAndTheBest) {
  const FloatMatrix x = tessera::testing::gaussian_mixture(450, 12, 12, 22);
  ScratchDir dir;
  RQVAE m = fresh_model(x);
  TrainerParams p = checkpoint_params(dir / "ckpt");
  p.epochs = 9;  // evaluations after epochs 2, 4, 6, 8 and 9
  p.keep_last = 2;
  const std::vector<EpochReport> reports = train(*m, x.view(), p);
  std::vector<int> evaluated;
  double best_loss = INFINITY, best_rate = INFINITY;
  int best_loss_epoch = 0, best_rate_epoch = 0;
  for (const EpochReport& r : reports) {
    if (!r.evaluated) continue;
    evaluated.push_back(r.epoch);
    ASSERT_EQ(r.codes_used.size(), 2u);
    if (r.loss < best_loss) best_loss = r.loss, best_loss_epoch = r.epoch;
    if (r.collision_rate < best_rate) best_rate = r.collision_rate, best_rate_epoch = r.epoch;
  }
  EXPECT_EQ(evaluated, (std::vector<int>{2, 4, 6, 8, 9}));
  EXPECT_EQ(sorted_entries(dir / "ckpt"), (std::vector<std::string>{"best_collision.ckpt", "best_loss.ckpt",
                                                                    "epoch_8.ckpt", "epoch_9.ckpt"}));
  EXPECT_EQ(read_checkpoint(dir / "ckpt/best_loss.ckpt").training.epoch, best_loss_epoch);
  EXPECT_EQ(read_checkpoint(dir / "ckpt/best_collision.ckpt").training.epoch, best_rate_epoch);

  // Every field survives the round trip; the model of a checkpoint codes as the trained model.
  const Checkpoint c = read_checkpoint(dir / "ckpt/epoch_9.ckpt");
  EXPECT_TRUE(config_differences(c.config, m->config()).empty());
  EXPECT_EQ(c.training.epoch, 9);
  EXPECT_EQ(c.training.step, 45);
  EXPECT_EQ(c.training.rows, 450u);
  EXPECT_EQ(c.training.cols, 12u);
  EXPECT_EQ(c.training.batch_size, 100u);
  EXPECT_EQ(c.training.seed, 11u);
  EXPECT_EQ(c.training.data_fingerprint, data_fingerprint(x.view()));
  EXPECT_EQ(c.training.best_loss, best_loss);
  EXPECT_EQ(c.training.best_collision_rate, best_rate);
  ASSERT_EQ(c.training.history.size(), 9u);
  for (size_t e = 0; e < 9; ++e) {
    EXPECT_EQ(c.training.history[e].loss, reports[e].loss);
    EXPECT_EQ(c.training.history[e].seconds, reports[e].seconds);
    EXPECT_EQ(c.training.history[e].codes_used, reports[e].codes_used);
  }
  ASSERT_EQ(c.optimizer.size(), m->parameters().size());
  for (const AdamWState& a : c.optimizer) EXPECT_EQ(a.step, 45);
  const auto state = named_state(*m);
  ASSERT_EQ(c.state_dict.size(), state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(c.state_dict[i].first, state[i].first);
    EXPECT_TRUE(torch::equal(c.state_dict[i].second, state[i].second)) << state[i].first;
  }
  const RQVAEModel loaded = RQVAEModel::from_checkpoint(dir / "ckpt/epoch_9.ckpt");
  EXPECT_EQ(codes_of(loaded.codes(x.view()).codes), codes_of(evaluate_codes(*m, x.view()).codes));
}

TEST(NeuralCheckpoint, RefusesOtherDataOtherModelsAndDamagedFiles) {
  FloatMatrix x = tessera::testing::gaussian_mixture(450, 12, 12, 23);
  ScratchDir dir;
  RQVAE m = fresh_model(x);
  TrainerParams p = checkpoint_params(dir / "ckpt");
  p.epochs = 2;
  train(*m, x.view(), p);
  const std::string ckpt = dir / "ckpt/epoch_2.ckpt";
  p.epochs = 4;
  p.resume = ckpt;
  p.checkpoint_dir = dir / "other";

  FloatMatrix changed = x.clone();
  changed(17, 3) += 1e-3f;
  RQVAE a(checkpoint_config());
  EXPECT_NE(error_of<InvalidArgument>([&] { train(*a, changed.view(), p); }).find("other data"), std::string::npos);
  TrainerParams other_batch = p;
  other_batch.batch_size = 50;
  const std::string batch_error = error_of<InvalidArgument>([&] { train(*a, x.view(), other_batch); });
  EXPECT_NE(batch_error.find("batch size 50"), std::string::npos) << batch_error;
  RQVAEConfig wider = checkpoint_config();
  wider.layers = {32};
  RQVAE b(wider);
  EXPECT_NE(error_of<InvalidArgument>([&] { train(*b, x.view(), p); }).find("differs in layers"), std::string::npos);

  // Truncated, foreign (a state_dict file), and missing files.
  const std::string bytes = tessera_test::slurp(ckpt);
  tessera_test::spit(dir / "cut.ckpt", bytes.substr(0, bytes.size() / 2));
  p.resume = dir / "cut.ckpt";
  EXPECT_THROW(train(*a, x.view(), p), FormatError);
  save_state_dict(*m, dir / "model.pt");
  p.resume = dir / "model.pt";
  EXPECT_NE(error_of<FormatError>([&] { train(*a, x.view(), p); }).find("not a tessera checkpoint"),
            std::string::npos);
  EXPECT_THROW(RQVAEModel::from_checkpoint(dir / "model.pt"), FormatError);
  p.resume = dir / "none.ckpt";
  EXPECT_THROW(train(*a, x.view(), p), IOError);
}

TEST(NeuralCheckpoint, PythonTorchLoadReadsIt) {
  if (const std::string why = testing::missing_torch_python(); !why.empty()) GTEST_SKIP() << why;
  const FloatMatrix x = tessera::testing::gaussian_mixture(450, 12, 12, 24);
  ScratchDir dir;
  RQVAE m = fresh_model(x);
  TrainerParams p = checkpoint_params(dir.path());
  p.epochs = 2;
  train(*m, x.view(), p);
  const auto [status, out] = testing::run_python(
      "import torch\n"
      // torch 1.13's weights-only unpickler lacks pickle's float opcode (BINFLOAT), which later ones have
      "safe = tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 0)\n"
      "c = torch.load('" + dir / "epoch_2.ckpt" + "', weights_only=safe)\n"
      "print(c['format'], c['version'], c['config']['layers'], c['training']['epoch'], c['training']['step'])\n"
      "print(len(c['state_dict']), tuple(c['state_dict']['rq.vq_layers.0.embedding.weight'].shape))\n"
      "print(c['optimizer']['step'][0], tuple(c['optimizer']['exp_avg'][0].shape))\n");
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("tessera-neural-checkpoint 1 [24] 2 10"), std::string::npos) << out;
  EXPECT_NE(out.find(std::to_string(named_state(*m).size()) + " (8, 6)"), std::string::npos) << out;
  EXPECT_NE(out.find("10 (24, 12)"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::neural
