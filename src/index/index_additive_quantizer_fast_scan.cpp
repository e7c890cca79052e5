#include "tessera/index/index_additive_quantizer_fast_scan.h"

#include <algorithm>
#include <bit>
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

// A result as one integer (labels below 2^32): v (smaller is better, finite) as an order-preserving uint32
// above the label, so that integer order is the order by (v, label); −0 is made +0 (equal to it).
inline uint64_t distance_key(float v, uint64_t label) {
  const uint32_t u = std::bit_cast<uint32_t>(v + 0.0f);
  return (uint64_t(u ^ (u >> 31 ? 0xffffffffu : 0x80000000u)) << 32) | label;
}
inline float key_distance(uint64_t key) {
  const uint32_t u = uint32_t(key >> 32);
  return std::bit_cast<float>(u ^ (u >> 31 ? 0x80000000u : 0xffffffffu));
}

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

// Drop the keys of the last block's padding (labels ntotal and up) from keys[0, *n): the last block is
// scanned last and its keys appended in label order, and a cut after it drops them first, so they are at the end.
void drop_padding(uint64_t* keys, size_t* n, size_t ntotal) {
  size_t m = *n;
  while (m && detail::fast_scan_key_label(keys[m - 1]) >= ntotal) --m;
  *n = m;
}

// Cut the keys[0, *n) ((sum << 48) | label, see fast_scan_kernel.h; all with sums below threshold, in label
// order) to the best ncand or a few more: a histogram of their sums in 256 bins finds the bin where the ncand-th
// smallest falls. Loose (cap > 0): the keys below that bin's upper edge e stay and e is returned as the new
// threshold (a later sum ≥ e is beaten by ncand kept ones), unless that keeps more than half of the free space
// of a buffer of cap slots; otherwise (or cap = 0) exact: the keys of the bins below stay, with the best of
// that bin's (the first ones if the bin is one sum, else by quickselect on them), and the worst kept sum is
// returned (labels rise along the scan, so an equal later sum loses). Fewer than ncand keys (or ncand = 0):
// nothing cut, threshold returned. tmp: *n slots.
uint32_t cut_keys(uint64_t* keys, size_t* n_, size_t ncand, uint32_t threshold, size_t cap, uint64_t* tmp) {
  const size_t n = *n_;
  if (n <= ncand || ncand == 0) return threshold;
  uint64_t lowest = keys[0];
  for (size_t i = 1; i < n; ++i) lowest = std::min(lowest, keys[i]);
  const uint32_t lo = detail::fast_scan_key_sum(lowest), span = threshold - lo;  // every sum in [lo, threshold)
  unsigned shift = 0;
  while ((span - 1) >> shift >= 256) ++shift;
  // Four histograms, so that runs of equal bins do not wait on each other's increments.
  uint32_t hist[4][256] = {};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (size_t j = 0; j < 4; ++j) ++hist[j][(detail::fast_scan_key_sum(keys[i + j]) - lo) >> shift];
  for (; i < n; ++i) ++hist[0][(detail::fast_scan_key_sum(keys[i]) - lo) >> shift];
  size_t bin = 0, below = 0;  // below: keys in the bins before `bin`
  for (;; ++bin) {
    const size_t h = size_t(hist[0][bin]) + hist[1][bin] + hist[2][bin] + hist[3][bin];
    if (below + h >= ncand) break;
    below += h;
  }
  const uint32_t edge = std::min(threshold, lo + uint32_t((bin + 1) << shift));
  if (cap) {
    size_t m = 0;
    for (size_t j = 0; j < n; ++j) {
      const uint64_t key = keys[j];
      keys[m] = key;
      m += detail::fast_scan_key_sum(key) < edge;
    }
    if (m <= ncand + (cap - ncand) / 2) {
      *n_ = m;
      return edge;
    }
    *n_ = m;
    return cut_keys(keys, n_, ncand, threshold, 0, tmp);
  }
  const uint32_t bin_lo = lo + uint32_t(bin << shift);
  size_t m = 0, nb = 0;
  for (size_t j = 0; j < n; ++j) {
    const uint64_t key = keys[j];
    const uint32_t sum = detail::fast_scan_key_sum(key);
    keys[m] = key;
    tmp[nb] = key;
    m += sum < bin_lo;
    nb += sum - bin_lo < edge - bin_lo;  // unsigned: bin_lo ≤ sum < edge
  }
  const size_t need = ncand - m;  // 1..nb
  if (edge - bin_lo > 1) {  // several sums: the best need by key, then in label order among equal sums
    std::nth_element(tmp, tmp + need - 1, tmp + nb);
    std::sort(tmp, tmp + need);
  }
  std::copy(tmp, tmp + need, keys + m);
  *n_ = ncand;
  return detail::fast_scan_key_sum(*std::max_element(tmp, tmp + need));
}

