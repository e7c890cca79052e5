// Additive quantization: x ≈ Σ_m C_m[i_m], one codeword from each of M codebooks (C_m: K_m × d).
// The shared base of residual quantization (greedy, level by level) and LSQ (joint ICM encoding):
// both store the same codebooks and decode the same way; they differ in how they train and encode.
// Babenko & Lempitsky, "Additive Quantization for Extreme Vector Compression", CVPR 2014.
#pragma once
#include <vector>

#include "tessera/quant/quantizer.h"

namespace tessera {

class AdditiveQuantizer : public Quantizer {
 public:
  /// codebook_sizes: K_m for each of the M codebooks (each ≥ 1).
  AdditiveQuantizer(size_t d, std::vector<size_t> codebook_sizes);

  size_t num_codebooks() const { return codebook_sizes_.size(); }
  const std::vector<size_t>& codebook_sizes() const { return codebook_sizes_; }
  /// Codebook m: K_m × d (empty before training).
  MatrixView<const float> codebook(size_t m) const { return codebooks_.at(m).view(); }
  /// Replace every codebook (e.g. imported from .npz); shapes must be K_m × d. Marks the codec trained.
  void set_codebooks(std::vector<FloatMatrix> codebooks);
  bool is_trained() const override { return trained_; }

  /// codes: n × M unpacked codes (code m in [0, K_m)) for x (n × d).
  virtual void encode(MatrixView<const float> x, int32_t* codes) const = 0;
  /// out: n × d, the sums of the selected codewords. Codes out of range are an InvalidArgument.
  void decode(const int32_t* codes, size_t n, float* out) const;

  /// Bits of code m when packed: ⌈log2 K_m⌉.
  size_t code_bits(size_t m) const;
  size_t code_size() const override;
  /// Bit-pack n × M codes (little-endian bit order, code 0 first) into n × code_size() bytes, and back.
  void pack_codes(const int32_t* codes, size_t n, uint8_t* packed) const;
  void unpack_codes(const uint8_t* packed, size_t n, int32_t* codes) const;
  void encode_packed(MatrixView<const float> x, uint8_t* codes) const override;
  void decode_packed(const uint8_t* codes, size_t n, float* out) const override;

 protected:
  void check_trained(const char* what) const;
  std::vector<size_t> codebook_sizes_;
  std::vector<FloatMatrix> codebooks_;
  bool trained_ = false;
};

}  // namespace tessera
