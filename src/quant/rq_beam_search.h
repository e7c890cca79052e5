// Beam search over residual codebooks (private kernel of ResidualQuantizer::encode_beam).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera::detail {

/// Encode x (n × d) with the residual codebooks books[m] (K_m × d) into codes (n × M): at each level keep
/// the `beam` partial encodings of a vector with the smallest squared error ‖x − Σ chosen codewords‖²,
/// extend each by every codeword of the next level, and at the end take the best. beam = 1 is the
/// greedy encoder (the nearest codeword per level, ties to the lowest index), bit for bit what
/// nearest_centroids gives level by level. Among equal errors the lower candidate index (parent rank ×
/// K_m + codeword) wins. Results do not depend on the thread count. Checks interrupts between blocks.
void rq_beam_encode(MatrixView<const float> x, const std::vector<MatrixView<const float>>& books, size_t beam,
                    int32_t* codes);

}  // namespace tessera::detail
