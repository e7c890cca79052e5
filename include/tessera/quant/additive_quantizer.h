// Additive quantization: x ≈ Σ_m C_m[i_m], one codeword from each of M codebooks (C_m: K_m × d).
// The shared base of residual quantization (greedy, level by level) and LSQ (joint ICM encoding):
// both store the same codebooks and decode the same way; they differ in how they train and encode.
// The surface follows faiss's AdditiveQuantizer (names, code layout, search types, norm encodings), so
// codes and lookup tables are interchangeable with faiss's; docs/additive-quantizer.md has the details.
// Babenko & Lempitsky, "Additive Quantization for Extreme Vector Compression", CVPR 2014.
#pragma once
#include <cstdint>
#include <vector>

#include "tessera/quant/norm_encoder.h"
#include "tessera/quant/quantizer.h"
#include "tessera/quant/search_type.h"

namespace tessera {

class AdditiveQuantizer : public Quantizer {
 public:
  /// codebook_sizes: K_m for each of the M codebooks (each in [1, 2^24]).
  AdditiveQuantizer(size_t d, std::vector<size_t> codebook_sizes,
                    SearchType search_type = SearchType::ST_decompress);

  /// faiss's shape: M codebooks of 2^nbits codewords; InvalidArgument unless M ≥ 1 and nbits in 1..16.
  static std::vector<size_t> equal_codebook_sizes(size_t M, size_t nbits);

  // --- shapes (faiss names) ---------------------------------------------------------------------------
  size_t num_codebooks() const { return codebook_sizes_.size(); }
  const std::vector<size_t>& codebook_sizes() const { return codebook_sizes_; }
  /// Bits of code m when packed: ⌈log2 K_m⌉ (faiss nbits[m]).
  size_t nbits(size_t m) const { return nbits_.at(m); }
  size_t code_bits(size_t m) const { return nbits(m); }
  /// M + 1 entries: codebook m's codewords are rows [offsets[m], offsets[m + 1]) of codebooks_flat().
  const std::vector<size_t>& codebook_offsets() const { return offsets_; }
  /// Σ_m K_m.
  size_t total_codebook_size() const { return offsets_.back(); }
  /// Bits of the code indices: Σ_m nbits(m).
  size_t index_bits() const { return index_bits_; }
  /// Bits of the norm stored after the code indices (by search type: 0, 4, 8 or 32).
  size_t norm_bits() const { return norm_.bits(); }
  /// Bits of a packed code: index_bits + norm_bits (faiss's tot_bits counts the norm too).
  size_t tot_bits() const { return index_bits_ + norm_bits(); }
  /// Bytes per packed code: ⌈tot_bits / 8⌉ = ⌈(Σ nbits + norm_bits) / 8⌉.
  size_t code_size() const override { return (tot_bits() + 7) / 8; }

  // --- codebooks --------------------------------------------------------------------------------------
  /// Every codebook in one array: total_codebook_size × d, codeword (m, k) at row codebook_offsets()[m] + k
  /// (faiss's layout). Empty (0 rows) before training.
  MatrixView<const float> codebooks_flat() const;
  /// Codebook m: K_m × d, a view into codebooks_flat() (0 rows before training).
  MatrixView<const float> codebook(size_t m) const;
  /// Replace every codebook (e.g. imported from .npz); shapes must be K_m × d. Marks the codec trained.
  /// Clears the codebook tables; a norm encoder already trained is kept.
  void set_codebooks(std::vector<FloatMatrix> codebooks);
  /// The same from one total_codebook_size × d array in faiss's layout.
  void set_codebooks(MatrixView<const float> flat);
  bool is_trained() const override { return trained_; }

  // --- search type and norms ----------------------------------------------------------------------------
  SearchType search_type() const { return norm_.search_type(); }
  /// Change the search type. Codes packed before are not convertible (code_size may change). The norm
  /// encoder restarts untrained: for qint/cqint/lsq2x4/rq2x4 types train() or train_norm() must run again
  /// before packing. On a trained model, ST_norm_from_LUT computes the codebook tables here.
  void set_search_type(SearchType st);
  const NormEncoder& norm_encoder() const { return norm_; }
  /// Adopt a norm encoder (and its search type), e.g. restored from a model file or built from another
  /// library's parameters. ST_norm_from_LUT on a trained model computes the codebook tables.
  void restore_norm_encoder(NormEncoder encoder);
  /// Learn the norm encoding from n squared norms of reconstructions (norms: n). faiss's train_norm.
  void train_norm(size_t n, const float* norms);
  uint64_t encode_norm(float norm) const { return norm_.encode(norm); }
  float decode_norm(uint64_t code) const { return norm_.decode(code); }
  uint32_t encode_qcint(float x) const { return norm_.encode_qcint(x); }
  float decode_qcint(uint32_t code) const { return norm_.decode_qcint(code); }
  float norm_min() const { return norm_.norm_min(); }
  float norm_max() const { return norm_.norm_max(); }

