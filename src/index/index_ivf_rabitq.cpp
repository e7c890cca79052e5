#include "tessera/index/index_ivf_rabitq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <utility>

#include "core/simd.h"
#include "core/blas.h"
#include "index/rabitq_scan_kernel.h"
#include "io/checked_container.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/core/distances.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"
#include "tessera/io/atomic_file.h"
#include "tessera/quant/rabitq_codes.h"

namespace tessera {

namespace {

constexpr const char* kType = "index_ivf_rabitq";
constexpr uint32_t kContainerVersion = 2;
// Index format 2 adds "keep_vectors" and, when true, the raw vectors after the lists; format 3 (written only
// for an index with ids of its own) adds "ids": true and every row's label (int64, in the order added) at the
// end. Formats 1 (no vectors) and 2 are still read, and an index without ids is still written as format 2.
constexpr int kIndexVersion = 3;
constexpr size_t kMaxHeader = size_t(1) << 24;
constexpr size_t kFixed = sizeof detail::kFileMagic + 4 + 8;
constexpr size_t kTrainRowsPerList = 256;  // faiss's max_points_per_centroid
constexpr int kCoarseIterations = 20;

constexpr size_t kBlock = 32;  // vectors per fast-scan block
constexpr size_t kGroup = 16;  // bytes per table in a block
constexpr size_t kQueriesPerGemm = 32;  // queries ranked against the centroids by one GEMM

// A candidate: key = the estimate (L2) or its negation (inner product), so that smaller is better for both;
// ties go to the lower label (a total order).
struct Entry {
  float key;
  int64_t label;
  bool operator<(const Entry& o) const { return key != o.key ? key < o.key : label < o.label; }
};

// The cap best entries so far (a max-heap: the worst on top).
class TopK {
 public:
  void reset(size_t cap) { cap_ = cap, h_.clear(), h_.reserve(cap); }
  bool full() const { return h_.size() == cap_; }
  float worst() const { return h_.front().key; }
  // The stage-1 threshold: keys at or above it cannot enter.
  float threshold() const { return full() ? worst() : std::numeric_limits<float>::infinity(); }
  // Whether e would enter (ties at the threshold go to the lower label).
  bool admits(const Entry& e) const { return !full() || e < h_.front(); }
  void push(const Entry& e) {
    if (h_.size() < cap_) {
      h_.push_back(e);
      std::push_heap(h_.begin(), h_.end());
    } else if (e < h_.front()) {
      // Replace the top and sift it down.
      const size_t n = h_.size();
      size_t i = 0;
      for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h_[c] < h_[c + 1]) ++c;
        if (!(e < h_[c])) break;
        h_[i] = h_[c];
        i = c;
      }
      h_[i] = e;
    }
  }
  std::vector<Entry>& entries() { return h_; }

 private:
  std::vector<Entry> h_;
  size_t cap_ = 0;
};

// Cosine: the rows scaled to unit norm with the codec's arithmetic (1/‖x‖ in double, then rounded to float), so
// the index's unit vectors are bit for bit those the codec codes; a zero row stays zero. zero (optional): 1 per
// zero row. A non-finite row is refused (its norm would be NaN or inf); first_row numbers the rows in messages.
FloatMatrix unit_rows(MatrixView<const float> x, std::vector<char>* zero, const char* what, size_t first_row = 0) {
  FloatMatrix out(x.rows, x.cols);
  if (zero) zero->assign(x.rows, 0);
  for (size_t i = 0; i < x.rows; ++i) {
    const float* v = x.row(i);
    double n2 = 0;
    for (size_t j = 0; j < x.cols; ++j) n2 += double(v[j]) * v[j];
    TESSERA_CHECK_ARG(std::isfinite(n2), what << " has a non-finite value in row " << first_row + i
                                               << ": every value must be a finite number");
    const double scale = n2 > 0 ? 1.0 / std::sqrt(n2) : 0.0;
    if (zero) (*zero)[i] = n2 > 0 ? 0 : 1;
    for (size_t j = 0; j < x.cols; ++j) out(i, j) = float(v[j] * scale);
  }
  return out;
}

// Stage-1 factors of a zero vector under cosine: an estimate so large that it always reaches stage 2, where its
// similarity is set to 0 (its code, the residual −c, would estimate ⟨0, q⟩ only approximately).
constexpr float kZeroVectorAdd = std::numeric_limits<float>::max();

}  // namespace

IndexIVFRaBitQ::IndexIVFRaBitQ(size_t d, size_t nlist, RabitqParams params, bool keep_vectors)
    : d_(d), nlist_(nlist), codec_(d, params), keep_vectors_(keep_vectors), lists_(nlist) {
  TESSERA_CHECK_ARG(nlist >= 1, "nlist must be at least 1");
  width_ = detail::rabitq_code_width(codec_.params().bits);
  packed_bytes_ = detail::rabitq_packed_bytes(d_, width_);
}

void IndexIVFRaBitQ::check_can_add() const {
  TESSERA_CHECK_ARG(ntotal_ == 0, "the index already holds " << ntotal_ << " vectors: its lists cannot change now");
}

