#include "tessera/sid/collisions.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "tessera/core/distances.h"

namespace tessera {

Dedup parse_dedup(const std::string& name) {
  if (name == "append") return Dedup::append;
  if (name == "append-all" || name == "append_all") return Dedup::append_all;
  if (name == "reassign") return Dedup::reassign;
  if (name == "none") return Dedup::none;
  TESSERA_THROW_ARG("unknown collision strategy '" << name << "': expected append, append-all, reassign or none");
}

const char* dedup_name(Dedup d) {
  switch (d) {
    case Dedup::append: return "append";
    case Dedup::append_all: return "append-all";
    case Dedup::reassign: return "reassign";
    case Dedup::none: return "none";
  }
  return "?";
}

std::vector<size_t> prefix_order(MatrixView<const int32_t> codes, size_t depth) {
  std::vector<size_t> order(codes.rows);
  std::iota(order.begin(), order.end(), size_t{0});
  depth = std::min(depth, codes.cols);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int32_t *ra = codes.row(a), *rb = codes.row(b);
    for (size_t j = 0; j < depth; ++j)
      if (ra[j] != rb[j]) return ra[j] < rb[j];
    return a < b;
  });
  return order;
}

namespace {

bool same_prefix(MatrixView<const int32_t> c, size_t a, size_t b, size_t depth) {
  return std::equal(c.row(a), c.row(a) + depth, c.row(b));
}

// Calls f(begin, end) for each run of equal prefixes in `order`.
template <class F>
void for_each_group(MatrixView<const int32_t> c, const std::vector<size_t>& order, size_t depth, F&& f) {
  for (size_t g = 0; g < order.size();) {
    size_t e = g + 1;
    while (e < order.size() && same_prefix(c, order[g], order[e], depth)) ++e;
    f(g, e);
    g = e;
  }
}

}  // namespace

CollisionStats collision_stats(MatrixView<const int32_t> ids) {
  CollisionStats s;
  if (ids.rows == 0) return s;
  const auto order = prefix_order(ids, ids.cols);
  for_each_group(ids, order, ids.cols, [&](size_t b, size_t e) {
    ++s.unique_ids;
    s.largest_group = std::max(s.largest_group, e - b);
    if (e - b > 1) s.colliding_items += e - b;
  });
  s.collision_rate = 1.0 - double(s.unique_ids) / double(ids.rows);
  return s;
}

CodeMatrix append_suffix(MatrixView<const int32_t> codes, bool all) {
  const size_t n = codes.rows, L = codes.cols;
  CodeMatrix out(n, L + 1);
  for (size_t i = 0; i < n; ++i) {
    std::copy(codes.row(i), codes.row(i) + L, out.row(i));
    out(i, L) = -1;
  }
  const auto order = prefix_order(codes, L);
  for_each_group(codes, order, L, [&](size_t b, size_t e) {
    if (!all && e - b == 1) return;
    for (size_t r = b; r < e; ++r) out(order[r], L) = int32_t(all ? r - b : r - b + 1);
  });
  return out;
}

ReassignReport reassign_last_level(MatrixView<int32_t> codes, MatrixView<const float> residual,
                                   MatrixView<const float> last_codebook) {
  const size_t n = codes.rows, L = codes.cols, K = last_codebook.rows, d = residual.cols;
  TESSERA_CHECK_ARG(L >= 1 && residual.rows == n && last_codebook.cols == d,
                    "reassign: shapes disagree (codes " << n << " × " << L << ", residual " << residual.rows << " × "
                                                        << d << ", codebook " << K << " × " << last_codebook.cols
                                                        << ")");
  ReassignReport rep;
  MatrixView<const int32_t> cc = codes;
  const auto order = prefix_order(cc, L);  // groups by prefix, and within a prefix by last code
  // Collect, per prefix group, the items that must move (all but the nearest of each shared code).
  std::vector<size_t> movers, group_of_mover;
  std::vector<std::pair<size_t, size_t>> groups;  // [begin, end) in `order`
  for_each_group(cc, order, L - 1, [&](size_t b, size_t e) {
    if (e - b < 2) return;
    bool any = false;
    for (size_t s = b; s < e;) {
      size_t t = s + 1;
      while (t < e && codes(order[t], L - 1) == codes(order[s], L - 1)) ++t;
      if (t - s > 1) {
        // Keep the member nearest to the shared codeword.
        const float* cw = last_codebook.row(codes(order[s], L - 1));
        size_t keep = s;
        double keep_d = INFINITY;
        for (size_t u = s; u < t; ++u) {
          double dd = 0;
          const float* r = residual.row(order[u]);
          for (size_t j = 0; j < d; ++j) dd += double(r[j] - cw[j]) * (r[j] - cw[j]);
          if (dd < keep_d) keep_d = dd, keep = u;
        }
        for (size_t u = s; u < t; ++u)
          if (u != keep) movers.push_back(order[u]), group_of_mover.push_back(groups.size());
        any = true;
      }
      s = t;
    }
    if (any) groups.push_back({b, e});
  });
  if (movers.empty()) return rep;
  // Movers are already in (group, row) order; give each, in row order within its group, the nearest free code.
  std::vector<size_t> idx(movers.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return group_of_mover[a] != group_of_mover[b] ? group_of_mover[a] < group_of_mover[b] : movers[a] < movers[b];
  });
  const size_t block = 2048;
  std::vector<float> dist;
  std::vector<int32_t> ranked(K);
  std::vector<char> used(K);
  size_t current_group = SIZE_MAX;
  for (size_t b = 0; b < idx.size(); b += block) {
    const size_t nb = std::min(block, idx.size() - b);
    FloatMatrix rows(nb, d);
    for (size_t i = 0; i < nb; ++i) std::copy(residual.row(movers[idx[b + i]]), residual.row(movers[idx[b + i]]) + d,
                                              rows.row(i));
    dist.resize(nb * K);
    l2_sqr_distances(rows.view(), last_codebook, nullptr, dist.data());
    for (size_t i = 0; i < nb; ++i) {
      const size_t mv = idx[b + i], item = movers[mv], g = group_of_mover[mv];
      if (g != current_group) {
        current_group = g;
        std::fill(used.begin(), used.end(), 0);
        for (size_t u = groups[g].first; u < groups[g].second; ++u) used[codes(order[u], L - 1)] = 1;
      }
      const float* dr = dist.data() + i * K;
      int32_t best = -1;
      for (size_t k = 0; k < K; ++k)
        if (!used[k] && (best < 0 || dr[k] < dr[best])) best = (int32_t)k;
      if (best < 0) {
        ++rep.unresolved;
        continue;
      }
      used[best] = 1;
      codes(item, L - 1) = best;
      ++rep.moved;
    }
  }
  return rep;
}

}  // namespace tessera
