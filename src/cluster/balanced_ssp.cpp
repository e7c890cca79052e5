// Size-constrained assignment by successive shortest paths on the cluster graph.
//
// The transportation problem (n unit items → k clusters with sizes in [lo, hi]) is solved as a min-cost
// flow whose nodes are the k clusters plus a sink T, never the n items: moving one item from cluster a
// to b costs c(i, b) − c(i, a), and the cheapest such move for every pair (a, b) is kept in a k × k
// table M. Cluster prices are the node potentials: every item sits in a cluster minimising
// c(i, ·) + p, which keeps every reduced cost non-negative, so Dijkstra on the dense k + 1 node graph
// finds shortest augmenting paths (Edmonds & Karp 1972; Tomizawa 1971; Ahuja, Magnanti & Orlin,
// "Network Flows", ch. 9), many per Dijkstra (primal-dual phases). Each augmentation moves one item along
// every arc of the path; the arcs k→T / T→k carry each cluster's size within [lo, hi]. When no excess is
// left, the prices certify optimality (docs/balanced-assignment.md): the result is exact.
//
// Getting close first: the SSP pays O(k²) per phase, so the prices are first brought near the optimum
// by Jacobi rounds of dual ascent over the rows (O(n·k) each, vectorised), warm-started from the previous
// Lloyd iteration's prices, or, when those are missing or stale, from an exact solve on a sample.
#include "cluster/balanced_ssp.h"
#include "cluster/cluster_graph.h"
#include "cluster/dijkstra_sweep.h"
#include "cluster/mover_lists.h"
#include "tessera/core/threading.h"
#include "tessera/core/interrupt.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/row_scan.h"
#include "tessera/core/rng.h"

namespace tessera::detail {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kInfF = std::numeric_limits<float>::infinity();

class SspSolver {
 public:
  SspSolver(MatrixView<const float> cost, SizeBounds b, std::vector<double>& prices)
      : c_(cost), n_(cost.rows), k_(cost.cols), lo_(b.lo), hi_(b.hi), p_(prices) {
    if (p_.size() != k_) p_.assign(k_, 0.0);
    p_.push_back(0.0);  // the sink T is node k_
    fl_.lo = lo_, fl_.hi = hi_;
  }

  double run(int32_t* assign, float* dist, BalancedStats& stats) {
    presolve_prices();
    initial_assignment();
    build_moves();
    size_t augmentations = 0, phases = 0;
    while (const size_t pushed = augment_phase()) {
      augmentations += pushed, ++phases;
      check_interrupt();
    }
    prices_relative_to_sink(p_, fl_, k_);
    double total = 0;
    for (size_t i = 0; i < n_; ++i) {
      assign[i] = cluster_[i];
      const float ci = c_(i, cluster_[i]);
      if (dist) dist[i] = ci;
      total += ci;
    }
    stats.steps = augmentations;
    stats.phases = phases;
    stats.cost = total;
    return total;
  }

 private:
  // Price pre-pass: Jacobi rounds of dual ascent, O(n·k) each. Prices are relative to T's (0), and an
  // optimal solution has a cluster at hi where its price is positive, at lo where negative, anywhere in
  // [lo, hi] at 0 (complementary slackness). Each round every cluster off that target moves its price
  // just enough to shed (the e-th smallest member gap to the second choice) or attract (the e-th
  // smallest joining cost) its e items, never across 0: a cluster that reaches 0 becomes free. Moving
  // all clusters at once can overshoot (neighbours trading the same items back and forth, as in
  // skewed data where many centroids share one dense region): a round that leaves the sizes no closer
  // is taken back and retried at half the step, which grows again after a success. This brings the sizes close to a certified solution, from which the exact SSP has little to repair; any
  // prices are a valid start for it, so the pre-pass never changes the result, only the time to reach it.
  void presolve_prices() {
    // Rough costs in element operations: a round reads the matrix twice (2nk); an item left to the SSP
    // costs half a dense Dijkstra (k²/2, two pushes per phase) plus rescans of a few table entries,
    // each over a cluster's n/k members at cache-miss prices.
    const double round_cost = 2.0 * double(n_) * double(k_);
    const double unit_cost = 0.5 * double(k_) * double(k_) + 24.0 * double(n_) / double(k_);
    const size_t min_gain = std::max<size_t>(8, size_t(round_cost / unit_cost));
    std::vector<float> v1(n_), gap(n_);
    std::vector<long long> size(k_), over(k_), short_of(k_);
    std::vector<double> step(k_, 0.0), accepted = p_;
    size_t fewest = SIZE_MAX;
    double damping = 1.0;
    for (int round = 0; round < kMaxRounds; ++round) {
      check_interrupt();
      scan_rows(v1, gap);
      size_t imbalance = tally(size, over, short_of);
      if (round == 0 && warm_from_sample(imbalance)) {
        scan_rows(v1, gap);
        imbalance = tally(size, over, short_of);
        accepted = p_;
      }
      if (imbalance == 0) break;
      if (imbalance >= fewest) {
        // Overshot: neighbours moved together. Back to the last accepted prices with half the step.
        damping *= 0.5;
        p_ = accepted;
        fresh_ = false;
        if (damping < kMinDamping || fewest < 2 * min_gain) break;  // a retry could not pay for itself
        for (size_t j = 0; j < k_; ++j) p_[j] += damping * step[j];
        fresh_ = false;
        continue;
      }
      // Stop once a round no longer pays for itself.
      const bool paid = fewest == SIZE_MAX || fewest - imbalance >= min_gain;
      fewest = imbalance;
      accepted = p_;
      if (!paid) break;
      damping = std::min(1.0, 1.5 * damping);
      // Shed: the e-th smallest gap to the second choice among members sheds e items.
      std::vector<std::vector<float>> gaps(k_);
      for (size_t i = 0; i < n_; ++i)
        if (over[best_[i]] > 0) gaps[best_[i]].push_back(gap[i]);
      // Attract: the e-th smallest cost of joining among non-members.
      std::vector<std::vector<float>> joins = smallest_joins(short_of, v1);
      price_steps(over, short_of, gaps, joins, p_, k_, step);
      for (size_t j = 0; j < k_; ++j) p_[j] += damping * step[j];
      fresh_ = false;
    }
    if (!fresh_) scan_rows(v1, gap);
  }
  static constexpr int kMaxRounds = 60;
  static constexpr double kMinDamping = 1.0 / 16;

