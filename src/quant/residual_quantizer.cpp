#include "tessera/quant/residual_quantizer.h"
#include "tessera/core/threading.h"

#include <chrono>

#include "tessera/cluster/balanced_assignment.h"
#include "tessera/cluster/bounded_balanced_assignment.h"
#include "tessera/core/distances.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"
#include "quant/rq_beam_search.h"

namespace tessera {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBalancedSampleCostBytes = size_t(256) << 20;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// r_i -= c[assign_i] for every row.
void subtract_codewords(MatrixView<float> r, MatrixView<const float> c, const int32_t* assign) {
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)r.rows; ++i) {
    const float* cw = c.row(assign[i]);
    float* ri = r.row(i);
    for (size_t j = 0; j < r.cols; ++j) ri[j] -= cw[j];
  }
}

// Rows of r rearranged in place: row j takes the row that was at from[j] (one row of scratch; a cycle at a time).
void permute_rows(MatrixView<float> r, const std::vector<size_t>& from) {
  const size_t n = r.rows, d = r.cols;
  std::vector<bool> done(n, false);
  std::vector<float> tmp(d);
  for (size_t j = 0; j < n; ++j) {
    if (done[j] || from[j] == j) continue;
    std::copy(r.row(j), r.row(j) + d, tmp.begin());
    size_t k = j;
    while (true) {
      done[k] = true;
      const size_t src = from[k];
      if (src == j) {
        std::copy(tmp.begin(), tmp.end(), r.row(k));
        break;
      }
      std::copy(r.row(src), r.row(src) + d, r.row(k));
      k = src;
    }
  }
}

// The positions 0..n−1 ordered by label (stable counting sort; labels in [0, k)).
std::vector<size_t> order_by_label(const std::vector<int32_t>& label, size_t k) {
  std::vector<size_t> start(k + 1, 0), order(label.size());
  for (int32_t l : label) ++start[size_t(l) + 1];
  for (size_t j = 0; j < k; ++j) start[j + 1] += start[j];
  for (size_t i = 0; i < label.size(); ++i) order[start[size_t(label[i])]++] = i;
  return order;
}

}  // namespace

namespace {

void check_beam_size(int beam) {
  TESSERA_CHECK_ARG(beam >= 1, "max_beam_size must be at least 1 (1: greedy encoding), got " << beam);
}

}  // namespace

ResidualQuantizer::ResidualQuantizer(size_t d, std::vector<size_t> codebook_sizes, ResidualQuantizerParams params,
                                     SearchType search_type)
    : AdditiveQuantizer(d, std::move(codebook_sizes), search_type), params_(std::move(params)) {
  check_beam_size(params_.max_beam_size);
}

ResidualQuantizer::ResidualQuantizer(size_t d, size_t M, size_t nbits, SearchType search_type,
                                     ResidualQuantizerParams params)
    : AdditiveQuantizer(d, equal_codebook_sizes(M, nbits), search_type), params_(std::move(params)) {
  check_beam_size(params_.max_beam_size);
}

SizeBounds ResidualQuantizer::level_bounds(size_t m, size_t n) const {
  SizeBounds b = default_size_bounds(n, codebook_sizes_.at(m));
  if (params_.size_min) b.lo = *params_.size_min;
  if (params_.size_max) b.hi = *params_.size_max;
  return b;
}

