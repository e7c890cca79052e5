// Size-constrained assignment: the scalable BalancedAssigner against the exact min-cost flow
// (LEMON network simplex), the optimality certificate, degenerate inputs, determinism and warm starts.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "balanced_test_util.h"
#include "tessera/cluster/balanced_assignment.h"
#include "tessera/core/distances.h"
#include "tessera/core/threading.h"

using namespace tessera;
using tessera::testing::cost_of;
using tessera::testing::expect_sizes_within;

namespace {

// A Gaussian mixture (n × d) with `modes` centres of spread `spread`, or uniform data when modes == 0.
FloatMatrix make_data(size_t n, size_t d, size_t modes, uint64_t seed, float spread = 0.3f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  FloatMatrix x(n, d);
  if (modes == 0) {
    for (size_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
    return x;
  }
  FloatMatrix c(modes, d);
  for (size_t i = 0; i < c.size(); ++i) c.data()[i] = g(rng);
  std::uniform_int_distribution<size_t> pick(0, modes - 1);
  for (size_t i = 0; i < n; ++i) {
    const size_t m = pick(rng);
    for (size_t t = 0; t < d; ++t) x(i, t) = c(m, t) + spread * g(rng);
  }
  return x;
}

// k centroids: random rows of x plus a little noise (as after k-means++ seeding).
FloatMatrix pick_centroids(const FloatMatrix& x, size_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, x.rows() - 1);
  std::normal_distribution<float> g;
  FloatMatrix c(k, x.cols());
  for (size_t j = 0; j < k; ++j) {
    const size_t i = pick(rng);
    for (size_t t = 0; t < x.cols(); ++t) c(j, t) = x(i, t) + 0.05f * g(rng);
  }
  return c;
}

FloatMatrix cost_matrix(const FloatMatrix& x, const FloatMatrix& c) {
  FloatMatrix d(x.rows(), c.rows());
  l2_sqr_distances(x.view(), c.view(), nullptr, d.data());
  return d;
}

struct Case {
  size_t n, k, d, modes;
  int bounds;  // 0 default, 1 wide (lo = 0), 2 narrow, 3 exact sizes
  uint64_t seed;
};

SizeBounds bounds_for(const Case& cs) {
  const size_t q = cs.n / cs.k;
  switch (cs.bounds) {
    case 1: return {0, 2 * q + 1};
    case 2: return {q > 2 ? q - 2 : 0, q + 3};
    case 3: return {q, q};
    default: return default_size_bounds(cs.n, cs.k);
  }
}

}  // namespace

TEST(BalancedBounds, DefaultsAndChecks) {
  SizeBounds b = default_size_bounds(1000, 10);
  EXPECT_EQ(b.lo, 99u);
  EXPECT_EQ(b.hi, 101u);
  b = default_size_bounds(10, 10);
  EXPECT_EQ(b.lo, 1u);
  EXPECT_EQ(b.hi, 2u);
  EXPECT_NO_THROW(check_size_bounds(1000, 10, {100, 100}));
  EXPECT_NO_THROW(check_size_bounds(1000, 10, {0, 100}));
  EXPECT_THROW(check_size_bounds(1000, 10, {101, 200}), InvalidArgument);
  EXPECT_THROW(check_size_bounds(1000, 10, {0, 99}), InvalidArgument);
  EXPECT_THROW(check_size_bounds(1000, 10, {60, 50}), InvalidArgument);
  try {
    check_size_bounds(1000, 10, {0, 99});
    FAIL();
  } catch (const InvalidArgument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("n = 1000"), std::string::npos) << m;
    EXPECT_NE(m.find("k = 10"), std::string::npos) << m;
    EXPECT_NE(m.find("hi = 99"), std::string::npos) << m;
    EXPECT_NE(m.find("k·lo ≤ n ≤ k·hi"), std::string::npos) << m;
  }
}

TEST(BalancedBounds, InfeasibleBoundsThrowEverywhere) {
  FloatMatrix d(10, 3);
  std::vector<int32_t> a(10);
  EXPECT_THROW(balanced_assign_exact(d.view(), {4, 5}, a.data()), InvalidArgument);
  BalancedAssigner ba({0, 3});
  EXPECT_THROW(ba.assign_costs(d.view(), a.data()), InvalidArgument);
  FloatMatrix x(10, 2), c(3, 2);
  EXPECT_THROW(ba.assign(x.view(), c.view(), a.data(), nullptr), InvalidArgument);
}

