// Exact size-constrained assignment in bounded memory (docs/balanced-assignment.md, section 7).
//
// The dense engine (balanced_ssp.cpp) reads any cost c(i, j) at any time, so it holds the n × k matrix.
// Here the costs exist only one block of rows at a time. Every item keeps a short list of candidate
// clusters — its c cheapest under the current prices c(i, j) + p_j, with their costs — and the
// transportation problem restricted to those arcs is solved exactly by the same successive shortest paths
// on the k-cluster graph (cluster_graph.h; Tomizawa 1971, Edmonds & Karp 1972, Ahuja, Magnanti & Orlin,
// "Network Flows", ch. 9), with the cheapest-mover table built from the candidate lists only. Its prices
// certify the restricted optimum; they certify the full problem when no item has a cluster outside its
// list that is cheaper, with prices, than its own (condition 1 of the certificate). That is checked on
// the full rows, recomputed block by block; every violating arc is added to its item's list and the
// restricted problem re-solved from the current prices, until no arc is added. The arcs only grow, so
// this ends, with the certificate of the full problem: the same optimum as the dense engine.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>

#include "cluster/balanced_ssp.h"
#include "cluster/cheapest_priced.h"
#include "core/keep_smallest.h"
#include "cluster/cluster_graph.h"
#include "cluster/mover_lists.h"
#include "cluster/solve_on_arcs.h"
#include "core/blas.h"
#include "tessera/cluster/bounded_balanced_assignment.h"
#include "tessera/core/distances.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"
#include "tessera/core/threading.h"

namespace tessera {

namespace detail {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kInfF = std::numeric_limits<float>::infinity();

// Where the costs come from: blocks of consecutive rows, or listed rows (for the sample and the checks).
class CostRows {
 public:
  virtual ~CostRows() = default;
  virtual size_t rows() const = 0;
  virtual size_t cols() const = 0;
  /// out (m × k) = costs of rows [i0, i0 + m); then(r, count) runs on every finished chunk of rows
  /// [r, r + count) of out while it is in cache, possibly on several threads at once.
  virtual void block(size_t i0, size_t m, float* out, const RowBlockFn& then) const = 0;
  /// out (m × k) = costs of rows idx[0..m).
  virtual void gather(const size_t* idx, size_t m, float* out) const = 0;
};

class DenseRows final : public CostRows {
 public:
  explicit DenseRows(MatrixView<const float> c) : c_(c) {}
  size_t rows() const override { return c_.rows; }
  size_t cols() const override { return c_.cols; }
  void block(size_t i0, size_t m, float* out, const RowBlockFn& then) const override {
    for (size_t r = 0; r < m; ++r) std::copy(c_.row(i0 + r), c_.row(i0 + r) + c_.cols, out + r * c_.cols);
    then(0, m);
  }
  void gather(const size_t* idx, size_t m, float* out) const override {
    for (size_t r = 0; r < m; ++r) std::copy(c_.row(idx[r]), c_.row(idx[r]) + c_.cols, out + r * c_.cols);
  }

 private:
  MatrixView<const float> c_;
};

// Squared L2 distances ‖x‖² − 2·x·cᵀ + ‖c‖² (clamped at 0), one GEMM per block of rows, as
// l2_sqr_distances computes them; the caller's work on a chunk runs right after the chunk's product.
class L2Rows final : public CostRows {
 public:
  L2Rows(MatrixView<const float> x, MatrixView<const float> c, const float* x_norms)
      : x_(x), c_(c), x_norms_(x_norms), c_norms_(c.rows) {
    row_norms_sqr(c, c_norms_.data());
    if (!x_norms_) {
      own_norms_.resize(x.rows);
      row_norms_sqr(x, own_norms_.data());
      x_norms_ = own_norms_.data();
    }
  }
  size_t rows() const override { return x_.rows; }
  size_t cols() const override { return c_.rows; }
  void block(size_t i0, size_t m, float* out, const RowBlockFn& then) const override {
    const size_t k = c_.rows;
    gemm_abt(m, k, x_.cols, -2.0f, x_.row(i0), x_.stride, c_.data, c_.stride, 0.0f, out, k,
             [&](size_t r, size_t count) {
               add_norms(x_norms_ + i0, r, count, out);
               then(r, count);
             });
  }
  void gather(const size_t* idx, size_t m, float* out) const override {
    const size_t d = x_.cols, k = c_.rows;
    std::vector<float> sub(m * d), norms(m);
    for (size_t r = 0; r < m; ++r) {
      std::copy(x_.row(idx[r]), x_.row(idx[r]) + d, &sub[r * d]);
      norms[r] = x_norms_[idx[r]];
    }
    gemm_abt(m, k, d, -2.0f, sub.data(), d, c_.data, c_.stride, 0.0f, out, k,
             [&](size_t r, size_t count) { add_norms(norms.data(), r, count, out); });
  }

