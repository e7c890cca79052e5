#include "tessera/quant/rabitq_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"
#include "tessera/quant/rabitq_codes.h"

namespace tessera {

namespace {

constexpr size_t kRowsPerBlock = 256;  // rows rotated together (one GEMM or one parallel loop)

inline void put_float(uint8_t* p, float v) { std::memcpy(p, &v, 4); }
inline float get_float(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint32_t read_bits(const uint8_t* p, size_t bit, int nbits) {
  uint32_t v = 0;
  for (int b = 0; b < nbits; ++b, ++bit) v |= uint32_t((p[bit >> 3] >> (bit & 7)) & 1) << b;
  return v;
}
inline void write_bits(uint8_t* p, size_t bit, int nbits, uint32_t v) {
  for (int b = 0; b < nbits; ++b, ++bit) p[bit >> 3] |= uint8_t(((v >> b) & 1) << (bit & 7));
}

// The three metric-specific factors of one code level (see the class comment).
struct LevelFactors {
  float add, rescale, error;
};

LevelFactors level_factors(MetricType metric, double norm2, double r_dot_x, double x_dot_pc, double r_dot_pc,
                           double x_norm2, double eps0, size_t d) {
  if (norm2 == 0) return {0.0f, 0.0f, 0.0f};  // exact: the estimate is the centroid term alone
  const double rescale = norm2 / r_dot_x;
  const double cos = r_dot_x / std::sqrt(norm2 * x_norm2);
  const double spread = std::sqrt(std::max(0.0, 1.0 / (cos * cos) - 1.0) / double(std::max<size_t>(d - 1, 1)));
  const double err = std::sqrt(norm2) * eps0 * spread;
  if (metric == MetricType::L2) return {float(norm2 + 2 * rescale * x_dot_pc), float(-2 * rescale), float(2 * err)};
  return {float(r_dot_pc - rescale * x_dot_pc), float(rescale), float(err)};
}

}  // namespace

RaBitQuantizer::RaBitQuantizer(size_t d, RabitqParams params) : Quantizer(d), params_(params) {
  TESSERA_CHECK_ARG(d >= 1, "RaBitQ needs dimension d ≥ 1");
  TESSERA_CHECK_ARG(params.bits >= 1 && params.bits <= rabitq::kMaxBits,
                    "bits per coordinate must be 1.." << rabitq::kMaxBits << ", got " << params.bits);
  TESSERA_CHECK_ARG(params.metric == MetricType::L2 || params.metric == MetricType::inner_product,
                    "metric must be L2 or inner product");
  TESSERA_CHECK_ARG(std::isfinite(params.epsilon0) && params.epsilon0 >= 0,
                    "epsilon0 must be finite and non-negative, got " << params.epsilon0);
  sign_bytes_ = (d + 7) / 8;
  ex_bytes_ = (d * size_t(params.bits - 1) + 7) / 8;
  code_size_ = sign_bytes_ + ex_bytes_ + 4 * (1 + 3 * (params.bits > 1 ? 2 : 1));
}

void RaBitQuantizer::check_trained(const char* what) const {
  TESSERA_CHECK_ARG(trained_, what << ": the RaBitQ quantizer is not trained: call train first");
}

void RaBitQuantizer::train(MatrixView<const float> x) {
  check_input(x, "RaBitQ training data");
  TESSERA_CHECK_ARG(x.rows >= 1, "RaBitQ training needs at least one vector");
  const size_t d = dim();
  std::vector<double> mean(d, 0.0);
  for (size_t i = 0; i < x.rows; ++i)
    for (size_t j = 0; j < d; ++j) mean[j] += x(i, j);
  std::vector<float> centroid(d);
  for (size_t j = 0; j < d; ++j) centroid[j] = float(mean[j] / double(x.rows));
  restore(RandomRotation(d, params_.rotation, params_.seed), std::move(centroid));
}

void RaBitQuantizer::restore(RandomRotation rotation, std::vector<float> centroid) {
  TESSERA_CHECK_ARG(rotation.dim() == dim() && rotation.kind() == params_.rotation,
                    "the stored rotation (" << rotation_kind_name(rotation.kind()) << ", d = " << rotation.dim()
                                            << ") does not fit the codec (" << rotation_kind_name(params_.rotation)
                                            << ", d = " << dim() << ")");
  TESSERA_CHECK_ARG(centroid.size() == dim(), "the stored centroid has " << centroid.size() << " values, not " << dim());
  rotation_ = std::move(rotation);
  centroid_ = std::move(centroid);
  rotated_centroid_.resize(dim());
  rotation_.apply(1, centroid_.data(), rotated_centroid_.data());
  fast_scale_ = params_.fast_quantization && params_.bits > 1 ? rabitq::constant_scale(dim(), params_.bits) : 0.0;
  trained_ = true;
}

void RaBitQuantizer::encode_packed(MatrixView<const float> x, uint8_t* codes) const {
  check_trained("encode");
  check_input(x, "vectors to encode");
  encode_rows(x, centroid_.data(), rotated_centroid_.data(), codes);
}

void RaBitQuantizer::encode_with_centroid(MatrixView<const float> x, const float* centroid, uint8_t* codes) const {
  check_trained("encode");
  check_input(x, "vectors to encode");
  const size_t d = dim();
  for (size_t j = 0; j < d; ++j)
    TESSERA_CHECK_ARG(std::isfinite(centroid[j]), "centroid coordinate " << j << " is not finite");
  std::vector<float> pc(d);
  rotation_.apply(1, centroid, pc.data());
  encode_rows(x, centroid, pc.data(), codes);
}

void RaBitQuantizer::encode_rows(MatrixView<const float> x, const float* centroid, const float* pc,
                                 uint8_t* codes) const {
  const size_t d = dim(), n = x.rows;
  const int bits = params_.bits;
  const double cb = -((1 << bits) - 1) / 2.0;
  std::vector<float> resid(std::min(n, kRowsPerBlock) * d);
  for (size_t b0 = 0; b0 < n; b0 += kRowsPerBlock) {
    check_interrupt();
    const size_t nb = std::min(kRowsPerBlock, n - b0);
    for (size_t i = 0; i < nb; ++i)
      for (size_t j = 0; j < d; ++j) resid[i * d + j] = x(b0 + i, j) - centroid[j];
    rotation_.apply(nb, resid.data(), resid.data());
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<float> unit(d);
      std::vector<uint16_t> u(d);
#pragma omp for schedule(dynamic, 8)
      for (ptrdiff_t ii = 0; ii < (ptrdiff_t)nb; ++ii) {
        const float* r = resid.data() + size_t(ii) * d;
        uint8_t* code = codes + (b0 + size_t(ii)) * code_size_;
        std::memset(code, 0, code_size_);
        double norm2 = 0, r_dot_pc = 0;
        for (size_t j = 0; j < d; ++j) norm2 += double(r[j]) * r[j], r_dot_pc += double(r[j]) * pc[j];
        const double norm = std::sqrt(norm2);
        if (norm > 0) {
          for (size_t j = 0; j < d; ++j) unit[j] = float(r[j] / norm);
          if (fast_scale_ > 0) rabitq::quantize_with_scale(d, unit.data(), bits, fast_scale_, u.data());
          else rabitq::quantize_exact(d, unit.data(), bits, u.data());
        } else {
          std::fill(u.begin(), u.end(), uint16_t(1u << (bits - 1)));  // the + side, magnitude ½
        }
        // Per level: ⟨r, x⟩, ⟨x, Pc⟩, ‖x‖² for the 1-bit code (x₁ = ±½) and the B-bit one (x = u + c_B).
        double r1 = 0, pc1 = 0, rb = 0, pcb = 0, xb2 = 0;
        for (size_t j = 0; j < d; ++j) {
          const double x1 = (u[j] >> (bits - 1)) ? 0.5 : -0.5, xb = u[j] + cb;
          r1 += x1 * r[j], pc1 += x1 * pc[j];
          rb += xb * r[j], pcb += xb * pc[j], xb2 += xb * xb;
          write_bits(code, j, 1, u[j] >> (bits - 1));
          if (bits > 1) write_bits(code + sign_bytes_, j * size_t(bits - 1), bits - 1, u[j] & ((1u << (bits - 1)) - 1));
        }
        uint8_t* f = code + sign_bytes_ + ex_bytes_;
        put_float(f, float(norm));
        const LevelFactors one =
            level_factors(params_.metric, norm2, r1, pc1, r_dot_pc, 0.25 * double(d), params_.epsilon0, d);
        put_float(f + 4, one.add), put_float(f + 8, one.rescale), put_float(f + 12, one.error);
        if (bits > 1) {
          const LevelFactors all = level_factors(params_.metric, norm2, rb, pcb, r_dot_pc, xb2, params_.epsilon0, d);
          put_float(f + 16, all.add), put_float(f + 20, all.rescale), put_float(f + 24, all.error);
        }
      }
    }
  }
}

void RaBitQuantizer::decode_packed(const uint8_t* codes, size_t n, float* out) const {
  check_trained("decode");
  decode_with_centroid(codes, n, centroid_.data(), out);
}

void RaBitQuantizer::decode_with_centroid(const uint8_t* codes, size_t n, const float* centroid, float* out) const {
  check_trained("decode");
  const size_t d = dim();
  const int bits = params_.bits;
  const double cb = -((1 << bits) - 1) / 2.0;
  std::vector<float> pc(d);
  rotation_.apply(1, centroid, pc.data());
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads()) if (n > 64)
  for (ptrdiff_t ii = 0; ii < (ptrdiff_t)n; ++ii) {
    const uint8_t* code = codes + size_t(ii) * code_size_;
    float* o = out + size_t(ii) * d;
    const uint8_t* f = code + sign_bytes_ + ex_bytes_;
    const double norm = get_float(f), norm2 = norm * norm;
    // ⟨r, x⟩ from the factors: rescale = ‖r‖²/⟨r, x⟩ (L2 stores −2·rescale).
    const float stored = get_float(f + (bits > 1 ? 20 : 8));
    const double rescale = params_.metric == MetricType::L2 ? -0.5 * stored : stored;
    double x2 = 0;
    for (size_t j = 0; j < d; ++j) {
      const double x = read_bits(code, j, 1) * double(1u << (bits - 1)) +
                       (bits > 1 ? read_bits(code + sign_bytes_, j * size_t(bits - 1), bits - 1) : 0) + cb;
      o[j] = float(x);
      x2 += x * x;
    }
    const double s = norm2 > 0 && rescale != 0 ? (norm2 / rescale) / x2 : 0.0;
    for (size_t j = 0; j < d; ++j) o[j] = float(o[j] * s);
  }
  rotation_.apply_transpose(n, out, out);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) out[i * d + j] += centroid[j];
}

