#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "test_helpers.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/core/distances.h"
#include "tessera/core/threading.h"

using namespace tessera;
using tessera::testing::gaussian_mixture;

namespace {

double objective_of(MatrixView<const float> x, MatrixView<const float> c, const std::vector<int32_t>& a) {
  double s = 0;
  for (size_t i = 0; i < x.rows; ++i)
    for (size_t j = 0; j < x.cols; ++j) {
      const double t = double(x(i, j)) - c(a[i], j);
      s += t * t;
    }
  return s;
}

}  // namespace

TEST(KMeans, ObjectiveMatchesLabelsAndLabelsAreNearest) {
  const auto x = gaussian_mixture(3000, 8, 12, 7);
  KMeansParams p;
  p.k = 12;
  p.n_init = 2;
  const auto r = kmeans(x.view(), p);
  ASSERT_EQ(r.centroids.rows(), 12u);
  EXPECT_NEAR(r.objective, objective_of(x.view(), r.centroids.view(), r.assignment), 1e-3 * r.objective);
  std::vector<int32_t> nearest(x.rows());
  nearest_centroids(x.view(), r.centroids.view(), nearest.data(), nullptr);
  EXPECT_EQ(nearest, r.assignment);
}

TEST(KMeans, CentroidsAreMeansOfTheirPoints) {
  const auto x = gaussian_mixture(1000, 5, 4, 3);
  std::vector<int32_t> a(x.rows());
  for (size_t i = 0; i < a.size(); ++i) a[i] = int32_t(i % 7);
  FloatMatrix c(7, 5);
  std::vector<size_t> counts;
  update_centroids(x.view(), a.data(), 7, c.view(), counts);
  for (size_t k = 0; k < 7; ++k)
    for (size_t j = 0; j < 5; ++j) {
      double s = 0;
      size_t n = 0;
      for (size_t i = 0; i < x.rows(); ++i)
        if (a[i] == (int32_t)k) s += x(i, j), ++n;
      EXPECT_NEAR(c(k, j), s / n, 1e-5);
      EXPECT_EQ(counts[k], n);
    }
}

TEST(KMeans, FindsWellSeparatedClusters) {
  // Four tight blobs far apart: the optimum is the blob partition; k-means++ with restarts must find it.
  const auto x = gaussian_mixture(2000, 4, 4, 11, 0.01f);
  KMeansParams p;
  p.k = 4;
  const auto r = kmeans(x.view(), p);
  EXPECT_LT(r.objective / x.rows(), 4 * 0.01 * 0.01 * 1.5);
}

TEST(KMeans, SameResultForOneAndTwoThreads) {
  const auto x = gaussian_mixture(5000, 16, 30, 5);
  KMeansParams p;
  p.k = 25;
  p.max_iter = 20;
  set_num_threads(1);
  const auto a = kmeans(x.view(), p);
  set_num_threads(2);
  const auto b = kmeans(x.view(), p);
  set_num_threads(0);
  EXPECT_EQ(a.assignment, b.assignment);
  EXPECT_EQ(0, std::memcmp(a.centroids.data(), b.centroids.data(), a.centroids.size() * sizeof(float)));
}

TEST(KMeans, DuplicateAndConstantRowsStillWork) {
  FloatMatrix x(100, 3);  // all zero: every distance ties
  KMeansParams p;
  p.k = 10;
  const auto r = kmeans(x.view(), p);
  EXPECT_EQ(r.objective, 0.0);
  p.size_bounds = default_size_bounds(100, 10);
  const auto b = kmeans(x.view(), p);
  std::vector<size_t> sizes(10);
  for (int32_t c : b.assignment) ++sizes[c];
  for (size_t s : sizes) {
    EXPECT_GE(s, p.size_bounds->lo);
    EXPECT_LE(s, p.size_bounds->hi);
  }
}

TEST(KMeans, BalancedSizesWithinBounds) {
  const auto x = gaussian_mixture(4000, 8, 5, 9);  // 5 natural blobs, 16 clusters: forces imbalance
  KMeansParams p;
  p.k = 16;
  p.size_bounds = default_size_bounds(4000, 16);
  const auto r = kmeans(x.view(), p);
  std::vector<size_t> sizes(16);
  for (int32_t c : r.assignment) ++sizes[c];
  for (size_t s : sizes) {
    EXPECT_GE(s, 249u);
    EXPECT_LE(s, 251u);
  }
  EXPECT_NEAR(r.objective, objective_of(x.view(), r.centroids.view(), r.assignment), 1e-3 * r.objective);
}

