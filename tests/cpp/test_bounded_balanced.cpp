// The bounded-memory balanced assignment (candidate lists + certificate rounds) against the dense engine
// (BalancedAssigner) and the exact min-cost flow (LEMON network simplex): the same optimum, every bound
// held, the certificate verified on the full dense matrix; adversarial costs (ties, hub clusters, lo = hi,
// k = 1, c ≥ k), the L2 path, warm starts across calls and thread-count independence.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "balanced_test_util.h"
#include "test_helpers.h"
#include "tessera/cluster/balanced_assignment.h"
#include "tessera/cluster/bounded_balanced_assignment.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/core/distances.h"
#include "tessera/core/threading.h"

using namespace tessera;
using tessera::testing::cost_of;
using tessera::testing::expect_sizes_within;

namespace {

FloatMatrix some_rows(const FloatMatrix& x, size_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, x.rows() - 1);
  FloatMatrix c(k, x.cols());
  for (size_t j = 0; j < k; ++j) {
    const size_t i = pick(rng);
    for (size_t t = 0; t < x.cols(); ++t) c(j, t) = x(i, t) + 0.05f * float(int(t % 3) - 1);
  }
  return c;
}

FloatMatrix l2_costs(const FloatMatrix& x, const FloatMatrix& c) {
  FloatMatrix d(x.rows(), c.rows());
  l2_sqr_distances(x.view(), c.view(), nullptr, d.data());
  return d;
}

double total(const FloatMatrix& d, const std::vector<int32_t>& a) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += d(i, a[i]);
  return s;
}

// The bounded solver on d equals the dense one and the exact reference, with a valid certificate.
void expect_same_optimum(const FloatMatrix& d, SizeBounds b, BoundedBalancedParams prm, const char* what) {
  const size_t n = d.rows(), k = d.cols();
  std::vector<int32_t> ad(n), ab(n);
  BalancedAssigner dense(b);
  const double ref = dense.assign_costs(d.view(), ad.data());
  BoundedBalancedAssigner bounded(b, prm);
  const double got = bounded.assign_costs(d.view(), ab.data());
  expect_sizes_within(ab, k, b);
  EXPECT_NEAR(got, total(d, ab), 1e-9 * std::abs(got) + 1e-9) << what;
  EXPECT_NEAR(got, ref, 1e-6 * std::abs(ref) + 1e-6) << what << " n " << n << " k " << k << " bounds " << b.lo
                                                     << ".." << b.hi << " c " << prm.candidates;
  EXPECT_LE(balanced_certificate_violation(d.view(), b, ab.data(), bounded.prices()),
            1e-5 * (1 + std::abs(ref) / double(n)))
      << what;
  if (n * k <= 8000) {  // the dense solver is itself tested against LEMON on larger ones
    std::vector<int32_t> ae(n);
    const double exact = balanced_assign_exact(d.view(), b, ae.data());
    EXPECT_NEAR(got, exact, 1e-6 * std::abs(exact) + 1e-6) << what;
  }
}

BoundedBalancedParams small_params(size_t c, size_t block, size_t sample = 0) {
  BoundedBalancedParams p;
  p.candidates = c;
  p.block_rows = block;
  p.sample_rows = sample;
  return p;
}

}  // namespace

TEST(BoundedBalanced, RandomCostsEqualTheDenseSolver) {
  uint64_t seed = 1;
  for (size_t n : {60, 500, 2000})
    for (size_t k : {3, 16, 50})
      for (int kind : {0, 1, 2}) {
        if (2 * k > n) continue;
        std::mt19937_64 rng(seed++);
        std::uniform_real_distribution<float> u(0.f, 10.f);
        FloatMatrix d(n, k);
        for (size_t i = 0; i < d.size(); ++i) d.data()[i] = u(rng);
        const size_t q = n / k;
        const SizeBounds b = kind == 0 ? default_size_bounds(n, k) : kind == 1 ? SizeBounds{0, 2 * q + 1}
                                                                                : SizeBounds{q / 2, q + 2};
        expect_same_optimum(d, b, small_params(4, 97), "uniform");
      }
}

TEST(BoundedBalanced, AdversarialCosts) {
  const size_t n = 600, k = 20;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  // Ties: costs on a coarse grid, many equal.
  FloatMatrix ties(n, k);
  for (size_t i = 0; i < ties.size(); ++i) ties.data()[i] = std::floor(4 * u(rng));
  // Hub: every item's nearest cluster is 0, then 1, 2 (candidates never list the far clusters).
  FloatMatrix hub(n, k);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < k; ++j) hub(i, j) = j < 3 ? float(j) * 0.1f + 0.01f * u(rng) : 50.f + u(rng);
  // A constant matrix: every assignment is optimal.
  FloatMatrix flat(n, k);
  std::fill(flat.data(), flat.data() + flat.size(), 2.5f);
  const SizeBounds exact_sizes{n / k, n / k};
  for (const FloatMatrix* d : {&ties, &hub, &flat})
    for (const SizeBounds b : {default_size_bounds(n, k), exact_sizes, SizeBounds{10, 200}})
      for (size_t c : {1, 4}) expect_same_optimum(*d, b, small_params(c, 256), "adversarial");
}

