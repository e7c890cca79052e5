#include "tessera/quant/additive_quantizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/blas.h"
#include "core/parallel.h"
#include "tessera/core/threading.h"

namespace tessera {

namespace {

// OR `nb` (≤ 64) bits of v into p at bit position `bit`, LSB first (faiss's BitstringWriter order).
void write_bits(uint8_t* p, size_t bit, uint64_t v, size_t nb) {
  while (nb) {
    const size_t off = bit & 7, take = std::min<size_t>(8 - off, nb);
    p[bit >> 3] |= uint8_t((v & ((uint64_t(1) << take) - 1)) << off);
    v >>= take, bit += take, nb -= take;
  }
}

uint64_t read_bits(const uint8_t* p, size_t bit, size_t nb) {
  uint64_t v = 0;
  for (size_t got = 0; got < nb;) {
    const size_t off = bit & 7, take = std::min<size_t>(8 - off, nb - got);
    v |= uint64_t((p[bit >> 3] >> off) & ((1u << take) - 1)) << got;
    bit += take, got += take;
  }
  return v;
}

size_t bits_for(size_t K) {
  size_t b = 0;
  while ((size_t(1) << b) < K) ++b;
  return b;
}

// Squared norm of a row, summed in float in index order (as decode's sums are).
float sq_norm(const float* x, size_t d) {
  float s = 0;
  for (size_t j = 0; j < d; ++j) s += x[j] * x[j];
  return s;
}

}  // namespace

AdditiveQuantizer::AdditiveQuantizer(size_t d, std::vector<size_t> codebook_sizes, SearchType search_type)
    : Quantizer(d), codebook_sizes_(std::move(codebook_sizes)), norm_(search_type) {
  TESSERA_CHECK_ARG(d >= 1, "dimension must be at least 1");
  TESSERA_CHECK_ARG(!codebook_sizes_.empty(), "at least one codebook is needed");
  offsets_.assign(1, 0);
  for (size_t m = 0; m < codebook_sizes_.size(); ++m) {
    TESSERA_CHECK_ARG(codebook_sizes_[m] >= 1 && codebook_sizes_[m] <= (size_t(1) << 24),
                      "codebook " << m << " has size " << codebook_sizes_[m] << "; sizes must be in [1, 2^24]");
    nbits_.push_back(bits_for(codebook_sizes_[m]));
    index_bits_ += nbits_.back();
    offsets_.push_back(offsets_.back() + codebook_sizes_[m]);
  }
}

std::vector<size_t> AdditiveQuantizer::equal_codebook_sizes(size_t M, size_t nbits) {
  TESSERA_CHECK_ARG(M >= 1, "M (the number of codebooks) must be at least 1, got " << M);
  TESSERA_CHECK_ARG(nbits >= 1 && nbits <= 16, "nbits = " << nbits << " is outside 1..16 (bits per codebook index)");
  return std::vector<size_t>(M, size_t(1) << nbits);
}

MatrixView<const float> AdditiveQuantizer::codebooks_flat() const { return codebooks_.view(); }

MatrixView<const float> AdditiveQuantizer::codebook(size_t m) const {
  TESSERA_CHECK_ARG(m < num_codebooks(), "codebook " << m << " does not exist: the model has " << num_codebooks());
  if (codebooks_.empty()) return {nullptr, 0, dim()};
  return codebooks_.view().rows_slice(offsets_[m], codebook_sizes_[m]);
}

MatrixView<float> AdditiveQuantizer::mutable_codebooks() {
  if (codebooks_.empty()) codebooks_ = FloatMatrix(total_codebook_size(), dim());
  centroid_norms_.clear();
  cross_products_.clear();
  return codebooks_.view();
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
  const MatrixView<float> out = mutable_codebooks();
  for (size_t m = 0; m < codebooks.size(); ++m)
    std::copy(codebooks[m].data(), codebooks[m].data() + codebooks[m].size(), out.row(offsets_[m]));
  trained_ = true;
}

void AdditiveQuantizer::set_codebooks(MatrixView<const float> flat) {
  TESSERA_CHECK_ARG(flat.rows == total_codebook_size() && flat.cols == dim(),
                    "codebooks are " << flat.rows << " × " << flat.cols << ", expected total_codebook_size × d = "
                                     << total_codebook_size() << " × " << dim());
  check_finite(flat, "codebooks");
  const MatrixView<float> out = mutable_codebooks();
  for (size_t i = 0; i < flat.rows; ++i) std::copy(flat.row(i), flat.row(i) + flat.cols, out.row(i));
  trained_ = true;
}

void AdditiveQuantizer::check_trained(const char* what) const {
  TESSERA_CHECK_ARG(trained_, what << " needs a trained model: train it or load one first");
}

void AdditiveQuantizer::set_search_type(SearchType st) {
  norm_ = NormEncoder(st);
  if (st == SearchType::ST_norm_from_LUT && trained_) compute_codebook_tables();
}

void AdditiveQuantizer::restore_norm_encoder(NormEncoder encoder) {
  norm_ = std::move(encoder);
  if (norm_.search_type() == SearchType::ST_norm_from_LUT && trained_) compute_codebook_tables();
}

void AdditiveQuantizer::train_norm(size_t n, const float* norms) { norm_.train(n, norms); }

void AdditiveQuantizer::finish_training(size_t n, const float* recons_norms) {
  if (search_type_trains_norm(search_type())) train_norm(n, recons_norms);
  if (search_type() == SearchType::ST_norm_from_LUT) compute_codebook_tables();
}

void AdditiveQuantizer::finish_training_from_codes(size_t n, const int32_t* codes) {
  std::vector<float> norms;
  if (search_type_trains_norm(search_type())) {
    norms.resize(n);
    const size_t M = num_codebooks(), d = dim(), block = 16384;
    std::vector<float> rec(std::min(n, block) * d);
    for (size_t b = 0; b < n; b += block) {
      const size_t nb = std::min(block, n - b);
      decode_unpacked(nb, codes + b * M, rec.data());
      for (size_t i = 0; i < nb; ++i) norms[b + i] = sq_norm(rec.data() + i * d, d);
    }
  }
  finish_training(n, norms.data());
}

void AdditiveQuantizer::check_code_range(size_t n, const int32_t* codes, size_t ld) const {
  const size_t M = num_codebooks();
  for (size_t i = 0; i < n; ++i)
    for (size_t m = 0; m < M; ++m) {
      const int32_t c = codes[i * ld + m];
      TESSERA_CHECK_ARG(c >= 0 && (size_t)c < codebook_sizes_[m], "code " << c << " of row " << i << ", codebook " << m
                                                                          << " is outside [0, " << codebook_sizes_[m]
                                                                          << ")");
    }
}

void AdditiveQuantizer::decode(const int32_t* codes, size_t n, float* out) const {
  decode_unpacked(n, codes, out);
}

void AdditiveQuantizer::decode_unpacked(size_t n, const int32_t* codes, float* out, int64_t ld_codes) const {
  check_trained("decode");
  const size_t M = num_codebooks(), d = dim(), ld = ld_codes < 0 ? M : (size_t)ld_codes;
  TESSERA_CHECK_ARG(ld >= M, "ld_codes = " << ld_codes << " is smaller than M = " << M);
  check_code_range(n, codes, ld);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)n; ++i) {
    float* o = out + i * d;
    std::fill(o, o + d, 0.0f);
    for (size_t m = 0; m < M; ++m) {
      const float* c = codebooks_.row(offsets_[m] + codes[i * ld + m]);
      for (size_t j = 0; j < d; ++j) o[j] += c[j];
    }
  }
}

