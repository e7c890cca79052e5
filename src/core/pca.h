// Principal axes of a set of rows (private): the eigenvectors of their covariance, by decreasing variance.
#pragma once
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera::detail {

struct PrincipalAxes {
  std::vector<float> mean;    ///< d
  FloatMatrix axes;           ///< d × d, row j the j-th axis (unit norm), by decreasing variance
  std::vector<double> variance;  ///< d, the variance along each axis
};

/// Principal axes of x (n × d). Covariance summed in double over fixed row blocks, so the result does
/// not depend on the thread count.
PrincipalAxes principal_axes(MatrixView<const float> x);

/// y (n × m) = (x − mean) · axes[0..m)ᵀ: the coordinates of x along the first m axes.
FloatMatrix project(MatrixView<const float> x, const PrincipalAxes& pa, size_t m);

/// The inverse for points given by their first m coordinates (y: n × m): mean + y · axes[0..m).
FloatMatrix unproject(MatrixView<const float> y, const PrincipalAxes& pa);

}  // namespace tessera::detail
