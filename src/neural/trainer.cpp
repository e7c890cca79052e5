#include "tessera/neural/trainer.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "neural/tensor_convert.h"
#include "tessera/neural/checkpoint.h"
#include "tessera/neural/state_dict.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"

namespace tessera::neural {

double lr_factor(LrSchedule schedule, size_t step, size_t warmup_steps, size_t total_steps) {
  if (step < warmup_steps) return double(step) / double(std::max<size_t>(1, warmup_steps));
  if (schedule == LrSchedule::constant) return 1.0;
  if (total_steps <= warmup_steps) return 0.0;
  return std::max(0.0, double(total_steps - std::min(step, total_steps)) / double(total_steps - warmup_steps));
}

namespace {
// Rows [begin, end) of `order` copied out of x into one B × d tensor.
torch::Tensor gather_rows(MatrixView<const float> x, const std::vector<size_t>& order, size_t begin, size_t end) {
  torch::Tensor t = torch::empty({int64_t(end - begin), int64_t(x.cols)}, torch::kFloat32);
  float* out = t.data_ptr<float>();
  for (size_t i = begin; i < end; ++i) std::copy(x.row(order[i]), x.row(order[i]) + x.cols, out + (i - begin) * x.cols);
  return t;
}
}  // namespace

namespace {

// The continuation of a checkpoint: InvalidArgument unless it is a run of this model on this data.
void check_resumable(const Checkpoint& c, const RQVAEConfig& config, const TrainingState& now,
                     const std::string& path) {
  const auto diff = config_differences(c.config, config);
  std::string fields;
  for (const auto& f : diff) fields += (fields.empty() ? "" : ", ") + f;
  TESSERA_CHECK_ARG(diff.empty(), "cannot resume from " << path << ": its model differs in " << fields);
  TESSERA_CHECK_ARG(c.training.rows == now.rows && c.training.cols == now.cols &&
                        c.training.data_fingerprint == now.data_fingerprint,
                    "cannot resume from " << path << ": it was trained on other data (" << c.training.rows << " × "
                                          << c.training.cols << ", not these " << now.rows << " × " << now.cols
                                          << (c.training.rows == now.rows && c.training.cols == now.cols
                                                  ? " with other values" : "")
                                          << ")");
  TESSERA_CHECK_ARG(c.training.batch_size == now.batch_size,
                    "cannot resume from " << path << ": batch size " << now.batch_size << ", the checkpoint's "
                                          << c.training.batch_size);
  TESSERA_CHECK_ARG(c.training.seed == now.seed,
                    "cannot resume from " << path << ": seed " << now.seed << ", the checkpoint's " << c.training.seed);
}

// epoch_{e}.ckpt files of dir beyond the keep newest: removed.
void prune_epoch_checkpoints(const std::string& dir, int keep) {
  namespace fs = std::filesystem;
  std::vector<std::pair<long, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("epoch_", 0) != 0 || entry.path().extension() != ".ckpt") continue;
    char* end = nullptr;
    const long e = std::strtol(name.c_str() + 6, &end, 10);
    if (end && std::string(end) == ".ckpt") found.emplace_back(e, entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = size_t(std::max(0, keep)); i < found.size(); ++i) fs::remove(found[i].second, ec);
}

}  // namespace

