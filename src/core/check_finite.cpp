#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tessera/core/matrix.h"

namespace tessera {

namespace {

// Whether any of n floats is NaN or ±inf (all exponent bits set). No early exit, so that it vectorises: every
// entry point checks its input with this, and a per-value branch made that a tenth of a 1-bit IVF build.
bool any_non_finite(const float* v, size_t n) {
  uint32_t bad = 0;
  for (size_t j = 0; j < n; ++j) {
    uint32_t u;
    std::memcpy(&u, v + j, sizeof u);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad != 0;
}

}  // namespace

void check_finite(MatrixView<const float> x, const char* what) {
  // Contiguous rows are checked a block at a time; the offending value is then located for the message.
  const size_t rows_per_step = x.stride == x.cols ? std::max<size_t>(1, 4096 / std::max<size_t>(1, x.cols)) : 1;
  for (size_t i0 = 0; i0 < x.rows; i0 += rows_per_step) {
    const size_t i1 = std::min(x.rows, i0 + rows_per_step);
    bool bad = false;
    if (rows_per_step > 1)
      bad = any_non_finite(x.row(i0), (i1 - i0) * x.cols);
    else
      for (size_t i = i0; i < i1; ++i) bad = bad || any_non_finite(x.row(i), x.cols);
    if (!bad) continue;
    for (size_t i = i0; i < i1; ++i) {
      const float* r = x.row(i);
      for (size_t j = 0; j < x.cols; ++j)
        if (!std::isfinite(r[j]))
          TESSERA_THROW_ARG(what << " has a non-finite value (" << r[j] << ") at row " << i << ", column " << j
                                 << ": every value must be a finite number");
    }
  }
}

}  // namespace tessera