// The best nsel (≤ n) of keys[0, n) (all with sums at most threshold — an exact cut keeps its worst sum as
// the threshold —; among equal sums, in label order) in
// (sum, label) order, to out[0, nsel); out: n slots. A counting sort on the sums counted down from the
// threshold (the collected sums span tens of units, so no minimum pass is needed): the keys are scattered in
// their order, so equal sums stay in label order. Sums 255 or more below the threshold share the last bin,
// which is then sorted apart (rare: wide sums, no sampled threshold).
void best_sorted(const uint64_t* keys, size_t n, size_t nsel, uint32_t threshold, uint64_t* out) {
  constexpr uint32_t kBins = 256;
  const uint32_t top = threshold;
  const auto bin = [top](uint64_t key) { return std::min<uint32_t>(top - detail::fast_scan_key_sum(key), kBins - 1); };
  // Four histograms, so that runs of equal bins do not wait on each other's increments.
  uint32_t hist[4][kBins] = {};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (size_t j = 0; j < 4; ++j) ++hist[j][bin(keys[i + j])];
  for (; i < n; ++i) ++hist[0][bin(keys[i])];
  // Bin b (sum threshold − b) starts after the bins above it: the smaller sums.
  uint32_t start[kBins];
  uint32_t pos = 0;
  for (uint32_t b = kBins; b-- > 0;) {
    start[b] = pos;
    pos += hist[0][b] + hist[1][b] + hist[2][b] + hist[3][b];
  }
  for (size_t j = 0; j < n; ++j) out[start[bin(keys[j])]++] = keys[j];
  const size_t wide = start[kBins - 1];  // the last bin's keys: out[0, wide)
  if (wide > 1) {
    const size_t m = std::min(wide, nsel);
    if (m < wide) std::nth_element(out, out + m, out + wide);
    std::sort(out, out + m);
  }
}

// The rank-th smallest (1 ≤ rank ≤ n) of v[0, n). Many values per rank (large sets, small k): a max-heap of
// the rank smallest, most values only compared with its top. Else a histogram of v − min(v) in 256 bins, the
// last one for everything 255 or more above the minimum (≈ 5 instructions a value against the heap's ≈ 10
// at k = 100 on 10k codes: n = 800, rank = 47); when the rank-th falls in that last bin (sums spread
// wide), nth_element on a copy. tmp: n slots.
uint16_t nth_smallest(const uint16_t* v, size_t n, size_t rank, uint16_t* tmp) {
  if (n > 32 * rank) {
    uint16_t* best = tmp;
    std::fill(best, best + rank, uint16_t(65535));
    for (size_t i = 0; i < n; ++i) {
      const uint16_t x = v[i];
      if (x >= best[0]) continue;
      size_t j = 0;
      for (;;) {
        size_t c = 2 * j + 1;
        if (c >= rank) break;
        c += c + 1 < rank && best[c + 1] > best[c];
        if (best[c] <= x) break;
        best[j] = best[c];
        j = c;
      }
      best[j] = x;
    }
    return best[0];
  }
  uint16_t lo = v[0];
  for (size_t i = 1; i < n; ++i) lo = std::min(lo, v[i]);  // vectorised
  uint32_t hist[256] = {};
  for (size_t i = 0; i < n; ++i) ++hist[std::min<uint32_t>(uint32_t(v[i] - lo), 255)];
  size_t below = 0;
  for (uint32_t b = 0; b < 255; ++b) {
    below += hist[b];
    if (below >= rank) return uint16_t(lo + b);
  }
  std::copy(v, v + n, tmp);
  std::nth_element(tmp, tmp + rank - 1, tmp + n);
  return tmp[rank - 1];
}

