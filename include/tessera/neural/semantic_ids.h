// Semantic IDs from a trained RQ-VAE / RQ-KMeans+ (what `tessera rqvae|rqkmeans-plus generate` and
// tessera.neural's semantic_ids() make): the model's greedy codes, optionally made exactly size-constrained over
// all items, resolved and measured by the semantic-ID module of `tessera sid` (no second implementation).
// Torch-free, like model.h.
#pragma once
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/neural/model.h"
#include "tessera/sid/pipeline.h"

namespace tessera::neural {

/// Which levels get exact size bounds ([n/K − 1, n/K + 1]) over all items instead of the greedy codes.
enum class Balance { none, last, all };

/// "none" | "last" | "all"; InvalidArgument otherwise.
Balance parse_balance(const std::string& name);

/// The semantic IDs of x (n × in_dim) with model: greedy codes (RQVAEModel::codes); with `balance`, the last
/// level's (every level's) codes replaced by the balanced assigner's on the latents' residuals after the earlier
/// levels' greedy codes (ResidualQuantizer::assign_balanced_from); then semantic_ids_from_codes on the latents
/// and the model's codebooks (collision resolution, tokens, metrics), with metrics.recon_mse = the MSE against x
/// of the decoder's output for the codes given (RQVAEModel::decode).
SemanticIds model_semantic_ids(const RQVAEModel& model, MatrixView<const float> x, Dedup dedup,
                               const TokenFormat& format, Balance balance,
                               const std::vector<std::string>* labels = nullptr, size_t batch_size = 4096);

}  // namespace tessera::neural
