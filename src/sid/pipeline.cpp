#include "tessera/sid/pipeline.h"
#include "tessera/core/threading.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"
#include "tessera/io/atomic_file.h"
#include "tessera/sid/index_json.h"
#include "tessera/io/npy.h"
#include "tessera/io/npy_shards.h"
#include "tessera/io/npy_stream_writer.h"
#include "tessera/io/npz.h"
#include "tessera/quant/serialization.h"

namespace tessera {

namespace {

using Clock = std::chrono::steady_clock;

double reconstruction_mse(const ResidualQuantizer& q, MatrixView<const float> x, const CodeMatrix& codes) {
  FloatMatrix rec(x.rows, x.cols);
  q.decode(codes.data(), x.rows, rec.data());
  return mean_squared_error(x, rec.view());
}

// r −= the codewords of level l (r: n × d residuals, codes: n × L).
void subtract_level(const ResidualQuantizer& q, size_t l, MatrixView<const int32_t> codes, FloatMatrix& r) {
  const MatrixView<const float> book = q.codebook(l);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)r.rows(); ++i) {
    const float* c = book.row(codes(i, l));
    for (size_t j = 0; j < r.cols(); ++j) r(i, j) -= c[j];
  }
}

// x minus the codewords of every level but the last: what the last level quantizes.
FloatMatrix last_level_residual(const ResidualQuantizer& q, MatrixView<const float> x, const CodeMatrix& codes) {
  FloatMatrix r = FloatMatrix::copy_of(x);
  for (size_t l = 0; l + 1 < q.num_codebooks(); ++l) subtract_level(q, l, codes, r);
  return r;
}

// Drop a suffix column nobody uses (append with no collisions, reassign that resolved everything).
CodeMatrix drop_empty_suffix(CodeMatrix ids, size_t levels) {
  if (ids.cols() == levels) return ids;
  for (size_t i = 0; i < ids.rows(); ++i)
    if (ids(i, levels) >= 0) return ids;
  CodeMatrix out(ids.rows(), levels);
  for (size_t i = 0; i < ids.rows(); ++i) std::copy(ids.row(i), ids.row(i) + levels, out.row(i));
  return out;
}

// Collision resolution; `reassign` (for Dedup::reassign) moves colliding codes in place and fills
// metrics.reassigned_items and metrics.mse_after_resolution.
void resolve(SemanticIds& s, const std::function<void(CodeMatrix& moved)>& reassign) {
  const size_t L = s.codes.cols();
  switch (s.dedup) {
    case Dedup::none: s.ids = s.codes.clone(); break;
    case Dedup::append: s.ids = drop_empty_suffix(append_suffix(s.codes.view(), false), L); break;
    case Dedup::append_all: s.ids = append_suffix(s.codes.view(), true); break;
    case Dedup::reassign: {
      CodeMatrix moved = s.codes.clone();
      reassign(moved);
      // What could not move (a prefix with more than K_L items) falls back to append.
      s.ids = drop_empty_suffix(append_suffix(moved.view(), false), L);
      break;
    }
  }
  const CollisionStats after = collision_stats(s.ids.view());
  s.metrics.final_collisions = after.colliding_items;
  size_t longest = 0;
  for (size_t i = 0; i < s.ids.rows(); ++i) {
    size_t len = 0;
    for (size_t j = 0; j < s.ids.cols(); ++j) len += s.ids(i, j) >= 0;
    longest = std::max(longest, len);
  }
  s.metrics.max_id_length = longest;
}

void resolve(SemanticIds& s, MatrixView<const float> x) {
  resolve(s, [&](CodeMatrix& moved) {
    const FloatMatrix r = last_level_residual(*s.model, x, s.codes);
    const ReassignReport rep = reassign_last_level(moved.view(), r.view(), s.model->codebook(s.codes.cols() - 1));
    s.metrics.reassigned_items = rep.moved;
    s.metrics.mse_after_resolution = reconstruction_mse(*s.model, x, moved);
  });
}