// A strided sample of the full blocks that gives each query a starting threshold: m of its sums are expected
// below the final threshold (the ncand-th smallest sum of all), and the threshold starts just above the
// sample's rank-th smallest sum. The sums of all below it then number about rank / m · ncand, fewer than
// ncand only when about rank of m expected sample sums fall below the final threshold: rank is the smallest
// with P(Poisson(m) ≥ rank) ≤ kSampleMiss (m = 2: 7, 4: 11, 8: 17, 16: 28, 32: 47), and a query that misses
// is scanned again without it. m (2 to 32) minimises the estimated instructions: the sample's sums,
// m·ntotal/ncand of them at ≈ 0.3·nsq + 3 each (kernel and insertion), against the keys collected,
// rank/m·ncand at ≈ 30 each (extraction, cut, padding). Without the sample the threshold tightens from
// nothing and lets ≈ 2·ncand·(1 + ln(ntotal / ncand)) through, with a cut every ncand or so. At most 1/8 of
// the blocks are sampled (else no sampling: k = 1, tiny sets).
constexpr double kSampleMiss = 0.005;

struct SamplePlan {
  size_t nblocks = 0;  // sampled blocks (0: no sampling)
  size_t rank = 0;
  double expected = 0;  // rank / m: sums collected per candidate kept
  // The j-th sampled block of the full ones: strided, centred in its stride.
  size_t block(size_t j, size_t ntotal) const {
    const size_t nfull = ntotal / detail::kFastScanBlock;
    return (2 * j + 1) * nfull / (2 * nblocks);
  }
};

// The smallest rank with P(Poisson(m) ≥ rank) = 1 − Σ_{i < rank} e^−m m^i / i! ≤ kSampleMiss.
size_t poisson_rank(double m) {
  double term = std::exp(-m), cdf = term;
  size_t rank = 1;
  while (1.0 - cdf > kSampleMiss) {
    term *= m / double(rank);
    cdf += term;
    ++rank;
  }
  return rank;
}

SamplePlan sample_plan(size_t ntotal, size_t ncand, size_t nsq) {
  SamplePlan p;
  const size_t nfull = ntotal / detail::kFastScanBlock;
  if (ncand == 0 || nfull == 0) return p;
  double best = 0;
  for (const double target : {2.0, 4.0, 8.0, 16.0, 32.0}) {
    const size_t nb = size_t(std::ceil(target * double(ntotal) / double(ncand) / double(detail::kFastScanBlock)));
    if (nb * 8 > nfull) break;
    const double m = double(ncand) * double(nb * detail::kFastScanBlock) / double(ntotal);
    const size_t rank = poisson_rank(m);
    if (rank >= nb * detail::kFastScanBlock) continue;
    const double cost = double(nb * detail::kFastScanBlock) * (0.3 * double(nsq) + 3) + double(rank) / m * double(ncand) * 30;
    if (p.nblocks == 0 || cost < best) {
      best = cost;
      p.nblocks = nb;
      p.rank = rank;
      p.expected = double(rank) / m;
    }
  }
  return p;
}

}  // namespace