TEST(KMeans, RejectsBadInput) {
  FloatMatrix x(5, 2);
  KMeansParams p;
  p.k = 6;
  EXPECT_THROW(kmeans(x.view(), p), InvalidArgument);  // N < K
  p.k = 2;
  x(4, 0) = INFINITY;
  EXPECT_THROW(kmeans(x.view(), p), InvalidArgument);
  x(4, 0) = 0;
  p.size_bounds = SizeBounds{3, 4};  // 2 · 3 > 5
  EXPECT_THROW(kmeans(x.view(), p), InvalidArgument);
}

TEST(KMeans, TrainingSampleGivesCentroidsFromTheSample) {
  const auto x = gaussian_mixture(6000, 8, 10, 13);
  KMeansParams p;
  p.k = 10;
  p.max_train_points = 1500;
  const auto r = kmeans(x.view(), p);
  EXPECT_EQ(r.sample_rows.size(), 1500u);
  EXPECT_EQ(r.assignment.size(), 1500u);
}

// Large inputs: the restarts run on a 256·k-row sample, the winner's last iterations on all rows.
TEST(KMeans, SampleWarmStartRefinesOnAllRows) {
  const size_t n = 12000, k = 8;  // n ≥ 4 · 256 · k
  const auto x = gaussian_mixture(n, 8, 40, 17);
  for (const bool balanced : {false, true}) {
    SCOPED_TRACE(balanced ? "balanced" : "unbalanced");
    KMeansParams p;
    p.k = k;
    p.max_iter = 30;
    p.n_init = 2;
    if (balanced) p.size_bounds = default_size_bounds(n, k);
    const auto warm = kmeans(x.view(), p);
    EXPECT_EQ(warm.warm_start_rows, 256 * k);
    ASSERT_EQ(warm.assignment.size(), n);
    // The labels and objective are those of all rows under the final centroids.
    EXPECT_NEAR(warm.objective, objective_of(x.view(), warm.centroids.view(), warm.assignment), 1e-4 * warm.objective);
    if (balanced) {
      std::vector<size_t> sizes(k);
      for (int32_t c : warm.assignment) ++sizes[c];
      for (size_t s : sizes) {
        EXPECT_GE(s, p.size_bounds->lo);
        EXPECT_LE(s, p.size_bounds->hi);
      }
    } else {
      std::vector<int32_t> nearest(n);
      std::vector<float> dist(n);
      nearest_centroids(x.view(), warm.centroids.view(), nearest.data(), dist.data());
      EXPECT_EQ(nearest, warm.assignment);
    }
    // About as good as Lloyd on all rows from the same seeds.
    p.sample_warm_start = false;
    const auto cold = kmeans(x.view(), p);
    EXPECT_EQ(cold.warm_start_rows, 0u);
    EXPECT_LT(warm.objective, 1.02 * cold.objective);
    // The same result at any thread count.
    p.sample_warm_start = true;
    set_num_threads(1);
    const auto one = kmeans(x.view(), p);
    set_num_threads(0);
    EXPECT_EQ(one.assignment, warm.assignment);
    EXPECT_EQ(0, std::memcmp(one.centroids.data(), warm.centroids.data(), warm.centroids.size() * sizeof(float)));
  }
}

// User bounds (here loose on one side, tight on the other) scale to the sample and hold on all rows.
TEST(KMeans, SampleWarmStartKeepsUserBounds) {
  const size_t n = 9000, k = 8;
  const auto x = gaussian_mixture(n, 6, 5, 23);  // 5 natural blobs for 8 clusters: the bounds bind
  for (const SizeBounds b : {SizeBounds{1000, 1300}, SizeBounds{n / k, n / k}}) {
    KMeansParams p;
    p.k = k;
    p.max_iter = 20;
    p.n_init = 2;
    p.size_bounds = b;
    const auto r = kmeans(x.view(), p);
    EXPECT_GT(r.warm_start_rows, 0u);
    std::vector<size_t> sizes(k);
    for (int32_t c : r.assignment) ++sizes[c];
    for (size_t s : sizes) {
      EXPECT_GE(s, b.lo);
      EXPECT_LE(s, b.hi);
    }
  }
}

TEST(KMeans, SampleWarmStartOnlyWhereItPays) {
  KMeansParams p;
  p.k = 8;
  p.max_iter = 30;
  p.n_init = 1;
  const auto small = gaussian_mixture(32 * 8 - 1, 4, 20, 3);  // one row short of 16 rows per centre in half
  EXPECT_EQ(kmeans(small.view(), p).warm_start_rows, 0u);
  const auto medium = gaussian_mixture(32 * 8, 4, 20, 3);  // half the rows
  EXPECT_EQ(kmeans(medium.view(), p).warm_start_rows, 16u * 8);
  const auto large = gaussian_mixture(1024 * 8, 4, 20, 3);  // 256 rows per centre at most
  EXPECT_EQ(kmeans(large.view(), p).warm_start_rows, 256u * 8);
  p.max_iter = 4;  // no iterations would be left for the sample
  EXPECT_EQ(kmeans(large.view(), p).warm_start_rows, 0u);
}