 private:
  void add_norms(const float* xn, size_t r, size_t count, float* out) const {
    const size_t k = c_.rows;
    const float* cn = c_norms_.data();
    for (size_t i = r; i < r + count; ++i) {
      float* o = out + i * k;
      const float v = xn[i];
      for (size_t j = 0; j < k; ++j) o[j] = std::max(0.0f, o[j] + v + cn[j]);
    }
  }
  MatrixView<const float> x_, c_;
  const float* x_norms_;
  std::vector<float> c_norms_, own_norms_;
};

// No rows at all: the restricted problem given as arcs is the whole problem (solve_on_arcs).
class NoRows final : public CostRows {
 public:
  NoRows(size_t n, size_t k) : n_(n), k_(k) {}
  size_t rows() const override { return n_; }
  size_t cols() const override { return k_; }
  void block(size_t, size_t, float*, const RowBlockFn&) const override { no_rows(); }
  void gather(const size_t*, size_t, float*) const override { no_rows(); }

 private:
  [[noreturn]] static void no_rows() {
    TESSERA_CHECK_ARG(false, "bounded balanced assignment: internal error, a row read on a problem given as arcs");
    std::abort();
  }
  size_t n_, k_;
};

// A candidate arc added after the first lists: item, cluster, cost.
struct NewArc {
  size_t item;
  int32_t cluster;
  float cost;
};

class BoundedSolver {
 public:
  BoundedSolver(const CostRows& src, SizeBounds b, const BoundedBalancedParams& prm, std::vector<double>& prices,
                BoundedBalancedStats& stats)
      : src_(src), n_(src.rows()), k_(src.cols()), prm_(prm), p_(prices), st_(stats) {
    fl_.lo = (long long)b.lo, fl_.hi = (long long)b.hi;
    block_ = std::max<size_t>(1, prm.block_rows);
  }

  double run(int32_t* assign, float* dist, SizeBounds b) {
    if (p_.size() != k_) {
      p_.assign(k_, 0.0);
      sample_prices(b);
    }
    p_.push_back(0.0);  // the sink T is node k_
    first_candidates();
    cluster_.assign(n_, -1);
    while (true) {
      solve_restricted();
      ++st_.rounds;
      if (certify() == 0) break;
    }
    prices_relative_to_sink(p_, fl_, k_);
    double total = 0;
    for (size_t i = 0; i < n_; ++i) {
      assign[i] = cluster_[i];
      if (dist) dist[i] = own_[i];
      total += own_[i];
    }
    st_.arcs = cid_.size();
    st_.cost = total;
    return total;
  }

  // The restricted problem itself, given as arcs (no duplicates within an item) with one size window per
  // cluster, from the current prices: no rows to list or check, so a search that cannot reach a cluster short
  // of items means the windows cannot be met. Returns false then.
  bool run_on_arcs(const SparseCostsView& v, const std::vector<size_t>& lo, const std::vector<size_t>& hi,
                   int32_t* assign) {
    if (p_.size() != k_) p_.assign(k_, 0.0);
    p_.push_back(0.0);
    fl_.lo_j.resize(k_), fl_.hi_j.resize(k_);
    for (size_t j = 0; j < k_; ++j) fl_.lo_j[j] = (long long)lo[j], fl_.hi_j[j] = (long long)std::min(hi[j], n_);
    off_.assign(n_ + 1, 0);
    cid_.clear(), cco_.clear();
    for (size_t i = 0; i < n_; ++i) {
      for (int64_t a = v.offsets[i]; a < v.offsets[i + 1]; ++a) cid_.push_back(v.cluster[a]), cco_.push_back(v.cost[a]);
      off_[i + 1] = cid_.size();
    }
    cluster_.assign(n_, -1);
    can_connect_ = false;
    if (!solve_restricted()) return false;
    prices_relative_to_sink(p_, fl_, k_);
    double total = 0;
    for (size_t i = 0; i < n_; ++i) assign[i] = cluster_[i], total += own_[i];
    st_.arcs = cid_.size();
    st_.cost = total;
    return true;
  }