void IndexAdditiveQuantizerFastScan::quantized_tables(const float* query, uint8_t* lut8, float* scale,
                                                      float* bias) const {
  check_codec();
  TESSERA_CHECK_ARG(norm_scale_ >= 1, "quantized_tables: the norm scale is set at the first add (or set_norm_scale)");
  std::vector<float> lut(M_ * kKsub), tables(nsq_ * kKsub);
  aq_->compute_LUT(1, query, lut.data());
  float_tables(lut.data(), tables.data());
  detail::fast_scan_quantize_tables(tables.data(), nsq_, nsq_ - M_, float(norm_scale_), lut8, scale, bias);
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
  // The norm tables are summed apart and multiplied by the norm scale, unless it is 1: then they are plain.
  const size_t nscaled = norm_scale_ > 1 ? nsq_ - M_ : 0, block_bytes = nsq_ * detail::kFastScanGroupBytes;
  const size_t nblocks = blocks_.size() / std::max<size_t>(1, block_bytes);
  const uint16_t ns16 = uint16_t(std::max(norm_scale_, 1));

  // L2: the decoded norm of every 8-bit norm code (nibbles M and M + 1 of a code, low first), as the flat
  // index reads it.
  std::vector<float> norm_table;
  if (!ip && rerank_factor_) {
    norm_table.resize(256);
    for (uint64_t c = 0; c < 256; ++c) norm_table[c] = aq_->decode_norm(c);
  }
  // Many candidates (sample_plan): a strided sample of the blocks, whose sums give each query a starting
  // threshold.
  const SamplePlan plan = sample_plan(ntotal_, ncand, nsq_);
  std::vector<uint8_t> sample(plan.nblocks * block_bytes);
  for (size_t j = 0; j < plan.nblocks; ++j)
    std::memcpy(sample.data() + j * block_bytes, blocks_.data() + plan.block(j, ntotal_) * block_bytes, block_bytes);
  // uint8 sums hold the distance (minus ‖q‖² for L2; negated for inner product) to within
  // (M + 2·norm_scale)/2 units of 1/scale (each entry rounded to nearest): one more unit for the rounding of
  // the tables' own arithmetic.
  const double err_units = 0.5 * double(M_ + (nsq_ - M_) * size_t(ns16)) + 1.0;

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
      // A sampled starting threshold lets about plan.expected·ncand through: room for a quarter more.
      const size_t cap = std::max<size_t>(2 * ncand, size_t(std::ceil(1.25 * plan.expected * double(ncand)))) +
                         2 * detail::kFastScanBlock;
      std::vector<float> tables;
      std::vector<uint8_t> lut8;
      std::vector<uint64_t> keys, tmp;
      std::vector<uint16_t> sample_sums;
      std::vector<uint16_t> smallest;
      std::vector<std::pair<float, int64_t>> ranked;
      std::vector<float> sums;
      std::vector<uint64_t> dkeys;
      catcher.run([&] {
        sums.resize(ncand);
        dkeys.resize(ncand);  // one of the two is used (packed or not)
        ranked.resize(ncand);
        tables.resize(nsq_ * kKsub);
        lut8.resize(group * nsq_ * kKsub);
        keys.resize(group * cap);
        tmp.resize(cap);
        sample_sums.resize(plan.nblocks * detail::kFastScanBlock);
        smallest.resize(plan.nblocks * detail::kFastScanBlock);
      });
      // The best ncand by (uint16 sum, label) of the queries fq[0, nf): labels rise along the scan, so a sum
      // equal to the worst kept one loses, and only sums below it are collected.
      const auto scan = [&](detail::FastScanQuery* fq, size_t nf) {
        for (size_t blk = 0; blk < nblocks;) {
          blk += detail::fast_scan_collect(blocks_.data() + blk * block_bytes, nblocks - blk, nsq_, nscaled, ns16, fq,
                                           nf, blk * detail::kFastScanBlock, cap);
          for (size_t i = 0; i < nf; ++i)
            if (fq[i].n + detail::kFastScanBlock > cap) {
              if (blk * detail::kFastScanBlock > ntotal_) drop_padding(fq[i].keys, &fq[i].n, ntotal_);
              fq[i].threshold = cut_keys(fq[i].keys, &fq[i].n, ncand, fq[i].threshold, cap, tmp.data());
            }
        }
      };
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t g = 0; g < (ptrdiff_t)ngroups; ++g) {
        catcher.run([&] {
          const size_t g0 = size_t(g) * group, ng = std::min(group, nb - g0);
          detail::FastScanQuery fq[detail::kFastScanMaxQueries];
          float scale[detail::kFastScanMaxQueries], bias[detail::kFastScanMaxQueries], mag[detail::kFastScanMaxQueries];
          for (size_t i = 0; i < ng; ++i) {
            uint8_t* l8 = lut8.data() + i * nsq_ * kKsub;
            float_tables(LUT.data() + (g0 + i) * total, tables.data());
            detail::fast_scan_quantize_tables(tables.data(), nsq_, nscaled, float(ns16), l8, &scale[i], &bias[i], &mag[i]);
            uint32_t start = 1u << 16;
            if (plan.nblocks) {
              // Start at the sample's rank-th smallest sum (+1: sums equal to it are collected): below it
              // about rank / m · ncand sums of all, and at least ncand but for a rare miss, re-scanned.
              detail::fast_scan_blocks(sample.data(), plan.nblocks, nsq_, nscaled, ns16, l8, sample_sums.data());
              start = uint32_t(nth_smallest(sample_sums.data(), sample_sums.size(), plan.rank, smallest.data())) + 1;
            }
            fq[i] = {l8, start, keys.data() + i * cap, 0};
          }
          scan(fq, ng);
          for (size_t i = 0; i < ng; ++i) {
            const size_t qi = g0 + i;
            const float* lut = LUT.data() + qi * total;
            uint64_t* qkeys = fq[i].keys;
            drop_padding(qkeys, &fq[i].n, ntotal_);
            if (fq[i].n < ncand && plan.nblocks) {  // the sampled threshold was too low (no cut happened): again
              fq[i].threshold = 1u << 16;
              fq[i].n = 0;
              scan(&fq[i], 1);
              drop_padding(qkeys, &fq[i].n, ntotal_);
            }
            // The best ncand in (sum, label) order: the first `kept` re-scored, then those of the rest that can
            // still enter the top k, a prefix since their sums rise.
            const size_t n = std::min(fq[i].n, ncand);
            uint64_t* best = tmp.data();
            best_sorted(qkeys, fq[i].n, n, fq[i].threshold, best);
            float qnorm = 0;  // ‖q‖², added last as the flat index does
            if (!ip) {
              const float* qv = q.row(b0 + qi);
              for (size_t j = 0; j < d; ++j) qnorm += qv[j] * qv[j];
            }
            // Labels below 2^32: each result as one integer, (distance in smaller-is-better orientation as an
            // order-preserving uint32 << 32) | label, sorted as integers (the same order; finite distances, −0
            // made +0, which compares equal to it). Else (distance, label) pairs.
            const bool packed = ntotal_ <= (uint64_t(1) << 32);
            size_t nr = n;  // results: dkeys or ranked [0, nr)
            if (rerank_factor_) {
              // The flat index's arithmetic: Σ_m LUT in float for m = 0..M−1, then norm − 2Σ + ‖q‖² (L2). First
              // the best `kept` keys; of the others only those whose uint8 sum, less its rounding error, could
              // still beat the worst of those (the k-th distance can only fall): the others cannot enter the
              // top k, so the result is that of re-scoring all ncand.
              const size_t first = std::min(kept, n);
              rescore(best, first, lut, qnorm, norm_table.data(), sums.data(), dkeys.data(), ranked.data());
              nr = first;
              if (n > first) {
                double dk;  // the worst of the first, as a distance (inner product: negated)
                uint64_t worst_key = 0;
                if (packed) {
                  worst_key = *std::max_element(dkeys.data(), dkeys.data() + first);
                  const float w = key_distance(worst_key);
                  dk = ip ? double(w) : double(w) - double(qnorm);
                } else {
                  float worst_kept = ranked[0].first;
                  for (size_t j = 1; j < first; ++j)
                    worst_kept = ip ? std::min(worst_kept, ranked[j].first) : std::max(worst_kept, ranked[j].first);
                  dk = ip ? -double(worst_kept) : double(worst_kept) - double(qnorm);
                }
                const double margin = 1e-5 * (std::abs(dk) + double(qnorm) + std::abs(double(bias[i])) + double(mag[i]));
                const double lim = (dk - double(bias[i]) + margin) * double(scale[i]) + err_units;
                size_t m = first;
                while (m < n && double(detail::fast_scan_key_sum(best[m])) <= lim) ++m;
                rescore(best + first, m - first, lut, qnorm, norm_table.data(), sums.data(), dkeys.data() + first,
                        ranked.data() + first);
                nr = m;
                if (packed) {  // only those beating the worst of the first can enter the top k: fewer to select from
                  nr = first;
                  for (size_t j = first; j < m; ++j) {
                    const uint64_t key = dkeys[j];
                    dkeys[nr] = key;
                    nr += key < worst_key;
                  }
                }
              }
            } else {
              for (size_t j = 0; j < n; ++j) {
                const float est = float(detail::fast_scan_key_sum(best[j])) / scale[i] + bias[i];
                const uint64_t label = detail::fast_scan_key_label(best[j]);
                if (packed) dkeys[j] = distance_key(ip ? est : est + qnorm, label);
                else ranked[j] = {ip ? -est : est + qnorm, int64_t(label)};
              }
            }
            // The first `kept` in order: the rest (re-ranking's extra candidates) need no order.
            float* dq = distances + (b0 + qi) * k;
            int64_t* lq = labels + (b0 + qi) * k;
            const size_t nk = std::min(kept, nr);
            if (packed) {
              if (nr > kept) std::nth_element(dkeys.begin(), dkeys.begin() + kept, dkeys.begin() + nr);
              std::sort(dkeys.begin(), dkeys.begin() + nk);
              for (size_t j = 0; j < nk; ++j) {
                const float v = key_distance(dkeys[j]);
                dq[j] = ip ? 0.0f - v : v;  // 0 − v: +0 stays +0
                lq[j] = int64_t(dkeys[j] & 0xffffffffu);
              }
            } else {
              const auto by_distance = [&](auto better) {
                if (nr > kept) std::nth_element(ranked.begin(), ranked.begin() + kept, ranked.begin() + nr, better);
                std::sort(ranked.begin(), ranked.begin() + nk, better);
              };
              if (ip) by_distance(Better<float, true>());
              else by_distance(Better<float, false>());
              for (size_t j = 0; j < nk; ++j) {
                dq[j] = ranked[j].first;
                lq[j] = ranked[j].second;
              }
            }
            for (size_t j = nk; j < k; ++j) {
              dq[j] = worst;
              lq[j] = -1;
            }
          }
        });
      }
    }
    catcher.rethrow();
  }
}

