#include "tessera/index/index_additive_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/parallel.h"
#include "index/additive_scan.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"

namespace tessera {

using detail::Heap;
using detail::ScanInput;
using detail::emit;
using detail::scan;

IndexAdditiveQuantizer::IndexAdditiveQuantizer(std::shared_ptr<const AdditiveQuantizer> aq, MetricType metric)
    : aq_(std::move(aq)), metric_(metric) {
  TESSERA_CHECK_ARG(aq_, "IndexAdditiveQuantizer needs a quantizer (got none)");
  TESSERA_CHECK_ARG(aq_->is_trained(), "IndexAdditiveQuantizer needs a trained quantizer: train it first");
  TESSERA_CHECK_ARG(metric == MetricType::L2 || metric == MetricType::inner_product,
                    "metric " << int(metric) << " is not supported: expected L2 or inner product");
  code_size_ = aq_->code_size();
  search_type_ = aq_->search_type();
  TESSERA_CHECK_ARG(search_type_ != SearchType::ST_norm_from_LUT || metric_ != MetricType::L2 ||
                        aq_->has_codebook_tables(),
                    "L2 search with ST_norm_from_LUT needs the quantizer's codebook tables: call "
                    "compute_codebook_tables() first");
}

void IndexAdditiveQuantizer::check_codec() const {
  TESSERA_CHECK_ARG(aq_->is_trained() && aq_->code_size() == code_size_ && aq_->search_type() == search_type_,
                    "the index's quantizer changed after the index was built (it stores "
                        << code_size_ << "-byte codes of search type " << search_type_name(search_type_)
                        << ", the quantizer now has " << aq_->code_size() << "-byte codes of "
                        << search_type_name(aq_->search_type()) << "): build a new index");
}

void IndexAdditiveQuantizer::cache_norms(size_t from) {
  if (metric_ != MetricType::L2) return;
  if (search_type_ != SearchType::ST_decompress && search_type_ != SearchType::ST_norm_from_LUT) return;
  // The codec's L2 distance against an all-zero table is its norm term: ‖x'‖² for both types.
  const std::vector<float> zero(aq_->total_codebook_size(), 0.0f);
  norms_.resize(ntotal_);
  detail::ExceptionCatcher catcher;
  const uint8_t* codes = codes_.data();
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = (ptrdiff_t)from; i < (ptrdiff_t)ntotal_; ++i)
    catcher.run([&] { norms_[i] = aq_->compute_1_distance_LUT(codes + i * code_size_, zero.data(), false); });
  catcher.rethrow();
}

void IndexAdditiveQuantizer::add(MatrixView<const float> x) {
  check_codec();
  TESSERA_CHECK_ARG(x.cols == dim(), "dimension mismatch: the vectors to add have " << x.cols
                                                                                   << " columns, the index has " << dim());
  check_finite(x, "the vectors to add");
  // Encode into a separate buffer, in chunks (bounded temporaries, interrupt checks): an error or an
  // interrupt leaves the index as it was.
  std::vector<uint8_t> fresh(x.rows * code_size_);
  constexpr size_t kChunk = size_t(1) << 16;
  for (size_t i0 = 0; i0 < x.rows; i0 += kChunk) {
    check_interrupt();
    const size_t n = std::min(kChunk, x.rows - i0);
    aq_->encode_packed(MatrixView<const float>(x.row(i0), n, x.cols, x.stride), fresh.data() + i0 * code_size_);
  }
  add_codes(x.rows, fresh.data());
}

void IndexAdditiveQuantizer::add_codes(size_t n, const uint8_t* codes) {
  check_codec();
  if (n == 0) return;
  TESSERA_CHECK_ARG(codes, "add_codes: no code buffer for " << n << " codes");
  detail::check_code_indices(*aq_, n, codes);
  const size_t from = ntotal_;
  codes_.insert(codes_.end(), codes, codes + n * code_size_);
  ntotal_ += n;
  try {
    cache_norms(from);
  } catch (...) {
    codes_.resize(from * code_size_);
    norms_.resize(std::min(norms_.size(), from));
    ntotal_ = from;
    throw;
  }
}

void IndexAdditiveQuantizer::reset() {
  codes_.clear();
  codes_.shrink_to_fit();
  norms_.clear();
  norms_.shrink_to_fit();
  ntotal_ = 0;
}

void IndexAdditiveQuantizer::reconstruct_n(size_t i0, size_t n, float* out) const {
  check_codec();
  TESSERA_CHECK_ARG(i0 <= ntotal_ && n <= ntotal_ - i0,
                    "reconstruct_n: vectors [" << i0 << ", " << i0 + n << ") are not all stored (ntotal " << ntotal_
                                               << ")");
  if (n) aq_->decode_packed(codes_.data() + i0 * code_size_, n, out);
}

