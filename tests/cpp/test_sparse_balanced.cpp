// The sparse, per-cluster-window balanced assignment (balanced_assign_sparse_exact) against references: the
// dense exact solver when every arc is listed and the windows are equal, brute-force enumeration for
// per-cluster windows and random arc subsets, infeasible windows reported (not thrown), and its prices
// checked as a certificate on the listed arcs (condition 1) with the sign rule (condition 3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "tessera/cluster/balanced_assignment.h"
#include "tessera/cluster/sparse_balanced_assignment.h"
#include "tessera/core/error.h"
#include "tessera/core/matrix.h"

using namespace tessera;

namespace {

struct Csr {
  size_t n = 0, k = 0;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> cluster;
  std::vector<float> cost;
  SparseCostsView view() const { return {n, k, offsets.data(), cluster.data(), cost.data()}; }
};

Csr dense_csr(const FloatMatrix& d) {
  Csr c;
  c.n = d.rows();
  c.k = d.cols();
  for (size_t i = 0; i < c.n; ++i) {
    for (size_t j = 0; j < c.k; ++j) c.cluster.push_back((int32_t)j), c.cost.push_back(d(i, j));
    c.offsets.push_back((int64_t)c.cluster.size());
  }
  return c;
}

// Every item lists `per_item` random distinct clusters (at least 1).
Csr random_csr(size_t n, size_t k, size_t per_item, std::mt19937_64& rng, bool ties) {
  Csr c;
  c.n = n;
  c.k = k;
  std::uniform_real_distribution<float> u(0.f, 10.f);
  std::vector<int32_t> ids(k);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < k; ++j) ids[j] = (int32_t)j;
    std::shuffle(ids.begin(), ids.end(), rng);
    for (size_t t = 0; t < std::min(per_item, k); ++t) {
      c.cluster.push_back(ids[t]);
      c.cost.push_back(ties ? std::floor(u(rng) / 4) : u(rng));
    }
    c.offsets.push_back((int64_t)c.cluster.size());
  }
  return c;
}

// Brute force over every choice of one listed arc per item: the least total meeting the windows, or +inf.
double brute_force(const Csr& c, const std::vector<size_t>& lo, const std::vector<size_t>& hi) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<int64_t> pick(c.n);
  for (size_t i = 0; i < c.n; ++i) pick[i] = c.offsets[i];
  while (true) {
    std::vector<size_t> sz(c.k, 0);
    double total = 0;
    for (size_t i = 0; i < c.n; ++i) ++sz[c.cluster[pick[i]]], total += c.cost[pick[i]];
    bool ok = true;
    for (size_t j = 0; j < c.k; ++j) ok = ok && sz[j] >= lo[j] && sz[j] <= hi[j];
    if (ok) best = std::min(best, total);
    size_t i = 0;
    for (; i < c.n; ++i) {
      if (++pick[i] < c.offsets[i + 1]) break;
      pick[i] = c.offsets[i];
    }
    if (i == c.n) break;
  }
  return best;
}

// Conditions 1 (on the listed arcs), 2 and 3 of the certificate for a solution.
void expect_certificate(const Csr& c, const std::vector<size_t>& lo, const std::vector<size_t>& hi,
                        const std::vector<int32_t>& a, const SparseBalancedResult& r) {
  ASSERT_EQ(r.prices.size(), c.k);
  std::vector<size_t> sz(c.k, 0);
  // Up to float rounding: the solver's mover values are float differences of float costs.
  double scale = 1;
  for (float v : c.cost) scale = std::max(scale, (double)std::abs(v));
  for (double p : r.prices) scale = std::max(scale, std::abs(p));
  for (size_t i = 0; i < c.n; ++i) {
    ++sz[a[i]];
    double own = std::numeric_limits<double>::infinity(), best = own;
    for (int64_t t = c.offsets[i]; t < c.offsets[i + 1]; ++t) {
      const double v = c.cost[t] + r.prices[c.cluster[t]];
      best = std::min(best, v);
      if (c.cluster[t] == a[i]) own = std::min(own, v);
    }
    EXPECT_LE(own, best + 1e-6 * scale) << "item " << i;
  }
  for (size_t j = 0; j < c.k; ++j) {
    EXPECT_GE(sz[j], lo[j]);
    EXPECT_LE(sz[j], hi[j]);
    if (r.prices[j] > 0) EXPECT_EQ(sz[j], hi[j]) << "cluster " << j;
    if (r.prices[j] < 0) EXPECT_EQ(sz[j], lo[j]) << "cluster " << j;
  }
}

}  // namespace

TEST(SparseBalanced, DenseArcsEqualWindowsMatchExactReference) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(0.f, 5.f);
  for (size_t trial = 0; trial < 6; ++trial) {
    const size_t n = 40 + 23 * trial, k = 3 + trial;
    FloatMatrix d(n, k);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < k; ++j) d(i, j) = trial % 2 ? std::floor(u(rng)) : u(rng);  // odd: many ties
    const SizeBounds b = default_size_bounds(n, k);
    std::vector<int32_t> ref(n), got(n);
    const double want = balanced_assign_exact(d.view(), b, ref.data());
    const Csr c = dense_csr(d);
    const std::vector<size_t> lo(k, b.lo), hi(k, b.hi);
    const SparseBalancedResult r = balanced_assign_sparse_exact(c.view(), lo, hi, got.data());
    ASSERT_TRUE(r.feasible);
    EXPECT_NEAR(r.cost, want, 1e-6 * std::max(1.0, want));
    expect_certificate(c, lo, hi, got, r);
    // The prices certify the full problem: balanced_certificate_violation on the dense matrix is ~0.
    EXPECT_LE(balanced_certificate_violation(d.view(), b, got.data(), r.prices), 1e-6);
  }
}