RaBitQuantizer::Query RaBitQuantizer::prepare_query(const float* q) const {
  check_trained("prepare_query");
  const size_t d = dim();
  for (size_t j = 0; j < d; ++j) TESSERA_CHECK_ARG(std::isfinite(q[j]), "query coordinate " << j << " is not finite");
  Query query;
  query.rotated.resize(d);
  rotation_.apply(1, q, query.rotated.data());
  double s = 0;
  for (float v : query.rotated) s += v;
  query.sum = float(s);
  set_centroid(query, q, centroid_.data());
  return query;
}

void RaBitQuantizer::set_centroid(Query& query, const float* q, const float* centroid) const {
  double dist2 = 0, dot = 0;
  for (size_t j = 0; j < dim(); ++j) {
    const double diff = double(q[j]) - centroid[j];
    dist2 += diff * diff, dot += double(q[j]) * centroid[j];
  }
  query.centroid_term = float(params_.metric == MetricType::L2 ? dist2 : dot);
  query.distance_to_centroid = float(std::sqrt(dist2));
}

RabitqEstimate RaBitQuantizer::estimate(const Query& query, const uint8_t* code, bool msb_only) const {
  const size_t d = dim();
  const int bits = params_.bits;
  const bool full = bits > 1 && !msb_only;
  // ⟨x, q'⟩ = ⟨u, q'⟩ + c·Σq' (u: the code's integers, c = −(2^B − 1)/2, or the top bit alone and c = −½).
  double ip = 0;
  for (size_t j = 0; j < d; ++j) {
    double u = read_bits(code, j, 1);
    if (full) u = u * double(1u << (bits - 1)) + read_bits(code + sign_bytes_, j * size_t(bits - 1), bits - 1);
    ip += u * query.rotated[j];
  }
  ip += (full ? -((1 << bits) - 1) / 2.0 : -0.5) * query.sum;
  const uint8_t* f = code + sign_bytes_ + ex_bytes_ + (full ? 16 : 4);
  const double value = get_float(f) + query.centroid_term + double(get_float(f + 4)) * ip;
  const double bound = double(get_float(f + 8)) * query.distance_to_centroid;
  return {float(params_.metric == MetricType::L2 ? std::max(0.0, value) : value), float(bound)};
}

}  // namespace tessera
