// The 4-bit fast-scan flat index over an additive quantizer (faiss's IndexAdditiveQuantizerFastScan,
// André et al., "Quicker ADC", TPAMI 2019, applied to additive codes): every codebook has 16 codewords, the
// codes are stored transposed in blocks of 32 vectors, and a query's float lookup tables are quantised to
// uint8 so that one byte shuffle looks up 16 vectors at once, summed in uint16. L2 needs a 2 × 4-bit norm
// (ST_norm_lsq2x4 / ST_norm_rq2x4): its two codes are scanned as two more tables. Inner product needs
// ST_LUT_nonorm. The uint8 sums only rank: by default the best rerank_factor · k of them are re-scored with
// the float tables, so the returned distances are exactly the flat index's. docs/additive-quantizer.md has
// the details and the differences from faiss.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/index/index_additive_quantizer.h"
#include "tessera/quant/additive_quantizer.h"

namespace tessera {

class IndexAdditiveQuantizerFastScan {
 public:
  /// aq: trained, every codebook of 16 codewords (nbits 4), search type ST_norm_lsq2x4 / ST_norm_rq2x4 for
  /// L2 or ST_LUT_nonorm for inner product; bbs: vectors per stored block, a positive multiple of 32.
  /// InvalidArgument otherwise.
  explicit IndexAdditiveQuantizerFastScan(std::shared_ptr<const AdditiveQuantizer> aq,
                                          MetricType metric = MetricType::L2, size_t bbs = 32);

  size_t dim() const { return aq_->dim(); }
  MetricType metric_type() const { return metric_; }
  size_t ntotal() const { return ntotal_; }
  size_t bbs() const { return bbs_; }
  /// Tables scanned per code: M, plus 2 for the norm (L2).
  size_t nsq() const { return nsq_; }
  /// Bytes per code in the codec's own packed layout (what codes() holds).
  size_t code_size() const { return code_size_; }
  const AdditiveQuantizer& quantizer() const { return *aq_; }
  const std::shared_ptr<const AdditiveQuantizer>& quantizer_ptr() const { return aq_; }
  /// The stored codes in the codec's layout: ntotal × code_size bytes (kept for re-ranking and files).
  const std::vector<uint8_t>& codes() const { return codes_; }

  /// L2: the integer factor the norm tables are divided by before uint8 quantisation (and their sums
  /// multiplied back by): the mean ratio of the norm tables' span to the inner-product tables' span over
  /// the first ≤ 65536 codes added (their reconstructions as queries), rounded, at least 1, capped so the
  /// uint16 sums cannot overflow. 0 until the first add; 1 for inner product.
  int norm_scale() const { return norm_scale_; }
  /// Fix the norm scale (≥ 1; e.g. from a file) instead of estimating it at the first add.
  void set_norm_scale(int s);

  /// Candidates re-scored with float tables: rerank_factor · k (0: return the uint8 ranking as is).
  size_t rerank_factor() const { return rerank_factor_; }
  void set_rerank_factor(size_t f) { rerank_factor_ = f; }

  /// Encode x (n × d, finite) and append; labels continue from ntotal.
  void add(MatrixView<const float> x);
  /// Append n packed codes in the codec's layout (n × code_size).
  void add_codes(size_t n, const uint8_t* codes);
  /// Forget every code (and the estimated norm scale).
  void reset();

  /// The k nearest stored vectors of each query. q: nq × d (finite); distances, labels: nq × k.
  /// With re-ranking, distances are the flat index's (L2: ‖q‖² + norm − 2⟨q, x'⟩; inner product ⟨q, x'⟩);
  /// without, the uint8 estimate of the same quantity. Ties go to the lower label; past ntotal, label −1
  /// and ±inf. Results do not depend on the thread count.
  void search(MatrixView<const float> q, size_t k, float* distances, int64_t* labels) const;

  /// The uint8 tables of one query and their decoding: lut8: nsq × 16; estimate = sum / scale + bias, where
  /// sum is what the kernel returns (norm tables weighted by norm_scale). Tables are oriented so that smaller
  /// is better (inner product: −LUT). For tests and benchmarks.
  void quantized_tables(const float* query, uint8_t* lut8, float* scale, float* bias) const;
  /// The stored blocks: ⌈ntotal / bbs⌉·bbs/32 blocks of nsq × 16 bytes (the kernel's layout).
  const std::vector<uint8_t>& blocks() const { return blocks_; }

 private:
  void check_codec() const;
  void estimate_norm_scale(size_t n, const uint8_t* codes);
  void float_tables(const float* lut, float* tables) const;  // lut: total (alpha 1) → nsq × 16, smaller better
  void rescore(const uint64_t* keys, size_t n, const float* lut, float qnorm, const float* norm_table,
               float* sums, uint64_t* dkeys, std::pair<float, int64_t>* ranked) const;

  std::shared_ptr<const AdditiveQuantizer> aq_;
  MetricType metric_;
  size_t bbs_, M_, nsq_, code_size_;
  SearchType search_type_;
  int norm_scale_ = 0;
  size_t rerank_factor_ = 4;
  size_t ntotal_ = 0;
  std::vector<uint8_t> codes_;   // ntotal × code_size, the codec's layout
  std::vector<uint8_t> blocks_;  // the kernel's layout, padded with code 0 to a multiple of bbs
};

}  // namespace tessera
