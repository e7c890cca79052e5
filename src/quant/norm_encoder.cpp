#include "tessera/quant/norm_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "tessera/cluster/kmeans1d.h"
#include "tessera/core/error.h"
#include "tessera/core/rng.h"

namespace tessera {

namespace {

constexpr uint64_t kNormSampleSeed = 0x6e6f726d73ULL;  // fixed: the same norms give the same encoder
constexpr size_t kMaxPointsPerCentroid = 256;         // faiss's subsampling rule for 1-D k-means

size_t qint_levels(SearchType st) { return st == SearchType::ST_norm_qint8 ? 256 : 16; }
bool is_cqint(SearchType st) { return st == SearchType::ST_norm_cqint8 || st == SearchType::ST_norm_cqint4; }
bool is_2x4(SearchType st) { return st == SearchType::ST_norm_lsq2x4 || st == SearchType::ST_norm_rq2x4; }

// k ascending centres of an exact 1-D k-means of v; with fewer than k values, the largest centre is
// repeated (a repeated entry is never the nearest one: lookups take the lowest index).
std::vector<double> centres_1d(const std::vector<float>& v, size_t k) {
  const KMeans1DResult r = kmeans1d(v.size(), v.data(), std::min(k, v.size()));
  std::vector<double> c = r.centroids;
  c.resize(k, c.back());
  return c;
}

// Index of the nearest of 16 ascending-or-not values (ties: lower index). Small: a linear scan.
size_t nearest16(const double* c, double v) {
  size_t best = 0;
  for (size_t j = 1; j < 16; ++j)
    if (std::abs(v - c[j]) < std::abs(v - c[best])) best = j;
  return best;
}

// faiss's 256-entry table of a 2 × 4-bit code: entry i·16 + j = c0[j] + c1[i], summed in float.
std::vector<float> table_2x4(const std::vector<float>& tabs) {
  std::vector<float> t(256);
  for (size_t i = 0; i < 16; ++i)
    for (size_t j = 0; j < 16; ++j) t[i * 16 + j] = tabs[j] + tabs[16 + i];
  return t;
}

}  // namespace

NormEncoder::NormEncoder(SearchType st) : st_(st) { (void)search_type_name(st); /* validates */ }

void NormEncoder::require_trained(const char* what) const {
  TESSERA_CHECK_ARG(is_trained(), what << " with search type " << search_type_name(st_)
                                       << " needs a trained norm encoder: train the model or call train_norm() first");
}

void NormEncoder::index_table() {
  sorted_.resize(table_.size());
  for (size_t i = 0; i < table_.size(); ++i) sorted_[i] = {table_[i], (uint32_t)i};
  std::sort(sorted_.begin(), sorted_.end());
}

void NormEncoder::train(size_t n, const float* norms) {
  TESSERA_CHECK_ARG(n >= 1, "train_norm needs at least one norm");
  for (size_t i = 0; i < n; ++i)
    TESSERA_CHECK_ARG(std::isfinite(norms[i]), "training norm " << i << " is not finite (" << norms[i] << ")");
  min_ = *std::min_element(norms, norms + n);
  max_ = *std::max_element(norms, norms + n);
  table_.clear();
  tabs_.clear();
  sorted_.clear();
  if (is_cqint(st_)) {
    const size_t k = st_ == SearchType::ST_norm_cqint8 ? 256 : 16;
    std::vector<float> v;
    if (n > kMaxPointsPerCentroid * k) {
      for (size_t i : sample_rows(n, kMaxPointsPerCentroid * k, kNormSampleSeed)) v.push_back(norms[i]);
    } else {
      v.assign(norms, norms + n);
    }
    // Replacing (not appending to) the centres on re-training: faiss appends, so its table would grow.
    for (double c : centres_1d(v, k)) table_.push_back(float(c));
  } else if (is_2x4(st_)) {
    // Minimise Σ_i (v_i − c0[j_i] − c1[i_i])² over the 32 scalars and the codes. Start as a residual
    // quantizer would (exact 1-D k-means of v, then of what c0 leaves), then alternate the two exact
    // steps: every code over all 256 pairs (a 1-D nearest search in the table), and the least-squares
    // scalars for those codes. Neither step can raise the error, so it stops when it no longer falls.
    // The least-squares system is singular along c0 + t, c1 − t (the same sums); Gauss–Seidel sweeps over
    // the two blocks, each solved exactly, converge to a solution without choosing that gauge.
    const std::vector<float> v(norms, norms + n);
    std::vector<double> c(32);
    const std::vector<double> c0 = centres_1d(v, 16);
    std::vector<float> r(n);
    for (size_t i = 0; i < n; ++i) r[i] = float(v[i] - c0[nearest16(c0.data(), v[i])]);
    const std::vector<double> c1 = centres_1d(r, 16);
    std::copy(c0.begin(), c0.end(), c.begin());
    std::copy(c1.begin(), c1.end(), c.begin() + 16);
    double scale = 0;
    for (float t : v) scale = std::max(scale, std::abs(double(t)));
    double best = std::numeric_limits<double>::infinity();
    std::vector<double> best_c = c;
    std::vector<double> cnt(256), sum(256);
    for (int it = 0; it < 100; ++it) {
      // Exact codes for the current scalars (in double; the float table is built at the end).
      std::vector<std::pair<double, uint32_t>> t(256);
      for (uint32_t p = 0; p < 256; ++p) t[p] = {c[p % 16] + c[16 + p / 16], p};
      std::sort(t.begin(), t.end());
      std::fill(cnt.begin(), cnt.end(), 0.0);
      std::fill(sum.begin(), sum.end(), 0.0);
      double err = 0;
      for (size_t i = 0; i < n; ++i) {
        const double x = v[i];
        auto hi = std::lower_bound(t.begin(), t.end(), std::make_pair(x, 0u));
        auto pick = hi == t.end() ? t.end() - 1 : hi;
        if (hi != t.begin() && (hi == t.end() || x - (hi - 1)->first <= hi->first - x)) pick = hi - 1;
        const double e = x - pick->first;
        err += e * e;
        cnt[pick->second] += 1;
        sum[pick->second] += x;
      }
      if (!(err < best)) break;  // no longer falling: best_c holds the best scalars seen
      const double gain = best - err;
      best = err, best_c = c;
      if (gain <= 1e-12 * err) break;
      // Least-squares scalars for these codes: pair (i, j) holds cnt values summing to sum.
      for (int sweep = 0; sweep < 1000; ++sweep) {
        double change = 0;
        for (size_t j = 0; j < 16; ++j) {  // c0[j] given c1
          double num = 0, den = 0;
          for (size_t i = 0; i < 16; ++i) num += sum[i * 16 + j] - cnt[i * 16 + j] * c[16 + i], den += cnt[i * 16 + j];
          if (den > 0) change = std::max(change, std::abs(num / den - c[j])), c[j] = num / den;
        }
        for (size_t i = 0; i < 16; ++i) {  // c1[i] given c0
          double num = 0, den = 0;
          for (size_t j = 0; j < 16; ++j) num += sum[i * 16 + j] - cnt[i * 16 + j] * c[j], den += cnt[i * 16 + j];
          if (den > 0) change = std::max(change, std::abs(num / den - c[16 + i])), c[16 + i] = num / den;
        }
        if (change <= 1e-13 * (1 + scale)) break;
      }
    }
    tabs_.resize(32);
    for (size_t i = 0; i < 32; ++i) tabs_[i] = float(best_c[i]);
    table_ = table_2x4(tabs_);
  }
  if (!table_.empty()) index_table();
  trained_ = true;
}

uint32_t NormEncoder::encode_qcint(float x) const {
  require_trained("encode_qcint");
  TESSERA_CHECK_ARG(!sorted_.empty(), "encode_qcint needs a cqint, lsq2x4 or rq2x4 search type, not "
                                          << search_type_name(st_));
  if (std::isnan(x)) return 0;
  // First entry ≥ x (lowest index among equal values), and the lowest-index entry of the run just below.
  auto hi = std::lower_bound(sorted_.begin(), sorted_.end(), std::make_pair(x, 0u));
  if (hi == sorted_.begin()) return hi->second;
  auto lo = hi - 1;
  while (lo != sorted_.begin() && (lo - 1)->first == lo->first) --lo;
  if (hi == sorted_.end()) return lo->second;
  const float dl = x - lo->first, dh = hi->first - x;
  if (dl < dh) return lo->second;
  if (dh < dl) return hi->second;
  return std::min(lo->second, hi->second);
}

float NormEncoder::decode_qcint(uint32_t code) const {
  require_trained("decode_qcint");
  TESSERA_CHECK_ARG(code < table_.size(), "norm code " << code << " is outside the table of " << table_.size()
                                                       << " entries (" << search_type_name(st_) << ")");
  return table_[code];
}

uint64_t NormEncoder::encode(float norm) const {
  require_trained("encode_norm");
  switch (st_) {
    case SearchType::ST_norm_float: {
      uint32_t bits;
      std::memcpy(&bits, &norm, 4);
      return bits;
    }
    case SearchType::ST_norm_qint8:
    case SearchType::ST_norm_qint4: {
      const int L = (int)qint_levels(st_);
      if (!(max_ > min_)) return 0;  // one training value: every norm decodes to it
      const float t = (norm - min_) / (max_ - min_) * float(L);  // float, as faiss computes it
      if (std::isnan(t) || t < 0) return 0;
      if (t >= float(L)) return uint64_t(L - 1);
      return uint64_t(std::min<int>(L - 1, std::max<int>(0, (int)std::floor(t))));
    }
    case SearchType::ST_norm_cqint8:
    case SearchType::ST_norm_cqint4:
    case SearchType::ST_norm_lsq2x4:
    case SearchType::ST_norm_rq2x4: return encode_qcint(norm);
    default:
      TESSERA_THROW_ARG("search type " << search_type_name(st_) << " stores no norm; encode_norm needs one of "
                                       << "ST_norm_float, ST_norm_qint8/4, ST_norm_cqint8/4, ST_norm_lsq2x4, ST_norm_rq2x4");
  }
}

float NormEncoder::decode(uint64_t code) const {
  require_trained("decode_norm");
  switch (st_) {
    case SearchType::ST_norm_float: {
      TESSERA_CHECK_ARG(code <= 0xffffffffu, "a float norm code has 32 bits, got " << code);
      const uint32_t bits = (uint32_t)code;
      float v;
      std::memcpy(&v, &bits, 4);
      return v;
    }
    case SearchType::ST_norm_qint8:
    case SearchType::ST_norm_qint4: {
      const size_t L = qint_levels(st_);
      TESSERA_CHECK_ARG(code < L, "norm code " << code << " is outside [0, " << L << ") for " << search_type_name(st_));
      return (float(code) + 0.5f) / float(L) * (max_ - min_) + min_;
    }
    case SearchType::ST_norm_cqint8:
    case SearchType::ST_norm_cqint4:
    case SearchType::ST_norm_lsq2x4:
    case SearchType::ST_norm_rq2x4:
      TESSERA_CHECK_ARG(code < table_.size(), "norm code " << code << " is outside the table of " << table_.size()
                                                           << " entries (" << search_type_name(st_) << ")");
      return table_[code];
    default: TESSERA_THROW_ARG("search type " << search_type_name(st_) << " stores no norm to decode");
  }
}

NormEncoder NormEncoder::restore(SearchType st, bool trained, float norm_min, float norm_max, std::vector<float> table,
                                 std::vector<float> tabs) {
  NormEncoder e(st);
  TESSERA_CHECK_ARG(std::isfinite(norm_min) && std::isfinite(norm_max) && norm_min <= norm_max,
                    "norm range [" << norm_min << ", " << norm_max << "] is not a finite interval");
  for (float t : table) TESSERA_CHECK_ARG(std::isfinite(t), "norm table holds a non-finite value");
  for (float t : tabs) TESSERA_CHECK_ARG(std::isfinite(t), "norm tables hold a non-finite value");
  e.min_ = norm_min, e.max_ = norm_max, e.trained_ = trained;
  if (trained && is_cqint(st)) {
    const size_t k = st == SearchType::ST_norm_cqint8 ? 256 : 16;
    TESSERA_CHECK_ARG(table.size() == k && tabs.empty(), search_type_name(st) << " needs " << k << " centres, got "
                                                                              << table.size());
    e.table_ = std::move(table);
  } else if (trained && is_2x4(st)) {
    TESSERA_CHECK_ARG(tabs.size() == 32, search_type_name(st) << " needs 2 × 16 scalars, got " << tabs.size());
    e.tabs_ = std::move(tabs);
    e.table_ = table_2x4(e.tabs_);
  } else {
    TESSERA_CHECK_ARG(table.empty() && tabs.empty(), search_type_name(st) << " stores no norm table");
  }
  if (!e.table_.empty()) e.index_table();
  return e;
}

}  // namespace tessera
