#include "tessera/neural/trainer.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <set>

#include "neural/tensor_convert.h"
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

std::vector<EpochReport> train(RQVAEImpl& model, MatrixView<const float> x, const TrainerParams& p) {
  const RQVAEConfig& c = model.config();
  TESSERA_CHECK_ARG(int64_t(x.cols) == c.in_dim,
                    "dimension mismatch: data has " << x.cols << " columns, the model " << c.in_dim);
  TESSERA_CHECK_ARG(x.rows >= 1, "no rows to train on");
  TESSERA_CHECK_ARG(p.batch_size >= 1, "batch size must be at least 1");
  TESSERA_CHECK_ARG(p.epochs >= 0 && p.warmup_epochs >= 0, "epochs and warm-up epochs must be ≥ 0");
  TESSERA_CHECK_ARG(p.lr >= 0 && std::isfinite(p.lr), "learning rate must be finite and ≥ 0, got " << p.lr);
  TESSERA_CHECK_ARG(p.weight_decay >= 0, "weight decay must be ≥ 0, got " << p.weight_decay);
  check_finite(x, "training data");

  const size_t n = x.rows;
  std::vector<size_t> bounds;  // batch b is rows [bounds[b], bounds[b + 1]) of the epoch's order
  for (size_t b = 0; b < n; b += p.batch_size) bounds.push_back(b);
  bounds.push_back(n);
  if (c.batch_norm && bounds.size() > 2 && n - bounds[bounds.size() - 2] == 1) bounds.erase(bounds.end() - 2);
  const size_t batches = bounds.size() - 1;
  TESSERA_CHECK_ARG(!c.batch_norm || n >= 2, "batch norm cannot train on a single row");

  torch::optim::AdamW opt(model.parameters(), torch::optim::AdamWOptions(p.lr).weight_decay(p.weight_decay));
  const size_t warmup = size_t(p.warmup_epochs) * batches, total = size_t(p.epochs) * batches;
  std::vector<EpochReport> reports;
  std::vector<size_t> order(n);
  size_t step = 0;
  model.train();
  for (int e = 0; e < p.epochs; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    std::iota(order.begin(), order.end(), size_t{0});
    Rng rng(derive_seed(p.seed, uint64_t(e)));
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[std::uniform_int_distribution<size_t>(0, i - 1)(rng)]);
    torch::manual_seed(derive_seed(p.seed, uint64_t(e)));
    EpochReport r;
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
    }
    r.loss /= double(n);
    r.reconstruction /= double(n);
    r.quantization /= double(n);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    reports.push_back(r);
    report(p.progress, "epoch", size_t(e + 1), size_t(p.epochs), r.loss);
  }
  model.eval();
  return reports;
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