TEST(BoundedBalanced, DegenerateShapes) {
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> u(-1.f, 1.f);  // negative costs too
  // k = 1; c ≥ k; more candidates than clusters; block larger than n; one row per block.
  for (const auto& [n, k, c, block] : std::vector<std::array<size_t, 4>>{
           {40, 1, 4, 16}, {300, 5, 5, 64}, {300, 5, 12, 1000}, {120, 10, 2, 1}, {17, 17, 3, 5}}) {
    FloatMatrix d(n, k);
    for (size_t i = 0; i < d.size(); ++i) d.data()[i] = u(rng);
    expect_same_optimum(d, default_size_bounds(n, k), small_params(c, block), "degenerate");
    expect_same_optimum(d, SizeBounds{n / k, (n + k - 1) / k}, small_params(c, block), "degenerate tight");
  }
  // No rows.
  BoundedBalancedAssigner empty({0, 0});
  FloatMatrix none(0, 4);
  EXPECT_EQ(empty.assign_costs(none.view(), nullptr), 0.0);
  // Infeasible bounds are refused, as by the dense solver.
  FloatMatrix d(10, 3);
  std::vector<int32_t> a(10);
  BoundedBalancedAssigner infeasible({4, 5});
  EXPECT_ANY_THROW(infeasible.assign_costs(d.view(), a.data()));
  EXPECT_ANY_THROW(BoundedBalancedAssigner({1, 2}, small_params(0, 10)));
}

// The L2 path from points and centroids, cold from a sample and from zero prices, then warm across calls
// with moved centroids (as in Lloyd's iterations).
TEST(BoundedBalanced, PointsPathAndWarmStarts) {
  const size_t n = 5000, k = 48, dd = 16;
  FloatMatrix x = tessera::testing::gaussian_mixture(n, dd, 6, 3);
  FloatMatrix c = some_rows(x, k, 4);
  const SizeBounds b = default_size_bounds(n, k);
  for (const size_t sample : {size_t(0), BoundedBalancedParams::kAuto, size_t(1000)}) {
    BoundedBalancedAssigner bounded(b, small_params(8, 1000, sample));
    BalancedAssigner dense(b);
    FloatMatrix cc = c;
    std::mt19937 rng(7);
    std::normal_distribution<float> g;
    for (int call = 0; call < 3; ++call) {
      std::vector<int32_t> ab(n), ad(n);
      std::vector<float> db(n), dist(n);
      const double got = bounded.assign(x.view(), cc.view(), ab.data(), db.data());
      const double ref = dense.assign(x.view(), cc.view(), ad.data(), dist.data());
      const FloatMatrix d = l2_costs(x, cc);
      expect_sizes_within(ab, k, b);
      EXPECT_NEAR(got, ref, 1e-6 * ref) << "sample " << sample << " call " << call;
      EXPECT_LE(balanced_certificate_violation(d.view(), b, ab.data(), bounded.prices()), 1e-5 * (1 + ref / n));
      for (size_t i = 0; i < n; i += 97) EXPECT_NEAR(db[i], d(i, ab[i]), 1e-4 * (1 + d(i, ab[i])));
      if (call > 0) {
        EXPECT_LE(bounded.stats().rounds, 3u);
      }
      for (size_t i = 0; i < cc.size(); ++i) cc.data()[i] += 0.02f * g(rng);
    }
  }
}

// Hub centroids near the data's centre attract most items: far from balance, candidates miss the
// clusters that must grow, and the certificate rounds add the arcs.
TEST(BoundedBalanced, HubCentroidsColdStart) {
  const size_t n = 4800, k = 24, dd = 8;
  FloatMatrix x = tessera::testing::gaussian_mixture(n, dd, 5, 41);
  FloatMatrix c = some_rows(x, k, 42);
  for (size_t j = 0; j < k; ++j)
    for (size_t t = 0; t < dd; ++t) c(j, t) *= j < 3 ? 0.01f : 3.0f;
  const FloatMatrix d = l2_costs(x, c);
  for (const SizeBounds b : {default_size_bounds(n, k), SizeBounds{n / k, n / k}, SizeBounds{100, 400}}) {
    expect_same_optimum(d, b, small_params(4, 512), "hub");
    BoundedBalancedParams p = small_params(4, 512, BoundedBalancedParams::kAuto);
    expect_same_optimum(d, b, p, "hub sampled");
  }
}