std::vector<LevelReport> ResidualQuantizer::fit(MatrixView<const float> x, int32_t* codes) {
  check_input(x, "training data");
  const size_t n = x.rows, d = dim(), M = num_codebooks();
  TESSERA_CHECK_ARG(n > 0, "training data is empty");
  for (size_t m = 0; m < M; ++m) {
    TESSERA_CHECK_ARG(codebook_sizes_[m] <= n, "level " << m << " has K = " << codebook_sizes_[m]
                                                        << " codes but there are only " << n << " rows (N < K)");
    if (params_.balance) check_size_bounds(n, codebook_sizes_[m], level_bounds(m, n));
  }
  const bool sampled = params_.train_sample && params_.train_sample < n;
  FloatMatrix residual;
  std::vector<size_t> rows;
  if (sampled) {
    for (size_t m = 0; m < M; ++m)
      TESSERA_CHECK_ARG(codebook_sizes_[m] <= params_.train_sample,
                        "a training sample of " << params_.train_sample << " rows is smaller than K = "
                                                << codebook_sizes_[m] << " at level " << m);
    rows = sample_rows(n, params_.train_sample, derive_seed(params_.seed, 0x7a1u));
    residual = FloatMatrix(rows.size(), d);
    for (size_t i = 0; i < rows.size(); ++i) std::copy(x.row(rows[i]), x.row(rows[i]) + d, residual.row(i));
  } else {
    residual = FloatMatrix::copy_of(x);
  }
  const size_t nt = residual.rows();

  std::vector<FloatMatrix> books(M);
  std::vector<LevelReport> reports(M);
  for (size_t m = 0; m < M; ++m) {
    const auto t0 = Clock::now();
    LevelReport& rep = reports[m];
    rep.codebook_size = codebook_sizes_[m];
    rep.mse_before = mean_square(residual.view());
    KMeansParams kp;
    kp.k = codebook_sizes_[m];
    kp.max_iter = params_.max_iter;
    kp.tol = params_.tol;
    kp.n_init = params_.n_init;
    kp.init = params_.init;
    kp.seed = derive_seed(params_.seed, m);
    kp.sample_warm_start = params_.sample_warm_start;
    // Explicit bounds are meant for all n rows; a sample trains with the default bounds of its size.
    if (params_.balance) kp.size_bounds = sampled ? default_size_bounds(nt, kp.k) : level_bounds(m, nt);
    kp.progress = params_.progress;
    kp.progress_label = "level " + std::to_string(m + 1) + "/" + std::to_string(M) + " k-means";
    KMeansResult km = kmeans(residual.view(), kp);
    subtract_codewords(residual.view(), km.centroids.view(), km.assignment.data());
    if (codes && !sampled)
      for (size_t i = 0; i < nt; ++i) codes[i * M + m] = km.assignment[i];
    rep.mse_after = mean_square(residual.view());
    rep.iterations = km.iterations;
    rep.warm_start_rows = km.warm_start_rows;
    rep.bounds = kp.size_bounds.value_or(SizeBounds{0, nt});
    books[m] = std::move(km.centroids);
    rep.seconds = seconds_since(t0);
  }
  set_codebooks(std::move(books));
  {
    // The search type's norm encoder learns from the training rows' reconstructions x − residual (as faiss).
    std::vector<float> norms(nt);
    for (size_t i = 0; i < nt; ++i) {
      const float* xi = x.row(sampled ? rows[i] : i);
      float s = 0;
      for (size_t j = 0; j < d; ++j) {
        const float v = xi[j] - residual(i, j);
        s += v * v;
      }
      norms[i] = s;
    }
    finish_training(nt, norms.data());
  }

  if (sampled) {
    // Every row gets its codes from the trained codebooks; reports then describe all n rows.
    std::vector<int32_t> own;
    if (!codes) own.resize(n * M), codes = own.data();
    std::vector<LevelReport> all;
    if (params_.balance) {
      std::vector<SizeBounds> bounds(M);
      for (size_t m = 0; m < M; ++m) bounds[m] = level_bounds(m, n);
      assign_balanced(x, codes, bounds, &all);
    } else {
      // Level by level, as the training rows were assigned (and as semantic IDs need): greedy, not the beam.
      const auto t0 = Clock::now();
      encode_greedy(x, codes);
      all.resize(M);
      FloatMatrix r = FloatMatrix::copy_of(x);
      std::vector<int32_t> col(n);
      for (size_t m = 0; m < M; ++m) {
        all[m].mse_before = mean_square(r.view());
        for (size_t i = 0; i < n; ++i) col[i] = codes[i * M + m];
        subtract_codewords(r.view(), codebook(m), col.data());
        all[m].mse_after = mean_square(r.view());
        all[m].bounds = {0, n};
      }
      all[0].seconds = seconds_since(t0);
    }
    for (size_t m = 0; m < M; ++m) {
      reports[m].mse_before = all[m].mse_before;
      reports[m].mse_after = all[m].mse_after;
      reports[m].bounds = all[m].bounds;
      reports[m].seconds += all[m].seconds;
    }
  }
  return reports;
}