 private:
  // A cold start takes the prices of an exact (dense) solve on a uniform sample of the rows, with the bounds
  // scaled alike: prices are intensive, the same for a sample as for the whole (section 2 of the doc).
  void sample_prices(SizeBounds b) {
    size_t s = prm_.sample_rows;
    if (s == BoundedBalancedParams::kAuto) {
      s = std::min(std::max(n_ / 8, 32 * k_), std::max<size_t>(1, (size_t(1) << 24) / k_));
      if (2 * s > n_) s = 0;
    }
    s = std::min(s, n_);
    if (s == 0 || s == n_) return;
    // (sample_rows holds a permutation of n indices for a moment: 8 bytes per row, less than the lists. A
    // stratified sample in O(s) memory was tried once: on the 1M × 256 benchmark its prices needed 25,760
    // added arcs instead of 675; one sample, not a general finding.)
    const std::vector<size_t> rows = sample_rows(n_, s, kSampleSeed);
    std::vector<float> sub(s * k_);
    for (size_t r0 = 0; r0 < s; r0 += block_) src_.gather(&rows[r0], std::min(block_, s - r0), &sub[r0 * k_]);
    const SizeBounds scaled{b.lo * s / n_, (b.hi * s + n_ - 1) / n_};
    std::vector<int32_t> assign(s);
    BalancedStats stats;
    balanced_ssp_solve(MatrixView<const float>(sub.data(), s, k_), scaled, p_, assign.data(), nullptr, stats);
    st_.sampled = true;
    set_join_limits(sub, s, b);
  }
  // The sample also tells how far each cluster's price may have to fall: the first lists must hold, for
  // every cluster, at least kListersPerMember · lo items, its cheapest joiners. Without them a cluster the
  // sample priced too high is listed by few items; the restricted solve then drops its price far below the
  // optimum to fill it from those few, and the certificate check adds millions of arcs (2M × 128, K = 256:
  // 4.0M arcs, 3 restarts). join_limit_[j]: that many sample rows' worth of the smallest joining costs
  // (priced cost less the row's cheapest priced cost) lie below it.
  void set_join_limits(const std::vector<float>& sub, size_t s, SizeBounds b) {
    const size_t want = std::min(s, (kListersPerMember * b.lo * s + n_ - 1) / n_);
    if (want == 0) return;
    std::vector<float> pf(k_), v1(s, kInfF);
    for (size_t j = 0; j < k_; ++j) pf[j] = float(p_[j]);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
    for (ptrdiff_t r = 0; r < (ptrdiff_t)s; ++r) {
      float m = kInfF;
      for (size_t j = 0; j < k_; ++j) m = std::min(m, sub[size_t(r) * k_ + j] + pf[j]);
      v1[size_t(r)] = m;
    }
    join_limit_.assign(k_, -kInfF);
    // Columns in groups of a cache line's width, so that each pass over the rows reads whole lines.
    constexpr size_t kGroup = 16;
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<float> cols(kGroup * s);
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t g = 0; g < (ptrdiff_t)((k_ + kGroup - 1) / kGroup); ++g) {
        const size_t j0 = size_t(g) * kGroup, w = std::min(kGroup, k_ - j0);
        for (size_t r = 0; r < s; ++r)
          for (size_t t = 0; t < w; ++t) cols[t * s + r] = sub[r * k_ + j0 + t] + pf[j0 + t] - v1[r];
        for (size_t t = 0; t < w; ++t) {
          const auto col = cols.begin() + ptrdiff_t(t * s);
          std::nth_element(col, col + ptrdiff_t(want - 1), col + ptrdiff_t(s));
          join_limit_[j0 + t] = col[ptrdiff_t(want - 1)];
        }
      }
    }
  }
  static constexpr size_t kListersPerMember = 4;
  static constexpr uint64_t kSampleSeed = 0x5a3b1e5eed;

  // Visits the full rows block by block: f(i, m, costs of rows [i, i + m)) on chunks of every block, maybe
  // on several threads at once (f must only write to its rows' entries, or lock).
  template <class F>
  void for_each_chunk(F&& f) {
    std::vector<float> buf(std::min(block_, n_) * k_);
    for (size_t i0 = 0; i0 < n_; i0 += block_) {
      check_interrupt();
      const size_t m = std::min(block_, n_ - i0);
      src_.block(i0, m, buf.data(), [&](size_t r, size_t count) { f(i0 + r, count, &buf[r * k_]); });
    }
  }

  // Every item's c cheapest clusters under the current prices (in float; ties: lowest index), cheapest
  // first, and theta_: the (c+1)-th cheapest priced cost, a lower bound, under these prices p0_, on every
  // cluster outside the list (the certificate check uses it to skip rows that cannot violate).
  void first_candidates() {
    const size_t c = std::min(std::max<size_t>(1, prm_.candidates), k_);
    const size_t c1 = std::min(c + 1, k_);
    off_.resize(n_ + 1);
    for (size_t i = 0; i <= n_; ++i) off_[i] = i * c;
    // Room for the arcs added later (joiners, violations): untouched capacity costs address space, not memory.
    cid_.clear(), cco_.clear();
    cid_.reserve(n_ * (c + kReservedArcs)), cco_.reserve(n_ * (c + kReservedArcs));
    cid_.assign(n_ * c, -1);
    cco_.assign(n_ * c, 0.0f);
    theta_.assign(n_, kInfF);
    p0_.assign(p_.begin(), p_.begin() + k_);
    std::vector<float> pf(k_);
    pmax_ = 0;
    for (size_t j = 0; j < k_; ++j) pf[j] = float(p_[j]), pmax_ = std::max(pmax_, std::abs(p_[j]));
    const bool limits = join_limit_.size() == k_ && c < k_;
    float limit_max = -kInfF;
    std::vector<float> reach(k_, -kInfF);  // cost below which an item must list j: limit_j − p_j + its cheapest
    if (limits)
      for (size_t j = 0; j < k_; ++j) limit_max = std::max(limit_max, join_limit_[j]), reach[j] = join_limit_[j] - pf[j];
    std::vector<NewArc> joiners;
    std::mutex merge;
    for_each_chunk([&](size_t i0, size_t m, const float* costs) {
      std::vector<NewArc> extra;
      {
        std::vector<float> bv(c1);
        std::vector<int32_t> bj(c1);
        for (size_t r = 0; r < m; ++r) {
          const float* row = costs + size_t(r) * k_;
          cheapest_priced(row, pf.data(), k_, c1, bv.data(), bj.data());
          const size_t i = i0 + size_t(r);
          const size_t o = i * c;
          for (size_t t = 0; t < c; ++t) cid_[o + t] = bj[t], cco_[o + t] = row[bj[t]];
          if (c1 > c) theta_[i] = bv[c];
          // Joiners the lists must hold beyond the c cheapest (set_join_limits): j with v_j − v_min < limit_j.
          if (limits && c1 > c && bv[c] - bv[0] < limit_max) {
            const float v0 = bv[0];
            for (size_t j0 = 0; j0 < k_; j0 += kChunk) {
              const size_t w = std::min(kChunk, k_ - j0);
              bool any = false;
              for (size_t t = 0; t < w; ++t) any |= row[j0 + t] < reach[j0 + t] + v0;
              if (!any) continue;
              for (size_t j = j0; j < j0 + w; ++j)
                if (row[j] < reach[j] + v0 && std::find(bj.begin(), bj.begin() + c, int32_t(j)) == bj.begin() + c)
                  extra.push_back({i, int32_t(j), row[j]});
            }
          }
        }
      }
      if (!extra.empty()) {
        const std::lock_guard<std::mutex> lock(merge);
        joiners.insert(joiners.end(), extra.begin(), extra.end());
        extra.clear();
      }
    });
    std::sort(joiners.begin(), joiners.end(), [](const NewArc& x, const NewArc& y) {
      return x.item < y.item || (x.item == y.item && x.cluster < y.cluster);
    });
    add_arcs(joiners);
    st_.joiner_arcs = joiners.size();
  }
  static constexpr size_t kChunk = 16;
  static constexpr size_t kReservedArcs = 4;  // per item

