#include "tessera/quant/quantizer.h"
#include "tessera/core/threading.h"

namespace tessera {

void Quantizer::check_input(MatrixView<const float> x, const char* what) const {
  TESSERA_CHECK_ARG(x.cols == d_, "dimension mismatch: " << what << " has " << x.cols << " columns, the model has "
                                                         << d_);
  check_finite(x, what);
}

double sum_square(MatrixView<const float> x) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)x.rows; ++i)
    for (size_t j = 0; j < x.cols; ++j) s += double(x(i, j)) * x(i, j);
  return s;
}

double sum_squared_error(MatrixView<const float> x, MatrixView<const float> y) {
  TESSERA_CHECK_ARG(x.rows == y.rows && x.cols == y.cols,
                    "shape mismatch: " << x.rows << " × " << x.cols << " vs " << y.rows << " × " << y.cols);
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)x.rows; ++i) {
    double r = 0;
    for (size_t j = 0; j < x.cols; ++j) {
      const double t = double(x(i, j)) - y(i, j);
      r += t * t;
    }
    s += r;
  }
  return s;
}

double mean_square(MatrixView<const float> x) {
  return x.empty() ? 0.0 : sum_square(x) / (double(x.rows) * double(x.cols));
}

double mean_squared_error(MatrixView<const float> x, MatrixView<const float> y) {
  const double s = sum_squared_error(x, y);
  return x.empty() ? 0.0 : s / (double(x.rows) * double(x.cols));
}

}  // namespace tessera