// The exact distances of the candidates keys[0, n): the flat index's arithmetic, Σ_m LUT in float for
// m = 0..M−1 (detail::fast_scan_code_sums), then (L2) norm − 2Σ + ‖q‖²; as distance_key's integers to
// dkeys[0, n) when labels fit 32 bits (ntotal ≤ 2^32), else as (distance, label) to ranked[0, n) (inner
// product: the product itself). sums: n floats of scratch.
void IndexAdditiveQuantizerFastScan::rescore(const uint64_t* keys, size_t n, const float* lut, float qnorm,
                                             const float* norm_table, float* sums, uint64_t* dkeys,
                                             std::pair<float, int64_t>* ranked) const {
  const bool ip = metric_ == MetricType::inner_product, packed = ntotal_ <= (uint64_t(1) << 32);
  for (size_t j = 0; j < n; ++j)
    __builtin_prefetch(codes_.data() + size_t(detail::fast_scan_key_label(keys[j])) * code_size_);
  detail::fast_scan_code_sums(codes_.data(), code_size_, M_, keys, n, lut, sums);
  if (ip) {
    for (size_t j = 0; j < n; ++j) {
      const uint64_t label = detail::fast_scan_key_label(keys[j]);
      if (packed) dkeys[j] = distance_key(-sums[j], label);
      else ranked[j] = {sums[j], int64_t(label)};
    }
    return;
  }
  // Locals: the stores through dkeys (uint64_t, the type of size_t) could alias the members.
  const uint8_t* codes = codes_.data();
  const size_t M = M_, code_size = code_size_;
  const auto norm_code = [&](uint64_t label) {
    const uint8_t* code = codes + size_t(label) * code_size;
    return M % 2 ? size_t(nibble(code, M) | (nibble(code, M + 1) << 4)) : size_t(code[M / 2]);
  };
  if (packed) {
    for (size_t j = 0; j < n; ++j) {
      const uint64_t label = detail::fast_scan_key_label(keys[j]);
      dkeys[j] = distance_key(norm_table[norm_code(label)] - 2 * sums[j] + qnorm, label);
    }
  } else {
    for (size_t j = 0; j < n; ++j) {
      const uint64_t label = detail::fast_scan_key_label(keys[j]);
      ranked[j] = {norm_table[norm_code(label)] - 2 * sums[j] + qnorm, int64_t(label)};
    }
  }
}

}  // namespace tessera
