#include "tessera/cluster/kmeans.h"
#include "tessera/cluster/bounded_balanced_assignment.h"
#include "tessera/core/threading.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "tessera/core/distances.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"
#include "cluster/blocked_rows.h"
#include "core/pca.h"
#include "core/simd.h"

namespace tessera {

namespace {

// k-means++ seeds from at most this many rows per centre (a uniform sample): Lloyd's iterations refine on
// all rows anyway, and each seeding step reads every seeding row, so this keeps seeding O(64·k²·d).
constexpr size_t kSeedRowsPerCentre = 64;
// Balanced k-means needs far fewer: the size bounds spread the centres over the data whatever the
// seeds (measured: final MSE within ±0.5% of 64·k seeding rows on text, SIFT and Gaussian-mixture
// sets, at a fraction of the seeding time, which dominated short balanced runs; 4·k costs 0.2–0.4% MSE
// at 20 rows per cluster).
constexpr size_t kBalancedSeedRowsPerCentre = 8;
// and fewer greedy candidates per centre: 3 instead of 2 + ln k (7 at k = 256) gave the same final MSE
// (within ±0.3%, the spread between seeds) on text and Gaussian-mixture sets at 5k and 20k rows, in 10–15%
// less time for a 3-level build.
constexpr size_t kBalancedSeedTrials = 3;

FloatMatrix gather_rows(MatrixView<const float> x, const std::vector<size_t>& rows) {
  FloatMatrix out(rows.size(), x.cols);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)rows.size(); ++i) std::copy(x.row(rows[i]), x.row(rows[i]) + x.cols, out.row(i));
  return out;
}

// Mean over dimensions of the per-dimension variance (scikit-learn's scale for tol).
double mean_variance(MatrixView<const float> x) {
  std::vector<double> mean(x.cols, 0.0), sq(x.cols, 0.0);
  for (size_t i = 0; i < x.rows; ++i)
    for (size_t j = 0; j < x.cols; ++j) mean[j] += x(i, j);
  for (double& m : mean) m /= double(x.rows);
  for (size_t i = 0; i < x.rows; ++i)
    for (size_t j = 0; j < x.cols; ++j) {
      const double t = x(i, j) - mean[j];
      sq[j] += t * t;
    }
  double s = 0;
  for (double v : sq) s += v / double(x.rows);
  return s / double(x.cols);
}

FloatMatrix random_init(MatrixView<const float> x, size_t k, uint64_t seed) {
  return gather_rows(x, sample_rows(x.rows, k, seed));
}

// Reassign empty clusters to the points farthest from their centroid (as scikit-learn), one point each.
void repair_empty_clusters(MatrixView<const float> x, std::vector<int32_t>& assign, std::vector<float>& dist,
                           std::vector<size_t>& counts, MatrixView<float> centroids) {
  std::vector<size_t> empty;
  for (size_t c = 0; c < counts.size(); ++c)
    if (counts[c] == 0) empty.push_back(c);
  if (empty.empty()) return;
  std::vector<size_t> order(x.rows);
  std::iota(order.begin(), order.end(), size_t{0});
  const size_t m = std::min(empty.size(), x.rows);
  std::partial_sort(order.begin(), order.begin() + m, order.end(),
                    [&](size_t a, size_t b) { return dist[a] > dist[b] || (dist[a] == dist[b] && a < b); });
  size_t used = 0;
  for (size_t c : empty) {
    // Take the farthest point whose cluster can spare it.
    while (used < x.rows && counts[assign[order[used]]] <= 1) ++used;
    if (used >= x.rows) break;
    const size_t i = order[used++];
    --counts[assign[i]];
    assign[i] = (int32_t)c;
    counts[c] = 1;
    dist[i] = 0;
    std::copy(x.row(i), x.row(i) + x.cols, centroids.row(c));
  }
}

}  // namespace

KMeansInit parse_kmeans_init(const std::string& name) {
  if (name == "auto") return KMeansInit::automatic;
  if (name == "k-means++" || name == "kmeans++") return KMeansInit::kmeans_plus_plus;
  if (name == "random") return KMeansInit::random;
  if (name == "progressive") return KMeansInit::progressive;
  TESSERA_THROW_ARG("init must be 'auto', 'k-means++', 'random' or 'progressive', got '" << name << "'");
}

