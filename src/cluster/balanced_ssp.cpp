// Size-constrained assignment by successive shortest paths on the cluster graph.
//
// The transportation problem (n unit items → k clusters with sizes in [lo, hi]) is solved as a min-cost
// flow whose nodes are the k clusters plus a sink T, never the n items: moving one item from cluster a
// to b costs c(i, b) − c(i, a), and the cheapest such move for every pair (a, b) is kept in a k × k
// table M. Cluster prices are the node potentials: every item sits in a cluster minimising
// c(i, ·) + p, which keeps every reduced cost non-negative, so Dijkstra on the dense k + 1 node graph
// finds shortest augmenting paths (Edmonds & Karp 1972; Tomizawa 1971; Ahuja, Magnanti & Orlin,
// "Network Flows", ch. 9). Each augmentation moves one item along every arc of the path; the arcs
// k→T / T→k carry each cluster's size within [lo, hi]. When no excess is left, the prices certify
// optimality (shared/notes/balanced-assignment.md): the result is exact, not approximate.
//
// Warm start: prices from the previous Lloyd iteration leave only the few items whose cluster changed
// to move, so a warm call costs little more than the distance computation.
#include "cluster/balanced_ssp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdlib>

namespace tessera::detail {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

class SspSolver {
 public:
  SspSolver(MatrixView<const float> cost, SizeBounds b, std::vector<double>& prices)
      : c_(cost), n_(cost.rows), k_(cost.cols), lo_(b.lo), hi_(b.hi), p_(prices) {
    if (p_.size() != k_) p_.assign(k_, 0.0);
    p_.push_back(0.0);  // the sink T is node k_
  }

  double run(int32_t* assign, float* dist, BalancedStats& stats) {
    presolve_prices();
    initial_assignment();
    build_moves();
    size_t augmentations = 0;
    while (augment()) ++augmentations;
    // Prices relative to T, so that p_k > 0 only at size hi and p_k < 0 only at size lo.
    const double pt = p_[k_];
    p_.pop_back();
    for (double& v : p_) v -= pt;
    double total = 0;
    for (size_t i = 0; i < n_; ++i) {
      assign[i] = cluster_[i];
      const float ci = c_(i, cluster_[i]);
      if (dist) dist[i] = ci;
      total += ci;
    }
    stats.steps = augmentations;
    stats.cost = total;
    return total;
  }

