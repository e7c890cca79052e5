// The LSQ codebook update (ridge least squares for fixed codes) by preconditioned conjugate gradients.
// Private to the library: LocalSearchQuantizer's training calls it, warm-started from the previous
// iteration's codebooks; update_codebooks() keeps the exact Cholesky solve.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera::detail {

/// BᵀX for codes (n × M, codebooks of K codewords) of x (n × d): for every codeword (row m·K + k of the
/// MK × d result, row-major) the sum of the vectors whose code m is k, summed in double in row order.
std::vector<double> codeword_sums(MatrixView<const float> x, const int32_t* codes, size_t M, size_t K);

/// Solve (BᵀB + λI)·C = BᵀX for the codebooks C (MK × d), B being the n × MK matrix with one 1 per codebook
/// in every row, starting from `books` and leaving the solution there. Each column of C is an independent
/// system with the same matrix; columns are solved in groups of 16 (in parallel, each group alone: the result
/// does not depend on the thread count), by CG with the diagonal of BᵀB + λI (codeword counts + λ) as
/// preconditioner, until ‖BᵀX − (BᵀB + λI)·C‖ over the group is at most tol times the group's share of
/// ‖BᵀX‖ (Frobenius). BᵀB·P is applied through the codes, as Bᵀ(B·P): O(n·M) per column, never MK × MK.
/// Returns false, with `books` unchanged, if some group has not converged within max_iters iterations.
bool ridge_codebooks_cg(MatrixView<const float> x, const int32_t* codes, size_t M, size_t K, double lambd,
                        double tol, size_t max_iters, MatrixView<float> books);

}  // namespace tessera::detail
