// The residual graph on k clusters plus a sink T (node k) that both balanced-assignment engines solve on:
// the dense one (balanced_ssp.cpp, every item can move to every cluster) and the bounded-memory one
// (bounded_balanced.cpp, items move only along their candidate arcs). Both keep a k × k table of cheapest
// movers (move[a·k + b], the item who[a·k + b], −1 and +inf where none) and run the same primal-dual phases
// of successive shortest paths on it (Tomizawa 1971; Edmonds & Karp 1972; Ahuja, Magnanti & Orlin, "Network
// Flows", ch. 9); docs/balanced-assignment.md, sections 3 and 4.3.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tessera::detail {

/// Flow state of the cluster graph: flow[j] units from cluster j to T (within cluster j's size window);
/// excess[v] for v ≤ k (members minus flow for clusters, total flow minus n for T).
struct ClusterFlow {
  std::vector<long long> flow, excess;
  /// The size window [lo, hi] of every cluster, or per cluster [lo_j[j], hi_j[j]] when those are set (the
  /// restricted problems of a distributed assignment, where each cluster already holds fixed items).
  long long lo = 0, hi = 0;
  std::vector<long long> lo_j, hi_j;
  long long min_of(size_t j) const { return lo_j.empty() ? lo : lo_j[j]; }
  long long max_of(size_t j) const { return hi_j.empty() ? hi : hi_j[j]; }
};

/// One shortest-path tree of a phase, and scratch space for the pushes along it.
struct ClusterTree {
  std::vector<double> dist, arc, key;  // dist: final distance (+inf: not reached); arc: mover value used
  std::vector<int32_t> pred;           // predecessor on the tree (−1: root or not reached)
  std::vector<size_t> targets;         // reached nodes with negative excess, in settle order
  std::vector<std::pair<size_t, size_t>> path;
  std::vector<int32_t> movers;
};

/// Dense Dijkstra from every node with positive excess at once (O(k²), reduced costs from the prices p:
/// k + 1 values, T last), then the prices lowered by the distances, capped at the largest reached, so that
/// every tree arc has reduced cost 0 and every other stays ≥ 0. Returns false when no node has excess.
/// tree.targets empty after a true return: no deficit is reachable (the arcs cannot balance the sizes).
bool cluster_shortest_paths(const float* move, std::vector<double>& p, const ClusterFlow& f, size_t k,
                            ClusterTree& tree);

/// Pushes one unit from the root of t's tree path to t if the path is still admissible (its root still has
/// excess, the arcs still exist and no cheapest mover on it has become dearer during the phase).
/// move_item(i, a, b) moves item i from cluster a to b and updates the mover table.
template <class MoveItem>
bool push_along_tree(size_t t, const float* move, const int32_t* who, ClusterFlow& f, size_t k, ClusterTree& tree,
                     MoveItem&& move_item) {
  auto& path = tree.path;
  path.clear();
  for (size_t v = t; tree.pred[v] >= 0; v = tree.pred[v]) {
    const size_t u = (size_t)tree.pred[v];
    const bool ok = u == k   ? f.flow[v] > f.min_of(v)
                    : v == k ? f.flow[u] < f.max_of(u)
                             : who[u * k + v] >= 0 && move[u * k + v] <= tree.arc[v];
    if (!ok) return false;
    path.push_back({u, v});
  }
  const size_t source = path.empty() ? t : path.back().first;
  if (f.excess[source] <= 0) return false;
  // Record the moving items before any move changes the table.
  tree.movers.assign(path.size(), -1);
  for (size_t e = 0; e < path.size(); ++e) {
    const auto [a, b] = path[e];
    if (a < k && b < k) tree.movers[e] = who[a * k + b];
  }
  for (size_t e = 0; e < path.size(); ++e) {
    const auto [a, b] = path[e];
    if (a == k) {
      --f.flow[b];
    } else if (b == k) {
      ++f.flow[a];
    } else {
      move_item(tree.movers[e], a, b);
    }
  }
  --f.excess[source];
  ++f.excess[t];
  return true;
}

/// Prices relative to T (p: k + 1 values in, k out), so that p_j > 0 only at size hi and p_j < 0 only at
/// size lo. In exact arithmetic a cluster whose flow to T can still rise has p_j ≤ p_T and one whose flow can
/// still fall has p_j ≥ p_T; the Dijkstra updates may leave a rounding error of the wrong sign, snapped to 0.
void prices_relative_to_sink(std::vector<double>& p, const ClusterFlow& f, size_t k);

/// One Jacobi round of the price pre-pass (docs/balanced-assignment.md, section 4.1), for clusters 0 … k − 1:
/// a cluster over[j] > 0 items above its target moves its price up just past the over[j]-th smallest gap to
/// its members' second choice (gaps[j]), one short_of[j] > 0 items below it down just past the short_of[j]-th
/// smallest joining cost (joins[j]), never across 0; step[j] = 0 otherwise. gaps and joins are reordered.
void price_steps(const std::vector<long long>& over, const std::vector<long long>& short_of,
                 std::vector<std::vector<float>>& gaps, std::vector<std::vector<float>>& joins,
                 const std::vector<double>& p, size_t k, std::vector<double>& step);

}  // namespace tessera::detail