  // Sizes of the clusters under best_, and how far each is off its target (see presolve_prices).
  size_t tally(std::vector<long long>& size, std::vector<long long>& over, std::vector<long long>& short_of) const {
    std::fill(size.begin(), size.end(), 0);
    for (size_t i = 0; i < n_; ++i) ++size[best_[i]];
    size_t imbalance = 0;
    for (size_t j = 0; j < k_; ++j) {
      over[j] = std::max(0LL, size[j] - (p_[j] < 0 ? lo_ : hi_));
      short_of[j] = std::max(0LL, (p_[j] > 0 ? hi_ : lo_) - size[j]);
      imbalance += size_t(over[j] + short_of[j]);
    }
    return imbalance;
  }

  // For every cluster j with want[j] > 0: (at least) the want[j] smallest joining costs
  // c(i, j) + p_j − v1_i over the items not in j. One vectorised pass over the full rows; per thread and
  // cluster, a buffer of up to twice the count that is cut back to its smallest half when full, whose
  // cut-off then becomes the admission threshold (most costs never get in).
  TESSERA_CLONE_PER_ISA std::vector<std::vector<float>> smallest_joins(const std::vector<long long>& want, const std::vector<float>& v1) {
    std::vector<std::vector<float>> out(k_);
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<std::vector<float>> kept(k_);
      std::vector<float> admit(k_, -kInfF);  // joining costs below this enter j's buffer
      for (size_t j = 0; j < k_; ++j)
        if (want[j] > 0) admit[j] = kInfF, kept[j].reserve(2 * want[j]);
#pragma omp for schedule(static)
      for (ptrdiff_t i = 0; i < (ptrdiff_t)n_; ++i)
        below_threshold(c_.row(i), pf_.data(), admit.data(), k_, v1[i], [&](size_t j, float join) {
          if (j == (size_t)best_[i]) return;
          auto& g = kept[j];
          g.push_back(join);
          const size_t w = (size_t)want[j];
          if (g.size() == 2 * w) {
            std::nth_element(g.begin(), g.begin() + (w - 1), g.end());
            admit[j] = g[w - 1];
            g.resize(w);
          }
        });
#pragma omp critical
      for (size_t j = 0; j < k_; ++j) out[j].insert(out[j].end(), kept[j].begin(), kept[j].end());
    }
    return out;
  }