void AdditiveQuantizer::pack_codes(size_t n, const int32_t* codes, uint8_t* packed, int64_t ld_codes,
                                   const float* norms, const float* centroids) const {
  const size_t M = num_codebooks(), d = dim(), cs = code_size(), ld = ld_codes < 0 ? M : (size_t)ld_codes;
  TESSERA_CHECK_ARG(ld >= M, "ld_codes = " << ld_codes << " is smaller than M = " << M);
  TESSERA_CHECK_ARG(!(norms && centroids), "pack_codes takes norms or centroids (to compute the norms of "
                                           "centroid + reconstruction), not both");
  check_code_range(n, codes, ld);
  const bool with_norm = norm_bits() > 0;
  std::vector<float> own;
  if (with_norm) {
    TESSERA_CHECK_ARG(norm_.is_trained(), "packing codes with search type " << search_type_name(search_type())
                                              << " needs a trained norm encoder: train the model or call "
                                                 "train_norm() first");
    if (!norms) {
      check_trained("computing norms for pack_codes");
      own.resize(n);
      const size_t block = 16384;
      std::vector<float> rec(std::min(n, block) * d);
      for (size_t b = 0; b < n; b += block) {
        const size_t nb = std::min(block, n - b);
        decode_unpacked(nb, codes + b * ld, rec.data(), (int64_t)ld);
        if (centroids)
          for (size_t t = 0; t < nb * d; ++t) rec[t] += centroids[b * d + t];
        for (size_t i = 0; i < nb; ++i) own[b + i] = sq_norm(rec.data() + i * d, d);
      }
      norms = own.data();
    }
  }
  std::fill(packed, packed + n * cs, 0);
  for (size_t i = 0; i < n; ++i) {
    uint8_t* p = packed + i * cs;
    size_t bit = 0;
    for (size_t m = 0; m < M; ++m) {
      write_bits(p, bit, (uint32_t)codes[i * ld + m], nbits_[m]);
      bit += nbits_[m];
    }
    if (with_norm) write_bits(p, bit, norm_.encode(norms[i]), norm_bits());
  }
}