// The rows (ascending) whose prefix (first L − 1 codes) group holds two items with the same full code tuple:
// the only rows `reassign` looks at or moves.
std::vector<size_t> rows_in_colliding_prefix_groups(const CodeMatrix& codes) {
  const size_t n = codes.rows(), L = codes.cols();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::lexicographical_compare(codes.row(a), codes.row(a) + L, codes.row(b), codes.row(b) + L) ||
           (std::equal(codes.row(a), codes.row(a) + L, codes.row(b)) && a < b);
  });
  std::vector<size_t> out;
  for (size_t g = 0; g < n;) {
    size_t e = g + 1;
    while (e < n && std::equal(codes.row(order[g]), codes.row(order[g]) + L - 1, codes.row(order[e]))) ++e;
    bool collides = false;
    for (size_t t = g + 1; t < e && !collides; ++t)
      collides = codes(order[t], L - 1) == codes(order[t - 1], L - 1);
    if (collides) out.insert(out.end(), order.begin() + g, order.begin() + e);
    g = e;
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Per level, the mean square of the residual before and after that level's codewords (what fit reports,
// for codes made without it, e.g. by encode).
void level_mses(const ResidualQuantizer& q, MatrixView<const float> x, const CodeMatrix& codes,
                std::vector<LevelMetrics>& levels) {
  FloatMatrix r = FloatMatrix::copy_of(x);
  for (size_t l = 0; l < levels.size(); ++l) {
    levels[l].mse_before = mean_square(r.view());
    subtract_level(q, l, codes, r);
    levels[l].mse_after = mean_square(r.view());
  }
}

void fill_metrics(SemanticIds& s, MatrixView<const float> x, const std::vector<LevelReport>* reports,
                  const std::vector<std::string>* labels) {
  SidMetrics& m = s.metrics;
  m.n_items = x.rows;
  m.dim = x.cols;
  m.codebook_sizes = s.model->codebook_sizes();
  m.dedup = dedup_name(s.dedup);
  m.mse_before = mean_square(x);
  m.mse = reconstruction_mse(*s.model, x, s.codes);
  m.before = collision_stats(s.codes.view());
  m.levels = code_usage(s.codes.view(), m.codebook_sizes);
  if (reports)
    for (size_t l = 0; l < m.levels.size(); ++l) {
      m.levels[l].mse_before = (*reports)[l].mse_before;
      m.levels[l].mse_after = (*reports)[l].mse_after;
      m.levels[l].seconds = (*reports)[l].seconds;
      m.levels[l].iterations = (*reports)[l].iterations;
      m.levels[l].warm_start_rows = (*reports)[l].warm_start_rows;
      m.levels[l].size_lo = (*reports)[l].bounds.lo;
      m.levels[l].size_hi = (*reports)[l].bounds.hi;
    }
  else
    level_mses(*s.model, x, s.codes, m.levels);
  if (labels) add_purity(m.levels, s.codes.view(), *labels);
}

void check_labels(const std::vector<std::string>* labels, size_t n) {
  TESSERA_CHECK_ARG(!labels || labels->size() == n, "there are " << n << " items but " << labels->size()
                                                                  << " labels: give one label per item");
}

}  // namespace

namespace {
ResidualQuantizerParams rq_params(const SidParams& p);
}  // namespace

