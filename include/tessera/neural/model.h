// RQ-VAE / RQ-KMeans+ behind an interface without torch types (RQ-VAE: Lee et al., "Autoregressive Image
// Generation using Residual Quantization", CVPR 2022; TIGER: Rajput et al., "Recommender Systems with
// Generative Retrieval", NeurIPS 2023), for front ends (CLI, Python bindings) that should not compile a torch
// header. It wraps the module of rqvae.h and the functions of rqkmeans_plus.h, trainer.h and state_dict.h.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/neural/config.h"

namespace tessera::neural {

class RQVAEImpl;

/// A handle: copies share the same model (as Matrix shares its buffer).
class RQVAEModel {
 public:
  /// A new RQ-VAE with weights drawn from config.seed (rqvae.h). InvalidArgument on a bad configuration.
  explicit RQVAEModel(const RQVAEConfig& config);
  /// RQ-KMeans+ warm-started from the codebooks.npz of `tessera sid build` (make_rqkmeans_plus).
  static RQVAEModel rqkmeans_plus(RQVAEConfig config, const std::string& codebooks_npz);

  /// The model of a training checkpoint (checkpoint.h): its configuration and weights.
  static RQVAEModel from_checkpoint(const std::string& path);

  const RQVAEConfig& config() const;
  size_t num_levels() const { return config().codebook_sizes.size(); }

  /// k-means initialisation of the codebooks on a sample of x (n × in_dim): init_codebooks_kmeans.
  void init_codebooks_kmeans(MatrixView<const float> x, const CodebookInitParams& p = {});
  /// Train on x (n × in_dim): neural::train, with evaluations, checkpoints and resume as p says. One report
  /// per epoch.
  std::vector<EpochReport> train(MatrixView<const float> x, const TrainerParams& p);
  /// Greedy codes of x (n × in_dim) with collision rate and per-level use: evaluate_codes.
  CodeStats codes(MatrixView<const float> x, size_t batch_size = 4096) const;
  /// The encoder's latents z of x (n × in_dim → n × e_dim), in evaluation mode: what the quantizer codes.
  FloatMatrix latent(MatrixView<const float> x, size_t batch_size = 4096) const;
  /// The decoder's reconstruction of x (n × in_dim → n × in_dim), in evaluation mode.
  FloatMatrix reconstruct(MatrixView<const float> x, size_t batch_size = 4096) const;
  /// The decoder's output for given codes (n × L, 0-based): dec(Σ_l codebook_l[codes_l]), in evaluation
  /// mode: n × in_dim. For the greedy codes of x it is reconstruct(x); for other codes (balanced levels) it is
  /// what those codes reconstruct. InvalidArgument on a code out of range.
  FloatMatrix decode(const CodeMatrix& codes, size_t batch_size = 4096) const;
  /// Codebook of level l: K_l × e_dim (a copy).
  FloatMatrix codebook(size_t level) const;

  /// Threads of torch's element-wise work in this process (at::set_num_threads); n ≤ 0 leaves torch's default.
  static void set_torch_threads(int n);

  /// PyTorch state_dict files with MiniOneRec's names (state_dict.h); loading is strict.
  void save_state_dict(const std::string& path) const;
  void load_state_dict(const std::string& path);

  /// The torch module (include rqvae.h to use it).
  const std::shared_ptr<RQVAEImpl>& module() const { return impl_; }

 private:
  explicit RQVAEModel(std::shared_ptr<RQVAEImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<RQVAEImpl> impl_;
};

}  // namespace tessera::neural
