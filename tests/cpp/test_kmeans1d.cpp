#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "tessera/cluster/kmeans1d.h"
#include "tessera/core/error.h"

using namespace tessera;

namespace {

double run_cost(const std::vector<double>& v, size_t i, size_t j) {
  double m = 0;
  for (size_t t = i; t < j; ++t) m += v[t];
  m /= double(j - i);
  double c = 0;
  for (size_t t = i; t < j; ++t) c += (v[t] - m) * (v[t] - m);
  return c;
}

// Every way to cut the sorted values into k non-empty runs (optimal 1-D clusters are runs).
double brute_force(std::vector<double> v, size_t k) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  double best = std::numeric_limits<double>::infinity();
  std::vector<size_t> cuts(k + 1);
  // Enumerate cut positions 0 < c_1 < ... < c_{k-1} < n by recursion.
  auto rec = [&](auto&& self, size_t c, size_t from, double acc) -> void {
    if (c == k) {
      best = std::min(best, acc + run_cost(v, cuts[k - 1], n));
      return;
    }
    for (size_t p = from; p + (k - c) <= n; ++p) {
      cuts[c] = p;
      self(self, c + 1, p + 1, acc + run_cost(v, cuts[c - 1], p));
    }
  };
  cuts[0] = 0;
  if (k == 1) return run_cost(v, 0, n);
  rec(rec, 1, 1, 0.0);
  return best;
}

// The textbook O(k n²) dynamic programme, for sizes too large to enumerate.
double plain_dp(std::vector<double> v, size_t k) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  std::vector<double> prev(n + 1, std::numeric_limits<double>::infinity()), cur(prev);
  for (size_t j = 1; j <= n; ++j) prev[j] = run_cost(v, 0, j);
  for (size_t c = 2; c <= k; ++c) {
    std::fill(cur.begin(), cur.end(), std::numeric_limits<double>::infinity());
    for (size_t j = c; j <= n; ++j)
      for (size_t i = c - 1; i < j; ++i) cur[j] = std::min(cur[j], prev[i] + run_cost(v, i, j));
    std::swap(prev, cur);
  }
  return prev[n];
}

std::vector<float> values(size_t n, uint64_t seed, bool duplicates) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& t : v) t = duplicates ? std::round(g(rng) * 2) : g(rng);
  return v;
}

}  // namespace

TEST(KMeans1D, MatchesEveryPartitionOfSmallSets) {
  for (uint64_t seed = 0; seed < 6; ++seed)
    for (size_t k = 1; k <= 5; ++k) {
      const auto v = values(11, seed, seed % 2 == 1);
      const KMeans1DResult r = kmeans1d(v.size(), v.data(), k);
      const double ref = brute_force(std::vector<double>(v.begin(), v.end()), k);
      EXPECT_NEAR(r.inertia, ref, 1e-9 * (1 + ref)) << "seed " << seed << " k " << k;
    }
}

TEST(KMeans1D, MatchesPlainDynamicProgramme) {
  const auto v = values(240, 7, false);
  for (size_t k : {2, 9, 16}) {
    const KMeans1DResult r = kmeans1d(v.size(), v.data(), k);
    const double ref = plain_dp(std::vector<double>(v.begin(), v.end()), k);
    EXPECT_NEAR(r.inertia, ref, 1e-9 * (1 + ref)) << "k " << k;
  }
}

TEST(KMeans1D, CentroidsAreSortedMeansAndInertiaIsConsistent) {
  auto v = values(500, 3, false);
  const KMeans1DResult r = kmeans1d(v.size(), v.data(), 12);
  ASSERT_EQ(r.centroids.size(), 12u);
  EXPECT_TRUE(std::is_sorted(r.centroids.begin(), r.centroids.end()));
  size_t total = 0;
  for (size_t s : r.sizes) {
    EXPECT_GE(s, 1u);
    total += s;
  }
  EXPECT_EQ(total, v.size());
  // Optimal clusters: every value is nearest to its own centroid, so the inertia is Σ min distance².
  double nearest = 0;
  for (float t : v) {
    double b = std::numeric_limits<double>::infinity();
    for (double c : r.centroids) b = std::min(b, (t - c) * (t - c));
    nearest += b;
  }
  EXPECT_NEAR(nearest, r.inertia, 1e-9 * (1 + r.inertia));
  // The order of the input does not matter.
  std::reverse(v.begin(), v.end());
  const KMeans1DResult r2 = kmeans1d(v.size(), v.data(), 12);
  EXPECT_EQ(r.centroids, r2.centroids);
}

TEST(KMeans1D, RejectsBadInput) {
  const std::vector<float> v = {1, 2, 3};
  EXPECT_THROW(kmeans1d(3, v.data(), 0), InvalidArgument);
  EXPECT_THROW(kmeans1d(3, v.data(), 4), InvalidArgument);
  const std::vector<float> bad = {1, std::nanf(""), 3};
  EXPECT_THROW(kmeans1d(3, bad.data(), 2), InvalidArgument);
}