void IndexIVFRaBitQ::set_centroid_norms() {
  const size_t padded = (nlist_ + 15) / 16 * 16;
  centroid_norms_.assign(padded, 0.0f);
  for (size_t l = 0; l < nlist_; ++l) centroid_norms_[l] = detail::rabitq_dot(centroids_.row(l), centroids_.row(l), d_);
  centroid_panels_.resize(padded * d_);
  detail::rabitq_pack_centroid_panels(centroids_.data(), nlist_, d_, centroid_panels_.data());
}

void IndexIVFRaBitQ::train(MatrixView<const float> x) {
  check_can_add();
  TESSERA_CHECK_ARG(x.cols == d_, "dimension mismatch: training data has " << x.cols << " columns, the index " << d_);
  TESSERA_CHECK_ARG(x.rows >= nlist_, "training needs at least nlist = " << nlist_ << " vectors, got " << x.rows);
  check_finite(x, "training data");
  FloatMatrix units;
  if (metric_type() == MetricType::cosine) {
    // Cosine is the inner product of unit vectors: the lists are k-means of the unit vectors (their centroids
    // are means of unit vectors, inside the ball), so that residuals from them are short. Zero vectors have no
    // direction and are left out.
    std::vector<char> zero;
    FloatMatrix all = unit_rows(x, &zero, "training data");
    const size_t nonzero = size_t(std::count(zero.begin(), zero.end(), 0));
    TESSERA_CHECK_ARG(nonzero >= nlist_, "training needs at least nlist = " << nlist_ << " nonzero vectors, got "
                                                                            << nonzero);
    units = FloatMatrix(nonzero, d_);
    for (size_t i = 0, r = 0; i < x.rows; ++i)
      if (!zero[i]) std::copy(all.row(i), all.row(i) + d_, units.row(r++));
    x = std::as_const(units).view();
    // The codec's centroid: the mean of the unit vectors, summed as the inner-product codec sums its rows (so
    // that cosine equals "ip" on the same unit vectors, bit for bit).
    std::vector<double> mean(d_, 0.0);
    for (size_t i = 0; i < x.rows; ++i)
      for (size_t j = 0; j < d_; ++j) mean[j] += x(i, j);
    std::vector<float> centroid(d_);
    for (size_t j = 0; j < d_; ++j) centroid[j] = float(mean[j] / double(x.rows));
    const RabitqParams& p = codec_.params();
    codec_.restore(RandomRotation(d_, p.rotation, p.seed), std::move(centroid));
  } else {
    codec_.train(x);  // the rotation (and the data's mean, the one list's centroid when nlist = 1)
  }
  centroids_ = FloatMatrix(nlist_, d_);
  if (nlist_ == 1) {
    std::copy(codec_.centroid().begin(), codec_.centroid().end(), centroids_.data());
  } else {
    KMeansParams p;
    p.k = nlist_;
    p.n_init = 1;
    p.max_iter = kCoarseIterations;
    p.max_train_points = kTrainRowsPerList * nlist_ < x.rows ? kTrainRowsPerList * nlist_ : 0;
    centroids_ = kmeans(x, p).centroids;
  }
  set_centroid_norms();
  trained_ = true;
}

void IndexIVFRaBitQ::set_centroids(MatrixView<const float> c) {
  check_can_add();
  TESSERA_CHECK_ARG(c.rows == nlist_ && c.cols == d_, "centroids must be nlist × d = " << nlist_ << " × " << d_
                                                                                    << ", got " << c.rows << " × "
                                                                                    << c.cols);
  check_finite(c, "centroids");
  codec_.train(c);  // the rotation; the codec's own centroid is not used by the lists
  centroids_ = FloatMatrix(nlist_, d_);
  for (size_t l = 0; l < nlist_; ++l) std::copy(c.row(l), c.row(l) + d_, centroids_.row(l));
  set_centroid_norms();
  trained_ = true;
}