TEST(BalancedExact, CertificateHoldsOnExactSolution) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    const size_t n = 300 + 50 * seed, k = 4 + 3 * seed;
    FloatMatrix x = make_data(n, 8, seed % 2 ? 3 : 0, seed);
    FloatMatrix d = cost_matrix(x, pick_centroids(x, k, seed + 100));
    const SizeBounds b = default_size_bounds(n, k);
    std::vector<int32_t> a(n);
    std::vector<double> p;
    const double cost = balanced_assign_exact(d.view(), b, a.data(), &p);
    EXPECT_NEAR(cost, cost_of(d, a), 1e-6 * cost);
    expect_sizes_within(a, k, b);
    // Exact duals from the network simplex: every point in a cheapest priced cluster (up to the integer
    // scaling of costs), p > 0 only at hi, p < 0 only at lo.
    EXPECT_LE(balanced_certificate_violation(d.view(), b, a.data(), p), 1e-9 * cost) << "seed " << seed;
  }
}

TEST(BalancedAssigner, MatchesExactOnRandomProblems) {
  std::vector<Case> cases;
  uint64_t seed = 7;
  for (size_t n : {50, 200, 600, 1500})
    for (size_t k : {2, 7, 32, 100})
      for (int bounds : {0, 1, 2, 3}) {
        if (k * 2 > n) continue;
        const size_t dd = 2 + (seed * 7) % 30;
        const size_t n2 = bounds == 3 ? n - n % k : n;
        cases.push_back({n2, k, dd, seed % 3 == 0 ? 0 : 1 + seed % 11, bounds, seed});
        ++seed;
      }
  double worst = 0, sum = 0;
  for (const Case& cs : cases) {
    FloatMatrix x = make_data(cs.n, cs.d, cs.modes, cs.seed);
    FloatMatrix d = cost_matrix(x, pick_centroids(x, cs.k, cs.seed + 1));
    const SizeBounds b = bounds_for(cs);
    std::vector<int32_t> ae(cs.n), af(cs.n);
    const double exact = balanced_assign_exact(d.view(), b, ae.data());
    BalancedAssigner ba(b);
    const double fast = ba.assign_costs(d.view(), af.data());
    expect_sizes_within(af, cs.k, b);
    EXPECT_NEAR(fast, cost_of(d, af), 1e-9 * fast + 1e-9);
    const double gap = (fast - exact) / std::max(exact, 1e-30);
    EXPECT_LE(gap, 1e-3) << "n " << cs.n << " k " << cs.k << " bounds " << cs.bounds << " seed " << cs.seed;
    EXPECT_GE(gap, -1e-6);
    // The returned prices certify the assignment (up to float rounding of the costs).
    EXPECT_LE(balanced_certificate_violation(d.view(), b, af.data(), ba.prices()), 1e-6 * (1 + exact / cs.n))
        << "n " << cs.n << " k " << cs.k << " bounds " << cs.bounds << " seed " << cs.seed;
    worst = std::max(worst, gap);
    sum += gap;
  }
  std::printf("[ gap vs exact ] %zu problems: mean %.3g, worst %.3g\n", cases.size(), sum / cases.size(), worst);
}

TEST(BalancedAssigner, PointsPathMatchesExact) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    const size_t n = 2000, k = 64, dd = 16;
    FloatMatrix x = make_data(n, dd, seed * 3, seed);
    FloatMatrix c = pick_centroids(x, k, seed + 9);
    FloatMatrix d = cost_matrix(x, c);
    const SizeBounds b = default_size_bounds(n, k);
    std::vector<int32_t> ae(n), af(n);
    std::vector<float> dist(n);
    const double exact = balanced_assign_exact(d.view(), b, ae.data());
    BalancedAssigner ba(b);
    const double fast = ba.assign(x.view(), c.view(), af.data(), dist.data());
    expect_sizes_within(af, k, b);
    EXPECT_LE(fast, exact * (1 + 1e-4));
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(dist[i], d(i, af[i]), 1e-4 * (1 + d(i, af[i])));
  }
}