void AdditiveQuantizer::unpack_codes(const uint8_t* packed, size_t n, int32_t* codes) const {
  const size_t M = num_codebooks(), cs = code_size();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = packed + i * cs;
    size_t bit = 0;
    for (size_t m = 0; m < M; ++m) {
      codes[i * M + m] = (int32_t)read_bits(p, bit, nbits_[m]);
      bit += nbits_[m];
    }
  }
}

float AdditiveQuantizer::decode_norm_from_packed(const uint8_t* code) const {
  TESSERA_CHECK_ARG(norm_bits() > 0, "search type " << search_type_name(search_type()) << " stores no norm in its codes");
  return norm_.decode(read_bits(code, index_bits_, norm_bits()));
}

void AdditiveQuantizer::encode_packed(MatrixView<const float> x, uint8_t* codes) const {
  std::vector<int32_t> c(x.rows * num_codebooks());
  encode(x, c.data());
  pack_codes(x.rows, c.data(), codes);
}

void AdditiveQuantizer::decode_packed(const uint8_t* codes, size_t n, float* out) const {
  std::vector<int32_t> c(n * num_codebooks());
  unpack_codes(codes, n, c.data());
  decode(c.data(), n, out);
}

void AdditiveQuantizer::compute_LUT(size_t n, const float* xq, float* LUT, float alpha, int64_t ld_lut) const {
  check_trained("compute_LUT");
  const size_t total = total_codebook_size(), ld = ld_lut < 0 ? total : (size_t)ld_lut;
  TESSERA_CHECK_ARG(ld >= total, "ld_lut = " << ld_lut << " is smaller than total_codebook_size = " << total);
  if (n == 0) return;
  detail::gemm_abt(n, total, dim(), alpha, xq, dim(), codebooks_.data(), dim(), 0.0f, LUT, ld);
}

void AdditiveQuantizer::compute_centroid_norms(float* norms) const {
  check_trained("compute_centroid_norms");
  const size_t total = total_codebook_size(), d = dim();
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t j = 0; j < (ptrdiff_t)total; ++j) norms[j] = sq_norm(codebooks_.row(j), d);
}

