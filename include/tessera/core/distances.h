// Squared Euclidean distances between row sets, computed as ‖x‖² − 2·x·cᵀ + ‖c‖² with one BLAS GEMM per
// block of rows (as faiss and scikit-learn do), so memory stays O(block × k) for any n.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tessera/core/matrix.h"

namespace tessera {

/// out[i] = ‖x_i‖². x: n × d, out: n.
void row_norms_sqr(MatrixView<const float> x, float* out);

/// out (n × k, row-major, stride k) = ‖x_i − c_j‖², clamped at 0. x: n × d, c: k × d,
/// c_norms: k precomputed ‖c_j‖² or nullptr; x_norms: n precomputed ‖x_i‖² or nullptr.
void l2_sqr_distances(MatrixView<const float> x, MatrixView<const float> c, const float* c_norms, float* out,
                      const float* x_norms = nullptr);

/// The nearest row of c for every row of x (ties go to the lowest index). assign: n; dist: n squared
/// distances, or nullptr; x_norms: n precomputed ‖x_i‖² or nullptr.
void nearest_centroids(MatrixView<const float> x, MatrixView<const float> c, int32_t* assign, float* dist,
                       const float* x_norms = nullptr);

/// The m nearest rows of c for every row of x, nearest first. idx: n × m, dist: n × m (either may be nullptr).
void nearest_centroids_topm(MatrixView<const float> x, MatrixView<const float> c, size_t m, int32_t* idx,
                            float* dist);

/// Rows of x processed per GEMM block by the functions above.
constexpr size_t kDistanceBlockRows = 4096;

}  // namespace tessera
