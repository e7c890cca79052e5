// Training checkpoints of RQ-VAE / RQ-KMeans+: everything a run needs to continue exactly where it stopped —
// the model's configuration and state_dict (MiniOneRec's names), AdamW's state per parameter, the epoch and
// batch step, the best loss and collision rate so far, the per-epoch history, and what the run trained on
// (rows, columns, a fingerprint of the data, batch size, seed). A file of torch.save's format holding a dict
// (format "tessera-neural-checkpoint", version 1) that Python's torch.load(path, weights_only=True) reads, as
// MiniOneRec's checkpoints (which hold an argparse Namespace instead of the configuration, so they need
// weights_only=False there and cannot be read by libtorch).
#pragma once
#include <torch/optim/adamw.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/neural/config.h"
#include "tessera/neural/rqvae.h"

namespace tessera::neural {

inline constexpr const char* kCheckpointFormat = "tessera-neural-checkpoint";
inline constexpr int kCheckpointVersion = 1;

/// Where a training run is: what a checkpoint holds besides the weights and the optimiser.
struct TrainingState {
  int epoch = 0;       ///< epochs done
  int64_t step = 0;    ///< optimiser steps done
  size_t rows = 0, cols = 0;
  uint64_t data_fingerprint = 0;  ///< data_fingerprint() of the training data
  size_t batch_size = 0;
  uint64_t seed = 0;
  double best_loss = std::numeric_limits<double>::infinity();
  double best_collision_rate = std::numeric_limits<double>::infinity();
  std::vector<EpochReport> history;  ///< one report per epoch done
};

/// AdamW's state of one parameter (step < 0: none yet).
struct AdamWState {
  int64_t step = -1;
  torch::Tensor exp_avg, exp_avg_sq;
};

struct Checkpoint {
  RQVAEConfig config;
  std::vector<std::pair<std::string, torch::Tensor>> state_dict;
  std::vector<AdamWState> optimizer;  ///< in the order of model.parameters()
  TrainingState training;
};

/// The file name of the checkpoint after `epoch` epochs in TrainerParams::checkpoint_dir.
inline std::string epoch_checkpoint_name(int epoch) { return "epoch_" + std::to_string(epoch) + ".ckpt"; }

/// A 64-bit hash of x's values (rows, columns and every float's bits): a resumed run checks it trains on the
/// same data.
uint64_t data_fingerprint(MatrixView<const float> x);

/// Write a checkpoint of model (its configuration and state), opt (an AdamW over model.parameters()) and s to
/// path, atomically.
void save_checkpoint(const std::string& path, const RQVAEImpl& model, const torch::optim::AdamW& opt,
                     const TrainingState& s);

/// Read a checkpoint. FormatError naming the file (and the entry) when it is not one of this format and
/// version, or is damaged.
Checkpoint read_checkpoint(const std::string& path);

/// Give opt (an AdamW over model.parameters()) the optimiser state of c. InvalidArgument when the shapes do
/// not fit.
void restore_optimizer(torch::optim::AdamW& opt, RQVAEImpl& model, const Checkpoint& c);

/// The fields of a and b that differ ("layers", "seed", …), empty when the configurations are equal.
std::vector<std::string> config_differences(const RQVAEConfig& a, const RQVAEConfig& b);

}  // namespace tessera::neural