TEST(BalancedAssigner, DegenerateInputs) {
  // All points identical: every distance ties.
  {
    const size_t n = 1000, k = 37;
    FloatMatrix x(n, 4), c(k, 4);
    for (size_t i = 0; i < x.size(); ++i) x.data()[i] = 1.5f;
    for (size_t j = 0; j < k; ++j)
      for (size_t t = 0; t < 4; ++t) c(j, t) = (float)(j % 3);
    for (SizeBounds b : {default_size_bounds(n, k), SizeBounds{27, 27 + 1}, SizeBounds{0, 28}}) {
      std::vector<int32_t> a(n);
      BalancedAssigner ba(b);
      ba.assign(x.view(), c.view(), a.data(), nullptr);
      expect_sizes_within(a, k, b);
      FloatMatrix d = cost_matrix(x, c);
      std::vector<int32_t> ae(n);
      const double exact = balanced_assign_exact(d.view(), b, ae.data());
      EXPECT_NEAR(cost_of(d, a), exact, 1e-5 * exact);
    }
  }
  // Zero costs everywhere, exact sizes.
  {
    FloatMatrix d(600, 12);
    std::vector<int32_t> a(600);
    BalancedAssigner ba({50, 50});
    EXPECT_EQ(ba.assign_costs(d.view(), a.data()), 0.0);
    expect_sizes_within(a, 12, {50, 50});
  }
  // Half the points are one duplicated point.
  {
    const size_t n = 4000, k = 64;
    FloatMatrix x = make_data(n, 8, 5, 3);
    for (size_t i = 0; i < n; i += 2)
      for (size_t t = 0; t < 8; ++t) x(i, t) = x(0, t);
    FloatMatrix c = pick_centroids(x, k, 4);
    FloatMatrix d = cost_matrix(x, c);
    const SizeBounds b = default_size_bounds(n, k);
    std::vector<int32_t> a(n), ae(n);
    BalancedAssigner ba(b);
    const double fast = ba.assign(x.view(), c.view(), a.data(), nullptr);
    expect_sizes_within(a, k, b);
    const double exact = balanced_assign_exact(d.view(), b, ae.data());
    EXPECT_LE(fast, exact * (1 + 1e-4));
  }
  // k = 1, n = k, lo = hi.
  {
    FloatMatrix x = make_data(50, 3, 0, 5);
    FloatMatrix c1 = pick_centroids(x, 1, 6);
    std::vector<int32_t> a(50);
    BalancedAssigner one({0, 50});
    one.assign(x.view(), c1.view(), a.data(), nullptr);
    for (int32_t j : a) EXPECT_EQ(j, 0);

    FloatMatrix cn = pick_centroids(x, 50, 7);
    FloatMatrix d = cost_matrix(x, cn);
    BalancedAssigner perm({1, 1});
    const double fast = perm.assign(x.view(), cn.view(), a.data(), nullptr);
    expect_sizes_within(a, 50, {1, 1});
    std::vector<int32_t> ae(50);
    EXPECT_NEAR(fast, balanced_assign_exact(d.view(), {1, 1}, ae.data()), 1e-5 * fast);
  }
  // Empty input.
  {
    FloatMatrix x(0, 3), c(4, 3);
    BalancedAssigner ba({0, 0});
    EXPECT_EQ(ba.assign(x.view(), c.view(), nullptr, nullptr), 0.0);
  }
}

TEST(BalancedAssigner, IdenticalForOneAndTwoThreads) {
  const size_t n = 6000, k = 128;
  FloatMatrix x = make_data(n, 24, 20, 11);
  FloatMatrix c = pick_centroids(x, k, 12);
  const SizeBounds b = default_size_bounds(n, k);
  std::vector<int32_t> a1(n), a2(n);
  std::vector<float> d1(n), d2(n);
  set_num_threads(1);
  BalancedAssigner b1(b);
  const double c1 = b1.assign(x.view(), c.view(), a1.data(), d1.data());
  set_num_threads(2);
  BalancedAssigner b2(b);
  const double c2 = b2.assign(x.view(), c.view(), a2.data(), d2.data());
  set_num_threads(0);
  EXPECT_EQ(c1, c2);
  EXPECT_EQ(a1, a2);
  EXPECT_EQ(d1, d2);
  EXPECT_EQ(b1.prices(), b2.prices());
}

