// Rows kept in blocks of 16, column-major inside a block, so that distances from every row to a few
// candidate centres vectorise across rows: one multiply-add per coordinate and candidate for 16 rows at
// once, and no horizontal sums. k-means++ asks for such distances once per centre over the same rows.
#pragma once
#include <cstddef>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera::detail {

class BlockedRows {
 public:
  explicit BlockedRows(MatrixView<const float> x);
  size_t rows() const { return n_; }
  /// ‖x_i‖².
  float norm(size_t i) const { return norms_[i]; }
  /// out[i · c.rows + t] = ‖x_i − c_t‖² (at least 0) for every row i and candidate t; c_norms: ‖c_t‖².
  /// The same bits for any thread count and on every vector unit.
  void distances(MatrixView<const float> c, const float* c_norms, float* out) const;

 private:
  size_t n_, d_, blocks_;
  std::vector<float> data_;   // blocks × d × 16
  std::vector<float> norms_;  // ‖x_i‖², padded to blocks · 16
};

}  // namespace tessera::detail
