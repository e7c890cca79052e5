#include "tessera/quant/rabitq_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <utility>

#include "core/simd.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"
#include "tessera/core/threading.h"
#include "tessera/quant/rabitq_codes.h"
#include "quant/rabitq_sums.h"

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
// The code's bit fields from its integers u (d values of B bits; signs and ex zeroed by the caller): the top
// bits one per coordinate, the lower B − 1 bits contiguous, least significant first.
void pack_code(const uint16_t* u, size_t d, int bits, uint8_t* signs, uint8_t* ex) {
  for (size_t j = 0; j < d; ++j) signs[j >> 3] |= uint8_t(((u[j] >> (bits - 1)) & 1) << (j & 7));
  if (bits == 1) return;
  const uint32_t mask = (1u << (bits - 1)) - 1;
  uint64_t acc = 0;
  int held = 0;
  for (size_t j = 0; j < d; ++j) {
    acc |= uint64_t(u[j] & mask) << held;
    held += bits - 1;
    while (held >= 8) *ex++ = uint8_t(acc), acc >>= 8, held -= 8;
  }
  if (held > 0) *ex = uint8_t(acc);
}

// 1/‖v‖, or 0 for a zero vector (cosine's normalisation: a zero vector stays zero).
double inverse_norm(const float* v, size_t d) {
  double n2 = 0;
  for (size_t j = 0; j < d; ++j) n2 += double(v[j]) * v[j];
  return n2 > 0 ? 1.0 / std::sqrt(n2) : 0.0;
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
  TESSERA_CHECK_ARG(params.metric == MetricType::L2 || params.metric == MetricType::inner_product ||
                        params.metric == MetricType::cosine,
                    "metric must be L2, inner product or cosine");
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
  const bool cosine = params_.metric == MetricType::cosine;
  for (size_t i = 0; i < x.rows; ++i) {
    const double scale = cosine ? inverse_norm(&x(i, 0), d) : 1.0;  // cosine: the mean of the unit vectors
    for (size_t j = 0; j < d; ++j) mean[j] += x(i, j) * scale;
  }
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
  const bool cosine = params_.metric == MetricType::cosine;
  std::vector<char> zero(std::min(n, kRowsPerBlock), 0);
  for (size_t b0 = 0; b0 < n; b0 += kRowsPerBlock) {
    check_interrupt();
    const size_t nb = std::min(kRowsPerBlock, n - b0);
    for (size_t i = 0; i < nb; ++i) {
      const double scale = cosine ? inverse_norm(&x(b0 + i, 0), d) : 1.0;
      zero[i] = cosine && scale == 0;
      for (size_t j = 0; j < d; ++j) resid[i * d + j] = float(x(b0 + i, j) * scale) - centroid[j];
    }
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
        double sums[2];
        detail::rabitq_residual_sums(r, pc, d, sums);
        const double norm2 = sums[0], r_dot_pc = sums[1];
        const double norm = std::sqrt(norm2);
        if (norm > 0) {
          for (size_t j = 0; j < d; ++j) unit[j] = float(r[j] / norm);
          if (fast_scale_ > 0) rabitq::quantize_with_scale(d, unit.data(), bits, fast_scale_, u.data());
          else rabitq::quantize_exact(d, unit.data(), bits, u.data());
        } else {
          std::fill(u.begin(), u.end(), uint16_t(1u << (bits - 1)));  // the + side, magnitude ½
        }
        // Per level: ⟨r, x⟩, ⟨x, Pc⟩, ‖x‖² for the 1-bit code (x₁ = ±½) and the B-bit one (x = u + c_B).
        double ls[5];
        detail::rabitq_level_sums(r, pc, u.data(), d, bits, cb, ls);
        const double r1 = ls[0], pc1 = ls[1], rb = ls[2], pcb = ls[3], xb2 = ls[4];
        pack_code(u.data(), d, bits, code, code + sign_bytes_);
        uint8_t* f = code + sign_bytes_ + ex_bytes_;
        put_float(f, zero[size_t(ii)] ? -1.0f : float(norm));  // −1: a zero vector (cosine)
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
    const double norm = std::max(0.0f, get_float(f)), norm2 = norm * norm;  // −1 marks a zero vector (cosine)
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
  for (size_t i = 0; i < n; ++i) {
    const bool zero = get_float(codes + i * code_size_ + sign_bytes_ + ex_bytes_) < 0;
    for (size_t j = 0; j < d; ++j) out[i * d + j] = zero ? 0.0f : out[i * d + j] + centroid[j];
  }
}

RaBitQuantizer::Query RaBitQuantizer::prepare_query(const float* q) const {
  check_trained("prepare_query");
  const size_t d = dim();
  for (size_t j = 0; j < d; ++j) TESSERA_CHECK_ARG(std::isfinite(q[j]), "query coordinate " << j << " is not finite");
  Query query;
  query.rotated.resize(d);
  if (params_.metric == MetricType::cosine) {
    const double scale = inverse_norm(q, d);
    query.zero = scale == 0;
    std::vector<float> unit(d);
    for (size_t j = 0; j < d; ++j) unit[j] = float(q[j] * scale);
    rotation_.apply(1, unit.data(), query.rotated.data());
  } else {
    rotation_.apply(1, q, query.rotated.data());
  }
  double s = 0;
  for (float v : query.rotated) s += v;
  query.sum = float(s);
  set_centroid(query, q, centroid_.data());
  return query;
}

namespace {

// (centroid term, ‖q − c‖) of query q against centroid c: L2 ‖q − c‖², IP ⟨q, c⟩, cosine ⟨q/‖q‖, c⟩.
std::pair<float, float> centroid_terms(MetricType metric, const float* q, const float* centroid, size_t d) {
  const double scale = metric == MetricType::cosine ? inverse_norm(q, d) : 1.0;
  double dist2 = 0, dot = 0;
  for (size_t j = 0; j < d; ++j) {
    const double v = double(q[j]) * scale, diff = v - centroid[j];
    dist2 += diff * diff, dot += v * centroid[j];
  }
  return {float(metric == MetricType::L2 ? dist2 : dot), float(std::sqrt(dist2))};
}

// ρ = ⟨r̄_x, r̄_y⟩ from two codes' cosine s = ⟨x̄, ȳ⟩ (same rotation), κ = ⟨x̄, r̄_x⟩·⟨ȳ, r̄_y⟩. The linear
// inversion ρ = s/κ is unbiased for unrelated vectors but not for near ones, whose rounding errors are correlated
// (two equal vectors have x̄ = ȳ, s = 1, and s/κ = 1/κ > 1). For 1-bit codes of rotated (near-Gaussian)
// coordinates E[s] = (2/π)·arcsin ρ (the arcsine law of sign correlations, κ ≈ 2/π): there ρ = F⁻¹(s) with
// F(ρ) = κ·ρ + (1 − κ)·(arcsin ρ − ρ)/(π/2 − 1) (slope κ at 0, F(±1) = ±1, the arcsine law when κ = 2/π), by
// safeguarded Newton steps. For B > 1 the errors decorrelate faster than that model says (it over-corrects),
// so the linear inversion is kept, clamped to [−1, 1].
double correlation_from_codes(double s, double kappa, bool one_bit) {
  kappa = std::clamp(kappa, 1e-6, 1.0);
  if (!one_bit) return std::clamp(s / kappa, -1.0, 1.0);
  s = std::clamp(s, -1.0, 1.0);
  const double sign = s < 0 ? -1.0 : 1.0, target = std::abs(s), w = (1 - kappa) / (M_PI / 2 - 1);
  double lo = 0, hi = 1, rho = std::min(1.0, target / kappa);
  for (int it = 0; it < 60; ++it) {
    const double f = kappa * rho + w * (std::asin(rho) - rho) - target;
    if (f > 0) hi = rho;
    else lo = rho;
    if (std::abs(f) < 1e-13 || hi - lo < 1e-13) break;
    const double slope = kappa + w * (1 / std::sqrt(std::max(1e-300, 1 - rho * rho)) - 1);
    double next = rho - f / slope;
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    rho = next;
  }
  return sign * rho;
}

// The final value: L2 clamped at 0, cosine to [−1, 1].
float finish(MetricType metric, double value) {
  if (metric == MetricType::L2) return float(std::max(0.0, value));
  if (metric == MetricType::cosine) return float(std::clamp(value, -1.0, 1.0));
  return float(value);
}

}  // namespace

void RaBitQuantizer::set_centroid(Query& query, const float* q, const float* centroid) const {
  std::tie(query.centroid_term, query.distance_to_centroid) = centroid_terms(params_.metric, q, centroid, dim());
}

RabitqEstimate RaBitQuantizer::estimate(const Query& query, const uint8_t* code, bool msb_only) const {
  const size_t d = dim();
  if (query.zero || get_float(code + sign_bytes_ + ex_bytes_) < 0) return {0.0f, 0.0f};  // cosine with a zero vector
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
  return {finish(params_.metric, value), float(bound)};
}

}  // namespace tessera

