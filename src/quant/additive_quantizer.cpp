#include "tessera/quant/additive_quantizer.h"
#include "tessera/core/threading.h"

#include <algorithm>

namespace tessera {

AdditiveQuantizer::AdditiveQuantizer(size_t d, std::vector<size_t> codebook_sizes)
    : Quantizer(d), codebook_sizes_(std::move(codebook_sizes)) {
  TESSERA_CHECK_ARG(d >= 1, "dimension must be at least 1");
  TESSERA_CHECK_ARG(!codebook_sizes_.empty(), "at least one codebook is needed");
  for (size_t m = 0; m < codebook_sizes_.size(); ++m)
    TESSERA_CHECK_ARG(codebook_sizes_[m] >= 1 && codebook_sizes_[m] <= (size_t(1) << 24),
                      "codebook " << m << " has size " << codebook_sizes_[m] << "; sizes must be in [1, 2^24]");
}

void AdditiveQuantizer::set_codebooks(std::vector<FloatMatrix> codebooks) {
  TESSERA_CHECK_ARG(codebooks.size() == codebook_sizes_.size(),
                    "expected " << codebook_sizes_.size() << " codebooks, got " << codebooks.size());
  for (size_t m = 0; m < codebooks.size(); ++m) {
    TESSERA_CHECK_ARG(codebooks[m].rows() == codebook_sizes_[m] && codebooks[m].cols() == dim(),
                      "codebook " << m << " is " << codebooks[m].rows() << " × " << codebooks[m].cols()
                                  << ", expected " << codebook_sizes_[m] << " × " << dim());
    check_finite(codebooks[m].view(), "codebook");
  }
  codebooks_ = std::move(codebooks);
  trained_ = true;
}

void AdditiveQuantizer::check_trained(const char* what) const {
  TESSERA_CHECK_ARG(trained_, what << " needs a trained model: train it or load one first");
}

void AdditiveQuantizer::decode(const int32_t* codes, size_t n, float* out) const {
  check_trained("decode");
  const size_t M = num_codebooks(), d = dim();
  for (size_t i = 0; i < n * M; ++i)
    TESSERA_CHECK_ARG(codes[i] >= 0 && (size_t)codes[i] < codebook_sizes_[i % M],
                      "code " << codes[i] << " of row " << i / M << ", codebook " << i % M << " is outside [0, "
                              << codebook_sizes_[i % M] << ")");
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)n; ++i) {
    float* o = out + i * d;
    std::fill(o, o + d, 0.0f);
    for (size_t m = 0; m < M; ++m) {
      const float* c = codebooks_[m].row(codes[i * M + m]);
      for (size_t j = 0; j < d; ++j) o[j] += c[j];
    }
  }
}

size_t AdditiveQuantizer::code_bits(size_t m) const {
  size_t bits = 0;
  while ((size_t(1) << bits) < codebook_sizes_.at(m)) ++bits;
  return bits;
}

size_t AdditiveQuantizer::code_size() const {
  size_t bits = 0;
  for (size_t m = 0; m < num_codebooks(); ++m) bits += code_bits(m);
  return (bits + 7) / 8;
}

void AdditiveQuantizer::pack_codes(const int32_t* codes, size_t n, uint8_t* packed) const {
  const size_t M = num_codebooks(), cs = code_size();
  std::fill(packed, packed + n * cs, 0);
  for (size_t i = 0; i < n; ++i) {
    uint8_t* p = packed + i * cs;
    size_t bit = 0;
    for (size_t m = 0; m < M; ++m) {
      const uint32_t v = (uint32_t)codes[i * M + m];
      TESSERA_CHECK_ARG(v < codebook_sizes_[m], "code " << codes[i * M + m] << " out of range for codebook " << m);
      for (size_t b = 0, nb = code_bits(m); b < nb; ++b, ++bit)
        if (v >> b & 1u) p[bit >> 3] |= uint8_t(1u << (bit & 7));
    }
  }
}

void AdditiveQuantizer::unpack_codes(const uint8_t* packed, size_t n, int32_t* codes) const {
  const size_t M = num_codebooks(), cs = code_size();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = packed + i * cs;
    size_t bit = 0;
    for (size_t m = 0; m < M; ++m) {
      uint32_t v = 0;
      for (size_t b = 0, nb = code_bits(m); b < nb; ++b, ++bit) v |= uint32_t(p[bit >> 3] >> (bit & 7) & 1u) << b;
      codes[i * M + m] = (int32_t)v;
    }
  }
}

void AdditiveQuantizer::encode_packed(MatrixView<const float> x, uint8_t* codes) const {
  std::vector<int32_t> c(x.rows * num_codebooks());
  encode(x, c.data());
  pack_codes(c.data(), x.rows, codes);
}

void AdditiveQuantizer::decode_packed(const uint8_t* codes, size_t n, float* out) const {
  std::vector<int32_t> c(n * num_codebooks());
  unpack_codes(codes, n, c.data());
  decode(c.data(), n, out);
}

}  // namespace tessera
