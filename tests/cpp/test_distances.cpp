#include <gtest/gtest.h>

#include <random>

#include "tessera/core/distances.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "cluster/blocked_rows.h"
#include "core/simd.h"
#include "tessera/cluster/balanced_assignment.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/quant/random_rotation.h"

using namespace tessera;

TEST(Distances, MatchesDirectComputation) {
  std::mt19937 rng(1);
  std::normal_distribution<float> g;
  FloatMatrix x(300, 17), c(23, 17);
  for (size_t i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
  for (size_t i = 0; i < c.size(); ++i) c.data()[i] = g(rng);
  std::vector<float> d(300 * 23);
  l2_sqr_distances(x.view(), c.view(), nullptr, d.data());
  std::vector<int32_t> a(300), top(300 * 3);
  std::vector<float> ad(300);
  nearest_centroids(x.view(), c.view(), a.data(), ad.data());
  nearest_centroids_topm(x.view(), c.view(), 3, top.data(), nullptr);
  for (size_t i = 0; i < 300; ++i) {
    int best = 0;
    double bestd = 1e30;
    for (size_t j = 0; j < 23; ++j) {
      double s = 0;
      for (size_t t = 0; t < 17; ++t) s += double(x(i, t) - c(j, t)) * (x(i, t) - c(j, t));
      EXPECT_NEAR(d[i * 23 + j], s, 1e-3 * (1 + s));
      if (s < bestd) bestd = s, best = (int)j;
    }
    EXPECT_EQ(a[i], best);
    EXPECT_EQ(top[i * 3], best);
    EXPECT_NEAR(ad[i], bestd, 1e-3 * (1 + bestd));
  }
}

TEST(Distances, RejectsDimensionMismatch) {
  FloatMatrix x(4, 3), c(2, 5);
  std::vector<float> d(8);
  EXPECT_THROW(l2_sqr_distances(x.view(), c.view(), nullptr, d.data()), InvalidArgument);
}

TEST(CheckFinite, NamesTheFirstBadRow) {
  FloatMatrix x(5, 2);
  x(3, 1) = std::numeric_limits<float>::quiet_NaN();
  try {
    check_finite(x.view());
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("row 3"), std::string::npos);
  }
}

// The CTest entries that run the suite under valgrind (no AVX-512) and qemu (no AVX) name the unit their
// CPU leaves the clones, so a run that silently fell back to another one fails.
TEST(Simd, ClonesRunOnTheExpectedUnit) {
  const char* want = std::getenv("TESSERA_EXPECT_CLONE");
  if (!want) GTEST_SKIP() << "clones run on " << tessera::detail::clone_unit();
  EXPECT_STREQ(tessera::detail::clone_unit(), want);
}

namespace {

// FNV-1a over the bytes of a vector.
template <class T>
void mix(uint64_t& h, const T* p, size_t n) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n * sizeof(T); ++i) h = (h ^ b[i]) * 0x100000001b3ull;
}

}  // namespace

// Our own kernels (not BLAS, which picks its kernel per CPU) must give the same bits on every unit: k-means++
// through the few-centroid distances, and the balanced assignment's scans and Dijkstra sweeps on a fixed
// cost matrix. The native run writes the fingerprint (TESSERA_FINGERPRINT_WRITE); the valgrind and qemu runs
// compare with it (TESSERA_FINGERPRINT_CHECK).
TEST(Simd, SameResultsOnEveryUnit) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  FloatMatrix x(1500, 37);  // 37: vector bodies and scalar tails
  for (size_t i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
  uint64_t h = 0xcbf29ce484222325ull;
  const FloatMatrix c = kmeans_plus_plus(x.view(), 24, 3);
  mix(h, c.data(), c.size());
  std::vector<float> d(x.rows() * 5);
  l2_sqr_distances(x.view(), MatrixView<const float>(c.data(), 5, c.cols()), nullptr, d.data());
  mix(h, d.data(), d.size());
  FloatMatrix cost(x.rows(), 24);
  for (size_t i = 0; i < cost.size(); ++i) cost.data()[i] = std::abs(g(rng)) + 0.001f * float(i % 97);
  BalancedAssigner assigner(default_size_bounds(x.rows(), 24));
  std::vector<int32_t> a(x.rows());
  const double total = assigner.assign_costs(cost.view(), a.data());
  mix(h, a.data(), a.size());
  mix(h, &total, 1);
  mix(h, assigner.prices().data(), assigner.prices().size());
  std::vector<float> rotated(x.size());
  RandomRotation(x.cols(), RotationKind::hadamard, 5).apply(x.rows(), x.data(), rotated.data());
  mix(h, rotated.data(), rotated.size());
  std::ostringstream hex;
  hex << std::hex << h;
  if (const char* path = std::getenv("TESSERA_FINGERPRINT_WRITE")) {
    std::ofstream(path) << hex.str() << "\n";
  } else if (const char* check = std::getenv("TESSERA_FINGERPRINT_CHECK")) {
    std::ifstream in(check);
    std::string want;
    ASSERT_TRUE(in >> want) << "no fingerprint at " << check << " (the native run writes it)";
    EXPECT_EQ(hex.str(), want) << "results on " << tessera::detail::clone_unit() << " differ from the native run";
  }
}

// The blocked layout k-means++ measures candidates with: every row (also in the last, partial block) and
// every candidate (also past a multiple of the group size) against a direct double-precision computation.
TEST(Distances, BlockedRowsMatchDirectComputation) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  FloatMatrix x(203, 29), c(7, 29);
  for (size_t i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
  for (size_t i = 0; i < c.size(); ++i) c.data()[i] = g(rng);
  std::vector<float> cn(7);
  row_norms_sqr(c.view(), cn.data());
  const tessera::detail::BlockedRows rows(x.view());
  ASSERT_EQ(rows.rows(), 203u);
  std::vector<float> d(203 * 7);
  rows.distances(c.view(), cn.data(), d.data());
  for (size_t i = 0; i < 203; ++i)
    for (size_t t = 0; t < 7; ++t) {
      double s = 0;
      for (size_t l = 0; l < 29; ++l) s += double(x(i, l) - c(t, l)) * (x(i, l) - c(t, l));
      EXPECT_NEAR(d[i * 7 + t], s, 1e-4 * (1 + s)) << i << ", " << t;
    }
  // Rows measured against themselves are at distance 0 (up to rounding, never below).
  std::vector<float> self(203);
  std::vector<float> xn(203);
  row_norms_sqr(x.view(), xn.data());
  rows.distances(MatrixView<const float>(x.row(5), 1, 29), &xn[5], self.data());
  EXPECT_GE(self[5], 0.0f);
  EXPECT_LT(self[5], 1e-4f);
}