TEST(SparseBalanced, PerClusterWindowsMatchBruteForce) {
  std::mt19937_64 rng(11);
  size_t feasible = 0;
  for (size_t trial = 0; trial < 60; ++trial) {
    const size_t n = 3 + trial % 5, k = 2 + trial % 3, per = 1 + trial % k;
    const Csr c = random_csr(n, k, per, rng, trial % 3 == 0);
    std::vector<size_t> lo(k), hi(k);
    for (size_t j = 0; j < k; ++j) {
      lo[j] = std::uniform_int_distribution<size_t>(0, 2)(rng);
      hi[j] = lo[j] + std::uniform_int_distribution<size_t>(0, 3)(rng);
    }
    std::vector<int32_t> a(n, -1);
    const SparseBalancedResult r = balanced_assign_sparse_exact(c.view(), lo, hi, a.data());
    const double want = brute_force(c, lo, hi);
    ASSERT_EQ(r.feasible, std::isfinite(want)) << "trial " << trial;
    if (!r.feasible) continue;
    ++feasible;
    EXPECT_NEAR(r.cost, want, 1e-6 * std::max(1.0, want)) << "trial " << trial;
    expect_certificate(c, lo, hi, a, r);
  }
  EXPECT_GE(feasible, 15u);
}

TEST(SparseBalanced, LargerRandomWindowsCertified) {
  std::mt19937_64 rng(3);
  const size_t n = 3000, k = 40;
  const Csr c = random_csr(n, k, 8, rng, false);
  std::vector<size_t> lo(k), hi(k);
  for (size_t j = 0; j < k; ++j) lo[j] = 40 + j % 7, hi[j] = 90 + (j * 13) % 11;  // Σ lo ≤ n ≤ Σ hi
  std::vector<int32_t> a(n);
  const SparseBalancedResult r = balanced_assign_sparse_exact(c.view(), lo, hi, a.data());
  ASSERT_TRUE(r.feasible);
  expect_certificate(c, lo, hi, a, r);
}

TEST(SparseBalanced, AnyStartPricesGiveTheSameOptimum) {
  std::mt19937_64 rng(5);
  const size_t n = 2000, k = 30;
  const Csr c = random_csr(n, k, 6, rng, false);
  std::vector<size_t> lo(k), hi(k);
  for (size_t j = 0; j < k; ++j) lo[j] = 40 + j % 5, hi[j] = 80 + (j * 7) % 9;
  std::vector<int32_t> a(n), b(n);
  const SparseBalancedResult cold = balanced_assign_sparse_exact(c.view(), lo, hi, a.data());
  ASSERT_TRUE(cold.feasible);
  std::vector<double> start(k);
  for (double& v : start) v = std::uniform_real_distribution<double>(-3.0, 3.0)(rng);
  const SparseBalancedResult warm = balanced_assign_sparse_exact(c.view(), lo, hi, b.data(), start);
  ASSERT_TRUE(warm.feasible);
  EXPECT_NEAR(warm.cost, cold.cost, 1e-6 * cold.cost);
  expect_certificate(c, lo, hi, b, warm);
  // From its own optimal prices the solve is already done: the same assignment's cost.
  const SparseBalancedResult again = balanced_assign_sparse_exact(c.view(), lo, hi, b.data(), cold.prices);
  EXPECT_NEAR(again.cost, cold.cost, 1e-6 * cold.cost);
}

TEST(SparseBalanced, InfeasibleIsReportedNotThrown) {
  Csr c;
  c.n = 2;
  c.k = 2;
  c.offsets = {0, 1, 2};
  c.cluster = {0, 0};  // nobody lists cluster 1
  c.cost = {1.f, 2.f};
  std::vector<int32_t> a(2);
  EXPECT_FALSE(balanced_assign_sparse_exact(c.view(), {0, 1}, {2, 2}, a.data()).feasible);  // arcs cannot fill 1
  EXPECT_FALSE(balanced_assign_sparse_exact(c.view(), {2, 1}, {2, 2}, a.data()).feasible);  // Σ lo > n
  EXPECT_FALSE(balanced_assign_sparse_exact(c.view(), {0, 0}, {0, 1}, a.data()).feasible);  // Σ hi < n
  EXPECT_TRUE(balanced_assign_sparse_exact(c.view(), {0, 0}, {2, 0}, a.data()).feasible);
  c.offsets = {0, 1, 1};  // item 1 has no arc
  EXPECT_FALSE(balanced_assign_sparse_exact(c.view(), {0, 0}, {2, 2}, a.data()).feasible);
  c.offsets = {0, 1, 2};
  c.cluster = {0, 5};
  EXPECT_THROW(balanced_assign_sparse_exact(c.view(), {0, 0}, {2, 2}, a.data()), InvalidArgument);
}

TEST(SparseBalanced, NoItems) {
  Csr c;
  c.k = 3;
  const SparseBalancedResult r = balanced_assign_sparse_exact(c.view(), {0, 0, 0}, {1, 1, 1}, nullptr);
  EXPECT_TRUE(r.feasible);
  EXPECT_EQ(r.prices.size(), 3u);
}