  // Adds arcs (sorted by item, none already present) to the candidate lists, in place: from the last item
  // back, every arc moves up by the number of arcs added before it, so nothing is overwritten unread and the
  // lists never exist twice (within the capacity reserved by first_candidates, no reallocation either).
  void add_arcs(const std::vector<NewArc>& add) {
    if (add.empty()) return;
    const size_t total = cid_.size() + add.size();
    cid_.resize(total), cco_.resize(total);
    size_t w = total, x = add.size();
    for (size_t i = n_; i-- > 0;) {
      const size_t begin = off_[i], end = off_[i + 1];
      off_[i + 1] = w;
      for (; x > 0 && add[x - 1].item == i; --x) --w, cid_[w] = add[x - 1].cluster, cco_[w] = add[x - 1].cost;
      for (size_t t = end; t > begin; --t) --w, cid_[w] = cid_[t - 1], cco_[w] = cco_[t - 1];
    }
  }

  // The problem on the candidate arcs, exactly, from the current prices. When the arcs cannot bring a
  // cluster up to its minimum (none of its would-be members lists it), arcs towards the clusters the
  // search could not reach are added (connect) and the solve restarts from the prices reached so far.
  bool solve_restricted() {
    presolve_prices();
    while (true) {
      initial_assignment();
      build_moves();
      bool stuck = false;
      while (cluster_shortest_paths(table_.move(), p_, fl_, k_, tree_)) {
        check_interrupt();
        if (tree_.targets.empty()) {
          stuck = true;
          break;
        }
        size_t pushed = 0;
        const auto move_item = [this](int32_t i, size_t a, size_t b) {
          leave((size_t)i, a);
          join((size_t)i, b);
        };
        for (size_t t : tree_.targets)
          while (fl_.excess[t] < 0 && push_along_tree(t, table_.move(), table_.who(), fl_, k_, tree_, move_item))
            ++pushed;
        TESSERA_CHECK_ARG(pushed > 0, "bounded balanced assignment: internal error, a phase pushed nothing");
        st_.steps += pushed, ++st_.phases;
      }
      if (!stuck) return true;
      if (!can_connect_) return false;
      ++st_.reconnects;
      connect();
    }
  }

