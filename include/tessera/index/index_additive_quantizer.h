// A flat (exhaustive) index over the packed codes of any trained additive quantizer (residual or LSQ), as
// faiss's IndexAdditiveQuantizer: add() encodes and stores codes in the codec's own layout (norm bits
// included), search() computes each query's lookup table once and scans every code with the codec's search
// type. The codec is shared, not copied: a codec is not an index, and one trained model may serve several
// indexes. Changing the shared codec's search type or codebooks afterwards invalidates the stored codes (as in
// faiss); the index refuses to run when the code size or search type no longer match what it stored.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/core/metric.h"
#include "tessera/quant/additive_quantizer.h"

namespace tessera {

class IndexAdditiveQuantizer {
 public:
  /// aq: a trained additive quantizer (InvalidArgument if null or untrained).
  explicit IndexAdditiveQuantizer(std::shared_ptr<const AdditiveQuantizer> aq, MetricType metric = MetricType::L2);

  size_t dim() const { return aq_->dim(); }
  MetricType metric_type() const { return metric_; }
  /// Vectors stored.
  size_t ntotal() const { return ntotal_; }
  /// Bytes per stored code (the codec's code_size when the index was built).
  size_t code_size() const { return code_size_; }
  const AdditiveQuantizer& quantizer() const { return *aq_; }
  const std::shared_ptr<const AdditiveQuantizer>& quantizer_ptr() const { return aq_; }
  /// The stored codes: ntotal × code_size bytes, row i is vector i (its label).
  const std::vector<uint8_t>& codes() const { return codes_; }

  /// Encode x (n × d, finite) and append the codes; labels continue from ntotal.
  void add(MatrixView<const float> x);
  /// Append n packed codes (n × code_size, the codec's layout, e.g. from encode_packed); their code indices
  /// are checked to be in range.
  void add_codes(size_t n, const uint8_t* codes);
  /// Forget every stored code (the codec is kept).
  void reset();

  /// The k nearest stored vectors of each query. q: nq × d (finite); distances, labels: nq × k.
  /// L2: ‖q‖² + the search type's LUT distance (ST_norm_float: exactly ‖q − x'‖²; ST_LUT_nonorm: ‖q‖² − ⟨q, x'⟩,
  /// see docs/additive-quantizer.md), ascending. Inner product: ⟨q, x'⟩, descending. Equal distances go to
  /// the lower label. Rows past ntotal get label −1 and distance +inf (L2) / −inf (inner product).
  /// Results do not depend on the thread count.
  void search(MatrixView<const float> q, size_t k, float* distances, int64_t* labels) const;

  /// Reconstructions of stored vectors [i0, i0 + n): out: n × d.
  void reconstruct_n(size_t i0, size_t n, float* out) const;

 private:
  void check_codec() const;
  /// L2 norm terms of codes [from, ntotal) when the search type makes them costly per query.
  void cache_norms(size_t from);

  std::shared_ptr<const AdditiveQuantizer> aq_;
  MetricType metric_;
  size_t code_size_;
  SearchType search_type_;
  size_t ntotal_ = 0;
  std::vector<uint8_t> codes_;  // ntotal × code_size
  // ST_decompress and ST_norm_from_LUT: ‖x'‖² of every stored code (query-independent; decoding or summing
  // M² cross products for every query and code would dominate the scan). Not stored in index files.
  std::vector<float> norms_;
};

}  // namespace tessera