std::vector<EpochReport> train(RQVAEImpl& model, MatrixView<const float> x, const TrainerParams& p) {
  const RQVAEConfig& c = model.config();
  TESSERA_CHECK_ARG(int64_t(x.cols) == c.in_dim,
                    "dimension mismatch: data has " << x.cols << " columns, the model " << c.in_dim);
  TESSERA_CHECK_ARG(x.rows >= 1, "no rows to train on");
  TESSERA_CHECK_ARG(p.batch_size >= 1, "batch size must be at least 1");
  TESSERA_CHECK_ARG(p.epochs >= 0 && p.warmup_epochs >= 0, "epochs and warm-up epochs must be ≥ 0");
  TESSERA_CHECK_ARG(p.lr >= 0 && std::isfinite(p.lr), "learning rate must be finite and ≥ 0, got " << p.lr);
  TESSERA_CHECK_ARG(p.weight_decay >= 0, "weight decay must be ≥ 0, got " << p.weight_decay);
  TESSERA_CHECK_ARG(p.eval_every >= 0 && p.keep_last >= 0, "eval_every and keep_last must be ≥ 0");
  check_finite(x, "training data");

  const size_t n = x.rows;
  std::vector<size_t> bounds;  // batch b is rows [bounds[b], bounds[b + 1]) of the epoch's order
  for (size_t b = 0; b < n; b += p.batch_size) bounds.push_back(b);
  bounds.push_back(n);
  if (c.batch_norm && bounds.size() > 2 && n - bounds[bounds.size() - 2] == 1) bounds.erase(bounds.end() - 2);
  const size_t batches = bounds.size() - 1;
  TESSERA_CHECK_ARG(!c.batch_norm || n >= 2, "batch norm cannot train on a single row");

  torch::optim::AdamW opt(model.parameters(), torch::optim::AdamWOptions(p.lr).weight_decay(p.weight_decay));
  TrainingState state;
  state.rows = n;
  state.cols = x.cols;
  state.batch_size = p.batch_size;
  state.seed = p.seed;
  const bool checkpoints = !p.checkpoint_dir.empty();
  if (checkpoints || !p.resume.empty()) state.data_fingerprint = data_fingerprint(x);
  if (!p.resume.empty()) {
    Checkpoint ck = read_checkpoint(p.resume);
    check_resumable(ck, c, state, p.resume);
    load_state(model, ck.state_dict);
    restore_optimizer(opt, model, ck);
    state = std::move(ck.training);
  }
  if (checkpoints) {
    std::error_code ec;
    std::filesystem::create_directories(p.checkpoint_dir, ec);
    if (ec) TESSERA_THROW_IO("cannot create the checkpoint directory " << p.checkpoint_dir << ": " << ec.message());
  }

  const size_t warmup = size_t(p.warmup_epochs) * batches, total = size_t(p.epochs) * batches;
  std::vector<size_t> order(n);
  size_t step = size_t(state.step);
  model.train();
  for (int e = state.epoch; e < p.epochs; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    std::iota(order.begin(), order.end(), size_t{0});
    Rng rng(derive_seed(p.seed, uint64_t(e)));
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[std::uniform_int_distribution<size_t>(0, i - 1)(rng)]);
    torch::manual_seed(derive_seed(p.seed, uint64_t(e)));
    EpochReport r;
    r.epoch = e + 1;
    const std::string stage = "epoch " + std::to_string(e + 1) + "/" + std::to_string(p.epochs);
    for (size_t b = 0; b < batches; ++b, ++step) {
      check_interrupt();
      const torch::Tensor xb = gather_rows(x, order, bounds[b], bounds[b + 1]);
      const double lr = p.lr * lr_factor(p.schedule, step, warmup, total);
      for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      opt.zero_grad();
      const RQVAEOutput out = model.forward(xb);
      const RQVAELoss loss = model.loss(out, xb);
      const double value = loss.total.item<double>();
      if (!std::isfinite(value))
        throw Error("the training loss became " + std::to_string(value) + " at epoch " + std::to_string(e) +
                    ", batch " + std::to_string(b) + " (lower the learning rate?)");
      loss.total.backward();
      if (p.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(model.parameters(), p.clip_grad_norm);
      opt.step();
      const double rows = double(bounds[b + 1] - bounds[b]);
      r.loss += value * rows;
      r.reconstruction += loss.reconstruction.item<double>() * rows;
      r.quantization += loss.quantization.item<double>() * rows;
      report(p.progress, stage, b + 1, batches, r.loss / double(bounds[b + 1]));
    }
    r.loss /= double(n);
    r.reconstruction /= double(n);
    r.quantization /= double(n);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    const bool last = e + 1 == p.epochs;
    if ((p.eval_every > 0 && ((e + 1) % p.eval_every == 0 || last)) || (checkpoints && last)) {
      // Evaluation mode draws no random numbers: the run is the same with or without it.
      const CodeStats s = evaluate_codes(model, x);
      r.evaluated = true;
      r.collision_rate = s.collision_rate;
      r.codes_used = s.codes_used;
    }
    state.epoch = e + 1;
    state.step = int64_t(step);
    state.history.push_back(r);
    if (checkpoints && r.evaluated) {
      namespace fs = std::filesystem;
      const bool best_loss = r.loss < state.best_loss, best_rate = r.collision_rate < state.best_collision_rate;
      if (best_loss) state.best_loss = r.loss;
      if (best_rate) state.best_collision_rate = r.collision_rate;
      const fs::path dir(p.checkpoint_dir);
      if (p.keep_last > 0) save_checkpoint((dir / epoch_checkpoint_name(e + 1)).string(), model, opt, state);
      if (best_loss) save_checkpoint((dir / "best_loss.ckpt").string(), model, opt, state);
      if (best_rate) save_checkpoint((dir / "best_collision.ckpt").string(), model, opt, state);
      prune_epoch_checkpoints(p.checkpoint_dir, p.keep_last);
    }
    if (p.on_epoch) p.on_epoch(r);
  }
  model.eval();
  return state.history;
}

CodeStats evaluate_codes(RQVAEImpl& model, MatrixView<const float> x, size_t batch_size) {
  TESSERA_CHECK_ARG(int64_t(x.cols) == model.config().in_dim,
                    "dimension mismatch: data has " << x.cols << " columns, the model " << model.config().in_dim);
  check_finite(x, "data");
  const size_t n = x.rows, L = model.config().codebook_sizes.size(), bs = std::max<size_t>(1, batch_size);
  CodeStats s;
  s.codes = CodeMatrix(n, L);
  for (size_t b0 = 0; b0 < n; b0 += bs) {
    check_interrupt();
    const size_t nb = std::min(bs, n - b0);
    const torch::Tensor codes = model.codes(detail::tensor_from(x.rows_slice(b0, nb))).contiguous();
    const int64_t* c = codes.data_ptr<int64_t>();
    for (size_t i = 0; i < nb * L; ++i) s.codes.data()[b0 * L + i] = int32_t(c[i]);
  }
  std::set<std::vector<int32_t>> distinct;
  for (size_t i = 0; i < n; ++i) distinct.emplace(s.codes.row(i), s.codes.row(i) + L);
  s.collision_rate = n ? 1.0 - double(distinct.size()) / double(n) : 0.0;
  for (size_t l = 0; l < L; ++l) {
    std::vector<char> used(size_t(model.config().codebook_sizes[l]), 0);
    for (size_t i = 0; i < n; ++i) used[size_t(s.codes(i, l))] = 1;
    s.codes_used.push_back(size_t(std::count(used.begin(), used.end(), 1)));
  }
  return s;
}

}  // namespace tessera::neural