 private:
  // Price pre-pass. Every augmenting path costs O(k²), so a cold start whose nearest-centroid sizes are
  // far from the bounds would need very many. A few Jacobi rounds of price moves — each overfull
  // cluster raises its price just enough to shed its excess, each underfull one lowers it just enough to
  // attract its deficit, half-damped against oscillation — bring the sizes close to the bounds in O(n·k)
  // per round; the exact SSP then finishes from these prices (any prices are a valid start).
  void presolve_prices() {
    const size_t threshold = k_ / 2;
    std::vector<int32_t> best(n_);
    std::vector<double> v1(n_), gap(n_);
    std::vector<long long> size(k_);
    size_t previous = SIZE_MAX, stalls = 0;
    for (int round = 0; round < 60; ++round) {
#pragma omp parallel for schedule(static)
      for (ptrdiff_t i = 0; i < (ptrdiff_t)n_; ++i) {
        const float* r = c_.row(i);
        double a = kInf, b = kInf;
        size_t ka = 0;
        for (size_t j = 0; j < k_; ++j) {
          const double v = r[j] + p_[j];
          if (v < a) b = a, a = v, ka = j;
          else if (v < b) b = v;
        }
        best[i] = (int32_t)ka, v1[i] = a, gap[i] = b - a;
      }
      std::fill(size.begin(), size.end(), 0);
      for (size_t i = 0; i < n_; ++i) ++size[best[i]];
      size_t imbalance = 0;
      for (size_t j = 0; j < k_; ++j)
        imbalance += size_t(std::max(0LL, size[j] - hi_) + std::max(0LL, lo_ - size[j]));
      if (imbalance <= threshold) break;
      stalls = imbalance * 10 >= previous * 9 ? stalls + 1 : 0;
      if (stalls >= 3) break;
      previous = imbalance;
      std::vector<double> step(k_, 0.0);
      // Overfull: the e-th smallest gap to the second choice among members sheds e items.
      std::vector<std::vector<double>> member_gaps(k_);
      for (size_t i = 0; i < n_; ++i)
        if (size[best[i]] > hi_) member_gaps[best[i]].push_back(gap[i]);
      for (size_t j = 0; j < k_; ++j) {
        auto& g = member_gaps[j];
        if (g.empty()) continue;
        const size_t e = size_t(size[j] - hi_) - 1;
        std::nth_element(g.begin(), g.begin() + e, g.end());
        step[j] = 1.0 * g[e] + 1e-12 * (1 + std::abs(p_[j]));
      }
      // Underfull: the e-th smallest cost of joining among non-members attracts e items. One pass keeps,
      // per underfull cluster, a bounded max-heap of the e smallest joining costs.
      std::vector<size_t> under;
      for (size_t j = 0; j < k_; ++j)
        if (size[j] < lo_) under.push_back(j);
      if (!under.empty()) {
        std::vector<std::vector<double>> heaps(under.size());
#pragma omp parallel
        {
          std::vector<std::vector<double>> mine(under.size());
#pragma omp for schedule(static)
          for (ptrdiff_t i = 0; i < (ptrdiff_t)n_; ++i)
            for (size_t u = 0; u < under.size(); ++u) {
              const size_t j = under[u];
              if (best[i] == (int32_t)j) continue;
              const double join = c_(i, j) + p_[j] - v1[i];
              auto& h = mine[u];
              const size_t cap = size_t(lo_ - size[j]);
              if (h.size() < cap) {
                h.push_back(join);
                std::push_heap(h.begin(), h.end());
              } else if (join < h.front()) {
                std::pop_heap(h.begin(), h.end());
                h.back() = join;
                std::push_heap(h.begin(), h.end());
              }
            }
#pragma omp critical
          for (size_t u = 0; u < under.size(); ++u) heaps[u].insert(heaps[u].end(), mine[u].begin(), mine[u].end());
        }
        for (size_t u = 0; u < under.size(); ++u) {
          const size_t j = under[u];
          auto& g = heaps[u];
          const size_t e = std::min(g.size(), size_t(lo_ - size[j])) - 1;
          std::nth_element(g.begin(), g.begin() + e, g.end());
          step[j] = -(1.0 * g[e] + 1e-12 * (1 + std::abs(p_[j])));
        }
      }
      for (size_t j = 0; j < k_; ++j) p_[j] += step[j];
    }
    // T's price splits the clusters into those that must end full (priced above T) and those at their
    // minimum (below): choose the split that leaves the least imbalance for the SSP to repair.
    std::vector<int32_t> order(k_);
    for (size_t j = 0; j < k_; ++j) order[j] = (int32_t)j;
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p_[a] < p_[b] || (p_[a] == p_[b] && a < b); });
    std::fill(size.begin(), size.end(), 0);
    for (size_t i = 0; i < n_; ++i) ++size[best[i]];
    // below = clusters order[0..s) at lo, the rest at hi.
    long long at_hi = 0;
    for (size_t j = 0; j < k_; ++j) at_hi += std::llabs(size[j] - hi_);
    long long at_lo = 0, best_cost = at_hi;
    size_t split = 0;
    for (size_t s = 1; s <= k_; ++s) {
      const long long j = order[s - 1];
      at_hi -= std::llabs(size[j] - hi_);
      at_lo += std::llabs(size[j] - lo_);
      if (at_lo + at_hi < best_cost) best_cost = at_lo + at_hi, split = s;
    }
    const double below = split > 0 ? p_[order[split - 1]] : p_[order[0]] - 1.0;
    const double above = split < k_ ? p_[order[split]] : p_[order[k_ - 1]] + 1.0;
    p_[k_] = below == above ? below : 0.5 * (below + above);
  }

  // Every item to its cheapest priced cluster (ties: lowest index); sizes and the flows to T.
  void initial_assignment() {
    cluster_.assign(n_, 0);
    members_.assign(k_, {});
    pos_.assign(n_, 0);
#pragma omp parallel for schedule(static)
    for (ptrdiff_t i = 0; i < (ptrdiff_t)n_; ++i) {
      const float* r = c_.row(i);
      size_t best = 0;
      double bv = r[0] + p_[0];
      for (size_t j = 1; j < k_; ++j)
        if (r[j] + p_[j] < bv) bv = r[j] + p_[j], best = j;
      cluster_[i] = (int32_t)best;
    }
    for (size_t i = 0; i < n_; ++i) add_member(i, cluster_[i]);
    // Flow to T: a cluster priced above T must end full, below T at its minimum (complementary slackness).
    flow_.assign(k_, 0);
    excess_.assign(k_ + 1, 0);
    long long to_t = 0;
    for (size_t j = 0; j < k_; ++j) {
      const long long s = (long long)members_[j].size();
      flow_[j] = p_[j] > p_[k_] ? hi_ : p_[j] < p_[k_] ? lo_ : std::clamp<long long>(s, lo_, hi_);
      excess_[j] = s - flow_[j];
      to_t += flow_[j];
    }
    excess_[k_] = to_t - (long long)n_;
  }

  void add_member(size_t i, size_t j) {
    pos_[i] = members_[j].size();
    members_[j].push_back((int32_t)i);
  }
  void remove_member(size_t i, size_t j) {
    auto& m = members_[j];
    const int32_t last = m.back();
    m[pos_[i]] = last;
    pos_[last] = pos_[i];
    m.pop_back();
  }

  // M[a][b] = min over items i in a of c(i, b) − c(i, a), and the item attaining it.
  void build_moves() {
    move_.assign(k_ * k_, kInf);
    who_.assign(k_ * k_, -1);
#pragma omp parallel for schedule(dynamic, 1)
    for (ptrdiff_t a = 0; a < (ptrdiff_t)k_; ++a) rebuild_row(a);
  }
  void rebuild_row(size_t a) {
    double* m = &move_[a * k_];
    int32_t* w = &who_[a * k_];
    std::fill(m, m + k_, kInf);
    std::fill(w, w + k_, -1);
    for (int32_t i : members_[a]) consider(a, i);
  }
  // Item i (in cluster a) as a candidate mover out of a; ties to the lowest item index for determinism.
  void consider(size_t a, int32_t i) {
    const float* r = c_.row(i);
    const double base = r[a];
    double* m = &move_[a * k_];
    int32_t* w = &who_[a * k_];
    for (size_t b = 0; b < k_; ++b) {
      const double v = r[b] - base;
      if (v < m[b] || (v == m[b] && i < w[b])) m[b] = v, w[b] = i;
    }
  }
  // Entry (a, b) rescanned over a's members (after the item attaining it left a).
  void rebuild_entry(size_t a, size_t b) {
    double best = kInf;
    int32_t who = -1;
    for (int32_t i : members_[a]) {
      const double v = double(c_(i, b)) - c_(i, a);
      if (v < best || (v == best && i < who)) best = v, who = i;
    }
    move_[a * k_ + b] = best;
    who_[a * k_ + b] = who;
  }

  double reduced(size_t a, size_t b) const {
    if (a == k_) return flow_[b] > lo_ ? std::max(0.0, p_[b] - p_[k_]) : kInf;           // T → b
    if (b == k_) return flow_[a] < hi_ ? std::max(0.0, p_[k_] - p_[a]) : kInf;           // a → T
    const double m = move_[a * k_ + b];
    return m == kInf || a == b ? kInf : std::max(0.0, m + p_[b] - p_[a]);               // a → b
  }

  // One shortest augmenting path from any node with excess to the nearest node with a deficit.
  bool augment() {
    const size_t V = k_ + 1;
    dist_.assign(V, kInf);
    pred_.assign(V, -1);
    done_.assign(V, 0);
    bool any = false;
    for (size_t v = 0; v < V; ++v)
      if (excess_[v] > 0) dist_[v] = 0, any = true;
    if (!any) return false;
    size_t target = V;
    for (;;) {
      size_t u = V;
      for (size_t v = 0; v < V; ++v)
        if (!done_[v] && dist_[v] < kInf && (u == V || dist_[v] < dist_[u])) u = v;
      TESSERA_CHECK_ARG(u != V, "balanced assignment: no augmenting path (infeasible bounds?)");
      done_[u] = 1;
      if (excess_[u] < 0) {
        target = u;
        break;
      }
      for (size_t v = 0; v < V; ++v) {
        if (done_[v]) continue;
        const double r = reduced(u, v);
        if (r == kInf) continue;
        const double nd = dist_[u] + r;
        if (nd < dist_[v]) dist_[v] = nd, pred_[v] = (int32_t)u;
      }
    }
    const double dt = dist_[target];
    for (size_t v = 0; v < V; ++v) p_[v] -= std::min(dist_[v], dt);
    // Walk the path back; record the moving items before any move changes the table.
    path_.clear();
    for (size_t v = target; pred_[v] >= 0; v = pred_[v]) path_.push_back({(size_t)pred_[v], v});
    const size_t source = path_.empty() ? target : path_.back().first;
    std::vector<int32_t> movers(path_.size(), -1);
    for (size_t e = 0; e < path_.size(); ++e) {
      const auto [a, b] = path_[e];
      if (a < k_ && b < k_) movers[e] = who_[a * k_ + b];
    }
    for (size_t e = 0; e < path_.size(); ++e) {
      const auto [a, b] = path_[e];
      if (a == k_) {
        --flow_[b];
      } else if (b == k_) {
        ++flow_[a];
      } else {
        const int32_t i = movers[e];
        remove_member(i, a);
        add_member(i, b);
        cluster_[i] = (int32_t)b;
        gained_.push_back({b, i});
      }
    }
    --excess_[source];
    ++excess_[target];
    // Rows that lost an item: only the entries that item attained need a rescan.
    for (size_t e = 0; e < path_.size(); ++e) {
      const auto [a, b] = path_[e];
      if (a == k_ || b == k_) continue;
      const int32_t gone = movers[e];
      for (size_t j = 0; j < k_; ++j)
        if (who_[a * k_ + j] == gone) rebuild_entry(a, j);
    }
    for (const auto& [b, i] : gained_) consider(b, i);
    gained_.clear();
    return true;
  }

  MatrixView<const float> c_;
  size_t n_, k_;
  long long lo_, hi_;
  std::vector<double>& p_;
  std::vector<int32_t> cluster_;
  std::vector<std::vector<int32_t>> members_;
  std::vector<size_t> pos_;
  std::vector<long long> flow_, excess_;
  std::vector<double> move_;
  std::vector<int32_t> who_;
  std::vector<double> dist_;
  std::vector<int32_t> pred_;
  std::vector<char> done_;
  std::vector<std::pair<size_t, size_t>> path_;
  std::vector<std::pair<size_t, int32_t>> gained_;
};

}  // namespace

double balanced_ssp_solve(MatrixView<const float> cost, SizeBounds bounds, std::vector<double>& prices,
                          int32_t* assign, float* dist, BalancedStats& stats) {
  stats = BalancedStats{};
  if (cost.rows == 0) {
    prices.assign(cost.cols, 0.0);
    return 0;
  }
  SspSolver solver(cost, bounds, prices);
  return solver.run(assign, dist, stats);
}

}  // namespace tessera::detail