namespace {

// Residual-like data: zero-centred, anisotropic (scale 1/(1+j) per dimension), a heavy-tailed scale per row.
FloatMatrix diffuse_heavy_tailed(size_t n, size_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::chi_squared_distribution<float> chi(3.0f);
  FloatMatrix x(n, d);
  for (size_t i = 0; i < n; ++i) {
    const float s = std::sqrt(3.0f / chi(rng));
    for (size_t j = 0; j < d; ++j) x(i, j) = s * g(rng) / (1.0f + float(j));
  }
  return x;
}

KMeansResult run(const FloatMatrix& x, size_t k, KMeansInit init) {
  KMeansParams p;
  p.k = k;
  p.n_init = 1;
  p.max_iter = 25;
  p.seed = 3;
  p.init = init;
  return kmeans(x.view(), p);
}

}  // namespace

TEST(KMeans, EveryInitGivesNearestLabelsAndTheSameResultForAnyThreads) {
  const auto x = gaussian_mixture(4000, 24, 40, 51, 0.6f);
  for (KMeansInit init : {KMeansInit::kmeans_plus_plus, KMeansInit::random, KMeansInit::progressive,
                          KMeansInit::automatic}) {
    SCOPED_TRACE(kmeans_init_name(init));
    set_num_threads(1);
    const auto a = run(x, 32, init);
    set_num_threads(2);
    const auto b = run(x, 32, init);
    set_num_threads(0);
    EXPECT_EQ(a.assignment, b.assignment);
    EXPECT_EQ(0, std::memcmp(a.centroids.data(), b.centroids.data(), a.centroids.size() * sizeof(float)));
    EXPECT_NEAR(a.objective, objective_of(x.view(), a.centroids.view(), a.assignment), 1e-3 * a.objective);
    std::vector<int32_t> nearest(x.rows());
    nearest_centroids(x.view(), a.centroids.view(), nearest.data(), nullptr);
    EXPECT_EQ(nearest, a.assignment);
    EXPECT_EQ(parse_kmeans_init(kmeans_init_name(init)), init);
  }
  EXPECT_THROW(parse_kmeans_init("kmeans||"), InvalidArgument);
}

TEST(KMeans, TheRaceKeepsTheBetterSeedOnTightClustersAndOnDiffuseData) {
  // Tight, well-separated clusters: k-means++ finds them, the progressive seed (grown from one principal
  // coordinate) merges some; the race must keep k-means++.
  const auto clustered = gaussian_mixture(6000, 32, 64, 12, 0.05f);
  const double pp = run(clustered, 64, KMeansInit::kmeans_plus_plus).objective;
  const double pg = run(clustered, 64, KMeansInit::progressive).objective;
  const double au = run(clustered, 64, KMeansInit::automatic).objective;
  EXPECT_LT(pp, 0.5 * pg);
  EXPECT_LE(au, pp * 1.000001);
  // Diffuse heavy-tailed data, where the progressive seed is ahead after its stages but ends 5% behind: the
  // race must not take it (its k-means++ rival has fewer candidates per centre than init = k-means++, so
  // it may end a little above that).
  const auto diffuse = diffuse_heavy_tailed(8000, 64, 11);
  const double dpp = run(diffuse, 128, KMeansInit::kmeans_plus_plus).objective;
  const double dpg = run(diffuse, 128, KMeansInit::progressive).objective;
  const double dau = run(diffuse, 128, KMeansInit::automatic).objective;
  EXPECT_LT(dpp, dpg * 0.98);
  EXPECT_LT(dau, dpg * 0.98) << dpp << " " << dpg << " " << dau;
  EXPECT_LE(dau, dpp * 1.015) << dpp << " " << dpg << " " << dau;
}

TEST(KMeans, BalancedAutomaticInitIsKMeansPlusPlus) {
  const auto x = gaussian_mixture(3000, 16, 20, 61);
  KMeansParams p;
  p.k = 16;
  p.n_init = 1;
  p.max_iter = 10;
  p.size_bounds = default_size_bounds(x.rows(), p.k);
  const auto a = kmeans(x.view(), p);
  p.init = KMeansInit::kmeans_plus_plus;
  const auto b = kmeans(x.view(), p);
  EXPECT_EQ(a.assignment, b.assignment);
}
