// An inverted-file index over any additive quantizer (residual or LSQ): coarse k-means lists, each vector's
// residual from its list's centroid coded by the quantizer, queries scanning the nprobe nearest lists with one
// lookup table each (as faiss's IndexIVFAdditiveQuantizer, IndexIVFResidualQuantizer,
// IndexIVFLocalSearchQuantizer).
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

/// The stored vector x ≈ c_l + r̂ (c_l its list's centroid, r̂ the quantizer's reconstruction of x − c_l), so
///   L2: ‖q − x'‖² = ‖q‖² − 2⟨q, c_l⟩ − 2⟨q, r̂⟩ + ‖c_l + r̂‖²,   inner product: ⟨q, x'⟩ = ⟨q, c_l⟩ + ⟨q, r̂⟩.
/// ⟨q, r̂⟩ comes from one lookup table per query (not per list); ⟨q, c_l⟩ once per probed list; the norm
/// ‖c_l + r̂‖² as the quantizer's search type says: stored in the code (ST_norm_*: the norm of the whole
/// reconstruction, centroid included, and the norm encoding is trained on those norms), or computed once at
/// add time and kept in memory (ST_decompress and ST_norm_from_LUT alike: the latter's codebook tables only
/// give ‖r̂‖², which is not what the IVF needs). ST_LUT_nonorm ranks by −⟨q, x'⟩ (‖q‖² − ⟨q, x'⟩), as in the
/// flat index. Equal distances go to the lower label; results do not depend on the thread count.
///
/// The quantizer is shared: train() trains it on the training residuals when it is untrained (and then
/// fits its norm encoding to ‖c_l + r̂‖²); a trained one is used as it is.
class IndexIVFAdditiveQuantizer {
 public:
  IndexIVFAdditiveQuantizer(std::shared_ptr<AdditiveQuantizer> aq, size_t nlist, MetricType metric = MetricType::L2);

  size_t dim() const { return aq_->dim(); }
  size_t nlist() const { return nlist_; }
  size_t ntotal() const { return ntotal_; }
  MetricType metric_type() const { return metric_; }
  bool is_trained() const { return trained_ && aq_->is_trained(); }
  size_t code_size() const { return aq_->code_size(); }
  const AdditiveQuantizer& quantizer() const { return *aq_; }
  const std::shared_ptr<AdditiveQuantizer>& quantizer_ptr() const { return aq_; }
  /// The coarse centroids (nlist × d; empty before training).
  const FloatMatrix& centroids() const { return centroids_; }
  size_t list_size(size_t l) const { return lists_.at(l).ids.size(); }
  const std::vector<int64_t>& list_ids(size_t l) const { return lists_.at(l).ids; }
  const std::vector<uint8_t>& list_codes(size_t l) const { return lists_.at(l).codes; }

  /// Coarse k-means on x (at most 256·nlist sampled rows, as faiss), then the quantizer on the residuals
  /// of all of x unless it is trained already. Only before add().
  void train(MatrixView<const float> x);
  /// Fixed coarse centroids (nlist × d), e.g. another library's; trains nothing else. Only before add().
  void set_centroids(MatrixView<const float> centroids);
  /// Assigns each row of x to its nearest centroid, codes its residual; labels ntotal … ntotal + n − 1.
  void add(MatrixView<const float> x);
  /// Stores packed codes (n × code_size, residual codes with the norms of centroid + reconstruction, as
  /// add() makes them) in lists list_nos (n), with labels ids (n; nullptr: ntotal … ntotal + n − 1).
  void add_preassigned(size_t n, const uint8_t* codes, const int32_t* list_nos, const int64_t* ids = nullptr);
  /// The k best stored vectors of each query (q: nq × d) over its nprobe nearest lists (nprobe ≥ 1, more
  /// than nlist scans all): distances, labels: nq × k (−1 and ±inf past the vectors found).
  void search(MatrixView<const float> q, size_t k, size_t nprobe, float* distances, int64_t* labels) const;
  /// The stored vector with label `id` decoded (centroid + reconstruction): out: d floats.
  void reconstruct(int64_t id, float* out) const;

 private:
  struct List {
    std::vector<int64_t> ids;
    std::vector<uint8_t> codes;  // the quantizer's packed codes
    std::vector<float> norms;    // ‖c_l + r̂‖² when the search type does not store it (L2)
  };
  void check_ready(const char* what) const;
  bool caches_norms() const;
  void fit_norms(MatrixView<const float> x, const int32_t* assign);

  std::shared_ptr<AdditiveQuantizer> aq_;
  size_t nlist_;
  MetricType metric_;
  bool trained_ = false;
  FloatMatrix centroids_;
  std::vector<List> lists_;
  size_t ntotal_ = 0;
};

}  // namespace tessera
