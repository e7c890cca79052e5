#include "tessera/cluster/sparse_balanced_assignment.h"

#include <lemon/network_simplex.h>
#include <lemon/smart_graph.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "tessera/core/error.h"

namespace tessera {

// n item nodes (supply 1), k cluster nodes, one sink (demand n); an arc item → cluster per listed candidate
// (capacity 1), cluster → sink with lower lo[j] and upper hi[j]. Costs scaled to int64 as in
// balanced_assign_exact (src/cluster/balanced_assignment.cpp), so totals that differ by more than n / S
// are ordered correctly.
SparseBalancedResult balanced_assign_sparse_exact(const SparseCostsView& c, const std::vector<size_t>& lo,
                                                  const std::vector<size_t>& hi, int32_t* assign) {
  const size_t n = c.n, k = c.k;
  TESSERA_CHECK_ARG(k > 0, "sparse balanced assignment: no clusters (k = 0)");
  TESSERA_CHECK_ARG(lo.size() == k && hi.size() == k, "sparse balanced assignment: expected " << k
                                                          << " lower and upper bounds, got " << lo.size() << " and "
                                                          << hi.size());
  TESSERA_CHECK_ARG(n < (size_t)std::numeric_limits<int32_t>::max() / 2 && k < (size_t)std::numeric_limits<int32_t>::max() / 2,
                    "sparse balanced assignment: " << n << " items × " << k << " clusters is too large");
  TESSERA_CHECK_ARG(n == 0 || (c.offsets && c.offsets[0] == 0), "sparse balanced assignment: offsets[0] must be 0");
  for (size_t i = 0; i < n; ++i)
    TESSERA_CHECK_ARG(c.offsets[i + 1] >= c.offsets[i], "sparse balanced assignment: offsets decrease at item " << i);
  const size_t m = n ? (size_t)c.offsets[n] : 0;
  double maxc = 0;
  for (size_t a = 0; a < m; ++a) {
    TESSERA_CHECK_ARG(c.cluster[a] >= 0 && (size_t)c.cluster[a] < k,
                      "sparse balanced assignment: arc " << a << " names cluster " << c.cluster[a] << ", expected [0, "
                                                         << k << ")");
    TESSERA_CHECK_ARG(std::isfinite(c.cost[a]), "sparse balanced assignment: arc " << a << " has a non-finite cost");
    maxc = std::max(maxc, (double)std::abs(c.cost[a]));
  }
  SparseBalancedResult out;
  size_t sum_lo = 0, sum_hi = 0;
  for (size_t j = 0; j < k; ++j) {
    if (lo[j] > hi[j]) return out;
    sum_lo += lo[j];
    sum_hi += std::min(hi[j], n);
  }
  if (sum_lo > n || sum_hi < n) return out;
  for (size_t i = 0; i < n; ++i)
    if (c.offsets[i + 1] == c.offsets[i]) return out;
  if (n == 0) {
    out.feasible = true;
    out.prices.assign(k, 0.0);
    return out;
  }
  const double scale = maxc > 0 ? std::ldexp(1.0, 50) / (maxc * (double)(n + 1)) : 1.0;

  using Graph = lemon::SmartDigraph;
  Graph g;
  g.reserveNode((int)(n + k + 1));
  g.reserveArc((int)(m + k));
  std::vector<Graph::Node> items(n), clusters(k);
  for (auto& v : items) v = g.addNode();
  for (auto& v : clusters) v = g.addNode();
  const Graph::Node sink = g.addNode();
  Graph::ArcMap<int64_t> cst(g), lower(g), upper(g);
  Graph::NodeMap<int64_t> supply(g, 0);
  for (size_t i = 0; i < n; ++i) {
    supply[items[i]] = 1;
    for (int64_t a = c.offsets[i]; a < c.offsets[i + 1]; ++a) {
      const Graph::Arc arc = g.addArc(items[i], clusters[c.cluster[a]]);  // arc id a
      cst[arc] = (int64_t)std::llround((double)c.cost[a] * scale);
      lower[arc] = 0;
      upper[arc] = 1;
    }
  }
  for (size_t j = 0; j < k; ++j) {
    const Graph::Arc arc = g.addArc(clusters[j], sink);
    cst[arc] = 0;
    lower[arc] = (int64_t)lo[j];
    upper[arc] = (int64_t)std::min(hi[j], n);
  }
  supply[sink] = -(int64_t)n;

  using Simplex = lemon::NetworkSimplex<Graph, int64_t, int64_t>;
  Simplex ns(g);
  ns.costMap(cst).lowerMap(lower).upperMap(upper).supplyMap(supply);
  const auto status = ns.run();
  if (status == Simplex::INFEASIBLE) return out;
  TESSERA_CHECK_ARG(status == Simplex::OPTIMAL,
                    "sparse balanced assignment: min-cost flow is not optimal (status " << (int)status << ")");
  out.feasible = true;
  for (size_t i = 0; i < n; ++i) {
    int32_t got = -1;
    for (int64_t a = c.offsets[i]; a < c.offsets[i + 1] && got < 0; ++a)
      if (ns.flow(g.arcFromId((int)a)) > 0) got = c.cluster[a];
    TESSERA_CHECK_ARG(got >= 0, "sparse balanced assignment: internal error, item " << i << " unassigned");
    assign[i] = got;
  }
  // The total from the float costs of the arcs used (an item may list a cluster twice: the flow took one).
  for (size_t i = 0; i < n; ++i) {
    float best = std::numeric_limits<float>::infinity();
    for (int64_t a = c.offsets[i]; a < c.offsets[i + 1]; ++a)
      if (c.cluster[a] == assign[i] && ns.flow(g.arcFromId((int)a)) > 0) best = std::min(best, c.cost[a]);
    out.cost += best;
  }
  // Potentials π with cost(uv) + π(u) − π(v) ≥ 0 on residual arcs: the price of cluster j is π(sink) − π(j).
  out.prices.resize(k);
  const double ps = (double)ns.potential(sink);
  for (size_t j = 0; j < k; ++j) out.prices[j] = (ps - (double)ns.potential(clusters[j])) / scale;
  return out;
}

}  // namespace tessera