// Packed codec codes → the scan's layouts. The B-bit integer of coordinate j is u = (top bit ≪ (B − 1)) | ex.
void IndexIVFRaBitQ::append(List& list, const uint8_t* codes, size_t n, const int64_t* ids) {
  const size_t cs = codec_.code_size(), bits = size_t(codec_.params().bits), sign_bytes = (d_ + 7) / 8;
  const size_t ex_bytes = (d_ * (bits - 1) + 7) / 8, nsq = (d_ + 3) / 4, ntables = (nsq + 1) / 2 * 2;
  const size_t old = list.ids.size(), total = old + n, nblocks = (total + kBlock - 1) / kBlock;
  list.ids.insert(list.ids.end(), ids, ids + n);
  list.blocks.resize(nblocks * ntables * kGroup, 0);
  list.block_factors.resize(nblocks * 3 * kBlock, 0.0f);
  list.packed.resize(total * packed_bytes_, 0);
  list.factors.resize(total * 4);
  std::vector<uint16_t> u(d_);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* code = codes + i * cs;
    const size_t v = old + i;
    // The lower B − 1 bits of coordinate j start at bit j·(B − 1) of the ex field, least significant first: at
    // most 8 bits from a bit offset below 8, so within the 16 bits read there (the code's factors follow the ex
    // field, so the second byte is inside the code).
    const uint8_t* ex_field = code + sign_bytes;
    const uint32_t ex_mask = (1u << (bits - 1)) - 1;
    for (size_t j = 0; j < d_; ++j) {
      const size_t bit = j * (bits - 1);
      const uint32_t window = uint32_t(ex_field[bit >> 3]) | uint32_t(ex_field[(bit >> 3) + 1]) << 8;
      const uint32_t ex = (window >> (bit & 7)) & ex_mask;
      u[j] = uint16_t((((code[j >> 3] >> (j & 7)) & 1u) << (bits - 1)) | ex);
    }
    detail::rabitq_pack_code(u.data(), d_, width_, list.packed.data() + v * packed_bytes_);
    // Nibble t of vector v holds the top bits of dimensions 4t … 4t + 3 (bit b = dimension 4t + b).
    uint8_t* block = list.blocks.data() + (v / kBlock) * ntables * kGroup;
    for (size_t t = 0; t < nsq; ++t) {
      uint8_t nibble = 0;
      for (size_t b = 0; b < 4 && 4 * t + b < d_; ++b) nibble |= uint8_t((u[4 * t + b] >> (bits - 1)) << b);
      block[t * kGroup + (v % kBlock & 15)] |= uint8_t(v % kBlock < 16 ? nibble : nibble << 4);
    }
    // Factors: ‖r‖, then (add, rescale, error) of the 1-bit code and, for B > 1, of the full code.
    float f[7];
    std::memcpy(f, code + sign_bytes + ex_bytes, (bits > 1 ? 7 : 4) * sizeof(float));
    float* bf = list.block_factors.data() + (v / kBlock) * 3 * kBlock + v % kBlock;
    bf[0] = f[1], bf[kBlock] = f[2], bf[2 * kBlock] = f[3];
    const float* full = f + (bits > 1 ? 4 : 1);
    float* vf = list.factors.data() + v * 4;
    vf[0] = full[0], vf[1] = full[1], vf[2] = f[0], vf[3] = full[2];
    if (metric_type() == MetricType::cosine && f[0] < 0) {  // the codec's mark of a zero vector (‖r‖ = −1)
      bf[0] = kZeroVectorAdd, bf[kBlock] = 0, bf[2 * kBlock] = 0;
      vf[0] = 0, vf[1] = 0, vf[3] = 0;
    }
  }
}

void IndexIVFRaBitQ::code_of(const List& list, size_t v, uint8_t* code) const {
  const size_t cs = codec_.code_size(), bits = size_t(codec_.params().bits), sign_bytes = (d_ + 7) / 8;
  const size_t ex_bytes = (d_ * (bits - 1) + 7) / 8;
  std::memset(code, 0, cs);
  const uint8_t* packed = list.packed.data() + v * packed_bytes_;
  for (size_t j = 0; j < d_; ++j) {
    const uint32_t u = detail::rabitq_unpack_value(packed, j, width_);
    code[j >> 3] |= uint8_t((u >> (bits - 1)) << (j & 7));
    for (size_t b = 0; b + 1 < bits; ++b) {
      const size_t bit = j * (bits - 1) + b;
      code[sign_bytes + (bit >> 3)] |= uint8_t(((u >> b) & 1) << (bit & 7));
    }
  }
  const float* bf = list.block_factors.data() + (v / kBlock) * 3 * kBlock + v % kBlock;
  const float* vf = list.factors.data() + v * 4;
  float f[7] = {vf[2], bf[0], bf[kBlock], bf[2 * kBlock], vf[0], vf[1], vf[3]};
  if (vf[2] < 0) f[1] = 0;  // a zero vector (cosine): its code is the mark ‖r‖ = −1, every factor 0
  std::memcpy(code + sign_bytes + ex_bytes, f, (bits > 1 ? 7 : 4) * sizeof(float));
}

namespace {

// The query's 4-bit tables for the top-bit scan: table t, entry j = Σ of q'_{4t+b} over the set bits b of j,
// quantised to uint8 with one shared scale and per-table offsets: ⟨top bits, q'⟩ ≈ sum / scale + offset, off
// by at most `rounding` (half a step per table). lo: scratch of nsq floats (each table's smallest sum).
struct TopBitTables {
  float scale = 1, offset = 0, rounding = 0;
};

TopBitTables top_bit_tables(const float* q, size_t d, float* lo, uint8_t* lut) {
  const size_t nsq = (d + 3) / 4;
  float widest = 0;
  double offset = 0;
  for (size_t t = 0; t < nsq; ++t) {
    float c[4];
    for (size_t b = 0; b < 4; ++b) c[b] = 4 * t + b < d ? q[4 * t + b] : 0.0f;
    // The smallest entry is the sum of the negative coordinates, the largest that of the positive ones.
    lo[t] = ((std::min(c[0], 0.0f) + std::min(c[1], 0.0f)) + std::min(c[2], 0.0f)) + std::min(c[3], 0.0f);
    const float hi = ((std::max(c[0], 0.0f) + std::max(c[1], 0.0f)) + std::max(c[2], 0.0f)) + std::max(c[3], 0.0f);
    offset += lo[t];
    widest = std::max(widest, hi - lo[t]);
  }
  TopBitTables out;
  out.scale = widest > 0 ? 255.0f / widest : 1.0f;
  detail::rabitq_top_bit_lut(q, d, out.scale, lo, lut);
  out.offset = float(offset);
  out.rounding = float(0.5 * double(nsq) / out.scale) * 1.001f;
  return out;
}

}  // namespace

