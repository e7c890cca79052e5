// Training RQ-VAE / RQ-KMeans+ (Lee et al., "Autoregressive Image Generation using Residual Quantization",
// CVPR 2022; as TIGER's tokenizer: Rajput et al., "Recommender Systems with Generative Retrieval",
// NeurIPS 2023), as MiniOneRec's trainer does: AdamW, a constant or linear learning-rate schedule with
// warm-up stepped per batch, gradient clipping, shuffled mini-batches; and the code statistics its
// evaluation reports (collision rate, per-level utilisation).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/core/progress.h"
#include "tessera/neural/rqvae.h"

namespace tessera::neural {

enum class LrSchedule { constant, linear };

struct TrainerParams {
  double lr = 1e-3;            ///< MiniOneRec's rqvae.py (its rqkmeans_plus.py: 1e-4)
  double weight_decay = 0.0;   ///< passed explicitly, as MiniOneRec (AdamW's own default is 0.01)
  size_t batch_size = 2048;
  int epochs = 1;
  int warmup_epochs = 0;       ///< lr factor s / warm-up steps during the first warmup_epochs (MiniOneRec: 50)
  LrSchedule schedule = LrSchedule::constant;  ///< after warm-up: 1, or linear decay to 0 at the last step
  double clip_grad_norm = 1.0;  ///< global L2 norm of the gradients (≤ 0: no clipping)
  /// Shuffling of epoch e from derive_seed(seed, e); dropout from torch's global generator, seeded with
  /// derive_seed(seed, e) at the start of epoch e (so a run resumed at an epoch continues identically).
  uint64_t seed = 42;
  ProgressFn progress;  ///< one event per epoch: stage "epoch", done = epochs finished, value = epoch loss
};

struct EpochReport {
  double loss = 0;            ///< mean total loss over the epoch's rows (MiniOneRec sums over batches)
  double reconstruction = 0;  ///< mean reconstruction MSE over the rows
  double quantization = 0;    ///< mean VQ loss over the rows
  double seconds = 0;
};

/// The learning-rate factor at batch step `step` of `total_steps`, with `warmup_steps` of warm-up
/// (Hugging Face's constant / linear schedules with warm-up, which MiniOneRec uses): step / warmup_steps
/// during warm-up (0 at step 0), then 1 (constant) or max(0, (total − step) / (total − warmup)) (linear).
double lr_factor(LrSchedule schedule, size_t step, size_t warmup_steps, size_t total_steps);

/// Train model on x (n × in_dim, finite) for p.epochs epochs; returns one report per epoch. The model is
/// in training mode while it trains and is left in evaluation mode. Rows are shuffled every epoch, the last
/// partial batch is kept (with batch norm, a last batch of one row joins the previous batch: batch norm
/// cannot train on one row). A NaN or infinite loss is an Error naming the epoch and batch. Deterministic
/// for a given seed and torch thread count. Sets torch's global seed (dropout) as TrainerParams::seed says.
std::vector<EpochReport> train(RQVAEImpl& model, MatrixView<const float> x, const TrainerParams& p);

/// What the codes of a data set look like (MiniOneRec's evaluation, and more).
struct CodeStats {
  double collision_rate = 0;               ///< 1 − (distinct code tuples) / n
  std::vector<size_t> codes_used;          ///< per level: codes used by at least one row
  CodeMatrix codes;                        ///< n × L greedy codes (0-based)
};

/// Codes of every row of x (n × in_dim) by model.codes (evaluation mode, no gradient), in batches.
CodeStats evaluate_codes(RQVAEImpl& model, MatrixView<const float> x, size_t batch_size = 4096);

}  // namespace tessera::neural