const char* kmeans_init_name(KMeansInit init) {
  switch (init) {
    case KMeansInit::kmeans_plus_plus: return "k-means++";
    case KMeansInit::random: return "random";
    case KMeansInit::progressive: return "progressive";
    case KMeansInit::automatic: break;
  }
  return "auto";
}

FloatMatrix kmeans_plus_plus(MatrixView<const float> x, size_t k, uint64_t seed, size_t trials) {
  TESSERA_CHECK_ARG(k >= 1 && k <= x.rows, "k-means++ needs 1 <= k <= n, got k = " << k << ", n = " << x.rows);
  Rng rng(seed);
  const size_t n = x.rows, d = x.cols;
  if (trials == 0) trials = 2 + (size_t)std::log((double)k);
  FloatMatrix centres(k, d);
  const detail::BlockedRows rows(x);  // every step measures all rows against a few candidates

  std::uniform_int_distribution<size_t> first(0, n - 1);
  size_t c0 = first(rng);
  std::copy(x.row(c0), x.row(c0) + d, centres.row(0));
  std::vector<float> closest(n);
  const float c0_norm = rows.norm(c0);
  rows.distances(MatrixView<const float>(x.row(c0), 1, d), &c0_norm, closest.data());

  std::vector<double> cumulative(n);
  std::vector<float> cand_d(n * trials);
  FloatMatrix cand(trials, d);
  std::vector<size_t> cand_idx(trials);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  for (size_t c = 1; c < k; ++c) {
    check_interrupt();
    double pot = 0;
    for (size_t i = 0; i < n; ++i) cumulative[i] = (pot += closest[i]);
    for (size_t t = 0; t < trials; ++t) {
      size_t pick;
      if (pot > 0) {
        const double r = unif(rng) * pot;
        pick = std::min<size_t>(std::upper_bound(cumulative.begin(), cumulative.end(), r) - cumulative.begin(), n - 1);
      } else {
        pick = first(rng);  // every point coincides with a centre already: any point will do
      }
      cand_idx[t] = pick;
      std::copy(x.row(pick), x.row(pick) + d, cand.row(t));
    }
    std::vector<float> cn(trials);
    for (size_t t = 0; t < trials; ++t) cn[t] = rows.norm(cand_idx[t]);
    // Distances from every point to each candidate (n × trials).
    rows.distances(cand.view(), cn.data(), cand_d.data());
    size_t best = 0;
    double best_pot = INFINITY;
    for (size_t t = 0; t < trials; ++t) {
      double p = 0;
      for (size_t i = 0; i < n; ++i) p += std::min(closest[i], cand_d[i * trials + t]);
      if (p < best_pot) best_pot = p, best = t;
    }
    std::copy(cand.row(best), cand.row(best) + d, centres.row(c));
    for (size_t i = 0; i < n; ++i) closest[i] = std::min(closest[i], cand_d[i * trials + best]);
  }
  return centres;
}

namespace {

// Centroid c = the mean of rows members[start[c] .. start[c+1]), summed in double in row order.
// Rows are scattered: the next one is prefetched while the current one is added.
TESSERA_CLONE_PER_ISA void sum_members(MatrixView<const float> x, const size_t* members, const size_t* start, size_t k,
                                       MatrixView<float> centroids) {
  const size_t d = x.cols;
#pragma omp parallel num_threads(::tessera::num_threads())
  {
    std::vector<double> acc(d);
#pragma omp for schedule(dynamic, 4)
    for (ptrdiff_t c = 0; c < (ptrdiff_t)k; ++c) {
      const size_t count = start[c + 1] - start[c];
      if (count == 0) continue;
      std::fill(acc.begin(), acc.end(), 0.0);
      double* a = acc.data();
      for (size_t m = start[c]; m < start[c + 1]; ++m) {
        const float* r = x.row(members[m]);
        if (m + 1 < start[c + 1])
          for (size_t j = 0; j < d; j += 16) __builtin_prefetch(x.row(members[m + 1]) + j);
        for (size_t j = 0; j < d; ++j) a[j] += r[j];
      }
      float* out = centroids.row(c);
      const double inv = 1.0 / double(count);
      for (size_t j = 0; j < d; ++j) out[j] = float(a[j] * inv);
    }
  }
}

}  // namespace