void IndexIVFRaBitQ::check_rows(MatrixView<const float> x, const char* what) const {
  TESSERA_CHECK_ARG(trained_, "the index is not trained: call train or set_centroids first");
  TESSERA_CHECK_ARG(x.cols == d_, "dimension mismatch: " << what << " have " << x.cols << " columns, the index "
                                                         << d_);
  check_finite(x, what);
}

void IndexIVFRaBitQ::assign(MatrixView<const float> x, int32_t* lists) const {
  check_rows(x, "vectors to assign");
  assign_rows(x, lists);
}

void IndexIVFRaBitQ::assign_rows(MatrixView<const float> x, int32_t* lists) const {
  if (x.rows == 0) return;
  if (metric_type() == MetricType::cosine) {
    const FloatMatrix units = unit_rows(x, nullptr, "vectors to assign");
    nearest_centroids(units.view(), centroids_.view(), lists, nullptr, nullptr);
  } else {
    nearest_centroids(x, centroids_.view(), lists, nullptr, nullptr);
  }
}

void IndexIVFRaBitQ::add(MatrixView<const float> x) {
  check_rows(x, "vectors to add");
  if (x.rows == 0) return;
  std::vector<int32_t> lists(x.rows);
  assign_rows(x, lists.data());
  add_rows(x, lists.data());
}

void IndexIVFRaBitQ::add(MatrixView<const float> x, const int32_t* lists) {
  check_rows(x, "vectors to add");
  if (x.rows == 0) return;
  TESSERA_CHECK_ARG(lists != nullptr, "add: no list ids given");
  for (size_t i = 0; i < x.rows; ++i)
    TESSERA_CHECK_ARG(lists[i] >= 0 && size_t(lists[i]) < nlist_,
                      "add: list id " << lists[i] << " of row " << i << " is outside 0.." << nlist_ - 1);
  add_rows(x, lists);
}

void IndexIVFRaBitQ::add_with_ids(MatrixView<const float> x, const int64_t* ids, const int32_t* lists) {
  check_rows(x, "vectors to add");
  if (x.rows == 0) return;
  TESSERA_CHECK_ARG(ids != nullptr, "add_with_ids: no ids given");
  for (size_t i = 0; i < x.rows; ++i)
    TESSERA_CHECK_ARG(ids[i] >= 0, "add_with_ids: id " << ids[i] << " of row " << i
                                                       << " is negative (ids must be ≥ 0; −1 marks a missing result)");
  std::vector<int32_t> nearest;
  if (lists == nullptr) {
    nearest.resize(x.rows);
    assign_rows(x, nearest.data());
    lists = nearest.data();
  } else {
    for (size_t i = 0; i < x.rows; ++i)
      TESSERA_CHECK_ARG(lists[i] >= 0 && size_t(lists[i]) < nlist_,
                        "add: list id " << lists[i] << " of row " << i << " is outside 0.." << nlist_ - 1);
  }
  // The rows before keep their positional labels.
  std::vector<int64_t> labels = ids_;
  if (labels.empty()) {
    labels.resize(ntotal_);
    for (size_t i = 0; i < ntotal_; ++i) labels[i] = int64_t(i);
  }
  labels.insert(labels.end(), ids, ids + x.rows);
  add_rows(x, lists);
  ids_ = std::move(labels);
}

void IndexIVFRaBitQ::add_rows(MatrixView<const float> x, const int32_t* lists) {
  // Cosine: codes and kept vectors are those of the unit vectors (the codec normalises the rows it codes the
  // same way); the codec marks a zero vector.
  const bool cosine = metric_type() == MetricType::cosine;
  FloatMatrix units;
  if (cosine) units = unit_rows(x, nullptr, "vectors to add");
  const MatrixView<const float> placed = cosine ? std::as_const(units).view() : x;
  std::vector<std::vector<size_t>> members(nlist_);
  for (size_t i = 0; i < x.rows; ++i) members[size_t(lists[i])].push_back(i);
  const size_t cs = codec_.code_size();
  for (size_t l = 0; l < nlist_; ++l) {
    if (members[l].empty()) continue;
    check_interrupt();
    FloatMatrix rows(members[l].size(), d_);
    std::vector<int64_t> ids(members[l].size());
    for (size_t t = 0; t < members[l].size(); ++t) {
      std::copy(x.row(members[l][t]), x.row(members[l][t]) + d_, rows.row(t));
      ids[t] = int64_t(ntotal_ + members[l][t]);
    }
    std::vector<uint8_t> codes(rows.rows() * cs);
    codec_.encode_with_centroid(rows.view(), centroids_.row(l), codes.data());
    append(lists_[l], codes.data(), rows.rows(), ids.data());
  }
  if (!ids_.empty())  // rows added without ids after some with: positional labels
    for (size_t i = 0; i < x.rows; ++i) ids_.push_back(int64_t(ntotal_ + i));
  if (keep_vectors_) {
    vectors_.resize((ntotal_ + x.rows) * d_);
    for (size_t i = 0; i < x.rows; ++i)
      std::copy(placed.row(i), placed.row(i) + d_, vectors_.data() + (ntotal_ + i) * d_);
  }
  ntotal_ += x.rows;
}