namespace tessera {

void RaBitQuantizer::unpack(const uint8_t* code, bool full, uint16_t* u) const {
  const size_t d = dim();
  const int bits = params_.bits;
  for (size_t j = 0; j < d; ++j) u[j] = uint16_t((code[j >> 3] >> (j & 7)) & 1);
  if (!full || bits == 1) return;
  // The lower B − 1 bits, least significant first: a 4-byte window at the field's byte (the factors follow the
  // field, so the window stays inside the code).
  const uint8_t* ex = code + sign_bytes_;
  const uint32_t mask = (1u << (bits - 1)) - 1;
  for (size_t j = 0; j < d; ++j) {
    const size_t bit = j * size_t(bits - 1);
    uint32_t w;
    std::memcpy(&w, ex + (bit >> 3), 4);
    u[j] = uint16_t((u[j] << (bits - 1)) | ((w >> (bit & 7)) & mask));
  }
}

RaBitQuantizer::QuantizedQuery RaBitQuantizer::prepare_quantized_query(const float* q, int query_bits,
                                                                      uint64_t seed) const {
  check_trained("prepare_quantized_query");
  TESSERA_CHECK_ARG(query_bits >= 1 && query_bits <= 8, "query bits must be 1..8, got " << query_bits);
  const Query fq = prepare_query(q);  // checks q; rotated (and normalised for cosine)
  const size_t d = dim();
  QuantizedQuery query;
  query.bits = query_bits;
  query.centroid_term = fq.centroid_term;
  query.distance_to_centroid = fq.distance_to_centroid;
  query.zero = fq.zero;
  const auto [lo, hi] = std::minmax_element(fq.rotated.begin(), fq.rotated.end());
  const uint32_t top = (1u << query_bits) - 1;
  query.lower = *lo;
  // Δ rounded up to a float, so that (q'_i − v_l)/Δ ≤ 2^B_q − 1: no level is clamped, the rounding stays unbiased
  // with respect to the stored v_l and Δ.
  float delta = float((double(*hi) - double(*lo)) / top);
  if (double(delta) * top < double(*hi) - double(*lo)) delta = std::nextafter(delta, INFINITY);
  query.delta = delta;
  query.levels.assign(d, 0);
  const size_t words = (d + 63) / 64;
  query.planes.assign(size_t(query_bits) * words, 0);
  Rng rng(derive_seed(seed, 0x9b1a5));
  uint32_t sum = 0;
  for (size_t j = 0; j < d; ++j) {
    const double u = double(rng() >> 11) * 0x1.0p-53;  // uniform in [0, 1)
    uint32_t level = 0;
    if (delta > 0) level = uint32_t(std::min(double(top), std::floor((double(fq.rotated[j]) - *lo) / delta + u)));
    query.levels[j] = uint8_t(level);
    sum += level;
    for (int b = 0; b < query_bits; ++b) query.planes[size_t(b) * words + j / 64] |= uint64_t((level >> b) & 1) << (j % 64);
  }
  query.level_sum = sum;
  return query;
}

void RaBitQuantizer::set_centroid(QuantizedQuery& query, const float* q, const float* centroid) const {
  std::tie(query.centroid_term, query.distance_to_centroid) = centroid_terms(params_.metric, q, centroid, dim());
}

RabitqEstimate RaBitQuantizer::estimate(const QuantizedQuery& query, const uint8_t* code, bool msb_only) const {
  const size_t d = dim();
  const uint8_t* f0 = code + sign_bytes_ + ex_bytes_;
  if (query.zero || get_float(f0) < 0) return {0.0f, 0.0f};  // cosine with a zero vector
  const int bits = params_.bits;
  const bool full = bits > 1 && !msb_only;
  // ⟨u, q_u⟩, Σu and Σu²: the top bits by popcounts against the planes; the lower bits (full code) one by one.
  const size_t words = (d + 63) / 64;
  double uq = 0, su = 0, su2 = 0;
  {
    uint64_t top_uq = 0, top_count = 0;
    for (size_t w = 0; w < words; ++w) {
      uint64_t signs = 0;
      std::memcpy(&signs, code + 8 * w, std::min<size_t>(8, sign_bytes_ - 8 * w));
      top_count += uint64_t(__builtin_popcountll(signs));
      for (int b = 0; b < query.bits; ++b)
        top_uq += uint64_t(__builtin_popcountll(signs & query.planes[size_t(b) * words + w])) << b;
    }
    if (!full) {
      uq = double(top_uq), su = su2 = double(top_count);
    } else {
      const double top_weight = double(1u << (bits - 1));
      uq = top_weight * double(top_uq);
      std::vector<uint16_t> u(d);
      unpack(code, true, u.data());
      const uint32_t mask = (1u << (bits - 1)) - 1;
      uint64_t ex_q = 0, sum = 0, sum2 = 0;
      for (size_t j = 0; j < d; ++j) {
        ex_q += uint64_t(u[j] & mask) * query.levels[j];
        sum += u[j], sum2 += uint64_t(u[j]) * u[j];
      }
      uq += double(ex_q), su = double(sum), su2 = double(sum2);
    }
  }
  // ⟨x, q̃⟩ with x = u + c and q̃ = v_l + Δ·q_u.
  const double c = full ? -((1 << bits) - 1) / 2.0 : -0.5, delta = query.delta, lower = query.lower;
  const double ip = delta * uq + lower * su + c * (delta * double(query.level_sum) + double(d) * lower);
  const uint8_t* f = f0 + (full ? 16 : 4);
  const double rescale = get_float(f + 4);
  const double value = get_float(f) + query.centroid_term + rescale * ip;
  const double x_norm = std::sqrt(std::max(0.0, su2 + 2 * c * su + double(d) * c * c));
  const double b1 = double(get_float(f + 8)) * query.distance_to_centroid;
  const double b2 = params_.epsilon0 * std::abs(rescale) * x_norm * 0.5 * delta;
  return {finish(params_.metric, value), float(std::sqrt(b1 * b1 + b2 * b2))};
}

RabitqEstimate RaBitQuantizer::estimate_between(const uint8_t* code_x, const uint8_t* code_y, const float* centroid,
                                                bool msb_only) const {
  check_trained("estimate_between");
  if (params_.metric == MetricType::L2) return between(code_x, nullptr, code_y, nullptr, 0.0, msb_only);
  const size_t d = dim();
  const float* c = centroid ? centroid : centroid_.data();
  std::vector<float> pc;
  const float* rotated = rotated_centroid_.data();
  if (centroid) {
    pc.resize(d);
    rotation_.apply(1, centroid, pc.data());
    rotated = pc.data();
  }
  double cc = 0;
  for (size_t j = 0; j < d; ++j) cc += double(c[j]) * c[j];
  return between(code_x, rotated, code_y, rotated, cc, msb_only);
}

RabitqEstimate RaBitQuantizer::estimate_between(const uint8_t* code_x, const float* centroid_x, const uint8_t* code_y,
                                                const float* centroid_y, bool msb_only) const {
  check_trained("estimate_between");
  const size_t d = dim();
  std::vector<float> pcx(d), pcy(d);
  rotation_.apply(1, centroid_x, pcx.data());
  rotation_.apply(1, centroid_y, pcy.data());
  double cxcy = 0;
  for (size_t j = 0; j < d; ++j) cxcy += double(centroid_x[j]) * centroid_y[j];
  return between(code_x, pcx.data(), code_y, pcy.data(), cxcy, msb_only);
}

RabitqEstimate RaBitQuantizer::between(const uint8_t* cx, const float* pcx, const uint8_t* cy, const float* pcy,
                                       double cxcy, bool msb_only) const {
  const size_t d = dim();
  const uint8_t *fx = cx + sign_bytes_ + ex_bytes_, *fy = cy + sign_bytes_ + ex_bytes_;
  if (get_float(fx) < 0 || get_float(fy) < 0) return {0.0f, 0.0f};  // cosine with a zero vector
  const int bits = params_.bits;
  const bool full = bits > 1 && !msb_only;
  std::vector<uint16_t> ux(d), uy(d);
  unpack(cx, full, ux.data());
  unpack(cy, full, uy.data());
  const double c = full ? -((1 << bits) - 1) / 2.0 : -0.5;
  // ⟨x, y⟩, and the centroid products: L2 ⟨x, Δ⟩, ⟨y, Δ⟩, ‖Δ‖² (Δ = Pc_x − Pc_y); IP ⟨x, Pc_y⟩, ⟨y, Pc_x⟩, ‖Δ‖².
  double xy = 0, xx = 0, yy = 0, x_c = 0, y_c = 0, dd = 0;
  const bool l2 = params_.metric == MetricType::L2;
  for (size_t j = 0; j < d; ++j) {
    const double x = ux[j] + c, y = uy[j] + c;
    xy += x * y, xx += x * x, yy += y * y;
    if (pcx) {
      const double delta = double(pcx[j]) - pcy[j];
      dd += delta * delta;
      if (l2) x_c += x * delta, y_c += y * delta;
      else x_c += x * pcy[j], y_c += y * pcx[j];
    }
  }
  const size_t level = full ? 16 : 4;
  const double nx = get_float(fx), ny = get_float(fy);
  const double add_x = get_float(fx + level), add_y = get_float(fy + level);
  const double sx = l2 ? -0.5 * get_float(fx + level + 4) : get_float(fx + level + 4);
  const double sy = l2 ? -0.5 * get_float(fy + level + 4) : get_float(fy + level + 4);
  const double ex = get_float(fx + level + 8), ey = get_float(fy + level + 8);
  // ⟨r_x, r_y⟩ = ‖r_x‖‖r_y‖·ρ, ρ from the codes' cosine ⟨x̄, ȳ⟩ (see correlation_from_codes).
  double rxry = 0;
  if (nx > 0 && ny > 0 && sx != 0 && sy != 0) {
    const double kx = nx / (sx * std::sqrt(xx)), ky = ny / (sy * std::sqrt(yy));  // ⟨x̄, r̄_x⟩, ⟨ȳ, r̄_y⟩
    rxry = nx * ny * correlation_from_codes(xy / std::sqrt(xx * yy), kx * ky, !full);
  }
  const double value = l2 ? dd + nx * nx + ny * ny + 2 * sx * x_c - 2 * sy * y_c - 2 * rxry
                          : cxcy + add_x + sx * x_c + add_y + sy * y_c + rxry;
  const double bx = ex * std::sqrt(dd + ny * ny), by = ey * std::sqrt(dd + nx * nx);
  return {finish(params_.metric, value), float(std::sqrt(bx * bx + by * by))};
}

namespace detail {

// Sums in double over d coordinates (rabitq_sums.h), in four partial sums (coordinate j to sum j mod 4), added as
// (s0 + s1) + (s2 + s3): the same bits on every unit (vector extensions; the build has no fused multiply-adds,
// and products of floats, halves and small integers are exact in double).
namespace {
typedef double V4d __attribute__((vector_size(32)));
typedef float V4f __attribute__((vector_size(16)));
typedef uint16_t V4u __attribute__((vector_size(8)));
#define TESSERA_LANES_INLINE inline __attribute__((always_inline))
TESSERA_LANES_INLINE double lanes_total(const V4d& v) { return (v[0] + v[1]) + (v[2] + v[3]); }
TESSERA_LANES_INLINE void load4(const float* p, V4d& out) {
  V4f f;
  std::memcpy(&f, p, sizeof f);
  out = __builtin_convertvector(f, V4d);
}
}  // namespace

// out = {‖r‖², ⟨r, pc⟩}.
TESSERA_CLONE_PER_ISA void rabitq_residual_sums(const float* r, const float* pc, size_t d, double* out) {
  V4d n2{}, rp{};
  size_t j = 0;
  for (; j + 4 <= d; j += 4) {
    V4d x, c;
    load4(r + j, x), load4(pc + j, c);
    n2 += x * x, rp += x * c;
  }
  for (; j < d; ++j) n2[j & 3] += double(r[j]) * r[j], rp[j & 3] += double(r[j]) * pc[j];
  out[0] = lanes_total(n2), out[1] = lanes_total(rp);
}

// Per code level, with x₁ = ±½ (the top bit of u) and x = u + cb: out = {⟨r, x₁⟩, ⟨x₁, pc⟩, ⟨r, x⟩, ⟨x, pc⟩, ‖x‖²}.
TESSERA_CLONE_PER_ISA void rabitq_level_sums(const float* r, const float* pc, const uint16_t* u, size_t d, int bits,
                                             double cb, double* out) {
  V4d r1{}, pc1{}, rb{}, pcb{}, xb2{};
  size_t j = 0;
  const int top = bits - 1;
  for (; j + 4 <= d; j += 4) {
    V4u w;
    std::memcpy(&w, u + j, sizeof w);
    V4d x, c;
    load4(r + j, x), load4(pc + j, c);
    const V4d x1 = __builtin_convertvector(V4u(w >> top), V4d) - 0.5, xb = __builtin_convertvector(w, V4d) + cb;
    r1 += x1 * x, pc1 += x1 * c, rb += xb * x, pcb += xb * c, xb2 += xb * xb;
  }
  for (; j < d; ++j) {
    const double x1 = (u[j] >> top) ? 0.5 : -0.5, xb = u[j] + cb;
    r1[j & 3] += x1 * r[j], pc1[j & 3] += x1 * pc[j];
    rb[j & 3] += xb * r[j], pcb[j & 3] += xb * pc[j], xb2[j & 3] += xb * xb;
  }
  out[0] = lanes_total(r1), out[1] = lanes_total(pc1), out[2] = lanes_total(rb), out[3] = lanes_total(pcb);
  out[4] = lanes_total(xb2);
}

}  // namespace detail

}  // namespace tessera
