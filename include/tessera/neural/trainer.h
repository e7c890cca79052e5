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
#include "tessera/neural/config.h"
#include "tessera/neural/rqvae.h"

namespace tessera::neural {

/// The learning-rate factor at batch step `step` of `total_steps`, with `warmup_steps` of warm-up
/// (Hugging Face's constant / linear schedules with warm-up, which MiniOneRec uses): step / warmup_steps
/// during warm-up (0 at step 0), then 1 (constant) or max(0, (total − step) / (total − warmup)) (linear).
double lr_factor(LrSchedule schedule, size_t step, size_t warmup_steps, size_t total_steps);

/// Train model on x (n × in_dim, finite) for p.epochs epochs; returns one report per epoch (with
/// p.resume, the checkpoint's epochs first). The model is in training mode while it trains and is left in
/// evaluation mode. Rows are shuffled every epoch, the last partial batch is kept (with batch norm, a last
/// batch of one row joins the previous batch: batch norm cannot train on one row). Evaluations and
/// checkpoints as TrainerParams says (checkpoint.h). A NaN or infinite loss is an Error naming the epoch and
/// batch. Deterministic for a given seed and torch thread count, also across a resume. Sets torch's global
/// seed (dropout) as TrainerParams::seed says.
std::vector<EpochReport> train(RQVAEImpl& model, MatrixView<const float> x, const TrainerParams& p);

/// Codes of every row of x (n × in_dim) by model.codes (evaluation mode, no gradient), in batches.
CodeStats evaluate_codes(RQVAEImpl& model, MatrixView<const float> x, size_t batch_size = 4096);

}  // namespace tessera::neural