TEST(BoundedBalanced, IdenticalForOneAndTwoThreads) {
  const size_t n = 4000, k = 64;
  FloatMatrix x = tessera::testing::gaussian_mixture(n, 24, 20, 11);
  FloatMatrix c = some_rows(x, k, 12);
  const SizeBounds b = default_size_bounds(n, k);
  std::vector<int32_t> a1(n), a2(n);
  std::vector<float> d1(n), d2(n);
  set_num_threads(1);
  BoundedBalancedAssigner b1(b, small_params(6, 700));
  const double c1 = b1.assign(x.view(), c.view(), a1.data(), d1.data());
  set_num_threads(2);
  BoundedBalancedAssigner b2(b, small_params(6, 700));
  const double c2 = b2.assign(x.view(), c.view(), a2.data(), d2.data());
  set_num_threads(0);
  EXPECT_EQ(c1, c2);
  EXPECT_EQ(a1, a2);
  EXPECT_EQ(d1, d2);
  EXPECT_EQ(b1.prices(), b2.prices());
  EXPECT_EQ(b1.stats().arcs, b2.stats().arcs);
}

// Balanced k-means takes the bounded assigner above its dense budget: the same optimum every iteration, so
// the same run (the sample warm start and the full rows both switch).
TEST(BoundedBalanced, BalancedKMeansGivesTheSameResultOnBothPaths) {
  const size_t n = 4000, k = 16;
  FloatMatrix x = tessera::testing::gaussian_mixture(n, 8, 10, 5);
  KMeansParams p;
  p.k = k;
  p.max_iter = 12;
  p.n_init = 1;
  p.size_bounds = default_size_bounds(n, k);
  for (const bool warm : {false, true}) {
    p.sample_warm_start = warm;
    p.balanced_dense_max_bytes = size_t(2) << 30;
    const KMeansResult dense = kmeans(x.view(), p);
    p.balanced_dense_max_bytes = 0;
    const KMeansResult bounded = kmeans(x.view(), p);
    EXPECT_NEAR(bounded.objective, dense.objective, 1e-6 * dense.objective) << "warm " << warm;
    EXPECT_EQ(bounded.iterations, dense.iterations);
    expect_sizes_within(bounded.assignment, k, *p.size_bounds);
  }
}

// Time and memory at scale, n = 1,000,000, d = 128, k = 256 (run with --gtest_also_run_disabled_tests, under
// /usr/bin/time -v for the peak memory): TESSERA_BALANCED_PATH=dense runs BalancedAssigner instead (the
// input alone is 512 MB).
TEST(BoundedBalanced, DISABLED_Scale1M) {
  const char* path = std::getenv("TESSERA_BALANCED_PATH");
  const bool dense_path = path && std::string(path) == "dense";
  const size_t n = 1000000, dd = 128, k = 256;
  FloatMatrix x = tessera::testing::gaussian_mixture(n, dd, 300, 1, 0.5f);
  FloatMatrix c = some_rows(x, k, 2);
  using clk = std::chrono::steady_clock;
  auto secs = [](clk::time_point a) { return std::chrono::duration<double>(clk::now() - a).count(); };
  std::vector<int32_t> a(n);
  std::vector<float> dist(n);
  const SizeBounds b = default_size_bounds(n, k);
  BalancedAssigner dense(b);
  BoundedBalancedAssigner bounded(b);
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (int it = 0; it < 4; ++it) {
    if (it > 0)  // a Lloyd-like move: centroids drift slightly
      for (size_t i = 0; i < c.size(); ++i) c.data()[i] += 0.003f * g(rng);
    const auto t0 = clk::now();
    const double cost = dense_path ? dense.assign(x.view(), c.view(), a.data(), dist.data())
                                   : bounded.assign(x.view(), c.view(), a.data(), dist.data());
    if (dense_path)
      std::printf("[ 1M dense ] %s: %.3f s, cost %.9g, paths %zu in %zu phases\n", it ? "warm" : "cold", secs(t0),
                  cost, dense.stats().steps, dense.stats().phases);
    else
      std::printf("[ 1M bounded ] %s: %.3f s, cost %.9g, paths %zu in %zu phases, rounds %zu (rows checked %zu), arcs %zu (+%zu), "
                  "reconnects %zu\n",
                  it ? "warm" : "cold", secs(t0), cost, bounded.stats().steps, bounded.stats().phases,
                  bounded.stats().rounds, bounded.stats().rows_checked, bounded.stats().arcs, bounded.stats().arcs_added,
                  bounded.stats().reconnects);
    expect_sizes_within(a, k, b);
  }
}