void update_centroids(MatrixView<const float> x, const int32_t* assignment, size_t k, MatrixView<float> centroids,
                      std::vector<size_t>& counts) {
  const size_t n = x.rows;
  // Bucket rows by cluster (counting sort keeps row order), then each cluster sums its own rows in
  // that order: the result does not depend on how clusters are spread over threads.
  counts.assign(k, 0);
  for (size_t i = 0; i < n; ++i) ++counts[assignment[i]];
  std::vector<size_t> start(k + 1, 0);
  for (size_t c = 0; c < k; ++c) start[c + 1] = start[c] + counts[c];
  std::vector<size_t> members(n);
  {
    std::vector<size_t> fill(start.begin(), start.end() - 1);
    for (size_t i = 0; i < n; ++i) members[fill[assignment[i]]++] = i;
  }
  sum_members(x, members.data(), start.data(), k, centroids);
}

namespace {

// Lloyd's iterations over one set of rows: the per-row buffers and, for balanced k-means, the assigner
// whose prices carry over from one iteration to the next.
class LloydRows {
 public:
  // Balanced assignments hold the n × k distances while they take at most dense_max_bytes (the dense
  // engine), and use the bounded-memory one above (the same optimum).
  LloydRows(MatrixView<const float> x, size_t k, std::optional<SizeBounds> bounds,
            size_t dense_max_bytes = SIZE_MAX)
      : x_(x), k_(k), norms_(x.rows), assign_(x.rows), dist_(x.rows) {
    row_norms_sqr(x, norms_.data());  // constant over all iterations
    if (bounds) {
      if (!dense_balanced_fits(x.rows, k, dense_max_bytes))
        bounded_.emplace(*bounds);
      else
        balanced_.emplace(*bounds);
    }
  }

  // The E-step: every row to its (size-constrained) nearest centroid; returns the objective.
  double assign(MatrixView<const float> c) {
    if (balanced_) return balanced_->assign(x_, c, assign_.data(), dist_.data(), norms_.data());
    if (bounded_) return bounded_->assign(x_, c, assign_.data(), dist_.data(), norms_.data());
    nearest_centroids(x_, c, assign_.data(), dist_.data(), norms_.data());
    double s = 0;
    for (float v : dist_) s += v;
    return s;
  }

  // Iterations from centroids c until the squared centroid shift is at most tol or `iters` are done;
  // tick(iteration, objective) after each. Returns the number done and the last E-step's objective.
  struct Outcome {
    int iterations;
    double objective;
  };
  template <class Tick>
  Outcome iterate(MatrixView<float> c, int iters, double tol, Tick&& tick) {
    FloatMatrix prev(c.rows, c.cols);
    double obj = 0;
    for (int it = 1; it <= iters; ++it) {
      check_interrupt();
      obj = assign(c);
      for (size_t j = 0; j < c.rows; ++j) std::copy(c.row(j), c.row(j) + c.cols, prev.row(j));
      update_centroids(x_, assign_.data(), k_, c, counts_);
      if (!balanced_ && !bounded_) repair_empty_clusters(x_, assign_, dist_, counts_, c);
      double shift = 0;
      for (size_t j = 0; j < c.rows; ++j)
        for (size_t l = 0; l < c.cols; ++l) {
          const double t = double(c(j, l)) - prev(j, l);
          shift += t * t;
        }
      tick(it, obj);
      if (shift <= tol) return {it, obj};
    }
    return {iters, obj};
  }

  std::vector<double> prices() const {
    return balanced_ ? balanced_->prices() : bounded_ ? bounded_->prices() : std::vector<double>{};
  }
  void set_prices(std::vector<double> prices) {
    if (balanced_) balanced_->set_prices(std::move(prices));
    if (bounded_) bounded_->set_prices(std::move(prices));
  }
  const std::vector<int32_t>& assignment() const { return assign_; }

