// How an additive quantizer's codes are searched, and so which norm (if any) each packed code carries
// after its M codebook indices. The names and numeric values are faiss's AdditiveQuantizer::Search_type_t,
// so a model configured with faiss's integer or name means the same thing here.
// "Norm" always means the squared norm ‖x'‖² of the reconstruction x'.
#pragma once
#include <cstddef>
#include <string>

namespace tessera {

enum class SearchType : int {
  ST_decompress = 0,     ///< search decodes the vectors; no norm stored
  ST_LUT_nonorm = 1,     ///< L2 ranked by −⟨q, x'⟩ only (exact for inner product); no norm stored
  ST_norm_from_LUT = 2,  ///< ‖x'‖² rebuilt from codeword norms and cross products; no norm stored
  ST_norm_float = 3,     ///< ‖x'‖² stored as a float32 (32 bits)
  ST_norm_qint8 = 4,     ///< uniform 8-bit quantization of ‖x'‖² over [norm_min, norm_max]
  ST_norm_qint4 = 5,     ///< uniform 4-bit quantization
  ST_norm_cqint8 = 6,    ///< nearest of 256 centres of an exact 1-D k-means of the training norms
  ST_norm_cqint4 = 7,    ///< nearest of 16 centres
  ST_norm_lsq2x4 = 8,    ///< 8 bits: a 2-codebook × 4-bit additive quantizer of ‖x'‖² (fast-scan ready)
  ST_norm_rq2x4 = 9,     ///< the same table trained from a residual start (see docs/additive-quantizer.md)
};

constexpr int kNumSearchTypes = 10;

/// "ST_norm_float" etc. (faiss's enumerator names).
std::string search_type_name(SearchType st);
/// Accepts faiss's names ("ST_norm_qint8") and the same without the "ST_" prefix ("norm_qint8");
/// anything else is an InvalidArgument listing the valid names.
SearchType parse_search_type(const std::string& name);
/// faiss's integer value (0..9); anything else is an InvalidArgument.
SearchType search_type_from_int(long value);

/// Bits of norm stored after the codes: float 32; qint8, cqint8, lsq2x4, rq2x4 8; qint4, cqint4 4; else 0.
size_t search_type_norm_bits(SearchType st);
/// Whether packed codes carry a norm (norm bits > 0).
inline bool search_type_stores_norm(SearchType st) { return search_type_norm_bits(st) > 0; }
/// Whether the norm encoding must be learned from training norms (all stored norms except float).
bool search_type_trains_norm(SearchType st);

}  // namespace tessera
