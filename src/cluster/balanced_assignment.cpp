#include "tessera/cluster/balanced_assignment.h"

#include <lemon/network_simplex.h>
#include <lemon/smart_graph.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cluster/balanced_ssp.h"
#include "tessera/core/distances.h"
#include "tessera/core/error.h"

namespace tessera {

SizeBounds default_size_bounds(size_t n, size_t k) {
  TESSERA_CHECK_ARG(k > 0, "default_size_bounds: k must be positive");
  const size_t q = n / k;
  return {std::max<size_t>(1, q > 0 ? q - 1 : 0), q + 1};
}

void check_size_bounds(size_t n, size_t k, SizeBounds b) {
  TESSERA_CHECK_ARG(k > 0, "size bounds: k must be positive (n = " << n << ")");
  TESSERA_CHECK_ARG(b.lo <= b.hi, "size bounds: lo = " << b.lo << " exceeds hi = " << b.hi << " (n = " << n
                                                       << ", k = " << k << ")");
  // Overflow-safe k·lo ≤ n ≤ k·hi.
  const bool lo_ok = b.lo == 0 || b.lo <= n / k;
  const bool hi_ok = b.hi >= (n + k - 1) / k;
  TESSERA_CHECK_ARG(lo_ok && hi_ok, "infeasible size bounds: n = "
                                        << n << " points in k = " << k << " clusters with sizes in [lo = " << b.lo
                                        << ", hi = " << b.hi << "]; need k·lo ≤ n ≤ k·hi, i.e. lo ≤ " << n / k
                                        << " and hi ≥ " << (n + k - 1) / k);
}

namespace {

void check_cost(MatrixView<const float> cost) {
  TESSERA_CHECK_ARG(cost.cols > 0, "balanced assignment: the cost matrix has no columns (k = 0)");
  TESSERA_CHECK_ARG(cost.cols <= (size_t)std::numeric_limits<int32_t>::max() &&
                        cost.rows <= (size_t)std::numeric_limits<int32_t>::max(),
                    "balanced assignment: " << cost.rows << " × " << cost.cols << " is too large");
  check_finite(cost, "cost matrix");
}

}  // namespace

// Exact reference: n item nodes (supply 1), k cluster nodes, one sink (demand n); arcs item→cluster
// (capacity 1, cost), cluster→sink (lower lo, upper hi, cost 0). LEMON's network simplex on int64 costs:
// each float cost is scaled by S = 2^50 / (max |cost| · (n + 1)) (or by 1 when all costs are 0) and rounded,
// so any two assignments whose true totals differ by more than n / S compare correctly; the returned
// total is recomputed in double from the float costs.
double balanced_assign_exact(MatrixView<const float> cost, SizeBounds bounds, int32_t* assign,
                             std::vector<double>* prices) {
  check_cost(cost);
  const size_t n = cost.rows, k = cost.cols;
  check_size_bounds(n, k, bounds);
  if (n == 0) {
    if (prices) prices->assign(k, 0.0);
    return 0;
  }
  double maxc = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < k; ++j) maxc = std::max(maxc, (double)std::abs(cost(i, j)));
  const double scale = maxc > 0 ? std::ldexp(1.0, 50) / (maxc * (double)(n + 1)) : 1.0;

  using Graph = lemon::SmartDigraph;
  Graph g;
  g.reserveNode((int)(n + k + 1));
  g.reserveArc((int)(n * k + k));
  std::vector<Graph::Node> items(n), clusters(k);
  for (auto& v : items) v = g.addNode();
  for (auto& v : clusters) v = g.addNode();
  const Graph::Node sink = g.addNode();
  Graph::ArcMap<int64_t> cst(g), lower(g), upper(g);
  Graph::NodeMap<int64_t> supply(g, 0);
  for (size_t i = 0; i < n; ++i) {
    supply[items[i]] = 1;
    for (size_t j = 0; j < k; ++j) {
      const Graph::Arc a = g.addArc(items[i], clusters[j]);
      cst[a] = (int64_t)std::llround((double)cost(i, j) * scale);
      lower[a] = 0;
      upper[a] = 1;
    }
  }
  std::vector<Graph::Arc> to_sink(k);
  for (size_t j = 0; j < k; ++j) {
    to_sink[j] = g.addArc(clusters[j], sink);
    cst[to_sink[j]] = 0;
    lower[to_sink[j]] = (int64_t)bounds.lo;
    upper[to_sink[j]] = (int64_t)bounds.hi;
  }
  supply[sink] = -(int64_t)n;