  // A cold or stale start (many items off their target) first solves the problem exactly on a uniform
  // sample of 1/kSampleFactor of the rows, with the bounds scaled alike (recursively). Prices are
  // intensive — the same for a sample as for the whole — so the sample's optimal prices land near the
  // full problem's, at a fraction of the cost of finding them on all rows.
  bool warm_from_sample(size_t imbalance) {
    if (imbalance * kStaleShare < n_ || n_ < kSampleFactor * kMinSampleRowsPerCluster * k_) return false;
    const size_t s = n_ / kSampleFactor;
    // Stale prices mislead more than none: the sample starts from nearest centroids.
    std::fill(p_.begin(), p_.end(), 0.0);
    const std::vector<size_t> rows = sample_rows(n_, s, kSampleSeed);
    std::vector<float> sub(s * k_);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
    for (ptrdiff_t r = 0; r < (ptrdiff_t)s; ++r) std::copy(c_.row(rows[r]), c_.row(rows[r]) + k_, &sub[r * k_]);
    const SizeBounds scaled{size_t(lo_) * s / n_, (size_t(hi_) * s + n_ - 1) / n_};
    std::vector<double> prices(p_.begin(), p_.end() - 1);
    std::vector<int32_t> assign(s);
    BalancedStats stats;
    balanced_ssp_solve(MatrixView<const float>(sub.data(), s, k_), scaled, prices, assign.data(), nullptr, stats);
    std::copy(prices.begin(), prices.end(), p_.begin());
    p_[k_] = 0;
    return true;
  }
  static constexpr size_t kSampleFactor = 8, kMinSampleRowsPerCluster = 8;
  static constexpr size_t kStaleShare = 4;  // stale: more than 1/kStaleShare of the items off target
  static constexpr uint64_t kSampleSeed = 0x5a3b1e5eed;

