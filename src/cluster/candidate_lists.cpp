// Candidate lists and the pass over them (tessera/cluster/candidate_lists.h).
#include "tessera/cluster/candidate_lists.h"

#include <algorithm>
#include <cmath>

#include "cluster/cheapest_priced.h"
#include "core/keep_smallest.h"
#include "tessera/core/distances.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"

namespace tessera {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Joiner {
  double value;
  int64_t row;
  float cost;
  int32_t own;
  float own_cost;
};

bool joiner_before(const Joiner& a, const Joiner& b) {
  return a.value < b.value || (a.value == b.value && a.row < b.row);
}

}  // namespace

CandidateLists make_candidate_lists(MatrixView<const float> x, MatrixView<const float> centroids,
                                    const std::vector<double>& prices, size_t width,
                                    const std::vector<float>& join_limit, size_t block_rows) {
  const size_t n = x.rows, k = centroids.rows;
  TESSERA_CHECK_ARG(k > 0, "candidate lists: no centroids");
  TESSERA_CHECK_ARG(x.cols == centroids.cols, "candidate lists: x has " << x.cols << " columns, the centroids "
                                                                        << centroids.cols);
  TESSERA_CHECK_ARG(prices.size() == k, "candidate lists: " << prices.size() << " prices for " << k << " clusters");
  TESSERA_CHECK_ARG(join_limit.empty() || join_limit.size() == k,
                    "candidate lists: " << join_limit.size() << " join limits for " << k << " clusters");
  TESSERA_CHECK_ARG(width > 0, "candidate lists: the width must be positive");
  width = std::min(width, k);
  const size_t c1 = std::min(width + 1, k);
  const bool joiners = !join_limit.empty() && width < k;
  CandidateLists out;
  out.rows = n, out.width = width;
  out.offsets.assign(n + 1, 0);
  out.cluster.reserve(n * (width + 1));
  out.cost.reserve(n * (width + 1));
  out.theta.assign(n, std::numeric_limits<float>::infinity());
  std::vector<float> pf(k), c_norms(k), reach(k);
  float limit_max = -std::numeric_limits<float>::infinity();
  for (size_t j = 0; j < k; ++j) {
    pf[j] = float(prices[j]);
    if (joiners) reach[j] = join_limit[j] - pf[j], limit_max = std::max(limit_max, join_limit[j]);
  }
  row_norms_sqr(centroids, c_norms.data());
  block_rows = std::max<size_t>(1, block_rows);
  const size_t cap = std::min(block_rows, n);
  std::vector<float> d(cap * k);
  std::vector<std::vector<int32_t>> extra(cap);  // each row's joiners
  std::vector<int32_t> top(cap * width);
  for (size_t i0 = 0; i0 < n; i0 += block_rows) {
    check_interrupt();
    const size_t m = std::min(block_rows, n - i0);
    l2_sqr_distances(MatrixView<const float>(x.row(i0), m, x.cols, x.stride), centroids, c_norms.data(), d.data());
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<float> bv(c1);
      std::vector<int32_t> bj(c1);
#pragma omp for schedule(static)
      for (ptrdiff_t r = 0; r < (ptrdiff_t)m; ++r) {
        const float* row = &d[size_t(r) * k];
        detail::cheapest_priced(row, pf.data(), k, c1, bv.data(), bj.data());
        std::copy(bj.begin(), bj.begin() + ptrdiff_t(width), top.begin() + r * ptrdiff_t(width));
        if (c1 > width) out.theta[i0 + size_t(r)] = bv[width];
        auto& e = extra[size_t(r)];
        e.clear();
        if (joiners && bv[width] - bv[0] < limit_max)
          for (size_t j = 0; j < k; ++j)
            if (row[j] < reach[j] + bv[0] && std::find(bj.begin(), bj.begin() + ptrdiff_t(width), int32_t(j)) ==
                                                 bj.begin() + ptrdiff_t(width))
              e.push_back(int32_t(j));
      }
    }
    for (size_t r = 0; r < m; ++r) {
      const float* row = &d[r * k];
      for (size_t t = 0; t < width; ++t) {
        const int32_t j = top[r * width + t];
        out.cluster.push_back(j), out.cost.push_back(row[j]);
      }
      for (const int32_t j : extra[r]) out.cluster.push_back(j), out.cost.push_back(row[j]);
      out.offsets[i0 + r + 1] = int64_t(out.cluster.size());
    }
  }
  return out;
}