 private:
  MatrixView<const float> x_;
  size_t k_;
  std::vector<float> norms_;
  std::vector<int32_t> assign_;
  std::vector<float> dist_;
  std::vector<size_t> counts_;
  std::optional<BalancedAssigner> balanced_;
  std::optional<BoundedBalancedAssigner> bounded_;
};

// The sample warm start (KMeansParams::sample_warm_start): the early iterations, where centroids still
// move far (and balanced assignments start from stale prices, their dearest solves), run on a sample of
// at most faiss's default max_points_per_centroid = 256 rows per centre and at most half the rows; the
// last quarter (at least 4) on all rows. Measured, balanced RQ, K = 256, L = 3: 1M × 128, 25 iterations,
// 105 s → 46 s, reconstruction MSE +0.5% (2 or 8 final iterations: +0.8% / +0.35%; the sample alone
// +4.2%); 20k × 256 and 20k × 128, 10 iterations: 18% less time, MSE +0.2% / +0.1%. From 32·K rows on (a
// sample of 16 rows per centre): plain K = 256, 25 iterations on 10k-row sets (SIFT, BIGANN, text, mixtures,
// first and residual levels) 30–40% less time, MSE −0.3% to +0.5% (+1.6% on one heavy-tailed residual); a
// balanced 3 × 256 build of siftsmall 35% less time, MSE +0.13%.
constexpr size_t kWarmStartRowsPerCentre = 256, kMinWarmStartRowsPerCentre = 16;
// Progressive-dimension init: Lloyd iterations per stage (on 1, 2, 4, ... principal coordinates).
// Measured on SIFT, BIGANN, text embeddings and heavy-tailed mixtures (3 × 256 residual levels): 3 to 10
// iterations per stage and a first stage of 1 to 16 dimensions land within ±0.3% of each other in MSE;
// growing 4× per stage instead of 2× (fewer stages) cost 1.3% at SIFT's first level.
constexpr int kProgressiveStageIters = 5;
constexpr size_t kProgressiveGrowth = 2;
// Progressive stages run on at most this many rows per centre (a sample; the stages only make a seed):
// on SIFT, BIGANN, text and mixtures, MSE within ±0.8% of stages on all rows (better as often as worse),
// and a 10k-row, 3 × 256 build 10–20% faster.
constexpr size_t kStageRowsPerCentre = 16;
// The race's k-means++ rival takes 3 greedy candidates per centre, not 2 + ln k: its seeding streams the
// seeding rows once per centre and was a quarter of a small build's time; the final MSE moved by ±0.3% on
// real sets (+1.1% on one synthetic heavy-tailed set where k-means++ wins the race).
constexpr size_t kRivalSeedTrials = 3;
// KMeansInit::automatic: Lloyd iterations each seed runs before the race is decided. The progressive
// seed starts ahead (its stages already iterated) but often converges sooner to a worse optimum: after 3
// iterations the race picked the final loser on a heavy-tailed mixture (+2.3% objective), after 5 or more
// it did not, on that and on SIFT, BIGANN, text and mixture residuals.
constexpr int kRaceIters = 5;
constexpr int kMinFullIterations = 4;

// KMeansInit::progressive: centres for x (n × d) from k-means on its first 1, 2, 4, ... < d principal
// coordinates, each stage warm-started from the previous one (zero in the new coordinates).
FloatMatrix progressive_init(MatrixView<const float> x, const detail::PrincipalAxes& pa, size_t k, uint64_t seed,
                             double tol) {
  const size_t d = x.cols;
  FloatMatrix c;
  for (size_t m = 1; m < d; m *= kProgressiveGrowth) {
    const FloatMatrix y = detail::project(x, pa, m);
    if (c.rows() == 0) {
      c = kmeans_plus_plus(y.view(), k, seed);
    } else {
      FloatMatrix wider(k, m);
      for (size_t j = 0; j < k; ++j) std::copy(c.row(j), c.row(j) + c.cols(), wider.row(j));
      c = std::move(wider);
    }
    LloydRows stage(y.view(), k, std::nullopt);
    stage.iterate(c.view(), kProgressiveStageIters, tol, [](int, double) {});
  }
  return c.rows() ? detail::unproject(c.view(), pa) : kmeans_plus_plus(x, k, seed);
}

// The sample's size bounds: the full bounds scaled to its size (rounded outwards, so still feasible).
SizeBounds scaled_bounds(SizeBounds b, size_t n, size_t s) {
  return SizeBounds{b.lo * s / n, (b.hi * s + n - 1) / n};
}

}  // namespace