void IndexAdditiveQuantizer::search(MatrixView<const float> q, size_t k, float* distances, int64_t* labels) const {
  check_codec();
  TESSERA_CHECK_ARG(k >= 1, "search: k must be at least 1");
  TESSERA_CHECK_ARG(q.cols == dim(), "dimension mismatch: the queries have " << q.cols << " columns, the index has "
                                                                               << dim());
  check_finite(q, "the queries");
  const size_t nq = q.rows, d = dim(), total = aq_->total_codebook_size();
  const bool ip = metric_ == MetricType::inner_product;
  const float worst = ip ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  const size_t kept = std::min(k, ntotal_);

  ScanInput S = detail::make_scan_input(*aq_, ip);
  S.codes = codes_.data();
  S.n = ntotal_;
  S.norms = norms_.data();

  // Queries go in blocks: one GEMM gives the block's tables (at most 2^22 floats), and a block scans about
  // 2^24 codes between interrupt checks. The block size does not depend on the thread count.
  const size_t by_lut = std::max<size_t>(1, (size_t(1) << 22) / total);
  const size_t by_work = std::max<size_t>(16, (size_t(1) << 24) / std::max<size_t>(1, ntotal_));
  const size_t block = std::max<size_t>(1, std::min({by_lut, by_work, nq}));
  const int nthreads = ::tessera::num_threads();
  constexpr size_t kSplitCodes = size_t(1) << 14;  // codes per share when threads split one query
  std::vector<float> LUT(block * total), qbuf;
  for (size_t b0 = 0; b0 < nq; b0 += block) {
    check_interrupt();
    const size_t nb = std::min(block, nq - b0);
    const float* qb = q.row(b0);
    if (!q.contiguous() && nb > 1) {  // compute_LUT wants dense rows
      qbuf.resize(nb * d);
      for (size_t i = 0; i < nb; ++i) std::memcpy(qbuf.data() + i * d, q.row(b0 + i), d * sizeof(float));
      qb = qbuf.data();
    }
    if (ntotal_) aq_->compute_LUT(nb, qb, LUT.data());
    auto query_norm = [&](size_t qi) {
      float qnorm = 0;  // ‖q‖², added last as faiss does
      if (!ip) {
        const float* qv = q.row(b0 + qi);
        for (size_t j = 0; j < d; ++j) qnorm += qv[j] * qv[j];
      }
      return qnorm;
    };
    detail::ExceptionCatcher catcher;
    if (nb >= size_t(nthreads) || ntotal_ < kSplitCodes) {
      // Threads take whole queries.
#pragma omp parallel num_threads(nthreads)
      {
        Heap heap;
        catcher.run([&] { heap.reserve(kept); });
#pragma omp for schedule(dynamic, 1)
        for (ptrdiff_t qi = 0; qi < (ptrdiff_t)nb; ++qi) {
          catcher.run([&] {
            const float* lut = LUT.data() + qi * total;
            heap.clear();
            if (ip) scan<true>(S, lut, 0.0f, 0, ntotal_, kept, heap);
            else scan<false>(S, lut, query_norm(qi), 0, ntotal_, kept, heap);
            if (ip) emit<true>(heap, k, worst, distances + (b0 + qi) * k, labels + (b0 + qi) * k);
            else emit<false>(heap, k, worst, distances + (b0 + qi) * k, labels + (b0 + qi) * k);
          });
        }
      }
    } else {
      // Fewer queries than threads: threads share each query's codes, each keeps its own top-k, and the
      // union's top-k is the same whatever the split (the order is total).
      for (size_t qi = 0; qi < nb; ++qi) {
        const float* lut = LUT.data() + qi * total;
        const float qnorm = query_norm(qi);
        Heap merged;
#pragma omp parallel num_threads(nthreads)
        {
          Heap heap;
          catcher.run([&] { heap.reserve(kept); });
#pragma omp for schedule(static)
          for (ptrdiff_t c = 0; c < (ptrdiff_t)((ntotal_ + kSplitCodes - 1) / kSplitCodes); ++c) {
            catcher.run([&] {
              const size_t i0 = size_t(c) * kSplitCodes, i1 = std::min(ntotal_, i0 + kSplitCodes);
              if (ip) scan<true>(S, lut, 0.0f, i0, i1, kept, heap);
              else scan<false>(S, lut, qnorm, i0, i1, kept, heap);
            });
          }
#pragma omp critical(tessera_index_merge)
          catcher.run([&] { merged.insert(merged.end(), heap.begin(), heap.end()); });
        }
        catcher.rethrow();
        if (ip) emit<true>(merged, k, worst, distances + (b0 + qi) * k, labels + (b0 + qi) * k);
        else emit<false>(merged, k, worst, distances + (b0 + qi) * k, labels + (b0 + qi) * k);
      }
    }
    catcher.rethrow();
  }
}

}  // namespace tessera