SemanticIds build_semantic_ids(MatrixView<const float> x, const SidParams& p, const std::vector<std::string>* labels) {
  const auto t0 = Clock::now();
  TESSERA_CHECK_ARG(x.rows > 0 && x.cols > 0, "no items: the input is " << x.rows << " × " << x.cols);
  TESSERA_CHECK_ARG(!p.codebook_sizes.empty() && p.codebook_sizes.size() <= 25,
                    "between 1 and 25 levels are supported, got " << p.codebook_sizes.size());
  check_labels(labels, x.rows);
  check_finite(x, "embeddings");
  SemanticIds s;
  s.model = std::make_shared<ResidualQuantizer>(x.cols, p.codebook_sizes, rq_params(p));
  s.codes = CodeMatrix(x.rows, p.codebook_sizes.size());
  const auto reports = s.model->fit(x, s.codes.data());
  s.dedup = p.dedup;
  s.format = p.format;
  s.metrics.balance = p.balance ? "exact" : "none";
  fill_metrics(s, x, &reports, labels);
  resolve(s, x);
  s.metrics.seconds_total = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

namespace {

ResidualQuantizerParams rq_params(const SidParams& p) {
  ResidualQuantizerParams rp;
  rp.max_iter = p.max_iter;
  rp.tol = p.tol;
  rp.n_init = p.n_init;
  rp.init = p.init;
  rp.seed = p.seed;
  rp.balance = p.balance;
  rp.size_min = p.size_min;
  rp.size_max = p.size_max;
  rp.train_sample = p.train_sample;
  rp.sample_warm_start = p.sample_warm_start;
  rp.progress = p.progress;
  // Semantic IDs are greedy prefix codes (the first token is the item's nearest coarse cluster): the saved
  // model says so, so that its encode() gives the same codes as `sid encode` (a beam would not).
  rp.max_beam_size = 1;
  return rp;
}

}  // namespace

SemanticIds encode_semantic_ids(std::shared_ptr<ResidualQuantizer> model, MatrixView<const float> x, Dedup dedup,
                                TokenFormat format, const std::vector<std::string>* labels) {
  const auto t0 = Clock::now();
  TESSERA_CHECK_ARG(model && model->is_trained(), "encoding needs a trained model");
  TESSERA_CHECK_ARG(x.rows > 0, "no items to encode");
  check_labels(labels, x.rows);
  CodeMatrix codes(x.rows, model->num_codebooks());
  // Greedy whatever the model's max_beam_size (files from before it existed load with the beam default):
  // unbalanced levels give the training rows the codes `sid build` gave them.
  model->encode_greedy(x, codes.data());
  SemanticIds s = semantic_ids_from_codes(std::move(model), x, std::move(codes), dedup, format, labels);
  s.metrics.seconds_total = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

size_t default_chunk_rows(size_t dim) {
  const size_t by_bytes = (size_t(64) << 20) / (std::max<size_t>(dim, 1) * sizeof(float));
  return std::clamp<size_t>(by_bytes, 1024, 1000000);
}

SemanticIds encode_semantic_ids(std::shared_ptr<ResidualQuantizer> model, const NpyShards& input, Dedup dedup,
                                TokenFormat format, size_t chunk_rows) {
  const auto t0 = Clock::now();
  TESSERA_CHECK_ARG(model && model->is_trained(), "encoding needs a trained model");
  const size_t n = input.rows(), d = input.cols(), L = model->num_codebooks();
  TESSERA_CHECK_ARG(n > 0, "no items to encode");
  TESSERA_CHECK_ARG(d == model->dim(), "dimension mismatch: the vectors have " << d << " columns, the model "
                                                                             << model->dim());
  const size_t chunk = chunk_rows ? chunk_rows : default_chunk_rows(d);
  SemanticIds s;
  s.model = std::move(model);
  s.codes = CodeMatrix(n, L);
  s.dedup = dedup;
  s.format = format;
  // One pass: codes, and the sums behind the metrics fill_metrics computes on a whole matrix.
  double sq = 0, err = 0;
  std::vector<double> level_before(L), level_after(L);
  FloatMatrix buffer, rec, r;
  for (size_t a = 0; a < n; a += chunk) {
    check_interrupt();
    const size_t b = std::min(n, a + chunk);
    const MatrixView<const float> x = input.read(a, b, buffer);
    input.check_finite(a, x);
    const MatrixView<const int32_t> cc(s.codes.row(a), b - a, L);
    s.model->encode_greedy(x, s.codes.row(a));
    sq += sum_square(x);
    if (rec.rows() != b - a) rec = FloatMatrix(b - a, d);
    s.model->decode(cc.data, b - a, rec.data());
    err += sum_squared_error(x, rec.view());
    r = FloatMatrix::copy_of(x);
    for (size_t l = 0; l < L; ++l) {
      level_before[l] += sum_square(r.view());
      subtract_level(*s.model, l, cc, r);
      level_after[l] += sum_square(r.view());
    }
    input.release(a, b);
  }
  const double nd = double(n) * double(d);
  SidMetrics& m = s.metrics;
  m.balance = "none";
  m.n_items = n;
  m.dim = d;
  m.codebook_sizes = s.model->codebook_sizes();
  m.dedup = dedup_name(dedup);
  m.mse_before = sq / nd;
  m.mse = err / nd;
  m.before = collision_stats(s.codes.view());
  m.levels = code_usage(s.codes.view(), m.codebook_sizes);
  for (size_t l = 0; l < L; ++l) {
    m.levels[l].mse_before = level_before[l] / nd;
    m.levels[l].mse_after = level_after[l] / nd;
  }
  resolve(s, [&](CodeMatrix& moved) {
    // Only the items of prefix groups with a collision take part: their last-level residuals, read again.
    const std::vector<size_t> rows = rows_in_colliding_prefix_groups(s.codes);
    ReassignReport rep;
    if (!rows.empty()) {
      CodeMatrix sub(rows.size(), L);
      for (size_t i = 0; i < rows.size(); ++i) std::copy(s.codes.row(rows[i]), s.codes.row(rows[i]) + L, sub.row(i));
      FloatMatrix res(rows.size(), d);
      input.gather(rows, res.data());
      for (size_t l = 0; l + 1 < L; ++l) subtract_level(*s.model, l, sub.view(), res);
      rep = reassign_last_level(sub.view(), res.view(), s.model->codebook(L - 1));
      for (size_t i = 0; i < rows.size(); ++i) std::copy(sub.row(i), sub.row(i) + L, moved.row(rows[i]));
    }
    s.metrics.reassigned_items = rep.moved;
    if (rep.moved == 0) {
      s.metrics.mse_after_resolution = s.metrics.mse;
      return;
    }
    double e2 = 0;  // a second pass: the error of the moved codes, summed as the first pass summed its own
    for (size_t a = 0; a < n; a += chunk) {
      check_interrupt();
      const size_t b = std::min(n, a + chunk);
      const MatrixView<const float> x = input.read(a, b, buffer);
      if (rec.rows() != b - a) rec = FloatMatrix(b - a, d);
      s.model->decode(moved.row(a), b - a, rec.data());
      e2 += sum_squared_error(x, rec.view());
      input.release(a, b);
    }
    s.metrics.mse_after_resolution = e2 / nd;
  });
  s.metrics.seconds_total = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

namespace {

// The rows ResidualQuantizer::fit samples for p.train_sample (the same seed stream), read alone and checked, and
// the model fit trains on them: the codebooks of build_semantic_ids on the whole matrix, bit for bit.
// Explicit size bounds are for all n rows: the model trains with the sample's default bounds (as fit does
// with a sample) and then gets them back for the assignment of all rows.
std::shared_ptr<ResidualQuantizer> train_on_sample(const NpyShards& input, const SidParams& p,
                                                   std::vector<LevelReport>& reports) {
  const size_t n = input.rows(), d = input.cols();
  const std::vector<size_t> rows = sample_rows(n, p.train_sample, derive_seed(p.seed, 0x7a1u));
  FloatMatrix sample(rows.size(), d);
  input.gather(rows, sample.data());
  input.release(0, n);  // the pages the scattered reads touched
  for (size_t i = 0; i < rows.size(); ++i) input.check_finite(rows[i], MatrixView<const float>(sample.row(i), 1, d));
  ResidualQuantizerParams rp = rq_params(p);
  rp.train_sample = 0;
  rp.size_min.reset();
  rp.size_max.reset();
  auto model = std::make_shared<ResidualQuantizer>(d, p.codebook_sizes, rp);
  reports = model->fit(sample.view(), nullptr);
  model->params().size_min = p.size_min;
  model->params().size_max = p.size_max;
  return model;
}

void check_sampled_build(const NpyShards& input, const SidParams& p, const std::vector<std::string>* labels) {
  TESSERA_CHECK_ARG(!p.codebook_sizes.empty() && p.codebook_sizes.size() <= 25,
                    "between 1 and 25 levels are supported, got " << p.codebook_sizes.size());
  check_labels(labels, input.rows());
  for (size_t l = 0; l < p.codebook_sizes.size(); ++l) {
    TESSERA_CHECK_ARG(p.codebook_sizes[l] <= input.rows(), "level " << l << " has K = " << p.codebook_sizes[l]
                                                                   << " codes but there are only " << input.rows()
                                                                   << " rows (N < K)");
    TESSERA_CHECK_ARG(p.codebook_sizes[l] <= p.train_sample, "a training sample of " << p.train_sample
                                                                << " rows is smaller than K = " << p.codebook_sizes[l]
                                                                << " at level " << l);
  }
}

// Balanced levels trained on a sample: the sample alone is read for training; then one n × d residual matrix is
// filled from the input chunk by chunk (each chunk's mapped pages given back), every level's balanced
// assignment runs in place on it, and collision resolution reads the residuals of the colliding prefix groups
// from it. The codes, IDs and model of build_semantic_ids on the whole matrix; MSEs within rounding (the
// reconstruction error is the final residual's mean square).
SemanticIds build_balanced_streamed(const NpyShards& input, const SidParams& p, const std::vector<std::string>* labels,
                                    size_t chunk_rows) {
  const auto t0 = Clock::now();
  const size_t n = input.rows(), d = input.cols(), L = p.codebook_sizes.size();
  check_sampled_build(input, p, labels);
  {
    // fit's checks of the bounds for all n rows, before any work.
    ResidualQuantizer probe(d, p.codebook_sizes, rq_params(p));
    for (size_t l = 0; l < L; ++l) check_size_bounds(n, p.codebook_sizes[l], probe.level_bounds(l, n));
  }
  std::vector<LevelReport> reports;
  SemanticIds s;
  s.model = train_on_sample(input, p, reports);
  s.dedup = p.dedup;
  s.format = p.format;
  const ResidualQuantizer& q = *s.model;

  const auto t_fill = Clock::now();
  const size_t chunk = chunk_rows ? chunk_rows : default_chunk_rows(d);
  FloatMatrix r(n, d), buffer;
  for (size_t a = 0; a < n; a += chunk) {
    check_interrupt();
    const size_t b = std::min(n, a + chunk);
    const MatrixView<const float> x = input.read(a, b, buffer);
    input.check_finite(a, x);
    for (size_t i = 0; i < b - a; ++i) std::copy(x.row(i), x.row(i) + d, r.row(a + i));
    input.release(a, b);
  }
  buffer = FloatMatrix();
  SidMetrics& m = s.metrics;
  m.balance = "exact";
  m.n_items = n;
  m.dim = d;
  m.codebook_sizes = q.codebook_sizes();
  m.dedup = dedup_name(p.dedup);
  m.mse_before = mean_square(r.view());
  const double fill_seconds = std::chrono::duration<double>(Clock::now() - t_fill).count();

  std::vector<SizeBounds> bounds(L);
  for (size_t l = 0; l < L; ++l) bounds[l] = q.level_bounds(l, n);
  s.codes = CodeMatrix(n, L);
  std::vector<LevelReport> all;
  q.assign_balanced_residuals(0, r.view(), s.codes.data(), bounds, &all);
  m.mse = all[L - 1].mse_after;
  m.before = collision_stats(s.codes.view());
  m.levels = code_usage(s.codes.view(), m.codebook_sizes);
  for (size_t l = 0; l < L; ++l) {
    LevelMetrics& lm = m.levels[l];
    lm.mse_before = all[l].mse_before;
    lm.mse_after = all[l].mse_after;
    lm.seconds = reports[l].seconds + all[l].seconds + (l == 0 ? fill_seconds : 0);
    lm.iterations = reports[l].iterations;
    lm.warm_start_rows = reports[l].warm_start_rows;
    lm.size_lo = all[l].bounds.lo;
    lm.size_hi = all[l].bounds.hi;
  }
  if (labels) add_purity(m.levels, s.codes.view(), *labels);

  resolve(s, [&](CodeMatrix& moved) {
    // Only the items of prefix groups with a collision take part: what entered their last level is their final
    // residual plus their last codeword.
    const std::vector<size_t> rows = rows_in_colliding_prefix_groups(s.codes);
    const MatrixView<const float> last = q.codebook(L - 1);
    ReassignReport rep;
    double err = sum_square(r.view());
    if (!rows.empty()) {
      CodeMatrix sub(rows.size(), L);
      FloatMatrix res(rows.size(), d);
      for (size_t i = 0; i < rows.size(); ++i) {
        std::copy(s.codes.row(rows[i]), s.codes.row(rows[i]) + L, sub.row(i));
        const float* c = last.row(sub(i, L - 1));
        for (size_t j = 0; j < d; ++j) res(i, j) = r(rows[i], j) + c[j];
      }
      rep = reassign_last_level(sub.view(), res.view(), last);
      for (size_t i = 0; i < rows.size(); ++i) {
        const int32_t was = s.codes(rows[i], L - 1), now = sub(i, L - 1);
        moved(rows[i], L - 1) = now;
        if (was == now) continue;
        double before = 0, after = 0;
        for (size_t j = 0; j < d; ++j) {
          before += double(r(rows[i], j)) * r(rows[i], j);
          const double t = double(res(i, j)) - last(now, j);
          after += t * t;
        }
        err += after - before;
      }
    }
    s.metrics.reassigned_items = rep.moved;
    s.metrics.mse_after_resolution = rep.moved ? err / (double(n) * double(d)) : s.metrics.mse;
  });
  s.metrics.seconds_total = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

}  // namespace

SemanticIds build_semantic_ids(const NpyShards& input, const SidParams& p, const std::vector<std::string>* labels,
                               size_t chunk_rows) {
  const auto t0 = Clock::now();
  const size_t n = input.rows();
  if (p.balance && p.train_sample && p.train_sample < n) return build_balanced_streamed(input, p, labels, chunk_rows);
  if (p.balance || p.train_sample == 0 || p.train_sample >= n) {
    // Without a sample, k-means trains on all rows: the whole input (a single float32 shard stays mapped).
    const FloatMatrix x = input.read_all();
    input.check_finite(0, x.view());
    return build_semantic_ids(x.view(), p, labels);
  }
  check_sampled_build(input, p, labels);
  // The model fit trains on the sample; every row then gets its greedy codes chunk by chunk.
  std::vector<LevelReport> reports;
  auto model = train_on_sample(input, p, reports);
  SemanticIds s = encode_semantic_ids(std::move(model), input, p.dedup, p.format, chunk_rows);
  for (size_t l = 0; l < s.metrics.levels.size(); ++l) {
    LevelMetrics& m = s.metrics.levels[l];
    m.seconds = reports[l].seconds;
    m.iterations = reports[l].iterations;
    m.warm_start_rows = reports[l].warm_start_rows;
    m.size_lo = 0;
    m.size_hi = n;
  }
  if (labels) add_purity(s.metrics.levels, s.codes.view(), *labels);
  s.metrics.seconds_total = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

SemanticIds semantic_ids_from_codes(std::shared_ptr<ResidualQuantizer> model, MatrixView<const float> x,
                                    CodeMatrix codes, Dedup dedup, TokenFormat format,
                                    const std::vector<std::string>* labels) {
  const auto t0 = Clock::now();
  TESSERA_CHECK_ARG(model && model->is_trained(), "semantic IDs need a trained model");
  TESSERA_CHECK_ARG(x.rows > 0, "no items");
  TESSERA_CHECK_ARG(x.cols == model->dim(), "dimension mismatch: the vectors have " << x.cols << " columns, the model "
                                                                                  << model->dim());
  TESSERA_CHECK_ARG(codes.rows() == x.rows && codes.cols() == model->num_codebooks(),
                    "codes are " << codes.rows() << " × " << codes.cols() << ", expected " << x.rows << " × "
                                 << model->num_codebooks());
  for (size_t i = 0; i < codes.rows(); ++i)
    for (size_t l = 0; l < codes.cols(); ++l)
      TESSERA_CHECK_ARG(codes(i, l) >= 0 && size_t(codes(i, l)) < model->codebook_sizes()[l],
                        "code " << codes(i, l) << " of row " << i << " at level " << l << " is out of range [0, "
                                << model->codebook_sizes()[l] << ")");
  check_labels(labels, x.rows);
  SemanticIds s;
  s.model = std::move(model);
  s.codes = std::move(codes);
  s.dedup = dedup;
  s.format = format;
  s.metrics.balance = "none";
  fill_metrics(s, x, nullptr, labels);
  resolve(s, x);
  s.metrics.seconds_total = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

namespace {

// The nearest existing ancestor of dir (dir itself when it exists), and, outermost first, the directories
// below it that prepare_output_dir(dir) would create.
std::filesystem::path nearest_existing(const std::string& dir, std::vector<std::filesystem::path>* missing) {
  namespace fs = std::filesystem;
  if (dir.empty()) TESSERA_THROW_IO("no output directory given");
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  if (ec) TESSERA_THROW_IO("output directory " << dir << ": " << ec.message());
  for (; !fs::exists(p, ec) && p.has_parent_path() && p.parent_path() != p; p = p.parent_path())
    if (missing) missing->insert(missing->begin(), p);
  return p;
}

}  // namespace

void check_output_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path p = nearest_existing(dir, nullptr);
  std::error_code ec;
  if (!fs::is_directory(p, ec))
    TESSERA_THROW_IO("output directory " << dir << ": " << p.string() << " exists and is not a directory");
  // Permission bits do not tell (root, read-only mounts, /proc): try to make an entry there, and take it back.
  std::string probe = (p / ".tessera-probe-XXXXXX").string();
  if (!mkdtemp(probe.data()))
    TESSERA_THROW_IO("output directory " << dir << " cannot be written (" << p.string() << ": " << std::strerror(errno)
                                         << ")");
  rmdir(probe.c_str());
}

void prepare_output_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) TESSERA_THROW_IO("cannot create output directory " << dir << ": " << ec.message());
  TESSERA_CHECK_ARG(std::filesystem::is_directory(dir), "output path " << dir << " exists and is not a directory");
  if (access(dir.c_str(), W_OK) != 0) TESSERA_THROW_IO("output directory " << dir << " is not writable");
}

void write_semantic_ids(const std::string& dir, const SemanticIds& s, const std::vector<std::string>* keys,
                        bool with_model) {
  namespace fs = std::filesystem;
  check_output_dir(dir);
  std::vector<fs::path> created;
  nearest_existing(dir, &created);
  prepare_output_dir(dir);
  const fs::path staging = fs::path(dir) / (".tessera-staging." + std::to_string(getpid()));
  std::vector<std::string> names;
  try {
    std::error_code ec;
    fs::remove_all(staging, ec);
    fs::create_directory(staging, ec);
    if (ec) TESSERA_THROW_IO("cannot create " << staging.string() << ": " << ec.message());
    const std::string base = staging.string() + "/";
    if (with_model) {
      std::vector<std::pair<std::string, MatrixView<const float>>> books;
      for (size_t l = 0; l < s.model->num_codebooks(); ++l)
        books.emplace_back("codebook_" + std::to_string(l), s.model->codebook(l));
      write_npz(base + "codebooks.npz", books, true);
      nlohmann::json meta;
      meta["sid"] = {{"dedup", dedup_name(s.dedup)}, {"zero_based", s.format.zero_based},
                     {"balance", s.metrics.balance}};
      save_quantizer(*s.model, base + "model.tsq", meta.dump());
      names = {"codebooks.npz", "model.tsq"};
    }
    {  // written a block at a time: no second copy of the n × L codes as one string
      NpyStreamWriter w(base + "codes.npy", NpyStreamWriter::Dtype::int32, s.codes.rows(), s.codes.cols());
      for (size_t a = 0; a < s.codes.rows(); a += 1 << 20) {
        const size_t b = std::min(s.codes.rows(), a + (size_t(1) << 20));
        w.append(MatrixView<const int32_t>(s.codes.row(a), b - a, s.codes.cols()));
      }
      w.commit();
    }
    write_file_atomic(base + "metrics.json", s.metrics.to_json() + "\n");
    write_file_atomic(base + "index.json", index_json(s.ids.view(), s.codes.cols(), s.format, keys));
    // The index last: a reader that sees index.json sees everything it refers to.
    for (const char* n : {"codes.npy", "metrics.json", "index.json"}) names.emplace_back(n);
    for (const std::string& n : names) {
      const fs::path target = fs::path(dir) / n;
      TESSERA_CHECK_ARG(!fs::exists(target, ec) || fs::is_regular_file(target, ec),
                        target.string() << " exists and is not a regular file: nothing was written");
    }
    check_interrupt_now();  // the last moment to stop with nothing written
    for (const std::string& n : names) {
      fs::rename(staging / n, fs::path(dir) / n, ec);
      if (ec) TESSERA_THROW_IO("cannot move " << n << " into " << dir << ": " << ec.message());
    }
    fs::remove(staging, ec);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staging, ec);
    for (auto it = created.rbegin(); it != created.rend(); ++it) fs::remove(*it, ec);  // only if empty
    throw;
  }
}

SidModel load_sid_model(const std::string& path) {
  std::string meta;
  std::unique_ptr<Quantizer> q = load_quantizer(path, &meta);
  SidModel out;
  auto* rq = dynamic_cast<ResidualQuantizer*>(q.get());
  TESSERA_CHECK_FORMAT(rq, path << ": not a residual-quantizer model");
  q.release();
  out.model.reset(rq);
  const auto j = nlohmann::json::parse(meta, nullptr, false);
  if (j.is_object() && j.contains("sid") && j["sid"].is_object()) {
    const auto& sid = j["sid"];
    if (sid.contains("dedup") && sid["dedup"].is_string()) out.dedup = parse_dedup(sid["dedup"].get<std::string>());
    if (sid.contains("zero_based") && sid["zero_based"].is_boolean()) out.format.zero_based = sid["zero_based"];
  }
  return out;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) TESSERA_THROW_IO("cannot open " << path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace tessera
