#include "tessera/index/index_additive_quantizer_fast_scan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/parallel.h"
#include "index/fast_scan_kernel.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"

namespace tessera {

namespace {

constexpr size_t kKsub = 16;
// uint16 sums hold 255 · (tables + 2 · (norm_scale − 1)) at most.
constexpr size_t kMaxWeightedTables = 65535 / 255;

// Nibble t of a packed code: code indices of 4 bits, then the 8-bit norm code (low nibble: c0, high: c1).
inline uint8_t nibble(const uint8_t* code, size_t t) { return (code[t >> 1] >> ((t & 1) * 4)) & 15; }

// Lower sum (resp. distance), then lower label: a total order, so the kept set is thread-count independent.
template <class T, bool Greater>
struct Better {
  bool operator()(const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& b) const {
    if (a.first != b.first) return Greater ? a.first > b.first : a.first < b.first;
    return a.second < b.second;
  }
};

}  // namespace

IndexAdditiveQuantizerFastScan::IndexAdditiveQuantizerFastScan(std::shared_ptr<const AdditiveQuantizer> aq,
                                                               MetricType metric, size_t bbs)
    : aq_(std::move(aq)), metric_(metric), bbs_(bbs) {
  TESSERA_CHECK_ARG(aq_, "IndexAdditiveQuantizerFastScan needs a quantizer (got none)");
  TESSERA_CHECK_ARG(aq_->is_trained(), "IndexAdditiveQuantizerFastScan needs a trained quantizer: train it first");
  TESSERA_CHECK_ARG(metric == MetricType::L2 || metric == MetricType::inner_product,
                    "metric " << int(metric) << " is not supported: expected L2 or inner product");
  TESSERA_CHECK_ARG(bbs >= 32 && bbs % 32 == 0, "bbs must be a positive multiple of 32, got " << bbs);
  M_ = aq_->num_codebooks();
  for (size_t m = 0; m < M_; ++m)
    TESSERA_CHECK_ARG(aq_->codebook_sizes()[m] == kKsub,
                      "fast-scan needs 4-bit codebooks (16 codewords each, nbits = 4): codebook "
                          << m << " has " << aq_->codebook_sizes()[m] << " codewords");
  search_type_ = aq_->search_type();
  if (metric == MetricType::L2) {
    TESSERA_CHECK_ARG(search_type_ == SearchType::ST_norm_lsq2x4 || search_type_ == SearchType::ST_norm_rq2x4,
                      "fast-scan L2 search needs the norm as two 4-bit codes: search type ST_norm_lsq2x4 or "
                      "ST_norm_rq2x4, the quantizer has "
                          << search_type_name(search_type_));
    TESSERA_CHECK_ARG(aq_->norm_encoder().is_trained() && aq_->norm_encoder().tabs().size() == 2 * kKsub,
                      "fast-scan L2 search needs the quantizer's trained norm tables: train it (or train_norm) first");
    nsq_ = M_ + 2;
  } else {
    TESSERA_CHECK_ARG(search_type_ == SearchType::ST_LUT_nonorm,
                      "fast-scan inner-product search needs search type ST_LUT_nonorm (no stored norm), the "
                      "quantizer has "
                          << search_type_name(search_type_));
    nsq_ = M_;
    norm_scale_ = 1;
  }
  TESSERA_CHECK_ARG(nsq_ <= kMaxWeightedTables, "fast-scan sums " << nsq_ << " tables, at most " << kMaxWeightedTables
                                                                  << " fit its 16-bit sums");
  code_size_ = aq_->code_size();
}

void IndexAdditiveQuantizerFastScan::check_codec() const {
  TESSERA_CHECK_ARG(aq_->is_trained() && aq_->code_size() == code_size_ && aq_->search_type() == search_type_,
                    "the index's quantizer changed after the index was built (it stores "
                        << code_size_ << "-byte codes of search type " << search_type_name(search_type_)
                        << ", the quantizer now has " << aq_->code_size() << "-byte codes of "
                        << search_type_name(aq_->search_type()) << "): build a new index");
}

void IndexAdditiveQuantizerFastScan::set_norm_scale(int s) {
  TESSERA_CHECK_ARG(s >= 1, "norm_scale must be at least 1, got " << s);
  TESSERA_CHECK_ARG(metric_ == MetricType::L2 || s == 1, "norm_scale is 1 for inner-product search, got " << s);
  TESSERA_CHECK_ARG(M_ + 2 * size_t(s) <= kMaxWeightedTables,
                    "norm_scale " << s << " would overflow the 16-bit sums of " << M_ << " codebooks (at most "
                                  << (kMaxWeightedTables - M_) / 2 << ")");
  norm_scale_ = s;
}

void IndexAdditiveQuantizerFastScan::float_tables(const float* lut, float* tables) const {
  const float ns = float(norm_scale_);
  if (metric_ == MetricType::inner_product) {
    for (size_t j = 0; j < M_ * kKsub; ++j) tables[j] = -lut[j];
    return;
  }
  for (size_t j = 0; j < M_ * kKsub; ++j) tables[j] = -2 * lut[j];
  const std::vector<float>& tabs = aq_->norm_encoder().tabs();
  for (size_t j = 0; j < 2 * kKsub; ++j) tables[M_ * kKsub + j] = tabs[j] / ns;
}

// The norm tables' span against the widest inner-product table's, per reconstruction taken as a query: the
// shared uint8 scale follows the widest table, so norm tables much wider than the rest would squeeze them.
void IndexAdditiveQuantizerFastScan::estimate_norm_scale(size_t n, const uint8_t* codes) {
  const size_t nn = std::min<size_t>(n, 65536), d = dim(), total = M_ * kKsub;
  const std::vector<float>& tabs = aq_->norm_encoder().tabs();
  float norm_span = 0;
  for (size_t h = 0; h < 2; ++h) {
    const auto [lo, hi] = std::minmax_element(tabs.begin() + h * kKsub, tabs.begin() + (h + 1) * kKsub);
    norm_span = std::max(norm_span, *hi - *lo);
  }
  double sum = 0;
  constexpr size_t kChunk = 4096;
  std::vector<float> x(kChunk * d), lut(kChunk * total);
  for (size_t i0 = 0; i0 < nn; i0 += kChunk) {
    const size_t nc = std::min(kChunk, nn - i0);
    aq_->decode_packed(codes + i0 * code_size_, nc, x.data());
    aq_->compute_LUT(nc, x.data(), lut.data(), -2.0f);
    for (size_t i = 0; i < nc; ++i) {
      float span = 0;
      for (size_t m = 0; m < M_; ++m) {
        const float* t = lut.data() + i * total + m * kKsub;
        const auto [lo, hi] = std::minmax_element(t, t + kKsub);
        span = std::max(span, *hi - *lo);
      }
      sum += span > 0 ? double(norm_span) / span : 1.0;
    }
  }
  const double mean = nn ? sum / double(nn) : 1.0;
  const long cap = long((kMaxWeightedTables - M_) / 2);
  norm_scale_ = int(std::clamp<long>(std::lround(std::max(mean, 1.0)), 1, cap));
}

void IndexAdditiveQuantizerFastScan::add(MatrixView<const float> x) {
  check_codec();
  TESSERA_CHECK_ARG(x.cols == dim(), "dimension mismatch: the vectors to add have " << x.cols
                                                                                   << " columns, the index has " << dim());
  check_finite(x, "the vectors to add");
  std::vector<uint8_t> fresh(x.rows * code_size_);
  constexpr size_t kChunk = size_t(1) << 16;
  for (size_t i0 = 0; i0 < x.rows; i0 += kChunk) {
    check_interrupt();
    const size_t n = std::min(kChunk, x.rows - i0);
    aq_->encode_packed(MatrixView<const float>(x.row(i0), n, x.cols, x.stride), fresh.data() + i0 * code_size_);
  }
  add_codes(x.rows, fresh.data());
}

void IndexAdditiveQuantizerFastScan::add_codes(size_t n, const uint8_t* codes) {
  check_codec();
  if (n == 0) return;
  TESSERA_CHECK_ARG(codes, "add_codes: no code buffer for " << n << " codes");
  if (norm_scale_ == 0) estimate_norm_scale(n, codes);  // every 4-bit and 8-bit value is a valid code
  const size_t from = ntotal_, to = ntotal_ + n, block_bytes = nsq_ * detail::kFastScanGroupBytes;
  codes_.insert(codes_.end(), codes, codes + n * code_size_);
  const size_t padded = (to + bbs_ - 1) / bbs_ * bbs_;
  blocks_.resize(padded / detail::kFastScanBlock * block_bytes, 0);
  for (size_t i = from; i < to; ++i) {
    const uint8_t* code = codes_.data() + i * code_size_;
    uint8_t* blk = blocks_.data() + (i / detail::kFastScanBlock) * block_bytes;
    const size_t v = i % detail::kFastScanBlock, shift = v < 16 ? 0 : 4;
    for (size_t t = 0; t < nsq_; ++t) blk[t * detail::kFastScanGroupBytes + (v & 15)] |= uint8_t(nibble(code, t) << shift);
  }
  ntotal_ = to;
}

void IndexAdditiveQuantizerFastScan::reset() {
  codes_.clear();
  codes_.shrink_to_fit();
  blocks_.clear();
  blocks_.shrink_to_fit();
  ntotal_ = 0;
  if (metric_ == MetricType::L2) norm_scale_ = 0;
}

namespace {

// Quantise nsq × 16 float tables to uint8 with one scale for all and a per-table offset (its minimum); the
// last nscaled tables count scale_weight times in the sums, so their offsets do too. Rounding: to nearest,
// ties to even (nearbyint's in the default mode), as x + 2^23 − 2^23 does for 0 ≤ x < 2^23 without a call.
void quantize_tables(const float* tables, size_t nsq, size_t nscaled, float weight, uint8_t* lut8, float* scale,
                     float* bias) {
  static_assert(kKsub == 16);
  // Per table its minimum and maximum, four lanes at a time (element-wise, which compilers vectorise).
  const auto min_max = [](const float* tab, float& lo, float& hi) {
    float l[4], h[4];
    for (size_t i = 0; i < 4; ++i) l[i] = h[i] = tab[i];
    for (size_t j = 4; j < kKsub; j += 4)
      for (size_t i = 0; i < 4; ++i) {
        l[i] = tab[j + i] < l[i] ? tab[j + i] : l[i];
        h[i] = tab[j + i] > h[i] ? tab[j + i] : h[i];
      }
    lo = std::min(std::min(l[0], l[1]), std::min(l[2], l[3]));
    hi = std::max(std::max(h[0], h[1]), std::max(h[2], h[3]));
  };
  float max_span = 0, b = 0;
  for (size_t t = 0; t < nsq; ++t) {
    float lo, hi;
    min_max(tables + t * kKsub, lo, hi);
    max_span = std::max(max_span, hi - lo);
    b += t < nsq - nscaled ? lo : weight * lo;
  }
  const float a = max_span > 0 ? 255.0f / max_span : 1.0f;
  for (size_t t = 0; t < nsq; ++t) {
    const float* tab = tables + t * kKsub;
    float lo, hi;
    min_max(tab, lo, hi);
    for (size_t j = 0; j < kKsub; ++j) {
      const float v = ((tab[j] - lo) * a + 8388608.0f) - 8388608.0f;  // the sum, in [2^23, 2^23 + 256), is rounded
      lut8[t * kKsub + j] = uint8_t(int32_t(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v));
    }
  }
  *scale = a;
  *bias = b;
}

// Move the k smallest of the distinct a[0, n) to a[0, k) (in no order; a[k, n) is left undefined), k ≤ n;
// tmp: n slots. Quickselect whose partitions write every element to both ends of the other buffer and advance
// one end, without branches (the comparisons are coin flips a branch predictor loses), then nth_element on
// the last few.
void select_smallest(uint64_t* a, size_t n, size_t k, uint64_t* tmp) {
  size_t lo = 0, hi = n;
  uint64_t *src = a, *dst = tmp;  // the live range [lo, hi) is in src; elements outside it are final in a
  while (hi - lo > 32 && lo < k && k < hi) {
    const uint64_t x = src[lo], y = src[lo + (hi - lo) / 2], z = src[hi - 1];
    const uint64_t pivot = std::max(std::min(x, y), std::min(std::max(x, y), z));  // the median of three
    size_t le = lo, gt = hi;
    for (size_t i = lo; i < hi; ++i) {
      const uint64_t v = src[i];
      const bool small = v <= pivot;
      dst[le] = v;
      dst[gt - 1] = v;
      le += small;
      gt -= !small;
    }
    // dst: [lo, le) ≤ pivot < [le, hi); le > lo (the pivot) and le < hi (the largest of three is above it).
    if (le <= k) {
      if (dst != a) std::copy(dst + lo, dst + le, a + lo);  // final: among the k smallest
      lo = le;
    } else {
      hi = le;
    }
    std::swap(src, dst);
  }
  if (src != a) std::copy(src + lo, src + hi, a + lo);
  if (lo < k && k < hi) std::nth_element(a + lo, a + k, a + hi);
}

// Drop the keys of the last block's padding (labels ntotal and up) from keys[0, *n).
void drop_padding(uint64_t* keys, size_t* n, size_t ntotal) {
  *n = size_t(std::remove_if(keys, keys + *n, [ntotal](uint64_t key) { return detail::fast_scan_key_label(key) >= ntotal; }) - keys);
}

// The best ncand keys ((sum << 48) | label, see fast_scan_kernel.h) of keys[0, *n), moved to keys[0, *n)
// with *n = min(*n, ncand); returns the worst kept sum, the threshold (65536 while fewer than ncand are
// kept: every sum may still enter). tmp: *n slots.
uint32_t keep_best(uint64_t* keys, size_t* n, size_t ncand, uint64_t* tmp) {
  if (*n < ncand || ncand == 0) return 1u << 16;
  select_smallest(keys, *n, ncand, tmp);
  *n = ncand;
  return detail::fast_scan_key_sum(*std::max_element(keys, keys + ncand));
}

// Make room in a full buffer of keys, all with sums below threshold: a histogram of the sums in 256 bins
// finds the lowest bin edge e with at least ncand sums below it, the keys below e stay, and e becomes the
// threshold (a later sum ≥ e is beaten by ncand kept ones). Cheaper than an exact cut (keep_best), to which
// it falls back when that leaves less than half of the free space. Returns the new threshold.
uint32_t make_room(uint64_t* keys, size_t* n, size_t ncand, uint32_t threshold, size_t cap, uint64_t* tmp) {
  if (*n < ncand || ncand == 0) return threshold;
  uint64_t lowest = keys[0];
  for (size_t i = 1; i < *n; ++i) lowest = std::min(lowest, keys[i]);
  const uint32_t lo = detail::fast_scan_key_sum(lowest), span = threshold - lo;  // every sum in [lo, threshold)
  unsigned shift = 0;
  while ((span - 1) >> shift >= 256) ++shift;
  uint32_t hist[256] = {};
  for (size_t i = 0; i < *n; ++i) ++hist[(detail::fast_scan_key_sum(keys[i]) - lo) >> shift];
  size_t bin = 0;
  for (size_t below = hist[0]; below < ncand; below += hist[++bin]) {
  }
  const uint32_t edge = std::min(threshold, lo + uint32_t((bin + 1) << shift));
  size_t m = 0;
  for (size_t i = 0; i < *n; ++i) {
    const uint64_t key = keys[i];
    keys[m] = key;
    m += detail::fast_scan_key_sum(key) < edge;
  }
  *n = m;
  if (m > ncand + (cap - ncand) / 2) return keep_best(keys, n, ncand, tmp);
  return edge;
}

}  // namespace

void IndexAdditiveQuantizerFastScan::quantized_tables(const float* query, uint8_t* lut8, float* scale,
                                                      float* bias) const {
  check_codec();
  TESSERA_CHECK_ARG(norm_scale_ >= 1, "quantized_tables: the norm scale is set at the first add (or set_norm_scale)");
  std::vector<float> lut(M_ * kKsub), tables(nsq_ * kKsub);
  aq_->compute_LUT(1, query, lut.data());
  float_tables(lut.data(), tables.data());
  quantize_tables(tables.data(), nsq_, nsq_ - M_, float(norm_scale_), lut8, scale, bias);
}

void IndexAdditiveQuantizerFastScan::search(MatrixView<const float> q, size_t k, float* distances,
                                            int64_t* labels) const {
  check_codec();
  TESSERA_CHECK_ARG(k >= 1, "search: k must be at least 1");
  TESSERA_CHECK_ARG(q.cols == dim(), "dimension mismatch: the queries have " << q.cols << " columns, the index has "
                                                                               << dim());
  check_finite(q, "the queries");
  const size_t nq = q.rows, d = dim(), total = M_ * kKsub;
  const bool ip = metric_ == MetricType::inner_product;
  const float worst = ip ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  const size_t kept = std::min(k, ntotal_);
  const size_t ncand = rerank_factor_ ? std::min(ntotal_, std::max(k, rerank_factor_ * k)) : kept;
  const size_t nscaled = nsq_ - M_, block_bytes = nsq_ * detail::kFastScanGroupBytes;
  const size_t nblocks = blocks_.size() / std::max<size_t>(1, block_bytes);
  const uint16_t ns16 = uint16_t(std::max(norm_scale_, 1));

  // L2: the decoded norm of every 8-bit norm code (nibbles M and M + 1 of a code, low first), as the flat
  // index reads it.
  std::vector<float> norm_table;
  if (!ip)
    for (uint64_t c = 0; c < 256; ++c) norm_table.push_back(aq_->decode_norm(c));
  const size_t qblock = std::max<size_t>(1, std::min<size_t>({(size_t(1) << 22) / total, 1024, nq}));
  std::vector<float> LUT(qblock * total), qbuf;
  for (size_t b0 = 0; b0 < nq; b0 += qblock) {
    check_interrupt();
    const size_t nb = std::min(qblock, nq - b0);
    const float* qb = q.row(b0);
    if (!q.contiguous() && nb > 1) {
      qbuf.resize(nb * d);
      for (size_t i = 0; i < nb; ++i) std::memcpy(qbuf.data() + i * d, q.row(b0 + i), d * sizeof(float));
      qb = qbuf.data();
    }
    if (ntotal_) aq_->compute_LUT(nb, qb, LUT.data());
    // Queries are scanned in groups of up to kFastScanMaxQueries (one pass over the codes serves the group),
    // groups split between the threads; each query's result is the same in any group.
    const size_t nthreads = std::max<size_t>(1, ::tessera::num_threads());
    const size_t group = std::clamp<size_t>((nb + nthreads - 1) / nthreads, 1, detail::kFastScanMaxQueries);
    const size_t ngroups = (nb + group - 1) / group;
    detail::ExceptionCatcher catcher;
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      // Candidates below the threshold are collected (as keys) until a buffer is full, then cut to the best
      // ncand, whose worst sum becomes the threshold: a reservoir, cheaper than a heap update per candidate.
      const size_t cap = 2 * ncand + 2 * detail::kFastScanBlock;
      std::vector<float> tables;
      std::vector<uint8_t> lut8;
      std::vector<uint64_t> keys, tmp;
      std::vector<std::pair<float, int64_t>> ranked;
      catcher.run([&] {
        tables.resize(nsq_ * kKsub);
        lut8.resize(group * nsq_ * kKsub);
        keys.resize(group * cap);
        tmp.resize(cap);
        ranked.reserve(ncand);
      });
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t g = 0; g < (ptrdiff_t)ngroups; ++g) {
        catcher.run([&] {
          const size_t g0 = size_t(g) * group, ng = std::min(group, nb - g0);
          detail::FastScanQuery fq[detail::kFastScanMaxQueries];
          float scale[detail::kFastScanMaxQueries], bias[detail::kFastScanMaxQueries];
          for (size_t i = 0; i < ng; ++i) {
            float_tables(LUT.data() + (g0 + i) * total, tables.data());
            quantize_tables(tables.data(), nsq_, nscaled, float(ns16), lut8.data() + i * nsq_ * kKsub, &scale[i],
                            &bias[i]);
            fq[i] = {lut8.data() + i * nsq_ * kKsub, 1u << 16, keys.data() + i * cap, 0};
          }
          // The best ncand by (uint16 sum, label): labels rise along the scan, so a sum equal to the worst kept
          // one loses, and only sums below it are collected.
          for (size_t blk = 0; blk < nblocks;) {
            blk += detail::fast_scan_collect(blocks_.data() + blk * block_bytes, nblocks - blk, nsq_, nscaled, ns16,
                                             fq, ng, blk * detail::kFastScanBlock, cap);
            for (size_t i = 0; i < ng; ++i)
              if (fq[i].n + detail::kFastScanBlock > cap) {
                if (blk * detail::kFastScanBlock > ntotal_) drop_padding(fq[i].keys, &fq[i].n, ntotal_);
                fq[i].threshold = make_room(fq[i].keys, &fq[i].n, ncand, fq[i].threshold, cap, tmp.data());
              }
          }
          for (size_t i = 0; i < ng; ++i) {
            const size_t qi = g0 + i;
            const float* lut = LUT.data() + qi * total;
            uint64_t* qkeys = fq[i].keys;
            size_t n = fq[i].n;
            drop_padding(qkeys, &n, ntotal_);
            keep_best(qkeys, &n, ncand, tmp.data());
            float qnorm = 0;  // ‖q‖², added last as the flat index does
            if (!ip) {
              const float* qv = q.row(b0 + qi);
              for (size_t j = 0; j < d; ++j) qnorm += qv[j] * qv[j];
            }
            ranked.clear();
            if (rerank_factor_) {
              // The flat index's arithmetic: Σ_m LUT in float for m = 0..M−1, then norm − 2Σ + ‖q‖² (L2). Eight
              // candidates at a time, so that their sums' chains of additions overlap.
              for (size_t j = 0; j < n; ++j)
                __builtin_prefetch(codes_.data() + size_t(detail::fast_scan_key_label(qkeys[j])) * code_size_);
              constexpr size_t kR = 8;
              for (size_t j0 = 0; j0 < n; j0 += kR) {
                const size_t nr = std::min(kR, n - j0);
                const uint8_t* code[kR];
                float sum[kR];
                for (size_t r = 0; r < kR; ++r) {
                  code[r] = codes_.data() + size_t(detail::fast_scan_key_label(qkeys[j0 + std::min(r, nr - 1)])) * code_size_;
                  sum[r] = 0;
                }
                for (size_t m = 0; m < M_; ++m)
                  for (size_t r = 0; r < kR; ++r) sum[r] += lut[m * kKsub + nibble(code[r], m)];
                for (size_t r = 0; r < nr; ++r)
                  ranked.emplace_back(ip ? sum[r] : norm_table[nibble(code[r], M_) | (nibble(code[r], M_ + 1) << 4)] - 2 * sum[r] + qnorm,
                                      int64_t(detail::fast_scan_key_label(qkeys[j0 + r])));
              }
            } else {
              std::sort(qkeys, qkeys + n);
              for (size_t j = 0; j < n; ++j) {
                const float est = float(detail::fast_scan_key_sum(qkeys[j])) / scale[i] + bias[i];
                ranked.emplace_back(ip ? -est : est + qnorm, int64_t(detail::fast_scan_key_label(qkeys[j])));
              }
            }
            // The first `kept` in order: the rest (re-ranking's extra candidates) need no order.
            const auto by_distance = [&](auto better) {
              if (ranked.size() > kept) std::nth_element(ranked.begin(), ranked.begin() + kept, ranked.end(), better);
              std::sort(ranked.begin(), ranked.begin() + std::min(kept, ranked.size()), better);
            };
            if (ip) by_distance(Better<float, true>());
            else by_distance(Better<float, false>());
            float* dq = distances + (b0 + qi) * k;
            int64_t* lq = labels + (b0 + qi) * k;
            for (size_t j = 0; j < k; ++j) {
              dq[j] = j < kept ? ranked[j].first : worst;
              lq[j] = j < kept ? ranked[j].second : -1;
            }
          }
        });
      }
    }
    catcher.rethrow();
  }
}

}  // namespace tessera
