// Settings and reports of the neural component (RQ-VAE, RQ-KMeans+): plain structs without torch types, so
// that front ends (CLI, Python bindings) fill and read them without compiling a torch header. The models
// (rqvae.h, rqkmeans_plus.h) and the trainer (trainer.h) take them. MiniOneRec's defaults where they suit a CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/core/progress.h"

namespace tessera::neural {

struct RQVAEConfig {
  int64_t in_dim = 768;
  int64_t e_dim = 32;  ///< MiniOneRec's rqvae.py default (its class default is 64)
  /// Hidden widths of the encoder (the decoder uses them reversed): dims [in_dim] + layers + [e_dim].
  std::vector<int64_t> layers = {2048, 1024, 512, 256, 128, 64};
  std::vector<int64_t> codebook_sizes = {256, 256, 256};
  double dropout = 0;
  bool batch_norm = false;
  double beta = 0.25;          ///< commitment weight in each level's loss
  double quant_weight = 1.0;   ///< weight of the VQ loss in the total loss
  bool residual_encoder = false;  ///< RQ-KMeans+: z = x + MLP(x), needs e_dim == in_dim
  /// x̂ = q + MLP(q) with the MLP's last Linear starting at zero (needs e_dim == in_dim): with RQ-KMeans+ the
  /// model then reconstructs at step 0 exactly as RQ-KMeans (x̂ = Σ_l codeword_l) instead of through a random
  /// decoder. Not in MiniOneRec (names `decoder.mlp.mlp_layers.…`).
  bool residual_decoder = false;
  /// Each level's commitment term holds the encoder's z to the partial reconstruction Σ_{i≤l} e_i (Lee et al.,
  /// CVPR 2022) instead of level l's residual to e_l (MiniOneRec: only level 0 then reaches the encoder, and
  /// z drifts along the reconstruction error, which raised RQ-KMeans+'s error epoch after epoch).
  bool partial_sum_commitment = false;
  /// Sinkhorn balanced assignment per level while training (MiniOneRec's sk_epsilons): empty = none; else one
  /// ε per level (a length other than codebook_sizes' is an error), ε ≤ 0 = argmin on that level.
  std::vector<double> sk_epsilons;
  int sk_iters = 50;           ///< Sinkhorn iterations (MiniOneRec's rqvae.py default)
  uint64_t seed = 42;          ///< encoder from derive_seed(seed, 0), quantizer 1, decoder 2
};

struct CodebookInitParams {
  /// Rows sampled for the k-means of every level: max(rows_per_centroid · max_l K_l, sample) rows, or all n
  /// rows when there are fewer. MiniOneRec uses its first batch (≈ 8 rows per centroid at 2,048 / 256).
  size_t rows_per_centroid = 64;
  size_t sample = 0;
  int max_iter = 100;  ///< MiniOneRec's kmeans_iters
  int n_init = 1;
  uint64_t seed = 42;  ///< sample from derive_seed(seed, 0); level l's k-means from derive_seed(seed, l + 1)
  size_t batch_size = 4096;  ///< rows encoded at a time
};

struct EpochReport {
  int epoch = 0;              ///< 1-based: epochs done when this report was made
  double loss = 0;            ///< mean total loss over the epoch's rows (MiniOneRec sums over batches)
  double reconstruction = 0;  ///< mean reconstruction MSE over the rows
  double quantization = 0;    ///< mean VQ loss over the rows
  double seconds = 0;
  bool evaluated = false;     ///< collision_rate and codes_used hold the codes of all rows after this epoch
  double collision_rate = 0;
  std::vector<size_t> codes_used;
};

/// Called after every epoch (and evaluation, checkpoint) with its report, e.g. for a log line.
using EpochFn = std::function<void(const EpochReport&)>;

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
  /// Codes of all rows (collision rate, codes used per level; evaluation mode, which draws no random numbers)
  /// after every eval_every-th epoch and after the last one; 0: only after the last one when checkpoints are
  /// written, else never. MiniOneRec's eval_step (50).
  int eval_every = 0;
  /// Checkpoints (checkpoint.h) after every evaluation into this directory (created; empty: none):
  /// epoch_{e}.ckpt, of which the keep_last newest are kept (MiniOneRec's save_limit), best_loss.ckpt when the
  /// epoch's loss is the lowest so far, best_collision.ckpt when the collision rate is.
  std::string checkpoint_dir;
  int keep_last = 5;
  /// A checkpoint to continue from (empty: a new run). The model gets its weights, the optimiser its state,
  /// and training goes on at the epoch after it: with the same data, batch size, seed and settings the result
  /// is bit for bit the run that never stopped. Data, batch size or seed other than the checkpoint's, or a
  /// model of another configuration, is an InvalidArgument.
  std::string resume;
  EpochFn on_epoch;  ///< after every epoch, with its report
  ProgressFn progress;  ///< per batch: stage "epoch e/E", done/total = batches of the epoch, value = mean loss so far
};

/// What the codes of a data set look like (MiniOneRec's evaluation, and more).
struct CodeStats {
  double collision_rate = 0;               ///< 1 − (distinct code tuples) / n
  std::vector<size_t> codes_used;          ///< per level: codes used by at least one row
  CodeMatrix codes;                        ///< n × L greedy codes (0-based)
};

}  // namespace tessera::neural
