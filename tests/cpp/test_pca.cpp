// Principal axes (the progressive-dimension k-means init rotates onto them) against a direct
// double-precision covariance.
#include <gtest/gtest.h>

#include <cmath>

#include "core/pca.h"
#include "test_helpers.h"
#include "tessera/core/threading.h"

using namespace tessera;

TEST(Pca, AxesAreOrthonormalEigenvectorsByDecreasingVariance) {
  const size_t n = 3000, d = 12;
  // Correlated columns with a non-zero mean, so that centring and rotation both matter.
  auto x = tessera::testing::gaussian_mixture(n, d, 5, 41, 0.8f);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 1; j < d; ++j) x(i, j) += 0.5f * x(i, j - 1) + 3.0f;
  const detail::PrincipalAxes pa = detail::principal_axes(x.view());

  std::vector<double> mean(d, 0.0), cov(d * d, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) mean[j] += x(i, j) / double(n);
  for (size_t i = 0; i < n; ++i)
    for (size_t a = 0; a < d; ++a)
      for (size_t b = 0; b < d; ++b) cov[a * d + b] += (x(i, a) - mean[a]) * (x(i, b) - mean[b]) / double(n);
  for (size_t j = 0; j < d; ++j) EXPECT_NEAR(pa.mean[j], mean[j], 1e-4 * (1 + std::abs(mean[j])));

  double total = 0;
  for (size_t j = 0; j < d; ++j) total += cov[j * d + j];
  for (size_t r = 0; r < d; ++r) {
    if (r > 0) EXPECT_LE(pa.variance[r], pa.variance[r - 1]);
    for (size_t s = 0; s < d; ++s) {
      double dot = 0;
      for (size_t t = 0; t < d; ++t) dot += double(pa.axes(r, t)) * pa.axes(s, t);
      EXPECT_NEAR(dot, r == s ? 1.0 : 0.0, 1e-5);
    }
    // Cov · a = λ a
    for (size_t a = 0; a < d; ++a) {
      double cv = 0;
      for (size_t b = 0; b < d; ++b) cv += cov[a * d + b] * pa.axes(r, b);
      EXPECT_NEAR(cv, pa.variance[r] * pa.axes(r, a), 1e-4 * total);
    }
  }
}

TEST(Pca, ProjectAndUnprojectRoundTripAndDoNotDependOnThreads) {
  const auto x = tessera::testing::gaussian_mixture(2500, 9, 4, 42);
  set_num_threads(1);
  const auto pa1 = detail::principal_axes(x.view());
  const auto y1 = detail::project(x.view(), pa1, 9);
  set_num_threads(2);
  const auto pa2 = detail::principal_axes(x.view());
  const auto y2 = detail::project(x.view(), pa2, 9);
  set_num_threads(0);
  ASSERT_EQ(y1.size(), y2.size());
  for (size_t i = 0; i < y1.size(); ++i) ASSERT_EQ(y1.data()[i], y2.data()[i]) << i;
  const auto back = detail::unproject(y1.view(), pa1);
  for (size_t i = 0; i < x.rows(); ++i)
    for (size_t j = 0; j < x.cols(); ++j) ASSERT_NEAR(back(i, j), x(i, j), 1e-4) << i << "," << j;
  // The first coordinate carries the most variance.
  const auto y = detail::project(x.view(), pa1, 2);
  double v0 = 0, v1 = 0;
  for (size_t i = 0; i < y.rows(); ++i) v0 += y(i, 0) * y(i, 0), v1 += y(i, 1) * y(i, 1);
  EXPECT_GE(v0, v1);
  EXPECT_NEAR(v0 / double(y.rows()), pa1.variance[0], 1e-3 * pa1.variance[0]);
}
