// The scalar code an additive quantizer stores after its codebook indices: the squared norm ‖x'‖² of the
// reconstruction, so that L2 search needs only ⟨q, x'⟩ from lookup tables. One encoder per search type
// (search_type.h): raw float, uniform qint over the training range, non-uniform cqint (exact 1-D k-means
// centres) or a 2 × 4-bit additive code (lsq2x4 / rq2x4). Formulas and code layouts are faiss's
// (AdditiveQuantizer::encode_norm), so packed codes are byte-compatible; docs/additive-quantizer.md says
// where the training differs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "tessera/quant/search_type.h"

namespace tessera {

class NormEncoder {
 public:
  explicit NormEncoder(SearchType st = SearchType::ST_decompress);

  SearchType search_type() const { return st_; }
  /// Bits per encoded norm (search_type_norm_bits).
  size_t bits() const { return search_type_norm_bits(st_); }
  /// Ready to encode: trained, or a type that needs no training (float, or no norm at all).
  bool is_trained() const { return trained_ || !search_type_trains_norm(st_); }

  /// Learn the encoding from n training norms (squared norms of training reconstructions, all finite):
  /// norm_min/max always; qint: nothing more; cqint8/4: exact 1-D k-means with 256/16 centres on at most
  /// 256·k of them (a seeded subsample, as faiss); lsq2x4/rq2x4: the 2 × 16 scalars (see the .cpp).
  void train(size_t n, const float* norms);

  /// The code of one norm (fits in bits()); float: its IEEE bits; qint: clamp(⌊(v − min)/(max − min)·L⌋,
  /// 0, L − 1); cqint, lsq2x4, rq2x4: the index of the nearest table entry (encode_qcint).
  uint64_t encode(float norm) const;
  /// The norm a code stands for; qint: (c + 0.5)/L·(max − min) + min; others: the table entry.
  float decode(uint64_t code) const;
  /// Nearest entry of the cqint / 2x4 table (ties: the lower index), and the entry of an index.
  uint32_t encode_qcint(float norm) const;
  float decode_qcint(uint32_t code) const;

  float norm_min() const { return min_; }
  float norm_max() const { return max_; }
  /// cqint: the k centres, ascending; lsq2x4/rq2x4: faiss's 256-entry table, entry i·16 + j = c0[j] + c1[i]
  /// (low nibble j ↔ c0, high nibble i ↔ c1). Empty for the other types.
  const std::vector<float>& table() const { return table_; }
  /// lsq2x4/rq2x4: c0[0..15] then c1[0..15] (faiss's norm_tabs, the fast-scan tables). Else empty.
  const std::vector<float>& tabs() const { return tabs_; }

  /// An encoder from stored parameters (model files); shapes and values are checked (InvalidArgument).
  /// `table` is the cqint centres or, for 2x4 types, ignored (rebuilt from `tabs`).
  static NormEncoder restore(SearchType st, bool trained, float norm_min, float norm_max, std::vector<float> table,
                             std::vector<float> tabs);

 private:
  void require_trained(const char* what) const;
  void index_table();  // sorted_ from table_

  SearchType st_;
  bool trained_ = false;
  float min_ = 0, max_ = 0;
  std::vector<float> table_, tabs_;
  std::vector<std::pair<float, uint32_t>> sorted_;  // table_ by (value, index), for nearest lookups
};

}  // namespace tessera