void IndexIVFRaBitQ::search(MatrixView<const float> q, size_t k, size_t nprobe, float* distances, int64_t* labels,
                            bool single_stage, size_t rerank) const {
  TESSERA_CHECK_ARG(trained_, "the index is not trained: call train or set_centroids first");
  TESSERA_CHECK_ARG(q.cols == d_, "dimension mismatch: queries have " << q.cols << " columns, the index " << d_);
  TESSERA_CHECK_ARG(k >= 1, "search: k must be at least 1");
  TESSERA_CHECK_ARG(ntotal_ > 0, "search: the index holds no vectors yet: add some first");
  TESSERA_CHECK_ARG(k <= ntotal_, "search: k = " << k << " is more than the " << ntotal_ << " vectors in the index");
  check_finite(q, "queries");
  TESSERA_CHECK_ARG(nprobe >= 1, "search: nprobe must be at least 1");
  TESSERA_CHECK_ARG(rerank == 0 || keep_vectors_,
                    "search: rerank > 0 needs the raw vectors, and this index was built without them "
                    "(keep_vectors = false)");
  nprobe = std::min(nprobe, nlist_);
  const bool l2 = metric_type() == MetricType::L2, cosine = metric_type() == MetricType::cosine;
  const int bits = codec_.params().bits;
  const float cb = -float((1 << bits) - 1) / 2.0f;
  const size_t nsq = (d_ + 3) / 4, npairs = (nsq + 1) / 2, dpad = detail::rabitq_padded_dim(d_);
  // Re-ranking by the error bound: the heap holds exact values, and a vector gets its exact value only when its
  // full estimate's interval reaches the k-th best of those so far.
  const bool by_bound = rerank == kRerankByBound;
  // Candidates kept: k, or the max(R, k) to re-rank (no more than there are vectors).
  const size_t cap = rerank == 0 || by_bound ? k : std::max<size_t>(1, std::min(std::max(rerank, k), ntotal_));
  // The uint16 sums of the top-bit scan hold 255 per table: beyond 257 tables (d > 1028) they could wrap.
  const bool two_stage = !single_stage && nsq <= 257;
  const detail::RabitqCodeDot code_dot = detail::rabitq_code_dot_kernel(width_);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::exception_ptr error;
  // Blocks of queries, so that Ctrl-C is noticed between them (never inside a parallel region); inside, chunks
  // of kQueriesPerGemm queries (fixed, whatever the thread count) are ranked against the centroids by a GEMM.
  constexpr size_t kQueriesPerBlock = 64;
  for (size_t b0 = 0; b0 < q.rows && !error; b0 += kQueriesPerBlock) {
    check_interrupt();
    const size_t b1 = std::min(q.rows, b0 + kQueriesPerBlock);
    const size_t nchunks = (b1 - b0 + kQueriesPerGemm - 1) / kQueriesPerGemm;
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<float> dots(kQueriesPerGemm * nlist_), rotated(dpad, 0.0f), scratch(nsq * 16), keys(kBlock);
      std::vector<uint8_t> lut(npairs * 32, 0);  // an odd table count is padded with a zero table
      std::vector<char> zero_query;
      FloatMatrix units;  // cosine: the chunk's unit queries
      std::vector<uint16_t> sums;
      std::vector<std::pair<float, uint32_t>> probes;
      TopK top;
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t c = 0; c < ptrdiff_t(nchunks); ++c) {
        try {
          const size_t q0 = b0 + size_t(c) * kQueriesPerGemm, m = std::min(kQueriesPerGemm, b1 - q0);
          // Cosine: from here on the query is its unit vector, and everything is the inner product's.
          if (cosine) units = unit_rows(q.rows_slice(q0, m), &zero_query, "queries", q0);
          const MatrixView<const float> chunk = cosine ? std::as_const(units).view() : q.rows_slice(q0, m);
          if (nlist_ > 1)
            detail::rabitq_rank_centroids(chunk.row(0), chunk.stride, m, centroid_panels_.data(), nlist_, d_,
                                          centroid_norms_.data(), l2, dots.data(), nlist_);
          for (size_t qi = q0; qi < q0 + m; ++qi) {
            const float* qv = chunk.row(qi - q0);
            // A zero query has cosine 0 with every vector: all tie, the lowest labels of the probed lists win.
            const bool zero = cosine && zero_query[qi - q0];
            // The nprobe nearest centroids, nearest first (ties: lower list); ‖q‖² is left out of the L2 key.
            probes.clear();
            if (nlist_ == 1) {
              probes.emplace_back(0.0f, 0);
            } else {
              const float* key = dots.data() + (qi - q0) * nlist_;
              // A max-heap of the nprobe best (key, list); lists come in increasing order, so once the heap
              // is full only a strictly smaller key can enter (found sixteen keys at a time).
              for (size_t l = 0; l < nprobe; ++l) probes.emplace_back(key[l], uint32_t(l));
              std::make_heap(probes.begin(), probes.end());
              float worst = probes.front().first;
              for (size_t l = nprobe; l < nlist_; ++l) {
                l += detail::rabitq_next_below(key + l, nlist_ - l, worst);
                if (l == nlist_) break;
                std::pop_heap(probes.begin(), probes.end());
                probes.back() = {key[l], uint32_t(l)};
                std::push_heap(probes.begin(), probes.end());
                worst = probes.front().first;
              }
              std::sort_heap(probes.begin(), probes.end());
            }
            // The query side: q' = Pq (zero-padded to dpad), Σq', the top-bit tables.
            codec_.rotation().apply(1, qv, rotated.data());
            const float qsum = detail::rabitq_sum(rotated.data(), d_);
            // A non-finite coordinate makes Σq' non-finite (the rotation mixes every coordinate into others).
            if (!std::isfinite(qsum)) {  // the queries are finite (checked above): an overflow
              TESSERA_THROW_ARG("query " << qi << " overflows in the rotation: its values are too large");
            }
            const float shift = cb * qsum;
            TopBitTables tables;
            if (two_stage) tables = top_bit_tables(rotated.data(), d_, scratch.data(), lut.data());
            const float inv_scale = 1.0f / tables.scale, offset = tables.offset - 0.5f * qsum;
            top.reset(cap);
            for (const auto& probe : probes) {
              const size_t l = probe.second;
              const List& list = lists_[l];
              const size_t n = list.ids.size();
              if (n == 0) continue;
              const float* cv = centroids_.row(l);
              const float dist2 = detail::rabitq_l2sqr(qv, cv, d_);
              const float term = l2 ? dist2 : detail::rabitq_dot(qv, cv, d_), dist = std::sqrt(dist2);
              // Stage 1's interval: the 1-bit error bound (scaled by ‖q − c‖) plus the tables' rounding. At B = 1
              // the full estimate is the same 1-bit estimate with the float query, so only the rounding can
              // separate the two and the error bound is left out (the same results, far fewer survivors);
              // re-ranking by the bound compares with exact values and keeps it.
              const float stage1_reach = bits == 1 && !by_bound ? 0.0f : dist;
              auto full_estimate = [&](size_t i) {
                const float* f = list.factors.data() + 4 * i;
                float v = 0;  // cosine with a zero vector (f[2] = −1) or a zero query: 0 by definition
                if (!cosine || !(zero || f[2] < 0)) {
                  const float ip = code_dot(list.packed.data() + i * packed_bytes_, rotated.data(), dpad);
                  v = f[0] + term + f[1] * (ip + shift);
                }
                if (!by_bound) {
                  top.push({l2 ? std::max(0.0f, v) : -v, list.ids[i]});
                  return;
                }
                // The better end of the estimate's interval (error factor · ‖q − c‖) against the k-th exact value.
                const float reach = f[3] * dist;
                if (!top.admits({l2 ? v - reach : -(v + reach), list.ids[i]})) return;
                const float* x = vectors_.data() + size_t(list.ids[i]) * d_;
                top.push({l2 ? detail::rabitq_l2sqr(x, qv, d_) : -detail::rabitq_dot(x, qv, d_), list.ids[i]});
              };
              if (!two_stage || zero) {
                for (size_t i = 0; i < n; ++i) full_estimate(i);
                continue;
              }
              // Stage 1: ⟨top bits, q'⟩ for the whole list by the fast-scan kernel; the 1-bit estimate and its
              // bound decide which vectors the full code is read for (stage 2).
              const size_t nblocks = (n + kBlock - 1) / kBlock;
              sums.resize(nblocks * kBlock);
              detail::rabitq_fast_scan(list.blocks.data(), nblocks, npairs, lut.data(), sums.data());
              for (size_t b = 0; b < nblocks; ++b) {
                uint32_t mask = detail::rabitq_block_keys(sums.data() + b * kBlock,
                                                          list.block_factors.data() + b * 3 * kBlock, inv_scale,
                                                          offset, term, stage1_reach, tables.rounding, l2,
                                                          top.threshold(),
                                                          n - b * kBlock, keys.data());
                while (mask) {
                  const unsigned v = unsigned(__builtin_ctz(mask));
                  mask &= mask - 1;
                  if (keys[v] < top.threshold()) full_estimate(b * kBlock + v);
                }
              }
            }
            // Stage 3 (rerank): exact distances of the candidates from the raw vectors.
            std::vector<Entry>& found = top.entries();
            if (rerank > 0 && !by_bound) {
              // The raw vectors are scattered over memory: fetch a few candidates ahead.
              constexpr size_t kAhead = 4;
              auto prefetch = [&](size_t t) {
                const char* x = reinterpret_cast<const char*>(vectors_.data() + size_t(found[t].label) * d_);
                for (size_t o = 0; o < d_ * sizeof(float); o += 64) __builtin_prefetch(x + o);
              };
              for (size_t t = 0; t < std::min(kAhead, found.size()); ++t) prefetch(t);
              for (size_t t = 0; t < found.size(); ++t) {
                if (t + kAhead < found.size()) prefetch(t + kAhead);
                Entry& e = found[t];
                const float* x = vectors_.data() + size_t(e.label) * d_;
                e.key = l2 ? detail::rabitq_l2sqr(x, qv, d_) : -detail::rabitq_dot(x, qv, d_);
              }
            }
            std::sort(found.begin(), found.end());
            float* D = distances + qi * k;
            int64_t* I = labels + qi * k;
            const size_t got = std::min(k, found.size());
            for (size_t t = 0; t < got; ++t)
              D[t] = l2 ? found[t].key : -found[t].key, I[t] = ids_.empty() ? found[t].label : ids_[found[t].label];
            // Cosine values are reported within [−1, 1] (estimates and float sums can stray past; the order is
            // the unclamped one, so it stays the inner product's).
            if (cosine)
              for (size_t t = 0; t < got; ++t) D[t] = std::clamp(D[t], -1.0f, 1.0f);
            for (size_t t = got; t < k; ++t) D[t] = l2 ? kInf : -kInf, I[t] = -1;
          }
        } catch (...) {
#pragma omp critical
          if (!error) error = std::current_exception();
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// ---------------------------------------------------------------------------------------------- files
std::string IndexIVFRaBitQ::bytes() const {
  TESSERA_CHECK_ARG(trained_, "an untrained index cannot be saved: train it (or set_centroids) first");
  const RabitqParams& p = codec_.params();
  nlohmann::json h;
  h["type"] = kType;
  h["index_version"] = ids_.empty() ? 2 : kIndexVersion;
  if (!ids_.empty()) h["ids"] = true;
  h["dim"] = d_;
  h["nlist"] = nlist_;
  h["bits"] = p.bits;
  h["metric"] = metric_name(p.metric);
  h["rotation"] = rotation_kind_name(p.rotation);
  h["fast_quantization"] = p.fast_quantization;
  h["epsilon0"] = p.epsilon0;
  h["seed"] = p.seed;
  h["ntotal"] = ntotal_;
  h["code_size"] = codec_.code_size();
  h["keep_vectors"] = keep_vectors_;
  std::vector<size_t> sizes(nlist_);
  for (size_t l = 0; l < nlist_; ++l) sizes[l] = lists_[l].ids.size();
  h["list_sizes"] = sizes;
  const std::string header = h.dump();
  std::string out(detail::kFileMagic, sizeof detail::kFileMagic);
  detail::put<uint32_t>(out, kContainerVersion);
  detail::put<uint64_t>(out, header.size());
  out += header;
  auto floats = [&out](const float* v, size_t n) { out.append(reinterpret_cast<const char*>(v), n * sizeof(float)); };
  floats(codec_.rotation().parameters().data(), codec_.rotation().parameters().size());
  floats(codec_.centroid().data(), d_);
  floats(centroids_.data(), nlist_ * d_);
  std::vector<uint8_t> code(codec_.code_size());
  for (const List& list : lists_) {
    out.append(reinterpret_cast<const char*>(list.ids.data()), list.ids.size() * sizeof(int64_t));
    for (size_t i = 0; i < list.ids.size(); ++i) {
      code_of(list, i, code.data());
      out.append(reinterpret_cast<const char*>(code.data()), code.size());
    }
  }
  if (keep_vectors_) floats(vectors_.data(), ntotal_ * d_);
  out.append(reinterpret_cast<const char*>(ids_.data()), ids_.size() * sizeof(int64_t));
  detail::put<uint32_t>(out, detail::crc32_of(out.data(), out.size()));
  return out;
}

void IndexIVFRaBitQ::save(const std::string& path) const {
  const std::string b = bytes();
  AtomicFile f(path);
  f.write(b);
  f.commit();
}

IndexIVFRaBitQ IndexIVFRaBitQ::parse(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  TESSERA_CHECK_FORMAT(size >= sizeof detail::kFileMagic &&
                           std::memcmp(p, detail::kFileMagic, sizeof detail::kFileMagic) == 0,
                       "not a tessera index file (bad magic)");
  TESSERA_CHECK_FORMAT(size >= kFixed + 4, "truncated index file: " << size << " bytes");
  uint32_t version, stored_crc;
  uint64_t hlen;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&hlen, p + 12, 8);
  TESSERA_CHECK_FORMAT(hlen <= kMaxHeader && hlen <= size - kFixed - 4,
                       "truncated index file: header of " << hlen << " bytes does not fit in " << size << " bytes");
  std::memcpy(&stored_crc, p + size - 4, 4);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  TESSERA_CHECK_FORMAT(detail::crc32_of(p, size - 4) == stored_crc,
                       "index file is corrupted or truncated (checksum mismatch)");
#else
  (void)stored_crc;
#endif
  size_t d = 0, nlist = 0, ntotal = 0, code_size = 0;
  bool keep_vectors = false, has_ids = false;
  std::vector<size_t> sizes;
  RabitqParams params;
  try {
    const auto h = nlohmann::json::parse(p + kFixed, p + kFixed + hlen);
    const std::string type = h.at("type").get<std::string>();
    TESSERA_CHECK_FORMAT(type == kType, "this is a '" << type << "' file, not an IVF RaBitQ index ('" << kType << "')");
    const int index_version = h.at("index_version").get<int>();
    TESSERA_CHECK_FORMAT(version == kContainerVersion && index_version >= 1 && index_version <= kIndexVersion,
                         "IVF RaBitQ index format version " << h.at("index_version") << " is not supported");
    if (index_version >= 2) keep_vectors = h.at("keep_vectors").get<bool>();
    if (index_version >= 3) has_ids = h.at("ids").get<bool>();
    d = h.at("dim").get<size_t>();
    nlist = h.at("nlist").get<size_t>();
    params.bits = h.at("bits").get<int>();
    params.metric = parse_metric(h.at("metric").get<std::string>(), /*allow_cosine=*/true);
    params.rotation = parse_rotation_kind(h.at("rotation").get<std::string>());
    params.fast_quantization = h.at("fast_quantization").get<bool>();
    params.epsilon0 = h.at("epsilon0").get<double>();
    params.seed = h.at("seed").get<uint64_t>();
    ntotal = h.at("ntotal").get<size_t>();
    code_size = h.at("code_size").get<size_t>();
    sizes = h.at("list_sizes").get<std::vector<size_t>>();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index header is incomplete or invalid: " << e.what());
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index header: " << e.what());
  }
  TESSERA_CHECK_FORMAT(d >= 1 && d <= (size_t(1) << 20) && nlist >= 1 && nlist <= (size_t(1) << 24) &&
                           sizes.size() == nlist,
                       "IVF RaBitQ index header has implausible sizes (d " << d << ", nlist " << nlist << ")");
  TESSERA_CHECK_FORMAT(params.bits >= 1 && params.bits <= rabitq::kMaxBits,
                       "IVF RaBitQ index header: bits " << params.bits << " outside 1.." << rabitq::kMaxBits);
  // Sizes against the payload before anything is allocated.
  const size_t levels = params.bits > 1 ? 2 : 1;
  const size_t expected_code = (d + 7) / 8 + (d * size_t(params.bits - 1) + 7) / 8 + 4 * (1 + 3 * levels);
  TESSERA_CHECK_FORMAT(code_size == expected_code, "IVF RaBitQ index header: code size " << code_size
                                                                                         << " does not fit d and bits");
  const size_t nparams = params.rotation == RotationKind::dense ? d * d : 3 * d;
  const size_t payload = size - kFixed - hlen - 4;
  const size_t floats = nparams + d + nlist * d;
  const size_t per_vector = 8 + code_size + (keep_vectors ? 4 * d : 0) + (has_ids ? 8 : 0);
  TESSERA_CHECK_FORMAT(floats <= payload / 4 && ntotal <= (payload - floats * 4) / per_vector &&
                           payload == floats * 4 + ntotal * per_vector,
                       "IVF RaBitQ index payload is " << payload << " bytes, not what the header promises");
  size_t sum = 0;
  for (size_t s : sizes) {
    TESSERA_CHECK_FORMAT(s <= ntotal, "IVF RaBitQ index header: a list of " << s << " vectors in an index of " << ntotal);
    sum += s;
  }
  TESSERA_CHECK_FORMAT(sum == ntotal, "IVF RaBitQ index header: list sizes add up to " << sum << ", not " << ntotal);
  std::optional<IndexIVFRaBitQ> index;
  try {
    index.emplace(d, nlist, params, keep_vectors);
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index header: " << e.what());
  }
  const char* at = p + kFixed + hlen;
  auto read_floats = [&at](size_t n) {
    std::vector<float> v(n);
    std::memcpy(v.data(), at, n * 4);
    at += n * 4;
    return v;
  };
  std::vector<float> rotation = read_floats(nparams), mean = read_floats(d), centroids = read_floats(nlist * d);
  for (float v : mean) TESSERA_CHECK_FORMAT(std::isfinite(v), "IVF RaBitQ index: the codec's centroid is not finite");
  for (float v : centroids) TESSERA_CHECK_FORMAT(std::isfinite(v), "IVF RaBitQ index: a coarse centroid is not finite");
  try {
    index->codec_.restore(RandomRotation::from_parameters(d, params.rotation, std::move(rotation)), std::move(mean));
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index: " << e.what());
  }
  index->centroids_ = FloatMatrix(nlist, d);
  std::copy(centroids.begin(), centroids.end(), index->centroids_.data());
  index->set_centroid_norms();
  index->trained_ = true;
  for (size_t l = 0; l < nlist; ++l) {
    std::vector<int64_t> ids(sizes[l]);
    std::memcpy(ids.data(), at, sizes[l] * 8);
    at += sizes[l] * 8;
    for (int64_t id : ids)
      TESSERA_CHECK_FORMAT(id >= 0 && size_t(id) < ntotal, "IVF RaBitQ index: label " << id << " out of range");
    index->append(index->lists_[l], reinterpret_cast<const uint8_t*>(at), sizes[l], ids.data());
    at += sizes[l] * code_size;
  }
  if (keep_vectors) {
    index->vectors_ = read_floats(ntotal * d);
    for (float v : index->vectors_)
      TESSERA_CHECK_FORMAT(std::isfinite(v), "IVF RaBitQ index: a stored vector is not finite");
  }
  if (has_ids) {
    index->ids_.resize(ntotal);
    std::memcpy(index->ids_.data(), at, ntotal * 8);
    at += ntotal * 8;
    for (int64_t id : index->ids_) TESSERA_CHECK_FORMAT(id >= 0, "IVF RaBitQ index: a row's id " << id << " is negative");
  }
  index->ntotal_ = ntotal;
  return std::move(*index);
}

IndexIVFRaBitQ IndexIVFRaBitQ::load(const std::string& path) {
  const std::string data = read_file(path);
  return parse(data.data(), data.size());
}

}  // namespace tessera