  // Jacobi rounds of dual ascent on the candidate arcs: the dense engine's pre-pass (section 4.1 of the doc)
  // over the n·c arcs of the lists instead of the n·k of the matrix. A cluster off its target (hi if its
  // price is positive, lo if negative, anywhere in [lo, hi] at 0) moves its price just enough to shed (the
  // e-th smallest member gap to the second candidate) or attract (the e-th smallest joining cost among the
  // items listing it) its e items, never across 0; a round that does not reduce the imbalance is taken back
  // and retried at half the step. Only the running time depends on it: the SSP accepts any prices.
  void presolve_prices() {
    const double pt = p_[k_];
    for (double& v : p_) v -= pt;  // T at 0
    const double arcs = double(cid_.size());
    // A round reads the lists twice; an item left to the SSP costs about two thirds of a dense Dijkstra (1.5
    // paths per phase), whose k² steps each cost about three arc reads. Measured at 10M × 128, K = 256 (130M
    // arcs): a round 1 s, a phase 0.75 ms; the rounds stopped at a gain of 247 took 48 s of the level's 91.
    const double round_cost = 2.0 * arcs;
    const double unit_cost = 2.0 * double(k_) * double(k_);
    const size_t min_gain = std::max<size_t>(8, size_t(round_cost / unit_cost));
    std::vector<int32_t> best(n_);
    std::vector<float> v1(n_), gap(n_);
    std::vector<double> step(k_, 0.0), accepted = p_;
    std::vector<long long> size(k_), over(k_), short_of(k_);
    // Per cluster only the over[j] smallest gaps and short_of[j] smallest joining costs are kept: price_steps
    // reads no others.
    std::vector<std::vector<float>> gaps(k_), joins(k_);
    size_t fewest = SIZE_MAX;
    double damping = 1.0;
    for (int round = 0; round < kMaxRounds; ++round) {
      check_interrupt();
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
      for (ptrdiff_t ii = 0; ii < (ptrdiff_t)n_; ++ii) {
        const size_t i = (size_t)ii;
        double b1 = kInf, b2 = kInf;
        int32_t bj = -1;
        for (size_t t = off_[i]; t < off_[i + 1]; ++t) {
          const int32_t j = cid_[t];
          const double v = double(cco_[t]) + p_[j];
          if (v < b1 || (v == b1 && j < bj)) {
            b2 = b1, b1 = v, bj = j;
          } else if (v < b2) {
            b2 = v;
          }
        }
        best[i] = bj, v1[i] = b1, gap[i] = b2 - b1;
      }
      std::fill(size.begin(), size.end(), 0);
      for (size_t i = 0; i < n_; ++i) ++size[best[i]];
      size_t imbalance = 0;
      for (size_t j = 0; j < k_; ++j) {
        over[j] = std::max(0LL, size[j] - (p_[j] < 0 ? fl_.min_of(j) : fl_.max_of(j)));
        short_of[j] = std::max(0LL, (p_[j] > 0 ? fl_.max_of(j) : fl_.min_of(j)) - size[j]);
        imbalance += size_t(over[j] + short_of[j]);
      }
      if (imbalance == 0) break;
      if (imbalance >= fewest) {  // overshot: back to the last accepted prices with half the step
        damping *= 0.5;
        p_ = accepted;
        if (damping < kMinDamping || fewest < 2 * min_gain) break;
        for (size_t j = 0; j < k_; ++j) p_[j] += damping * step[j];
        continue;
      }
      const bool paid = fewest == SIZE_MAX || fewest - imbalance >= min_gain;
      fewest = imbalance;
      accepted = p_;
      if (!paid) break;
      damping = std::min(1.0, 1.5 * damping);
      collect_smallest(best, v1, gap, over, short_of, gaps, joins);
      price_steps(over, short_of, gaps, joins, p_, k_, step);
      for (size_t j = 0; j < k_; ++j) p_[j] += damping * step[j];
    }
  }
  // gaps[a]: the over[a] smallest gaps of a's members to their second candidate; joins[j]: the short_of[j]
  // smallest joining costs (priced cost less the item's cheapest) of the items listing j, j not their cheapest.
  // Each thread keeps its own bounded max-heaps; the merge keeps the smallest (the same values whatever the
  // split).
  void collect_smallest(const std::vector<int32_t>& best, const std::vector<float>& v1, const std::vector<float>& gap,
                        const std::vector<long long>& over, const std::vector<long long>& short_of,
                        std::vector<std::vector<float>>& gaps, std::vector<std::vector<float>>& joins) const {
    for (size_t j = 0; j < k_; ++j) gaps[j].clear(), joins[j].clear();
    const auto merge = [](std::vector<float>& into, const std::vector<float>& from, size_t cap) {
      into.insert(into.end(), from.begin(), from.end());
      if (into.size() > cap) {
        std::nth_element(into.begin(), into.begin() + (cap - 1), into.end());
        into.resize(cap);
      }
    };
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<std::vector<float>> g(k_), jn(k_);
#pragma omp for schedule(static)
      for (ptrdiff_t ii = 0; ii < (ptrdiff_t)n_; ++ii) {
        const size_t i = (size_t)ii;
        const size_t a = (size_t)best[i];
        if (over[a] > 0 && gap[i] < kInfF) keep_smallest(g[a], (size_t)over[a], gap[i]);
        for (size_t t = off_[i]; t < off_[i + 1]; ++t) {
          const size_t j = (size_t)cid_[t];
          if (j != a && short_of[j] > 0)
            keep_smallest(jn[j], (size_t)short_of[j], float(double(cco_[t]) + p_[j] - v1[i]));
        }
      }
#pragma omp critical(tessera_bounded_collect)
      for (size_t j = 0; j < k_; ++j) {
        if (!g[j].empty()) merge(gaps[j], g[j], (size_t)over[j]);
        if (!jn[j].empty()) merge(joins[j], jn[j], (size_t)short_of[j]);
      }
    }
  }
  static constexpr int kMaxRounds = 60;
  static constexpr double kMinDamping = 1.0 / 16;

  // Every item to its cheapest priced candidate (ties: its previous cluster, within rounding, then the
  // lowest index); sizes, and the flows to T as complementary slackness wants them.
  void initial_assignment() {
    own_.resize(n_);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
    for (ptrdiff_t ii = 0; ii < (ptrdiff_t)n_; ++ii) {
      const size_t i = (size_t)ii;
      double best = kInf, prev_v = kInf;
      int32_t bj = -1;
      float bc = 0, prev_c = 0;
      const int32_t prev = cluster_[i];
      for (size_t t = off_[i]; t < off_[i + 1]; ++t) {
        const int32_t j = cid_[t];
        const double v = double(cco_[t]) + p_[j];
        if (v < best || (v == best && j < bj)) best = v, bj = j, bc = cco_[t];
        if (j == prev) prev_v = v, prev_c = cco_[t];
      }
      if (prev >= 0 && prev_v <= best + kTieSlack * std::abs(double(prev_c))) bj = prev, bc = prev_c;
      cluster_[i] = bj;
      own_[i] = bc;
    }
    members_.assign(k_, {});
    pos_.resize(n_);
    for (size_t i = 0; i < n_; ++i) {
      auto& m = members_[cluster_[i]];
      pos_[i] = (int32_t)m.size();
      m.push_back((int32_t)i);
    }
    fl_.flow.assign(k_, 0);
    fl_.excess.assign(k_ + 1, 0);
    long long to_t = 0;
    for (size_t j = 0; j < k_; ++j) {
      const long long s = (long long)members_[j].size();
      const long long lo = fl_.min_of(j), hi = fl_.max_of(j);
      fl_.flow[j] = p_[j] > p_[k_] ? hi : p_[j] < p_[k_] ? lo : std::clamp<long long>(s, lo, hi);
      fl_.excess[j] = s - fl_.flow[j];
      to_t += fl_.flow[j];
    }
    fl_.excess[k_] = to_t - (long long)n_;
  }
  // Items moved along a zero-reduced-cost path are tied between two clusters up to the rounding of the
  // float mover values; keeping them where they are saves re-doing those moves after a restart.
  static constexpr double kTieSlack = 4e-7;

  // M[a][b] = min over members i of a listing b of c(i, b) − c(i, a), with the next cheapest behind it
  // (mover_lists.h), so that a push refills an entry from a's members only once its whole list has left.
  void build_moves() {
    table_.reset(k_, MoverLists::depth_for(n_, k_));
#pragma omp parallel for schedule(dynamic, 1) num_threads(::tessera::num_threads())
    for (ptrdiff_t a = 0; a < (ptrdiff_t)k_; ++a) build_row((size_t)a);
  }
  void build_row(size_t a) {
    table_.clear_row(a);
    for (const int32_t i : members_[a]) offer(a, (size_t)i);
  }
  // Item i (a member of a) as a mover out of a along its candidate arcs.
  void offer(size_t a, size_t i) {
    const float base = own_[i];
    for (size_t t = off_[i]; t < off_[i + 1]; ++t) {
      const size_t b = (size_t)cid_[t];
      if (b != a) table_.offer(a * k_ + b, Mover{cco_[t] - base, (int32_t)i});
    }
  }

  // Item i leaves a: out of row a's lists; a row with a list run dry is rebuilt over a's remaining members
  // (members × list length; the lists are short).
  void leave(size_t i, size_t a) {
    auto& m = members_[a];
    const int32_t last = m.back();
    m[pos_[i]] = last;
    pos_[last] = pos_[i];
    m.pop_back();
    const float base = own_[i];
    bool dry = false;
    for (size_t t = off_[i]; t < off_[i + 1]; ++t) {
      const size_t b = (size_t)cid_[t];
      if (b != a) dry |= table_.remove(a * k_ + b, Mover{cco_[t] - base, (int32_t)i});
    }
    if (dry) build_row(a), ++st_.row_refills;
  }
  // Item i joins b (one of its candidates): its cost there, and its moves out of b.
  void join(size_t i, size_t b) {
    float cb = kInfF;
    for (size_t t = off_[i]; t < off_[i + 1]; ++t)
      if ((size_t)cid_[t] == b) cb = cco_[t];
    TESSERA_CHECK_ARG(cb < kInfF, "bounded balanced assignment: internal error, a move off the candidate arcs");
    cluster_[i] = (int32_t)b;
    own_[i] = cb;
    auto& m = members_[b];
    pos_[i] = (int32_t)m.size();
    m.push_back((int32_t)i);
    offer(b, i);
  }

  // No cluster short of items is reachable: for every cluster the search did not reach, its e cheapest
  // joiners (priced joining cost) among the items of reached clusters get an arc to it, e being how many
  // it lacks (at least 1). One pass over the full rows.
  void connect() {
    std::vector<int32_t> unreached;
    std::vector<size_t> want(k_, 0);
    for (size_t j = 0; j < k_; ++j)
      if (!(tree_.dist[j] < kInf)) unreached.push_back((int32_t)j), want[j] = size_t(std::max(1LL, -fl_.excess[j]));
    TESSERA_CHECK_ARG(!unreached.empty(), "bounded balanced assignment: no augmenting path (infeasible bounds?)");
    struct Joiner {
      double value;
      size_t item;
      float cost;
    };
    const auto before = [](const Joiner& x, const Joiner& y) {
      return x.value < y.value || (x.value == y.value && x.item < y.item);
    };
    std::vector<std::vector<Joiner>> best(k_);
    const size_t u = unreached.size();
    std::mutex merge;
    for_each_chunk([&](size_t i0, size_t m, const float* costs) {
      std::vector<std::vector<Joiner>> kept(k_);
      std::vector<uint8_t> listed(k_, 0);
      for (size_t r = 0; r < m; ++r) {
        const size_t i = i0 + r;
        const size_t a = (size_t)cluster_[i];
        if (!(tree_.dist[a] < kInf)) continue;
        const float* row = costs + r * k_;
        const double ref = double(own_[i]) + p_[a];
        for (size_t t = off_[i]; t < off_[i + 1]; ++t) listed[cid_[t]] = 1;
        for (size_t x = 0; x < u; ++x) {
          const size_t j = (size_t)unreached[x];
          if (listed[j]) continue;
          keep_smallest(kept[j], want[j], Joiner{double(row[j]) + p_[j] - ref, i, row[j]}, before);
        }
        for (size_t t = off_[i]; t < off_[i + 1]; ++t) listed[cid_[t]] = 0;
      }
      // Keep the best `want` per cluster so far (a total order: the same set whatever the merge order).
      const std::lock_guard<std::mutex> lock(merge);
      for (size_t x = 0; x < u; ++x) {
        const size_t j = (size_t)unreached[x];
        auto& h = best[j];
        h.insert(h.end(), kept[j].begin(), kept[j].end());
        if (h.size() > want[j]) {
          std::nth_element(h.begin(), h.begin() + (want[j] - 1), h.end(), before);
          h.resize(want[j]);
        }
      }
    });
    std::vector<NewArc> add;
    for (size_t x = 0; x < u; ++x)
      for (const Joiner& jn : best[(size_t)unreached[x]]) add.push_back({jn.item, unreached[x], jn.cost});
    TESSERA_CHECK_ARG(!add.empty(), "bounded balanced assignment: no augmenting path (infeasible bounds?)");
    std::sort(add.begin(), add.end(), [](const NewArc& x, const NewArc& y) {
      return x.item < y.item || (x.item == y.item && x.cluster < y.cluster);
    });
    add_arcs(add);
    st_.arcs_added += add.size();
  }

  // Condition 1 of the certificate on the full rows: every item's cluster must be, with prices, within the
  // tolerance of its cheapest. An item with cheaper clusters outside its list gets the (up to c) cheapest of
  // them added. Returns the number of arcs added (0: the certificate holds).
  //
  // Most rows need no distances: a cluster j outside the list had c(i, j) + p0_j ≥ theta_i when the lists
  // were made, so now c(i, j) + p_j ≥ theta_i + min_j (p_j − p0_j). Only rows whose own priced cost exceeds
  // that bound (less a margin for the float rounding of theta) are recomputed, in blocks of listed rows.
  size_t certify() {
    const size_t c = std::min(std::max<size_t>(1, prm_.candidates), k_);
    double delta = kInf;
    for (size_t j = 0; j < k_; ++j) delta = std::min(delta, p_[j] - p0_[j]);
    std::vector<size_t> suspects;
    for (size_t i = 0; i < n_; ++i) {
      const size_t a = (size_t)cluster_[i];
      const double theta = double(theta_[i]);
      if (!(theta < kInf)) continue;  // every cluster is listed
      const double bound = theta - kThetaMargin * (std::abs(theta) + pmax_) + delta;
      if (!(bound >= limit_of(i, a))) suspects.push_back(i);
    }
    st_.rows_checked += suspects.size();
    std::vector<NewArc> add, slots;
    std::vector<uint32_t> count;
    std::vector<float> buf;
    for (size_t s0 = 0; s0 < suspects.size(); s0 += block_) {
      check_interrupt();
      const size_t m = std::min(block_, suspects.size() - s0);
      buf.resize(m * k_);
      src_.gather(&suspects[s0], m, buf.data());
      count.assign(m, 0);
      slots.resize(m * c);
#pragma omp parallel num_threads(::tessera::num_threads())
      {
        std::vector<uint8_t> listed(k_, 0);
        std::vector<std::pair<double, int32_t>> viol;
#pragma omp for schedule(static)
        for (ptrdiff_t r = 0; r < (ptrdiff_t)m; ++r) {
          const size_t i = suspects[s0 + size_t(r)];
          const float* row = &buf[size_t(r) * k_];
          const double limit = limit_of(i, (size_t)cluster_[i]);
          for (size_t t = off_[i]; t < off_[i + 1]; ++t) listed[cid_[t]] = 1;
          viol.clear();
          for (size_t j = 0; j < k_; ++j) {
            const double v = double(row[j]) + p_[j];
            if (v < limit && !listed[j]) viol.push_back({v, (int32_t)j});
          }
          for (size_t t = off_[i]; t < off_[i + 1]; ++t) listed[cid_[t]] = 0;
          if (viol.empty()) continue;
          const size_t take = std::min(c, viol.size());
          std::partial_sort(viol.begin(), viol.begin() + take, viol.end());
          std::sort(viol.begin(), viol.begin() + take,
                    [](const auto& x, const auto& y) { return x.second < y.second; });
          for (size_t t = 0; t < take; ++t)
            slots[size_t(r) * c + t] = NewArc{i, viol[t].second, row[viol[t].second]};
          count[r] = (uint32_t)take;
        }
      }
      for (size_t r = 0; r < m; ++r)
        for (size_t t = 0; t < count[r]; ++t) add.push_back(slots[r * c + t]);
    }
    add_arcs(add);
    st_.arcs_added += add.size();
    return add.size();
  }
  // A cluster violates for item i (in a) when its priced cost is below this.
  double limit_of(size_t i, size_t a) const {
    return double(own_[i]) + p_[a] - prm_.tolerance * (std::abs(double(own_[i])) + std::abs(p_[a] - p_[k_]));
  }
  // theta_ is a float sum of a float cost and a float-rounded price: within a few ulps of the exact value.
  static constexpr double kThetaMargin = 1e-6;

  const CostRows& src_;
  size_t n_, k_, block_;
  const BoundedBalancedParams& prm_;
  std::vector<double>& p_;
  BoundedBalancedStats& st_;
  // Candidate lists, CSR: item i's arcs are [off_[i], off_[i + 1]) of cid_ (cluster) and cco_ (cost).
  std::vector<size_t> off_;
  std::vector<int32_t> cid_;
  std::vector<float> cco_;
  std::vector<float> theta_;  // see first_candidates
  std::vector<float> join_limit_;  // see set_join_limits (empty: none)
  std::vector<double> p0_;    // the prices the lists were made with
  double pmax_ = 0;           // max |p0_|
  // The assignment: cluster and own cost of every item, members of every cluster and positions in them.
  std::vector<int32_t> cluster_;
  std::vector<float> own_;
  std::vector<std::vector<int32_t>> members_;
  std::vector<int32_t> pos_;  // items are int32 (checked)
  ClusterFlow fl_;
  ClusterTree tree_;
  MoverLists table_;
  bool can_connect_ = true;  // false: the arcs are the whole problem (run_on_arcs)
};

