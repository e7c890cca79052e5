#include "cluster/cluster_graph.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cluster/dijkstra_sweep.h"

namespace tessera::detail {

bool cluster_shortest_paths(const float* move, std::vector<double>& p, const ClusterFlow& f, size_t k,
                            ClusterTree& tree) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const size_t V = k + 1;
  tree.dist.assign(V, kInf);  // final distances of settled nodes
  tree.pred.assign(V, -1);
  tree.arc.assign(V, kInf);
  // Tentative distances of the open cluster nodes, NaN once settled (the sweeps skip those lanes).
  std::vector<double>& key = tree.key;
  key.assign(k, kInf);
  double key_t = kInf;  // and of T
  bool any = false;
  for (size_t v = 0; v < k; ++v)
    if (f.excess[v] > 0) key[v] = 0, any = true;
  if (f.excess[k] > 0) key_t = 0, any = true;
  if (!any) return false;
  tree.targets.clear();
  bool t_open = true;
  double reach = 0;  // the largest finite distance
  Nearest next = find_nearest(key.data(), k);
  size_t u = next.key <= key_t ? (size_t)next.index : k;
  // Nodes settle in order of (distance, index); T is node k.
  while (true) {
    double du;
    if (u < k) {
      du = key[u];
      key[u] = std::numeric_limits<double>::quiet_NaN();
    } else {
      du = key_t;
      t_open = false;
    }
    tree.dist[u] = reach = du;
    if (f.excess[u] < 0) tree.targets.push_back(u);
    // Relax every arc out of u and find the next node to settle in the same sweep.
    if (u < k) {
      const double pu = p[u];
      next = relax_and_find_nearest(move + u * k, p.data(), pu, du, (int32_t)u, k, key.data(), tree.pred.data(),
                                    tree.arc.data());
      if (t_open && f.flow[u] < f.max_of(u)) {
        const double nd = du + std::max(0.0, p[k] - pu);
        if (nd < key_t) key_t = nd, tree.pred[k] = (int32_t)u, tree.arc[k] = 0;
      }
    } else {
      const double pt = p[k];
      for (size_t v = 0; v < k; ++v) {
        if (f.flow[v] <= f.min_of(v)) continue;
        const double nd = du + std::max(0.0, p[v] - pt);
        if (nd < key[v]) key[v] = nd, tree.pred[v] = (int32_t)k, tree.arc[v] = 0;  // never true once settled (NaN)
      }
      next = find_nearest(key.data(), k);
    }
    if (t_open && key_t < next.key) {
      u = k;
    } else if (next.key < kInf) {
      u = (size_t)next.index;
    } else {
      break;
    }
  }
  for (size_t v = 0; v < V; ++v) p[v] -= std::min(tree.dist[v], reach);
  return true;
}

void prices_relative_to_sink(std::vector<double>& p, const ClusterFlow& f, size_t k) {
  const double pt = p[k];
  p.resize(k);
  for (size_t j = 0; j < k; ++j) {
    double& v = p[j];
    v -= pt;
    if ((v > 0 && f.flow[j] < f.max_of(j)) || (v < 0 && f.flow[j] > f.min_of(j))) v = 0;
  }
}

namespace {

// A price move of g plus a hair, so that the item at the margin really changes side.
double nudge(double g, double p) { return g + 1e-6 * (std::abs(g) + std::abs(p)) + 1e-30; }

// The e-th smallest value (1-based; the largest when there are fewer).
float kth_smallest(std::vector<float>& v, size_t e) {
  const size_t at = std::min(v.size(), e) - 1;
  std::nth_element(v.begin(), v.begin() + at, v.end());
  return v[at];
}

}  // namespace

void price_steps(const std::vector<long long>& over, const std::vector<long long>& short_of,
                 std::vector<std::vector<float>>& gaps, std::vector<std::vector<float>>& joins,
                 const std::vector<double>& p, size_t k, std::vector<double>& step) {
  for (size_t j = 0; j < k; ++j) {
    step[j] = 0;
    if (over[j] > 0 && !gaps[j].empty()) {
      step[j] = nudge(kth_smallest(gaps[j], size_t(over[j])), p[j]);
      if (p[j] < 0) step[j] = std::min(step[j], -p[j]);
    } else if (short_of[j] > 0 && !joins[j].empty()) {
      step[j] = -nudge(kth_smallest(joins[j], size_t(short_of[j])), p[j]);
      if (p[j] > 0) step[j] = std::max(step[j], -p[j]);
    }
  }
}

}  // namespace tessera::detail
