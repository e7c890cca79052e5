// An inverted-file index of Extended RaBitQ codes: coarse k-means lists, each vector coded against its list's
// centroid, queries scanning the nprobe nearest lists with RaBitQ's unbiased estimates.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"
#include "tessera/core/metric.h"
#include "tessera/quant/rabitq_quantizer.h"

namespace tessera {

/// IVF over RaBitQuantizer codes (as faiss's IndexIVFRaBitQ and RaBitQ-Library's IvfIndex). nlist = 1 is the
/// flat case (one list around the data's mean). train() clusters with tessera's k-means (at most 256·nlist
/// sampled rows, as faiss), or set_centroids() takes a partition from elsewhere (to compare libraries on the
/// same lists); add() sends each vector to its nearest centroid and codes its residual. search() rotates each
/// query once, ranks the centroids, and scans the nprobe nearest lists in two stages (RaBitQ's MSB split,
/// Extended RaBitQ §4.2): the top bit of every code (the 1-bit RaBitQ code) is scanned in blocks of 32 with
/// 4-bit lookup tables of the rotated query (the fast-scan kernel), and only vectors whose 1-bit bound
/// (estimate ∓ error bound ∓ table rounding) can beat the k-th best full estimate so far get their full B-bit
/// estimate. single_stage = true estimates every vector fully (for comparison). With the raw vectors kept
/// (keep_vectors, the default), rerank = R > 0 adds a third stage: the R best candidates by estimate get their
/// exact distances, and the k best of those are returned. Results do not depend on the thread count.
///
/// Metrics: L2 (‖x − q‖², smaller is better), inner_product and cosine (⟨x, q⟩ and ⟨x, q⟩/(‖x‖‖q‖), larger is
/// better). Cosine is the inner product of unit vectors: the index scales every vector (training, added, and
/// queries) to unit norm, the coarse k-means runs on the unit vectors (centroids are means of unit vectors),
/// the codes, estimates, probing order and raw vectors (rerank) are then the inner product's on those unit
/// vectors — the same results as "ip" on data normalised beforehand — and reported values are clamped to
/// [−1, 1]. A zero vector or zero query has cosine 0 with everything, by definition (zero vectors are left out
/// of training; a zero query ties with every vector, so the lowest labels of the probed lists are returned).
class IndexIVFRaBitQ {
 public:
  /// params.metric: L2, inner_product or cosine. keep_vectors: store the raw float32 vectors too (d·4 bytes
  /// per vector; needed for rerank > 0; for cosine the unit vectors).
  IndexIVFRaBitQ(size_t d, size_t nlist, RabitqParams params = {}, bool keep_vectors = true);

  size_t dim() const { return d_; }
  size_t nlist() const { return nlist_; }
  size_t ntotal() const { return ntotal_; }
  MetricType metric_type() const { return codec_.params().metric; }
  const RaBitQuantizer& quantizer() const { return codec_; }
  bool is_trained() const { return trained_; }
  /// Whether the raw vectors are stored (re-ranking needs them).
  bool keeps_vectors() const { return keep_vectors_; }
  /// The coarse centroids (nlist × d).
  const FloatMatrix& centroids() const { return centroids_; }
  /// Vectors in list l.
  size_t list_size(size_t l) const { return lists_.at(l).ids.size(); }