  // --- codes ---------------------------------------------------------------------------------------------
  /// codes: n × M unpacked codes (code m in [0, K_m)) for x (n × d).
  virtual void encode(MatrixView<const float> x, int32_t* codes) const = 0;
  /// out: n × d, the sums of the selected codewords. Codes out of range are an InvalidArgument.
  void decode(const int32_t* codes, size_t n, float* out) const;
  /// faiss's decode_unpacked: codes n × M with row stride ld_codes (−1: M) → out: n × d.
  void decode_unpacked(size_t n, const int32_t* codes, float* out, int64_t ld_codes = -1) const;
  /// Bit-pack n codes (n × M, row stride ld_codes, −1: M) into n × code_size() bytes: bits LSB first,
  /// code 0 first, then the norm code (faiss's layout). Norms (n, squared) are used when the search type
  /// stores one; when they are not given they are computed from the reconstructions — plus centroids
  /// (n × d, e.g. IVF coarse centroids) when given. Passing both norms and centroids is an InvalidArgument.
  void pack_codes(size_t n, const int32_t* codes, uint8_t* packed, int64_t ld_codes = -1, const float* norms = nullptr,
                  const float* centroids = nullptr) const;
  /// packed: n × code_size() → codes: n × M (the norm bits are skipped).
  void unpack_codes(const uint8_t* packed, size_t n, int32_t* codes) const;
  /// The decoded norm stored in one packed code (code_size() bytes); InvalidArgument if none is stored.
  float decode_norm_from_packed(const uint8_t* code) const;
  /// Encode and pack with norms (those of the reconstructions).
  void encode_packed(MatrixView<const float> x, uint8_t* codes) const override;
  void decode_packed(const uint8_t* codes, size_t n, float* out) const override;

  // --- lookup tables and distances -----------------------------------------------------------------------
  /// LUT (n × total_codebook_size, row stride ld_lut, −1: total) = alpha · ⟨xq_i, every codeword⟩; xq: n × d.
  void compute_LUT(size_t n, const float* xq, float* LUT, float alpha = 1.0f, int64_t ld_lut = -1) const;
  /// norms (total_codebook_size): ‖codeword‖² of every codeword, in codebooks_flat() order.
  void compute_centroid_norms(float* norms) const;
  /// Compute the codeword norms and the codebook cross products that ST_norm_from_LUT needs.
  void compute_codebook_tables();
  bool has_codebook_tables() const { return !centroid_norms_.empty(); }
  /// ‖C_j‖² for every codeword j (empty until compute_codebook_tables()).
  const std::vector<float>& centroid_norms() const { return centroid_norms_; }
  /// For m = 1..M−1 in turn, a block of offsets[m] × K_m: row j (a codeword of codebooks 0..m−1, in
  /// codebooks_flat() order), column k: ⟨C_j, C_m[k]⟩ (faiss's layout; empty until compute_codebook_tables()).
  const std::vector<float>& codebook_cross_products() const { return cross_products_; }

  /// The distance of one packed code from a LUT computed with alpha = 1 (faiss compute_1_distance_LUT):
  ///   inner product: ΣLUT = ⟨q, x'⟩ (every search type).
  ///   L2 (the caller adds ‖q‖²):  ST_LUT_nonorm: −ΣLUT (ranks by inner product: a true L2 ranking only when
  ///   all reconstructions have equal norms); stored-norm types: norm − 2ΣLUT; ST_norm_from_LUT:
  ///   Σ‖C_m‖² + 2Σ_{l<m}⟨C_l, C_m⟩ − 2ΣLUT (needs compute_codebook_tables()); ST_decompress: ‖x'‖² − 2ΣLUT
  ///   with x' decoded.
  float compute_1_distance_LUT(const uint8_t* code, const float* LUT, bool inner_product) const;
  /// out (n): compute_1_distance_LUT of n packed codes (n × code_size()) against one LUT.
  void compute_distances_LUT(size_t n, const uint8_t* codes, const float* LUT, bool inner_product, float* out) const;

  /// The k largest ⟨xq_i, c⟩ (resp. smallest ‖xq_i − c‖²) over every reconstruction c of the Π_m K_m
  /// code combinations (at most 2^20 of them). xq: n × d → distances, labels: n × k; a label is the code
  /// combination as an integer (code m in bits [Σ_{l<m} nbits(l), …)), as faiss; −1 / ∓inf past the end.
  void knn_centroids_inner_product(size_t n, const float* xq, size_t k, float* distances, int64_t* labels) const;
  void knn_centroids_L2(size_t n, const float* xq, size_t k, float* distances, int64_t* labels) const;

  /// Mean over the rows of ‖x_i − decode(encode(x_i))‖² (per vector, as faiss's evaluate; divide by d for
  /// the per-component MSE of mean_squared_error).
  double reconstruction_error(MatrixView<const float> x) const;

  /// The most code combinations knn_centroids_* enumerate.
  static constexpr size_t kMaxEnumeratedCentroids = size_t(1) << 20;

 protected:
  void check_trained(const char* what) const;
  /// Writable codebooks (total_codebook_size × d, allocated on first use) for subclasses that train in
  /// place. Clears the codebook tables; set trained_ once the codebooks are final.
  MatrixView<float> mutable_codebooks();
  /// The end of a subclass's train(): learn the norm encoder from the training reconstructions' squared
  /// norms (n) and, for ST_norm_from_LUT, compute the codebook tables.
  void finish_training(size_t n, const float* recons_norms);
  /// The same from unpacked training codes (n × M): decodes them to take the norms.
  void finish_training_from_codes(size_t n, const int32_t* codes);

  std::vector<size_t> codebook_sizes_;
  bool trained_ = false;

 private:
  void check_code_range(size_t n, const int32_t* codes, size_t ld) const;
  template <bool IP>
  void knn_centroids(size_t n, const float* xq, size_t k, float* distances, int64_t* labels) const;

  std::vector<size_t> nbits_, offsets_;
  size_t index_bits_ = 0;
  FloatMatrix codebooks_;  // total_codebook_size × d once allocated
  NormEncoder norm_;
  std::vector<float> centroid_norms_, cross_products_;
};

}  // namespace tessera