void ResidualQuantizer::encode(MatrixView<const float> x, int32_t* codes) const {
  encode_beam(x, codes, params_.max_beam_size);
}

void ResidualQuantizer::encode_beam(MatrixView<const float> x, int32_t* codes, int beam_size) const {
  check_beam_size(beam_size);
  check_trained("encode");
  check_input(x, "input");
  std::vector<MatrixView<const float>> books(num_codebooks());
  for (size_t m = 0; m < books.size(); ++m) books[m] = codebook(m);
  detail::rq_beam_encode(x, books, size_t(beam_size), codes);
  if (beam_size > 1) keep_greedy_where_better(x, codes);
}

// Codebooks trained level by level fit the greedy residuals, and a narrow beam can drop the greedy path
// (siftsmall, 8 × 8 bits: beam 5 MSE 15,396 vs greedy 15,377, and faiss's beam does the same). Keeping,
// per vector, the better of the beam's and the greedy codes makes a beam never worse than greedy, for
// about a fifth more work at beam 5.
void ResidualQuantizer::keep_greedy_where_better(MatrixView<const float> x, int32_t* codes) const {
  const size_t n = x.rows, M = num_codebooks(), d = dim();
  std::vector<int32_t> greedy(n * M);
  encode_greedy(x, greedy.data());
  constexpr size_t kBlock = 4096;
  std::vector<float> a(std::min(n, kBlock) * d), b(a.size());
  for (size_t r0 = 0; r0 < n; r0 += kBlock) {
    const size_t nb = std::min(kBlock, n - r0);
    decode_unpacked(nb, codes + r0 * M, a.data());
    decode_unpacked(nb, greedy.data() + r0 * M, b.data());
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
    for (ptrdiff_t i = 0; i < (ptrdiff_t)nb; ++i) {
      const float* xi = x.row(r0 + i);
      double ea = 0, eb = 0;
      for (size_t j = 0; j < d; ++j) {
        const double ta = double(xi[j]) - a[i * d + j], tb = double(xi[j]) - b[i * d + j];
        ea += ta * ta;
        eb += tb * tb;
      }
      if (eb < ea) std::copy(&greedy[(r0 + i) * M], &greedy[(r0 + i + 1) * M], codes + (r0 + i) * M);
    }
  }
}

void ResidualQuantizer::assign_balanced_from(size_t first_level, MatrixView<const float> x, int32_t* codes,
                                             const std::vector<SizeBounds>& bounds,
                                             std::vector<LevelReport>* reports) const {
  check_trained("balanced assignment");
  check_input(x, "input");
  const size_t n = x.rows, M = num_codebooks();
  TESSERA_CHECK_ARG(first_level <= M, "first level " << first_level << " beyond the " << M << " levels");
  FloatMatrix r = FloatMatrix::copy_of(x);
  std::vector<int32_t> col(n);
  for (size_t m = 0; m < first_level; ++m) {
    for (size_t i = 0; i < n; ++i) {
      col[i] = codes[i * M + m];
      TESSERA_CHECK_ARG(col[i] >= 0 && size_t(col[i]) < codebook_sizes_[m],
                        "code " << col[i] << " of row " << i << " is out of level " << m << "'s range");
    }
    subtract_codewords(r.view(), codebook(m), col.data());
  }
  assign_balanced_residuals(first_level, r.view(), codes, bounds, reports);
}