  /// Coarse k-means on x (n × d, n ≥ nlist; cosine: on the unit vectors of the nonzero rows, at least nlist)
  /// and the codec's rotation. Only before add().
  void train(MatrixView<const float> x);
  /// Fixed coarse centroids (nlist × d), used as given (cosine: compared with the unit vectors). Only before
  /// add().
  void set_centroids(MatrixView<const float> centroids);
  /// Codes x (n × d); their labels are ntotal() … ntotal() + n − 1. Each row goes to its nearest centroid
  /// (assign()), then add(x, lists).
  void add(MatrixView<const float> x);
  /// The same with the lists given (lists: n ids in [0, nlist), e.g. from assign() or another library's
  /// partition): only the RaBitQ encoding, no coarse assignment. Cosine: rows are scaled to unit norm first.
  void add(MatrixView<const float> x, const int32_t* lists);
  /// add(x) or add(x, lists) with the labels given (ids: n values ≥ 0, any order, repeats allowed; lists may be
  /// nullptr: nearest centroid) instead of ntotal() … ntotal() + n − 1. Rows added without ids keep those
  /// positional labels; search() returns the ids. Ties between equal values go to the earlier-added row.
  void add_with_ids(MatrixView<const float> x, const int64_t* ids, const int32_t* lists = nullptr);
  /// Whether some rows were added with ids of their own (the file then keeps the label of every row).
  bool has_ids() const { return !ids_.empty(); }
  /// The coarse assignment add(x) uses: the list of each row's nearest centroid (lists: n ids; ties to the
  /// lower list; cosine: of the unit rows, a zero row to the centroid nearest 0).
  void assign(MatrixView<const float> x, int32_t* lists) const;
  /// The k best of every query (q: nq × d) over the nprobe nearest lists (1 ≤ nprobe; more than nlist is
  /// clamped to nlist): distances (nq × k: estimated ‖x − q‖² for L2, ⟨x, q⟩ for inner product, the cosine
  /// for cosine, best first) and labels (nq × k; −1 and ±inf past the vectors found in the probed lists;
  /// k > ntotal() or an empty index is an InvalidArgument). rerank = R > 0: the
  /// max(R, k) best by estimate get exact values from the raw vectors (‖x − q‖², ⟨x, q⟩ or the cosine,
  /// float32), the k best of those are returned with them; an index without raw vectors refuses it.
  /// rerank = kRerankByBound: re-ranking by the error bound (the RaBitQ paper's search, SIGMOD 2024): a vector
  /// gets its exact value only when its full estimate's interval (± the codec's error bound) reaches the k-th
  /// best exact value so far, so the values returned are all exact and the work adapts to the query.
  void search(MatrixView<const float> q, size_t k, size_t nprobe, float* distances, int64_t* labels,
              bool single_stage = false, size_t rerank = 0) const;
  /// search()'s rerank value for re-ranking by the error bound.
  static constexpr size_t kRerankByBound = SIZE_MAX;

  /// Index file: the model-file container (magic, version, JSON header, CRC-32) of type "index_ivf_rabitq".
  void save(const std::string& path) const;
  static IndexIVFRaBitQ load(const std::string& path);
  /// The bytes save() writes, and their reader (fuzzing, tests).
  std::string bytes() const;
  static IndexIVFRaBitQ parse(const void* data, size_t size);

 private:
  // A list in the scan's layouts (the codec's packed codes are rebuilt from them for files).
  struct List {
    std::vector<int64_t> ids;
    std::vector<uint8_t> blocks;  // stage 1: the top bits in fast-scan blocks of 32 (⌈d/4⌉ nibbles per vector)
    std::vector<float> block_factors;  // stage 1: per block add[32], rescale[32], error[32] of the 1-bit code
    std::vector<uint8_t> packed;  // stage 2: each full code u ∈ [0, 2^B) packed (detail::rabitq_pack_code)
    std::vector<float> factors;   // stage 2: per vector add, rescale of the full code; then ‖r‖ and its error
  };
  void check_can_add() const;
  void check_rows(MatrixView<const float> x, const char* what) const;  // trained, d, finite
  void assign_rows(MatrixView<const float> x, int32_t* lists) const;   // assign() after the checks
  void add_rows(MatrixView<const float> x, const int32_t* lists);      // add(x, lists) after the checks
  void append(List& list, const uint8_t* codes, size_t n, const int64_t* ids);
  void code_of(const List& list, size_t i, uint8_t* code) const;  // the codec's packed code of vector i
  void set_centroid_norms();

  size_t d_, nlist_;
  RaBitQuantizer codec_;
  bool keep_vectors_;
  bool trained_ = false;
  FloatMatrix centroids_;
  std::vector<float> centroid_norms_;   // ‖c‖² per list (the coarse ranking), zero padded to a multiple of 16
  std::vector<float> centroid_panels_;  // the centroids in panels of 16 (detail::rabitq_pack_centroid_panels)
  std::vector<List> lists_;
  std::vector<float> vectors_;  // keep_vectors: the raw vectors, ntotal × d in the order they were added
  // The label of every row in the order added, once add_with_ids was used (else empty: the label is the row
  // number). The lists always hold row numbers, which the scan's tie order and vectors_ rely on.
  std::vector<int64_t> ids_;
  size_t ntotal_ = 0;
  int width_;        // bits per coordinate of the packed full codes
  size_t packed_bytes_;  // per vector
};

}  // namespace tessera