void AdditiveQuantizer::compute_codebook_tables() {
  check_trained("compute_codebook_tables");
  const size_t M = num_codebooks(), d = dim();
  std::vector<float> norms(total_codebook_size());
  compute_centroid_norms(norms.data());
  size_t size = 0;
  for (size_t m = 1; m < M; ++m) size += offsets_[m] * codebook_sizes_[m];
  std::vector<float> cross(size);
  size_t at = 0;
  for (size_t m = 1; m < M; ++m) {
    detail::gemm_abt(offsets_[m], codebook_sizes_[m], d, 1.0f, codebooks_.data(), d, codebooks_.row(offsets_[m]), d,
                     0.0f, cross.data() + at, codebook_sizes_[m]);
    at += offsets_[m] * codebook_sizes_[m];
  }
  centroid_norms_ = std::move(norms);
  cross_products_ = std::move(cross);
}

float AdditiveQuantizer::compute_1_distance_LUT(const uint8_t* code, const float* LUT, bool inner_product) const {
  const size_t M = num_codebooks();
  // Σ LUT in float, m = 0..M−1.
  float ip = 0;
  size_t bit = 0;
  for (size_t m = 0; m < M; ++m) {
    ip += LUT[offsets_[m] + read_bits(code, bit, nbits_[m])];
    bit += nbits_[m];
  }
  if (inner_product) return ip;
  switch (search_type()) {
    case SearchType::ST_LUT_nonorm: return -ip;
    case SearchType::ST_norm_from_LUT: {
      TESSERA_CHECK_ARG(has_codebook_tables(), "L2 distances with ST_norm_from_LUT need the codebook tables: call "
                                               "compute_codebook_tables() after setting the codebooks");
      // ‖Σ_m C_m‖² = Σ_m ‖C_m‖² + 2 Σ_{l<m} ⟨C_l, C_m⟩, the cross terms from block m (rows: earlier codewords).
      float norm = 0;
      size_t cross_at = 0, bm = 0;
      for (size_t m = 0; m < M; ++m) {
        const size_t km = read_bits(code, bm, nbits_[m]);
        norm += centroid_norms_[offsets_[m] + km];
        if (m > 0) {
          float cross = 0;
          for (size_t l = 0, bl = 0; l < m; bl += nbits_[l], ++l)
            cross += cross_products_[cross_at + (offsets_[l] + read_bits(code, bl, nbits_[l])) * codebook_sizes_[m] + km];
          norm += 2 * cross;
          cross_at += offsets_[m] * codebook_sizes_[m];
        }
        bm += nbits_[m];
      }
      return norm - 2 * ip;
    }
    case SearchType::ST_decompress: {
      std::vector<int32_t> c(M);
      unpack_codes(code, 1, c.data());
      std::vector<float> x(dim());
      decode_unpacked(1, c.data(), x.data());
      return sq_norm(x.data(), dim()) - 2 * ip;
    }
    default: return decode_norm_from_packed(code) - 2 * ip;
  }
}

void AdditiveQuantizer::compute_distances_LUT(size_t n, const uint8_t* codes, const float* LUT, bool inner_product,
                                              float* out) const {
  check_trained("compute_distances_LUT");
  const size_t cs = code_size();
  detail::ExceptionCatcher catcher;
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)n; ++i)
    catcher.run([&] { out[i] = compute_1_distance_LUT(codes + i * cs, LUT, inner_product); });
  catcher.rethrow();
}