double bounded_solve(const CostRows& src, SizeBounds bounds, const BoundedBalancedParams& prm,
                     std::vector<double>& prices, int32_t* assign, float* dist, BoundedBalancedStats& stats) {
  stats = BoundedBalancedStats{};
  if (src.rows() == 0) {
    prices.assign(src.cols(), 0.0);
    return 0;
  }
  BoundedSolver solver(src, bounds, prm, prices, stats);
  return solver.run(assign, dist, bounds);
}

}  // namespace

bool solve_on_arcs(const SparseCostsView& arcs, const std::vector<size_t>& lo, const std::vector<size_t>& hi,
                   std::vector<double>& prices, int32_t* assign, double& cost) {
  const NoRows src(arcs.n, arcs.k);
  BoundedBalancedParams prm;
  BoundedBalancedStats stats;
  BoundedSolver solver(src, SizeBounds{0, arcs.n}, prm, prices, stats);
  if (!solver.run_on_arcs(arcs, lo, hi, assign)) return false;
  cost = stats.cost;
  return true;
}

}  // namespace detail

BoundedBalancedAssigner::BoundedBalancedAssigner(SizeBounds bounds, BoundedBalancedParams params)
    : bounds_(bounds), params_(params) {
  TESSERA_CHECK_ARG(bounds.lo <= bounds.hi, "size bounds: lo = " << bounds.lo << " exceeds hi = " << bounds.hi);
  TESSERA_CHECK_ARG(params.candidates > 0, "bounded balanced assignment: candidates must be positive");
  TESSERA_CHECK_ARG(params.block_rows > 0, "bounded balanced assignment: block_rows must be positive");
  TESSERA_CHECK_ARG(params.tolerance >= 0 && std::isfinite(params.tolerance),
                    "bounded balanced assignment: tolerance must be finite and non-negative, got " << params.tolerance);
}

double BoundedBalancedAssigner::assign(MatrixView<const float> x, MatrixView<const float> centroids, int32_t* assign,
                                       float* dist, const float* x_norms) {
  detail::check_assign_inputs(x, centroids, bounds_);
  const detail::L2Rows src(x, centroids, x_norms);
  return detail::bounded_solve(src, bounds_, params_, prices_, assign, dist, stats_);
}

double BoundedBalancedAssigner::assign_costs(MatrixView<const float> cost, int32_t* assign) {
  TESSERA_CHECK_ARG(cost.cols > 0, "balanced assignment: the cost matrix has no columns (k = 0)");
  TESSERA_CHECK_ARG(cost.cols <= (size_t)std::numeric_limits<int32_t>::max() &&
                        cost.rows <= (size_t)std::numeric_limits<int32_t>::max(),
                    "balanced assignment: " << cost.rows << " × " << cost.cols << " is too large");
  check_finite(cost, "cost matrix");
  check_size_bounds(cost.rows, cost.cols, bounds_);
  const detail::DenseRows src(cost);
  return detail::bounded_solve(src, bounds_, params_, prices_, assign, nullptr, stats_);
}

}  // namespace tessera