  using Simplex = lemon::NetworkSimplex<Graph, int64_t, int64_t>;
  Simplex ns(g);
  ns.costMap(cst).lowerMap(lower).upperMap(upper).supplyMap(supply);
  const auto status = ns.run();
  TESSERA_CHECK_ARG(status == Simplex::OPTIMAL,
                    "balanced_assign_exact: min-cost flow is not optimal (status " << (int)status << ")");
  double total = 0;
  // Arcs were added item by item, cluster by cluster: arc id i·k + j.
  for (size_t i = 0; i < n; ++i) {
    int32_t got = -1;
    for (size_t j = 0; j < k; ++j)
      if (ns.flow(g.arcFromId((int)(i * k + j))) > 0) {
        got = (int32_t)j;
        break;
      }
    TESSERA_CHECK_ARG(got >= 0, "balanced_assign_exact: internal error, item " << i << " unassigned");
    assign[i] = got;
    total += cost(i, got);
  }
  if (prices) {
    // LEMON's potentials π make cost(uv) + π(u) − π(v) ≥ 0 on every residual arc, so the price of
    // cluster j is π(sink) − π(j) (a point picks the cluster minimising cost + price).
    prices->resize(k);
    const double ps = (double)ns.potential(sink);
    for (size_t j = 0; j < k; ++j) (*prices)[j] = (ps - (double)ns.potential(clusters[j])) / scale;
  }
  return total;
}

double balanced_assign_exact(MatrixView<const float> cost, SizeBounds bounds, int32_t* assign) {
  return balanced_assign_exact(cost, bounds, assign, nullptr);
}

double balanced_certificate_violation(MatrixView<const float> cost, SizeBounds bounds, const int32_t* assign,
                                      const std::vector<double>& prices) {
  const size_t n = cost.rows, k = cost.cols;
  const double inf = std::numeric_limits<double>::infinity();
  if (prices.size() != k) return inf;
  std::vector<size_t> sz(k, 0);
  for (size_t i = 0; i < n; ++i) {
    if (assign[i] < 0 || (size_t)assign[i] >= k) return inf;
    ++sz[assign[i]];
  }
  for (size_t j = 0; j < k; ++j) {
    if (sz[j] < bounds.lo || sz[j] > bounds.hi) return inf;
    if (prices[j] > 0 && sz[j] != bounds.hi) return inf;
    if (prices[j] < 0 && sz[j] != bounds.lo) return inf;
  }
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    double m = inf;
    for (size_t j = 0; j < k; ++j) m = std::min(m, (double)cost(i, j) + prices[j]);
    worst = std::max(worst, (double)cost(i, assign[i]) + prices[assign[i]] - m);
  }
  return worst;
}


BalancedAssigner::BalancedAssigner(SizeBounds bounds) : bounds_(bounds) {
  TESSERA_CHECK_ARG(bounds.lo <= bounds.hi,
                    "size bounds: lo = " << bounds.lo << " exceeds hi = " << bounds.hi);
}

namespace detail {

void check_assign_inputs(MatrixView<const float> x, MatrixView<const float> centroids, SizeBounds bounds) {
  TESSERA_CHECK_ARG(centroids.rows > 0, "balanced assignment: no centroids");
  TESSERA_CHECK_ARG(x.cols == centroids.cols, "dimension mismatch: points have " << x.cols << " columns, centroids "
                                                                               << centroids.cols);
  TESSERA_CHECK_ARG(x.rows <= (size_t)std::numeric_limits<int32_t>::max() &&
                        centroids.rows <= (size_t)std::numeric_limits<int32_t>::max(),
                    "balanced assignment: too many points or centroids");
  check_size_bounds(x.rows, centroids.rows, bounds);
  check_finite(centroids, "centroids");
}

}  // namespace detail

double BalancedAssigner::assign(MatrixView<const float> x, MatrixView<const float> centroids, int32_t* assign,
                                float* dist, const float* x_norms) {
  detail::check_assign_inputs(x, centroids, bounds_);
  // The dense n × k distance matrix (one GEMM): the SSP engine reads any row many times.
  cost_.resize(x.rows * centroids.rows);
  l2_sqr_distances(x, centroids, nullptr, cost_.data(), x_norms);
  return detail::balanced_ssp_solve(MatrixView<const float>(cost_.data(), x.rows, centroids.rows), bounds_, prices_,
                                    assign, dist, stats_);
}

double BalancedAssigner::assign_costs(MatrixView<const float> cost, int32_t* assign) {
  check_cost(cost);
  check_size_bounds(cost.rows, cost.cols, bounds_);
  return detail::balanced_ssp_solve(cost, bounds_, prices_, assign, nullptr, stats_);
}

}  // namespace tessera