template <bool IP>
void AdditiveQuantizer::knn_centroids(size_t n, const float* xq, size_t k, float* distances, int64_t* labels) const {
  check_trained(IP ? "knn_centroids_inner_product" : "knn_centroids_L2");
  const size_t M = num_codebooks(), d = dim();
  double combos = 1;
  for (size_t m = 0; m < M; ++m) combos *= double(codebook_sizes_[m]);
  TESSERA_CHECK_ARG(combos <= double(kMaxEnumeratedCentroids),
                    "exhaustive search over all " << combos << " code combinations (2^" << index_bits_
                                                  << ") is refused: at most 2^20 are enumerated");
  const size_t ntotal = (size_t)combos, total = total_codebook_size();
  // Combination t in mixed radix (code 0 varies fastest), and its label: the codes packed as faiss packs them.
  std::vector<int32_t> combo_codes(ntotal * M);
  std::vector<int64_t> combo_label(ntotal);
  for (size_t t = 0; t < ntotal; ++t) {
    size_t r = t, bit = 0;
    int64_t label = 0;
    for (size_t m = 0; m < M; ++m) {
      combo_codes[t * M + m] = int32_t(r % codebook_sizes_[m]);
      r /= codebook_sizes_[m];
      label |= int64_t(combo_codes[t * M + m]) << bit;
      bit += nbits_[m];
    }
    combo_label[t] = label;
  }
  std::vector<float> combo_norm;
  if (!IP) {
    combo_norm.resize(ntotal);
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<float> rec(d);
#pragma omp for schedule(static)
      for (ptrdiff_t t = 0; t < (ptrdiff_t)ntotal; ++t) {
        std::fill(rec.begin(), rec.end(), 0.0f);
        for (size_t m = 0; m < M; ++m) {
          const float* c = codebooks_.row(offsets_[m] + combo_codes[t * M + m]);
          for (size_t j = 0; j < d; ++j) rec[j] += c[j];
        }
        combo_norm[t] = sq_norm(rec.data(), d);
      }
    }
  }
  std::vector<float> LUT(n * total);
  compute_LUT(n, xq, LUT.data());
  const size_t kk = std::min(k, ntotal);
#pragma omp parallel num_threads(::tessera::num_threads())
  {
    std::vector<std::pair<float, int64_t>> all(ntotal);
#pragma omp for schedule(dynamic, 1)
    for (ptrdiff_t i = 0; i < (ptrdiff_t)n; ++i) {
      const float* lut = LUT.data() + i * total;
      const float qn = IP ? 0.0f : sq_norm(xq + i * d, d);
      for (size_t t = 0; t < ntotal; ++t) {
        float ip = 0;
        for (size_t m = 0; m < M; ++m) ip += lut[offsets_[m] + combo_codes[t * M + m]];
        // Sorted ascending: IP negated so the largest come first; ties by label.
        all[t] = {IP ? -ip : qn + combo_norm[t] - 2 * ip, combo_label[t]};
      }
      std::partial_sort(all.begin(), all.begin() + kk, all.end());
      for (size_t j = 0; j < k; ++j) {
        const bool have = j < kk;
        distances[i * k + j] = have ? (IP ? -all[j].first : all[j].first)
                                    : (IP ? -std::numeric_limits<float>::infinity()
                                          : std::numeric_limits<float>::infinity());
        labels[i * k + j] = have ? all[j].second : -1;
      }
    }
  }
}

void AdditiveQuantizer::knn_centroids_inner_product(size_t n, const float* xq, size_t k, float* distances,
                                                    int64_t* labels) const {
  knn_centroids<true>(n, xq, k, distances, labels);
}

void AdditiveQuantizer::knn_centroids_L2(size_t n, const float* xq, size_t k, float* distances, int64_t* labels) const {
  knn_centroids<false>(n, xq, k, distances, labels);
}

double AdditiveQuantizer::reconstruction_error(MatrixView<const float> x) const {
  check_trained("reconstruction_error");
  check_input(x, "input");
  if (x.rows == 0) return 0.0;
  const size_t M = num_codebooks(), d = dim(), block = 65536;
  double total = 0;
  for (size_t b = 0; b < x.rows; b += block) {
    const size_t nb = std::min(block, x.rows - b);
    const auto xb = x.rows_slice(b, nb);
    std::vector<int32_t> codes(nb * M);
    encode(xb, codes.data());
    std::vector<float> rec(nb * d);
    decode_unpacked(nb, codes.data(), rec.data());
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) num_threads(::tessera::num_threads())
    for (ptrdiff_t i = 0; i < (ptrdiff_t)nb; ++i)
      for (size_t j = 0; j < d; ++j) {
        const double t = double(xb(i, j)) - rec[i * d + j];
        s += t * t;
      }
    total += s;
  }
  return total / double(x.rows);
}

}  // namespace tessera