TEST(BalancedAssigner, WarmStartIsConsistent) {
  const size_t n = 5000, k = 100;
  FloatMatrix x = make_data(n, 16, 12, 21);
  FloatMatrix c = pick_centroids(x, k, 22);
  FloatMatrix d = cost_matrix(x, c);
  const SizeBounds b = default_size_bounds(n, k);
  std::vector<int32_t> a(n), ae(n);
  const double exact = balanced_assign_exact(d.view(), b, ae.data());
  BalancedAssigner ba(b);
  const double cold = ba.assign(x.view(), c.view(), a.data(), nullptr);
  const size_t cold_steps = ba.stats().steps;
  const double warm = ba.assign(x.view(), c.view(), a.data(), nullptr);
  EXPECT_NEAR(cold, warm, 1e-6 * cold);
  EXPECT_NEAR(warm, exact, 1e-5 * exact);
  // Warm prices already certify the problem; only items tied at price boundaries move again.
  EXPECT_LT(ba.stats().steps, cold_steps / 4 + 1);
  EXPECT_GT(cold_steps, 0u);
  // Slightly moved centroids: still exact, from the previous prices.
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (size_t i = 0; i < c.size(); ++i) c.data()[i] += 0.01f * g(rng);
  d = cost_matrix(x, c);
  const double exact2 = balanced_assign_exact(d.view(), b, ae.data());
  const double warm2 = ba.assign(x.view(), c.view(), a.data(), nullptr);
  expect_sizes_within(a, k, b);
  EXPECT_NEAR(warm2, exact2, 1e-5 * exact2);
}

// Cold starts far from balance take the sampled warm start (n >= 64·k, many items off target) and
// many pre-pass rounds; the result must still be the exact optimum. Hub centroids near the data's
// centre attract most items, the hardest case for the price rounds.
TEST(BalancedAssigner, ColdStartFarFromBalanceIsExact) {
  for (const bool hubs : {false, true}) {
    const size_t n = 6000, k = 24, dd = 8;
    FloatMatrix x = make_data(n, dd, 5, 41);
    FloatMatrix c = pick_centroids(x, k, 42);
    if (hubs)
      for (size_t j = 0; j < k; ++j)
        for (size_t t = 0; t < dd; ++t) c(j, t) *= j < 3 ? 0.01f : 3.0f;
    FloatMatrix d = cost_matrix(x, c);
    for (const SizeBounds b : {default_size_bounds(n, k), SizeBounds{n / k, n / k}, SizeBounds{100, 400}}) {
      std::vector<int32_t> ae(n), af(n);
      const double exact = balanced_assign_exact(d.view(), b, ae.data());
      BalancedAssigner ba(b);
      const double fast = ba.assign_costs(d.view(), af.data());
      expect_sizes_within(af, k, b);
      EXPECT_NEAR(fast, exact, 1e-6 * exact) << "hubs " << hubs << " bounds " << b.lo << ".." << b.hi;
      EXPECT_LE(balanced_certificate_violation(d.view(), b, af.data(), ba.prices()), 1e-6 * (1 + exact / n));
    }
  }
}

// Timing at scale: n = 1,000,000, d = 128, k = 256 (run with --gtest_also_run_disabled_tests).
TEST(BalancedAssigner, DISABLED_BalancedScale1M) {
  const size_t n = 1000000, dd = 128, k = 256;
  FloatMatrix x = make_data(n, dd, 300, 1, 0.5f);
  FloatMatrix c = pick_centroids(x, k, 2);
  using clk = std::chrono::steady_clock;
  auto secs = [](clk::time_point a) { return std::chrono::duration<double>(clk::now() - a).count(); };
  std::vector<int32_t> a(n), na(n);
  std::vector<float> dist(n);
  auto t0 = clk::now();
  nearest_centroids(x.view(), c.view(), na.data(), dist.data());
  std::printf("[ 1M ] nearest_centroids (GEMM + argmin): %.3f s\n", secs(t0));
  const SizeBounds b = default_size_bounds(n, k);
  BalancedAssigner ba(b);
  t0 = clk::now();
  double cost = ba.assign(x.view(), c.view(), a.data(), dist.data());
  std::printf("[ 1M ] cold: %.3f s, cost %.6g, augmenting paths %zu in %zu phases\n", secs(t0), cost, ba.stats().steps, ba.stats().phases);
  expect_sizes_within(a, k, b);
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (int it = 0; it < 3; ++it) {
    // A Lloyd-like move: centroids drift slightly.
    for (size_t i = 0; i < c.size(); ++i) c.data()[i] += 0.003f * g(rng);
    t0 = clk::now();
    cost = ba.assign(x.view(), c.view(), a.data(), dist.data());
    std::printf("[ 1M ] warm: %.3f s, cost %.6g, augmenting paths %zu in %zu phases\n", secs(t0), cost, ba.stats().steps, ba.stats().phases);
    expect_sizes_within(a, k, b);
  }
}
