#include "tessera/cluster/sparse_balanced_assignment.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cluster/solve_on_arcs.h"
#include "tessera/core/error.h"

namespace tessera {

// Checks, duplicates dropped, then the bounded engine's restricted solve (solve_on_arcs.h).
SparseBalancedResult balanced_assign_sparse_exact(const SparseCostsView& c, const std::vector<size_t>& lo,
                                                  const std::vector<size_t>& hi, int32_t* assign,
                                                  const std::vector<double>& start_prices) {
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
  for (size_t a = 0; a < m; ++a) {
    TESSERA_CHECK_ARG(c.cluster[a] >= 0 && (size_t)c.cluster[a] < k,
                      "sparse balanced assignment: arc " << a << " names cluster " << c.cluster[a] << ", expected [0, "
                                                         << k << ")");
    TESSERA_CHECK_ARG(std::isfinite(c.cost[a]), "sparse balanced assignment: arc " << a << " has a non-finite cost");
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
  // Each item's arcs by cluster, the cheapest of any duplicates kept: the mover table wants distinct clusters.
  std::vector<int64_t> off(n + 1, 0);
  std::vector<int32_t> cl;
  std::vector<float> co;
  cl.reserve(m), co.reserve(m);
  std::vector<std::pair<int32_t, float>> row;
  for (size_t i = 0; i < n; ++i) {
    row.clear();
    for (int64_t a = c.offsets[i]; a < c.offsets[i + 1]; ++a) row.push_back({c.cluster[a], c.cost[a]});
    std::sort(row.begin(), row.end());
    for (size_t t = 0; t < row.size(); ++t)
      if (t == 0 || row[t].first != row[t - 1].first) cl.push_back(row[t].first), co.push_back(row[t].second);
    off[i + 1] = (int64_t)cl.size();
  }
  const SparseCostsView arcs{n, k, off.data(), cl.data(), co.data()};
  out.prices = start_prices.size() == k ? start_prices : std::vector<double>(k, 0.0);
  out.feasible = detail::solve_on_arcs(arcs, lo, hi, out.prices, assign, out.cost);
  if (!out.feasible) out.prices.clear();
  return out;
}

}  // namespace tessera