ListScan scan_candidate_lists(const CandidateListsView& lists, const std::vector<double>& p,
                              const ListScanParams& prm) {
  const size_t n = lists.rows, k = lists.k, top = std::max<size_t>(1, prm.top);
  TESSERA_CHECK_ARG(p.size() == k, "list scan: " << p.size() << " prices for " << k << " clusters");
  TESSERA_CHECK_ARG(lists.offsets[0] == 0, "list scan: offsets must start at 0");
  for (size_t i = 0; i < n; ++i)
    TESSERA_CHECK_ARG(lists.offsets[i + 1] > lists.offsets[i], "list scan: row " << i << " lists no cluster");
  for (size_t t = 0; t < size_t(lists.offsets[n]); ++t)
    TESSERA_CHECK_ARG(lists.cluster[t] >= 0 && size_t(lists.cluster[t]) < k,
                      "list scan: cluster " << lists.cluster[t] << " out of range [0, " << k << ")");
  ListScan s;
  s.k = k, s.top = top;
  s.counts.assign(k, 0);
  s.fixed.assign(k, 0);
  std::vector<std::vector<double>> gaps(k);
  std::vector<std::vector<Joiner>> joins(k);
  for (size_t i = 0; i < n; ++i) {
    const int32_t* ids = lists.cluster + lists.offsets[i];
    const float* cost = lists.cost + lists.offsets[i];
    const size_t w = size_t(lists.offsets[i + 1] - lists.offsets[i]);
    double b1 = kInf, b2 = kInf;
    size_t bt = 0;
    for (size_t t = 0; t < w; ++t) {
      const double v = double(cost[t]) + p[size_t(ids[t])];
      if (v < b1 || (v == b1 && ids[t] < ids[bt])) {
        b2 = b1, b1 = v, bt = t;
      } else if (v < b2) {
        b2 = v;
      }
    }
    const size_t a = size_t(ids[bt]);
    ++s.counts[a];
    if (b2 < kInf) detail::keep_smallest(gaps[a], top, b2 - b1);
    bool boundary = b2 - b1 <= std::max(prm.margin, prm.own_margin ? prm.own_margin[a] : -kInf);
    for (size_t t = 0; t < w; ++t) {
      if (t == bt) continue;
      const size_t j = size_t(ids[t]);
      const double join = double(cost[t]) + p[j] - b1;
      detail::keep_smallest(joins[j], top, Joiner{join, int64_t(i), cost[t], int32_t(a), cost[bt]}, joiner_before);
      if (prm.join_margin && join <= prm.join_margin[j]) boundary = true;
    }
    if (boundary) s.boundary.push_back(int64_t(i));
    else ++s.fixed[a];
  }
  s.gaps.assign(k * top, kInf);
  s.joins.assign(k * top, kInf);
  s.join_row.assign(k * top, -1);
  s.join_cost.assign(k * top, 0.0f);
  s.join_own.assign(k * top, -1);
  s.join_own_cost.assign(k * top, 0.0f);
  for (size_t j = 0; j < k; ++j) {
    std::sort(gaps[j].begin(), gaps[j].end());
    std::copy(gaps[j].begin(), gaps[j].end(), s.gaps.begin() + ptrdiff_t(j * top));
    std::sort(joins[j].begin(), joins[j].end(), joiner_before);
    for (size_t t = 0; t < joins[j].size(); ++t) {
      const Joiner& x = joins[j][t];
      const size_t o = j * top + t;
      s.joins[o] = x.value, s.join_row[o] = x.row, s.join_cost[o] = x.cost;
      s.join_own[o] = x.own, s.join_own_cost[o] = x.own_cost;
    }
  }
  return s;
}

}  // namespace tessera