KMeansResult kmeans(MatrixView<const float> x_all, const KMeansParams& p) {
  TESSERA_CHECK_ARG(x_all.rows > 0 && x_all.cols > 0, "k-means needs a non-empty input, got " << x_all.rows << " × "
                                                                                              << x_all.cols);
  TESSERA_CHECK_ARG(p.k >= 1, "k must be at least 1");
  TESSERA_CHECK_ARG(p.k <= x_all.rows, "k = " << p.k << " clusters need at least " << p.k << " rows, got "
                                              << x_all.rows << " (N < K)");
  TESSERA_CHECK_ARG(p.n_init >= 1, "n_init must be at least 1, got " << p.n_init);
  TESSERA_CHECK_ARG(p.max_iter >= 1, "max_iter must be at least 1, got " << p.max_iter);
  TESSERA_CHECK_ARG(p.tol >= 0, "tol must be non-negative, got " << p.tol);
  check_finite(x_all, "k-means input");

  KMeansResult best;
  FloatMatrix sample;
  MatrixView<const float> x = x_all;
  if (p.max_train_points && p.max_train_points < x_all.rows) {
    TESSERA_CHECK_ARG(p.max_train_points >= p.k, "a training sample of " << p.max_train_points
                                                                          << " rows is smaller than k = " << p.k);
    best.sample_rows = sample_rows(x_all.rows, p.max_train_points, derive_seed(p.seed, 0x5a3b1e));
    sample = gather_rows(x_all, best.sample_rows);
    x = sample.view();
  }
  const size_t n = x.rows, k = p.k;
  if (p.size_bounds) check_size_bounds(n, k, *p.size_bounds);
  const double tol = p.tol * mean_variance(x);

  // Rows used for seeding (a subsample when n is large; see kSeedRowsPerCentre).
  FloatMatrix seed_sample;
  MatrixView<const float> xseed = x;
  const size_t seed_rows = (p.size_bounds ? kBalancedSeedRowsPerCentre : kSeedRowsPerCentre) * k;
  if (n > seed_rows) {
    seed_sample = gather_rows(x, sample_rows(n, seed_rows, derive_seed(p.seed, 0x5eed)));
    xseed = seed_sample.view();
  }

  // With the sample warm start the restarts compete on the sample; the winner then refines on all rows.
  const size_t warm_rows = std::min(kWarmStartRowsPerCentre * k, n / 2);
  const int full_iters = std::max(kMinFullIterations, p.max_iter / 4);
  const bool warm = p.sample_warm_start && warm_rows >= kMinWarmStartRowsPerCentre * k && p.max_iter > full_iters;
  // All rows' buffers (n × k distances when balanced) are made only once the sample's are freed.
  FloatMatrix warm_sample;
  std::optional<LloydRows> on_sample, on_all;
  if (warm) {
    warm_sample = gather_rows(x, sample_rows(n, warm_rows, derive_seed(p.seed, 0x3a3a)));
    std::optional<SizeBounds> b;
    if (p.size_bounds) b = scaled_bounds(*p.size_bounds, n, warm_rows);
    on_sample.emplace(warm_sample.view(), k, b, p.balanced_dense_max_bytes);
    best.warm_start_rows = warm_rows;
  } else {
    on_all.emplace(x, k, p.size_bounds, p.balanced_dense_max_bytes);
  }
  LloydRows& compete = warm ? *on_sample : *on_all;
  const int compete_iters = warm ? p.max_iter - full_iters : p.max_iter;
  const double compete_n = double(warm ? warm_rows : n);

  best.objective = INFINITY;
  std::vector<double> best_prices;
  std::optional<detail::PrincipalAxes> axes;
  const MatrixView<const float> compete_rows = warm ? warm_sample.view() : x;
  // Balanced levels seed with k-means++: the size bounds spread the centres over the data anyway.
  const KMeansInit init =
      p.init == KMeansInit::automatic && p.size_bounds ? KMeansInit::kmeans_plus_plus : p.init;
  // The progressive stages only make a seed: a sample of their own will do.
  FloatMatrix stage_sample;
  MatrixView<const float> stage_rows = compete_rows;
  if (init == KMeansInit::progressive || init == KMeansInit::automatic) {
    if (compete_rows.rows > kStageRowsPerCentre * k) {
      stage_sample = gather_rows(compete_rows, sample_rows(compete_rows.rows, kStageRowsPerCentre * k,
                                                           derive_seed(p.seed, 0x57a6e)));
      stage_rows = stage_sample.view();
    }
    axes = detail::principal_axes(stage_rows);
  }
  for (int r = 0; r < p.n_init; ++r) {
    const uint64_t seed_r = derive_seed(p.seed, (uint64_t)r);
    FloatMatrix c;
    switch (init) {
      case KMeansInit::kmeans_plus_plus:
        c = kmeans_plus_plus(xseed, k, seed_r, p.size_bounds ? kBalancedSeedTrials : 0);
        break;
      case KMeansInit::random: c = random_init(xseed, k, seed_r); break;
      case KMeansInit::progressive:
      case KMeansInit::automatic: c = progressive_init(stage_rows, *axes, k, seed_r, tol); break;
    }
    std::string note = warm ? "sample" : "";
    if (p.n_init > 1) note += (warm ? ", init " : "init ") + std::to_string(r + 1) + "/" + std::to_string(p.n_init);
    const std::string stage = p.progress_label + (note.empty() ? note : " (" + note + ")");
    compete.set_prices({});  // every restart starts cold
    int raced = 0;
    if (init == KMeansInit::automatic) {
      // The race: k-means++ and progressive-dimension seeds each run a few Lloyd iterations; the lower
      // objective goes on (its iterations count towards max_iter, the loser's are the price of the race).
      raced = std::min(kRaceIters, compete_iters);
      FloatMatrix rival = kmeans_plus_plus(xseed, k, seed_r, kRivalSeedTrials);
      const auto ahead = compete.iterate(c.view(), raced, tol, [](int, double) {});
      const auto behind = compete.iterate(rival.view(), raced, tol, [](int, double) {});
      if (behind.objective < ahead.objective) c = std::move(rival);
    }
    auto [it, last] = compete.iterate(c.view(), compete_iters - raced, tol, [&](int i, double obj) {
      report(p.progress, stage, (size_t)(i + raced), (size_t)compete_iters, obj / compete_n);
    });
    it += raced;
    // On all rows, a final assignment so that labels and centroids agree (as scikit-learn's last E-step);
    // warm restarts compete on their last E-step, since the winner's labels come from all rows anyway.
    const double obj = warm ? last : compete.assign(c.view());
    if (!warm) report(p.progress, stage, (size_t)p.max_iter, (size_t)p.max_iter, obj / compete_n);
    if (obj < best.objective) {
      best.objective = obj;
      best.centroids = std::move(c);
      if (!warm) best.assignment = compete.assignment();
      best.iterations = it;
      best.best_init = r;
      if (warm) best_prices = compete.prices();
    }
  }
  if (warm) {
    on_sample.reset();
    warm_sample = FloatMatrix();
    LloydRows& full = on_all.emplace(x, k, p.size_bounds, p.balanced_dense_max_bytes);
    full.set_prices(std::move(best_prices));  // prices do not grow with n: the sample's are a close start
    const std::string stage = p.progress_label + " (all rows)";
    best.iterations += full.iterate(best.centroids.view(), full_iters, tol, [&](int i, double obj) {
      report(p.progress, stage, (size_t)i, (size_t)full_iters, obj / double(n));
    }).iterations;
    best.objective = full.assign(best.centroids.view());
    report(p.progress, stage, (size_t)full_iters, (size_t)full_iters, best.objective / double(n));
    best.assignment = full.assignment();
  }
  return best;
}

}  // namespace tessera
