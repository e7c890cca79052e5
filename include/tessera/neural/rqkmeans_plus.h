// RQ-KMeans+: an RQ-VAE warm-started from RQ-KMeans. The encoder is residual, z = x + MLP(x), with the
// MLP's last Linear zero-initialised, and every level's codebook is the RQ-KMeans codebook of that level
// (the codebooks.npz `tessera sid build` writes): at step 0, z = x exactly and the model's codes are the
// greedy RQ-KMeans codes; training then moves away from RQ-KMeans only where the loss gains. The method is
// the one MiniOneRec's rqkmeans_plus.py reproduces (first proposed in GPR, per MiniOneRec); model: RQ-VAE
// (Lee et al., "Autoregressive Image Generation using Residual Quantization", CVPR 2022) as in TIGER
// (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023).
#pragma once
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/neural/rqvae.h"

namespace tessera::neural {

/// The codebooks of a .npz written by `tessera sid build` (members codebook_0, codebook_1, …, each
/// K_l × D float32), in level order. `levels` > 0: exactly that many are required; 0: every codebook_l
/// present, which must be numbered from 0 without gaps. Other members are ignored. A missing file, a
/// missing codebook_l, an unexpected codebook_l beyond `levels`, or codebooks of different widths are
/// errors that name the file and the member.
std::vector<FloatMatrix> read_codebooks_npz(const std::string& path, size_t levels = 0);

/// The RQ-KMeans+ model of `config` (residual_encoder is set; in_dim ≥ 1) with these codebooks (L
/// matrices, K_l × in_dim). config.codebook_sizes empty: taken from the codebooks; else it must equal
/// them. config.e_dim must equal config.in_dim (a residual encoder maps the input to itself), else
/// InvalidArgument saying so.
RQVAE make_rqkmeans_plus(RQVAEConfig config, const std::vector<FloatMatrix>& codebooks);

/// The same with the codebooks read from a `tessera sid build` codebooks.npz (read_codebooks_npz).
RQVAE make_rqkmeans_plus(RQVAEConfig config, const std::string& codebooks_npz);

}  // namespace tessera::neural
