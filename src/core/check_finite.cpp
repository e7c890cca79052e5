#include <cmath>

#include "tessera/core/matrix.h"

namespace tessera {

void check_finite(MatrixView<const float> x, const char* what) {
  for (size_t i = 0; i < x.rows; ++i) {
    const float* r = x.row(i);
    for (size_t j = 0; j < x.cols; ++j)
      if (!std::isfinite(r[j]))
        TESSERA_THROW_ARG(what << " has a non-finite value (" << r[j] << ") at row " << i << ", column " << j
                               << ": every value must be a finite number");
  }
}

}  // namespace tessera
