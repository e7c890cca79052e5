#include "tessera/index/index_ivf_additive_quantizer.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/blas.h"
#include "core/parallel.h"
#include "index/additive_scan.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/core/distances.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"

namespace tessera {

namespace {

constexpr size_t kTrainRowsPerList = 256;  // faiss's max_points_per_centroid
constexpr int kCoarseIterations = 20;
constexpr size_t kAddChunk = size_t(1) << 14;  // rows coded between interrupt checks

// rows × d residuals x_i − c_{assign_i}.
FloatMatrix residuals(MatrixView<const float> x, size_t i0, size_t rows, const FloatMatrix& centroids,
                      const int32_t* assign) {
  FloatMatrix r(rows, x.cols);
  for (size_t i = 0; i < rows; ++i) {
    const float* xi = x.row(i0 + i);
    const float* c = centroids.row(size_t(assign[i0 + i]));
    for (size_t j = 0; j < x.cols; ++j) r(i, j) = xi[j] - c[j];
  }
  return r;
}

// ‖c_{assign_i} + r̂_i‖² of n unpacked codes.
std::vector<float> full_norms(const AdditiveQuantizer& aq, size_t n, const int32_t* codes, const FloatMatrix& centroids,
                              const int32_t* assign) {
  const size_t d = aq.dim();
  std::vector<float> rec(n * d), norms(n);
  aq.decode_unpacked(n, codes, rec.data());
  for (size_t i = 0; i < n; ++i) {
    const float* c = centroids.row(size_t(assign[i]));
    double s = 0;
    for (size_t j = 0; j < d; ++j) {
      const double v = double(rec[i * d + j]) + c[j];
      s += v * v;
    }
    norms[i] = float(s);
  }
  return norms;
}

}  // namespace

IndexIVFAdditiveQuantizer::IndexIVFAdditiveQuantizer(std::shared_ptr<AdditiveQuantizer> aq, size_t nlist,
                                                     MetricType metric)
    : aq_(std::move(aq)), nlist_(nlist), metric_(metric), lists_(nlist) {
  TESSERA_CHECK_ARG(aq_, "IndexIVFAdditiveQuantizer needs a quantizer (got none)");
  TESSERA_CHECK_ARG(nlist >= 1, "nlist must be at least 1");
  TESSERA_CHECK_ARG(metric == MetricType::L2 || metric == MetricType::inner_product,
                    "metric " << int(metric) << " is not supported: expected L2 or inner product");
}

bool IndexIVFAdditiveQuantizer::caches_norms() const {
  const SearchType st = aq_->search_type();
  return metric_ == MetricType::L2 && (st == SearchType::ST_decompress || st == SearchType::ST_norm_from_LUT);
}

void IndexIVFAdditiveQuantizer::check_ready(const char* what) const {
  TESSERA_CHECK_ARG(trained_, what << " needs a trained index: call train() or set_centroids() first");
  TESSERA_CHECK_ARG(aq_->is_trained(), what << " needs a trained quantizer: call train() first");
}

void IndexIVFAdditiveQuantizer::train(MatrixView<const float> x) {
  TESSERA_CHECK_ARG(ntotal_ == 0, "the index already holds " << ntotal_ << " vectors: its lists cannot change now");
  TESSERA_CHECK_ARG(x.cols == dim(), "dimension mismatch: training data has " << x.cols << " columns, the index "
                                                                               << dim());
  TESSERA_CHECK_ARG(x.rows >= nlist_, "training needs at least nlist = " << nlist_ << " vectors, got " << x.rows);
  check_finite(x, "training data");
  KMeansParams p;
  p.k = nlist_;
  p.n_init = 1;
  p.max_iter = kCoarseIterations;
  p.max_train_points = kTrainRowsPerList * nlist_ < x.rows ? kTrainRowsPerList * nlist_ : 0;
  FloatMatrix centroids = kmeans(x, p).centroids;
  if (!aq_->is_trained()) {
    std::vector<int32_t> assign(x.rows);
    nearest_centroids(x, centroids.view(), assign.data(), nullptr);
    check_interrupt();
    const FloatMatrix r = residuals(x, 0, x.rows, centroids, assign.data());
    aq_->train(r.view());
    // The stored norm is that of centroid + reconstruction: fit the norm encoding to those, not to ‖r̂‖².
    if (search_type_trains_norm(aq_->search_type())) {
      std::vector<int32_t> codes(x.rows * aq_->num_codebooks());
      aq_->encode(r.view(), codes.data());
      const std::vector<float> norms = full_norms(*aq_, x.rows, codes.data(), centroids, assign.data());
      aq_->train_norm(x.rows, norms.data());
    }
  }
  centroids_ = std::move(centroids);
  trained_ = true;
}

void IndexIVFAdditiveQuantizer::set_centroids(MatrixView<const float> c) {
  TESSERA_CHECK_ARG(ntotal_ == 0, "the index already holds " << ntotal_ << " vectors: its lists cannot change now");
  TESSERA_CHECK_ARG(c.rows == nlist_ && c.cols == dim(), "centroids must be nlist × d = " << nlist_ << " × " << dim()
                                                                                         << ", got " << c.rows << " × "
                                                                                         << c.cols);
  check_finite(c, "centroids");
  centroids_ = FloatMatrix(nlist_, dim());
  for (size_t l = 0; l < nlist_; ++l) std::copy(c.row(l), c.row(l) + dim(), centroids_.row(l));
  trained_ = true;
}

void IndexIVFAdditiveQuantizer::add(MatrixView<const float> x) {
  check_ready("add");
  TESSERA_CHECK_ARG(x.cols == dim(), "dimension mismatch: the vectors to add have " << x.cols << " columns, the index "
                                                                                    << dim());
  check_finite(x, "the vectors to add");
  const size_t n = x.rows, M = aq_->num_codebooks(), cs = aq_->code_size(), d = dim();
  std::vector<int32_t> assign(n);
  if (n) nearest_centroids(x, centroids_.view(), assign.data(), nullptr);
  // Code everything first (an error or Ctrl-C leaves the index as it was), then file the codes.
  std::vector<uint8_t> packed(n * cs);
  std::vector<float> norms(caches_norms() ? n : 0);
  for (size_t i0 = 0; i0 < n; i0 += kAddChunk) {
    check_interrupt();
    const size_t rows = std::min(kAddChunk, n - i0);
    const FloatMatrix r = residuals(x, i0, rows, centroids_, assign.data());
    std::vector<int32_t> codes(rows * M);
    aq_->encode(r.view(), codes.data());
    FloatMatrix cents(rows, d);  // each row's centroid: the stored norm is ‖c + r̂‖²
    for (size_t i = 0; i < rows; ++i) std::memcpy(cents.row(i), centroids_.row(size_t(assign[i0 + i])), d * 4);
    aq_->pack_codes(rows, codes.data(), packed.data() + i0 * cs, -1, nullptr,
                    search_type_stores_norm(aq_->search_type()) ? cents.data() : nullptr);
    if (caches_norms()) {
      const std::vector<float> nr = full_norms(*aq_, rows, codes.data(), centroids_, assign.data() + i0);
      std::copy(nr.begin(), nr.end(), norms.begin() + i0);
    }
  }
  std::vector<int64_t> ids(n);
  std::iota(ids.begin(), ids.end(), int64_t(ntotal_));
  for (size_t i = 0; i < n; ++i) {
    List& L = lists_[size_t(assign[i])];
    L.ids.push_back(ids[i]);
    L.codes.insert(L.codes.end(), packed.begin() + i * cs, packed.begin() + (i + 1) * cs);
    if (caches_norms()) L.norms.push_back(norms[i]);
  }
  ntotal_ += n;
}

void IndexIVFAdditiveQuantizer::add_preassigned(size_t n, const uint8_t* codes, const int32_t* list_nos,
                                                const int64_t* ids) {
  check_ready("add_preassigned");
  if (n == 0) return;
  TESSERA_CHECK_ARG(codes && list_nos, "add_preassigned: no codes or list numbers for " << n << " vectors");
  for (size_t i = 0; i < n; ++i)
    TESSERA_CHECK_ARG(list_nos[i] >= 0 && size_t(list_nos[i]) < nlist_,
                      "add_preassigned: vector " << i << " goes to list " << list_nos[i] << ", the index has "
                                                 << nlist_);
  detail::check_code_indices(*aq_, n, codes);
  const size_t cs = aq_->code_size();
  std::vector<float> norms;
  if (caches_norms()) {
    std::vector<int32_t> unpacked(n * aq_->num_codebooks());
    aq_->unpack_codes(codes, n, unpacked.data());
    norms = full_norms(*aq_, n, unpacked.data(), centroids_, list_nos);
  }
  for (size_t i = 0; i < n; ++i) {
    List& L = lists_[size_t(list_nos[i])];
    L.ids.push_back(ids ? ids[i] : int64_t(ntotal_ + i));
    L.codes.insert(L.codes.end(), codes + i * cs, codes + (i + 1) * cs);
    if (caches_norms()) L.norms.push_back(norms[i]);
  }
  ntotal_ += n;
}

void IndexIVFAdditiveQuantizer::search(MatrixView<const float> q, size_t k, size_t nprobe, float* distances,
                                       int64_t* labels) const {
  check_ready("search");
  TESSERA_CHECK_ARG(k >= 1, "search: k must be at least 1");
  TESSERA_CHECK_ARG(nprobe >= 1, "search: nprobe must be at least 1");
  TESSERA_CHECK_ARG(q.cols == dim(), "dimension mismatch: the queries have " << q.cols << " columns, the index has "
                                                                             << dim());
  check_finite(q, "the queries");
  const size_t nq = q.rows, d = dim(), total = aq_->total_codebook_size(), probes = std::min(nprobe, nlist_);
  const bool ip = metric_ == MetricType::inner_product;
  const bool nonorm = aq_->search_type() == SearchType::ST_LUT_nonorm;
  const float worst = ip ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  const size_t kept = std::min(k, ntotal_);
  detail::ScanInput base = detail::make_scan_input(*aq_, ip);
  std::vector<float> cnorms(nlist_);
  row_norms_sqr(centroids_.view(), cnorms.data());

  // Query blocks: one GEMM gives the block's tables and one its ⟨q, c_l⟩ (at most 2^22 floats each); the
  // block size does not depend on the thread count.
  const size_t block = std::max<size_t>(1, std::min(nq, (size_t(1) << 22) / std::max(total, nlist_)));
  std::vector<float> LUT(block * total), qc(block * nlist_), qbuf;
  for (size_t b0 = 0; b0 < nq; b0 += block) {
    check_interrupt();
    const size_t nb = std::min(block, nq - b0);
    const float* qb = q.row(b0);
    size_t ldq = q.stride;
    if (!q.contiguous() && nb > 1) {
      qbuf.resize(nb * d);
      for (size_t i = 0; i < nb; ++i) std::memcpy(qbuf.data() + i * d, q.row(b0 + i), d * sizeof(float));
      qb = qbuf.data();
      ldq = d;
    }
    aq_->compute_LUT(nb, qb, LUT.data(), 1.0f, int64_t(total));
    detail::gemm_abt(nb, nlist_, d, 1.0f, qb, ldq, centroids_.data(), d, 0.0f, qc.data(), nlist_);
    detail::ExceptionCatcher catcher;
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      detail::Heap heap;
      std::vector<std::pair<float, int32_t>> order(nlist_);
      catcher.run([&] { heap.reserve(kept); });
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t qi = 0; qi < (ptrdiff_t)nb; ++qi) {
        catcher.run([&] {
          const float* qrow = q.row(b0 + qi);
          const float* qcr = qc.data() + qi * nlist_;
          float qnorm = 0;
          if (!ip)
            for (size_t j = 0; j < d; ++j) qnorm += qrow[j] * qrow[j];
          // The nprobe nearest lists: smallest ‖c‖² − 2⟨q, c⟩ (L2) or largest ⟨q, c⟩, ties to the lower list.
          for (size_t l = 0; l < nlist_; ++l) order[l] = {ip ? -qcr[l] : cnorms[l] - 2 * qcr[l], int32_t(l)};
          std::partial_sort(order.begin(), order.begin() + probes, order.end());
          heap.clear();
          detail::ScanInput S = base;
          const float* lut = LUT.data() + qi * total;
          for (size_t p = 0; p < probes; ++p) {
            const List& L = lists_[size_t(order[p].second)];
            if (L.ids.empty()) continue;
            S.codes = L.codes.data();
            S.ids = L.ids.data();
            S.n = L.ids.size();
            S.norms = L.norms.data();
            const float qcl = qcr[order[p].second];
            if (ip) detail::scan<true>(S, lut, qcl, 0, S.n, kept, heap);
            else detail::scan<false>(S, lut, qnorm - (nonorm ? 1.0f : 2.0f) * qcl, 0, S.n, kept, heap);
          }
          float* dq = distances + (b0 + qi) * k;
          int64_t* lq = labels + (b0 + qi) * k;
          if (ip) detail::emit<true>(heap, k, worst, dq, lq);
          else detail::emit<false>(heap, k, worst, dq, lq);
        });
      }
    }
    catcher.rethrow();
  }
}

void IndexIVFAdditiveQuantizer::reconstruct(int64_t id, float* out) const {
  check_ready("reconstruct");
  for (size_t l = 0; l < nlist_; ++l) {
    const auto& ids = lists_[l].ids;
    const auto it = std::find(ids.begin(), ids.end(), id);
    if (it == ids.end()) continue;
    const size_t i = size_t(it - ids.begin());
    aq_->decode_packed(lists_[l].codes.data() + i * aq_->code_size(), 1, out);
    for (size_t j = 0; j < dim(); ++j) out[j] += centroids_(l, j);
    return;
  }
  TESSERA_THROW_ARG("reconstruct: no stored vector has label " << id);
}

}  // namespace tessera
