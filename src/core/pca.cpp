#include "core/pca.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/blas.h"
#include "tessera/core/error.h"
#include "tessera/core/threading.h"

extern "C" void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                       double* work, const int* lwork, int* info);

namespace tessera::detail {

namespace {
constexpr size_t kBlockRows = 1024;
}

PrincipalAxes principal_axes(MatrixView<const float> x) {
  const size_t n = x.rows, d = x.cols;
  TESSERA_CHECK_ARG(n > 0 && d > 0, "principal axes of an empty set");
  PrincipalAxes pa;
  std::vector<double> mean(d, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) mean[j] += x(i, j);
  pa.mean.resize(d);
  for (size_t j = 0; j < d; ++j) pa.mean[j] = float(mean[j] / double(n));

  // Covariance: per block of rows a float GEMM of the centred rows, accumulated in double in block order.
  const size_t blocks = (n + kBlockRows - 1) / kBlockRows;
  std::vector<double> cov(d * d, 0.0);
  std::vector<FloatMatrix> partial(blocks);
#pragma omp parallel for schedule(dynamic, 1) num_threads(::tessera::num_threads())
  for (ptrdiff_t b = 0; b < (ptrdiff_t)blocks; ++b) {
    const size_t r0 = size_t(b) * kBlockRows, nb = std::min(kBlockRows, n - r0);
    FloatMatrix c(nb, d), out(d, d);
    for (size_t i = 0; i < nb; ++i)
      for (size_t j = 0; j < d; ++j) c(i, j) = x(r0 + i, j) - pa.mean[j];
    gemm_atb(d, d, nb, 1.0f, c.data(), d, c.data(), d, 0.0f, out.data(), d);
    partial[b] = std::move(out);
  }
  for (const FloatMatrix& p : partial)
    for (size_t e = 0; e < d * d; ++e) cov[e] += p.data()[e];
  for (double& v : cov) v /= double(n);

  // Symmetric eigendecomposition (LAPACK, ascending eigenvalues; column-major is the transpose, which is
  // the same matrix).
  prepare_blas();
  const int di = (int)d;
  std::vector<double> w(d);
  int info = 0, lwork = -1;
  double query = 0;
  dsyev_("V", "U", &di, cov.data(), &di, w.data(), &query, &lwork, &info);
  lwork = std::max(1, (int)query);
  std::vector<double> work((size_t)lwork);
  dsyev_("V", "U", &di, cov.data(), &di, w.data(), work.data(), &lwork, &info);
  TESSERA_CHECK_ARG(info == 0, "eigendecomposition of the covariance failed (LAPACK info " << info << ")");
  // Column j of the column-major result (contiguous: cov[j·d ..]) is the j-th eigenvector.
  pa.axes = FloatMatrix(d, d);
  pa.variance.resize(d);
  for (size_t r = 0; r < d; ++r) {
    const size_t j = d - 1 - r;  // descending
    pa.variance[r] = std::max(0.0, w[j]);
    // A fixed sign (largest component positive) so that the axes do not depend on LAPACK's choice.
    const double* v = &cov[j * d];
    size_t big = 0;
    for (size_t t = 1; t < d; ++t)
      if (std::abs(v[t]) > std::abs(v[big])) big = t;
    const double s = v[big] < 0 ? -1.0 : 1.0;
    for (size_t t = 0; t < d; ++t) pa.axes(r, t) = float(s * v[t]);
  }
  return pa;
}

FloatMatrix project(MatrixView<const float> x, const PrincipalAxes& pa, size_t m) {
  const size_t n = x.rows, d = x.cols;
  FloatMatrix y(n, m);
  const size_t blocks = (n + kBlockRows - 1) / kBlockRows;
#pragma omp parallel for schedule(dynamic, 1) num_threads(::tessera::num_threads())
  for (ptrdiff_t b = 0; b < (ptrdiff_t)blocks; ++b) {
    const size_t r0 = size_t(b) * kBlockRows, nb = std::min(kBlockRows, n - r0);
    FloatMatrix c(nb, d);
    for (size_t i = 0; i < nb; ++i)
      for (size_t j = 0; j < d; ++j) c(i, j) = x(r0 + i, j) - pa.mean[j];
    gemm_abt(nb, m, d, 1.0f, c.data(), d, pa.axes.data(), d, 0.0f, y.row(r0), m);
  }
  return y;
}

FloatMatrix unproject(MatrixView<const float> y, const PrincipalAxes& pa) {
  const size_t n = y.rows, m = y.cols, d = pa.mean.size();
  FloatMatrix x(n, d);
  for (size_t i = 0; i < n; ++i) {
    float* out = x.row(i);
    std::copy(pa.mean.begin(), pa.mean.end(), out);
    for (size_t a = 0; a < m; ++a) {
      const float c = y(i, a);
      const float* axis = pa.axes.row(a);
      for (size_t j = 0; j < d; ++j) out[j] += c * axis[j];
    }
  }
  return x;
}

}  // namespace tessera::detail