  // Every item to its cheapest priced cluster (ties: lowest index); sizes and the flows to T.
  void initial_assignment() {
    // The pre-pass left best_ computed under the current prices (T's price does not enter it).
    cluster_ = std::move(best_);
    members_.assign(k_, {});
    own_cost_.assign(k_, {});
    pos_.assign(n_, 0);
    for (size_t i = 0; i < n_; ++i) add_member(i, cluster_[i]);
    // Flow to T (priced 0): a cluster priced above must end full, below at its minimum (complementary
    // slackness); one at T's price is free within the bounds.
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

  // Members of cluster j, each with its own cost c(i, j) alongside (rescans then miss the cache once
  // per member, not twice).
  void add_member(size_t i, size_t j) {
    pos_[i] = members_[j].size();
    members_[j].push_back((int32_t)i);
    own_cost_[j].push_back(c_(i, j));
  }
  void remove_member(size_t i, size_t j) {
    auto& m = members_[j];
    auto& o = own_cost_[j];
    const int32_t last = m.back();
    m[pos_[i]] = last;
    o[pos_[i]] = o.back();
    pos_[last] = pos_[i];
    m.pop_back();
    o.pop_back();
  }

  // M[a][b] = min over items i in a of c(i, b) − c(i, a), and the item attaining it, with the next cheapest
  // behind it (mover_lists.h): a rescan of a's members (n/k rows read at cache-miss prices) is needed only
  // once an entry's whole list has left.
  void build_moves() {
    table_.reset(k_, MoverLists::depth_for(n_, k_));
    zeros_.assign(k_, 0.0f);
    // Members were added in increasing index order.
#pragma omp parallel for schedule(dynamic, 1) num_threads(::tessera::num_threads())
    for (ptrdiff_t a = 0; a < (ptrdiff_t)k_; ++a) build_row(a, members_[a]);
  }

  // Row a of the table from scratch: one vectorised pass per member row. `members` (a's members) must be
  // in increasing index order, so that a later equal value is a later key and strict comparisons are exact.
  TESSERA_CLONE_PER_ISA void build_row(size_t a, const std::vector<int32_t>& members) {
    const size_t row = a * k_;
    table_.clear_row(a);
    const size_t count = members.size();
    if (table_.depth() > 1) {
      for (size_t x = 0; x < count; ++x) {
        const int32_t i = members[x];
        const float* r = c_.row(i);
        if (x + kRowsAhead < count) prefetch_row(members[x + kRowsAhead]);
        below_threshold(r, zeros_.data(), table_.floor_values(a), k_, r[a], [&](size_t b, float v) {
          if (b != a) table_.insert(row + b, Mover{v, i});
        });
      }
      return;
    }
    // Single movers: the plain minimum, with the floor at the mover itself.
    float* m = table_.move_row(a);
    int32_t* w = table_.who_row(a);
    for (size_t x = 0; x < count; ++x) {
      if (x + kRowsAhead < count) prefetch_row(members[x + kRowsAhead]);
      lower_moves(c_.row(members[x]), a, k_, members[x], m, w);
    }
    m[a] = MoverLists::kNone, w[a] = -1;
    table_.publish_minima(a);
  }
  // Member rows are scattered over the matrix: the one kRowsAhead on is fetched while this one is scanned.
  void prefetch_row(int32_t i) const {
    const float* r = c_.row(i);
    for (size_t j = 0; j < k_; j += 16) __builtin_prefetch(r + j);
  }
  static constexpr size_t kRowsAhead = 4;

  // Item i joined cluster a.
  void consider(size_t a, int32_t i) {
    const float* r = c_.row(i);
    const float base = r[a];
    for (size_t b = 0; b < k_; ++b)
      if (b != a) table_.offer(a * k_ + b, Mover{r[b] - base, i});
  }
  // Item i left cluster a: out of every list of row a; the entries whose list ran dry are rescanned, or,
  // when there are many (an outlier of a is often the cheapest mover towards many clusters), the whole row
  // is rebuilt in one vectorised pass over a's member rows instead of many column reads that miss the cache.
  void forget(size_t a, int32_t i) {
    const float* r = c_.row(i);
    const float base = r[a];
    dry_.clear();
    for (size_t b = 0; b < k_; ++b)
      if (b != a && table_.remove(a * k_ + b, Mover{r[b] - base, i})) dry_.push_back(b);
    // A row rebuild reads a's m member rows (m·k costs, streamed); a rescan reads m costs at cache-miss
    // prices: measured, the rebuild wins from about k/16 dry entries on.
    if (dry_.size() >= std::max<size_t>(kRebuildRowAtLeast, k_ / 16)) {
      sorted_.assign(members_[a].begin(), members_[a].end());
      std::sort(sorted_.begin(), sorted_.end());
      build_row(a, sorted_);
    } else {
      for (size_t b : dry_) rescan(a, b);
    }
  }
  static constexpr size_t kRebuildRowAtLeast = 4;
  static constexpr size_t kPrefetchAhead = 16;  // rescans read one cost per member row: cache misses
  // The list of entry (a, b) from scratch over a's members.
  void rescan(size_t a, size_t b) {
    const size_t e = a * k_ + b;
    table_.clear_entry(e);
    const std::vector<int32_t>& members = members_[a];
    const std::vector<float>& own = own_cost_[a];
    const size_t count = members.size();
    for (size_t x = 0; x < count; ++x) {
      if (x + kPrefetchAhead < count) __builtin_prefetch(&c_(members[x + kPrefetchAhead], b));
      table_.offer(e, Mover{c_(members[x], b) - own[x], members[x]});
    }
  }

  // One phase of the primal-dual method (cluster_graph.h): a full Dijkstra from every node with excess
  // (dense, O(k²)), prices lowered by the shortest distances so that every arc of the shortest-path tree has
  // reduced cost 0, then one unit pushed along the tree path of every deficit node, nearest first, as long
  // as that path is still admissible (its source still has excess and no arc on it got dearer through an
  // earlier push of the phase). Every push is along a zero-reduced-cost path, so reduced costs stay
  // non-negative and the result is exactly what one path per Dijkstra would give, for far fewer
  // Dijkstras. Returns the number of units pushed (0: no excess left).
  size_t augment_phase() {
    if (!cluster_shortest_paths(table_.move(), p_, fl_, k_, tree_)) return 0;
    TESSERA_CHECK_ARG(!tree_.targets.empty(), "balanced assignment: no augmenting path (infeasible bounds?)");
    size_t pushed = 0;
    const auto move_item = [this](int32_t i, size_t a, size_t b) {
      remove_member(i, a);
      forget(a, i);
      add_member(i, b);
      cluster_[i] = (int32_t)b;
      consider(b, i);
    };
    for (size_t t : tree_.targets)
      while (excess_[t] < 0 && push_along_tree(t, table_.move(), table_.who(), fl_, k_, tree_, move_item)) ++pushed;
    return pushed;
  }

  // Cheapest cluster of every item under the prices (pf_, p_ rounded to float), with the cheapest and
  // second cheapest priced cost; fresh_ while the prices have not moved since.
  TESSERA_CLONE_PER_ISA void scan_rows(std::vector<float>& v1, std::vector<float>& gap) {
    pf_.resize(k_);
    for (size_t j = 0; j < k_; ++j) pf_[j] = (float)p_[j];
    best_.resize(n_);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
    for (ptrdiff_t i = 0; i < (ptrdiff_t)n_; ++i) {
      const BestTwo b = best_two(c_.row(i), pf_.data(), k_);
      best_[i] = b.best, v1[i] = b.first, gap[i] = b.second - b.first;
    }
    fresh_ = true;
  }

  std::vector<int32_t> best_;
  std::vector<float> pf_;
  bool fresh_ = false;
  MatrixView<const float> c_;
  size_t n_, k_;
  long long lo_, hi_;
  std::vector<double>& p_;
  std::vector<int32_t> cluster_;
  std::vector<std::vector<int32_t>> members_;
  std::vector<std::vector<float>> own_cost_;
  std::vector<size_t> pos_;
  ClusterFlow fl_;
  std::vector<long long>& flow_ = fl_.flow;
  std::vector<long long>& excess_ = fl_.excess;
  ClusterTree tree_;
  MoverLists table_;
  std::vector<float> zeros_;
  std::vector<int32_t> sorted_;
  std::vector<size_t> dry_;
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