void ResidualQuantizer::assign_balanced_residuals(size_t first_level, MatrixView<float> r, int32_t* codes,
                                                  const std::vector<SizeBounds>& bounds,
                                                  std::vector<LevelReport>* reports) const {
  check_trained("balanced assignment");
  const size_t n = r.rows, M = num_codebooks();
  TESSERA_CHECK_ARG(r.cols == dim(), "dimension mismatch: the residuals have " << r.cols << " columns, the model "
                                                                                << dim());
  TESSERA_CHECK_ARG(bounds.empty() || bounds.size() == M,
                    "expected " << M << " size bounds (one per level), got " << bounds.size());
  TESSERA_CHECK_ARG(first_level <= M, "first level " << first_level << " beyond the " << M << " levels");
  std::vector<int32_t> col(n);
  if (reports) reports->assign(M, LevelReport{});
  // Bounded levels work on rows grouped by their nearest codeword: the exact finish of BoundedBalancedAssigner
  // rebuilds a table row over a cluster's members' candidate lists when one of its mover lists runs dry, and
  // with members adjacent in memory those scans stop missing the cache (10M × 128, K = 256, level 0: 71 s
  // grouped, 137 s not; at 4M no difference). pos_row[j] is the row of the input now at position j; r is put
  // back in row order at the end.
  std::vector<size_t> pos_row;
  for (size_t m = first_level; m < M; ++m) {
    const auto t0 = Clock::now();
    const size_t K = codebook_sizes_[m];
    const SizeBounds b = bounds.empty() ? default_size_bounds(n, K) : bounds[m];
    check_size_bounds(n, K, b);
    if (reports) (*reports)[m].mse_before = mean_square(MatrixView<const float>(r));
    const std::string label = "level " + std::to_string(m + 1) + "/" + std::to_string(M) + " balanced assignment";
    report(params_.progress, label, 0, 1);
    // The dense assigner holds n × K distances; above the budget the bounded one gives the same optimum.
    if (!dense_balanced_fits(n, K, params_.balanced_dense_max_bytes)) {
      nearest_centroids(r, codebook(m), col.data(), nullptr);
      const std::vector<size_t> from = order_by_label(col, K);
      permute_rows(r, from);
      if (pos_row.empty()) {
        pos_row = from;
      } else {
        std::vector<size_t> next(n);
        for (size_t j = 0; j < n; ++j) next[j] = pos_row[from[j]];
        pos_row.swap(next);
      }
      // A cold call: the first prices come from an exact solve on a sample. A larger sample than the assigner's
      // default (at most 64 MB of costs) gives prices close enough that the exact finish is short: on 1M × 128
      // raw embeddings (a 300-mode mixture), K = 256, 65,536 rows left 3,862 shortest-path phases (200–380 s),
      // 262,144 rows 973 (54 s). Half the rows, at most 256 MB of sample costs.
      BoundedBalancedParams bp;
      bp.sample_rows = std::min(n / 2, kBalancedSampleCostBytes / sizeof(float) / std::max<size_t>(1, K));
      BoundedBalancedAssigner assigner(b, bp);
      assigner.assign(r, codebook(m), col.data(), nullptr);
    } else {
      BalancedAssigner assigner(b);
      assigner.assign(r, codebook(m), col.data(), nullptr);
    }
    report(params_.progress, label, 1, 1);
    subtract_codewords(r, codebook(m), col.data());
    if (pos_row.empty())
      for (size_t i = 0; i < n; ++i) codes[i * M + m] = col[i];
    else
      for (size_t j = 0; j < n; ++j) codes[pos_row[j] * M + m] = col[j];
    if (reports) {
      auto& rep = (*reports)[m];
      rep.codebook_size = K;
      rep.mse_after = mean_square(MatrixView<const float>(r));
      rep.bounds = b;
      rep.seconds = seconds_since(t0);
    }
  }
  if (!pos_row.empty()) {
    std::vector<size_t> from(n);  // row i comes back from the position that holds it
    for (size_t j = 0; j < n; ++j) from[pos_row[j]] = j;
    pos_row = {};
    permute_rows(r, from);
  }
}

}  // namespace tessera
