// The Extended RaBitQ codec: B-bit codes of rotated residuals with unbiased distance estimators.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/metric.h"
#include "tessera/quant/quantizer.h"
#include "tessera/quant/random_rotation.h"

namespace tessera {

struct RabitqParams {
  int bits = 4;                                     ///< B, bits per coordinate: 1..9 (the top one is the 1-bit code)
  MetricType metric = MetricType::L2;               ///< L2, inner_product or cosine (see RaBitQuantizer)
  RotationKind rotation = RotationKind::hadamard;   ///< the random orthogonal transform
  bool fast_quantization = false;                   ///< constant rescale factor instead of Algorithm 1's sweep
  double epsilon0 = 1.9;                            ///< error-bound width (the papers' ε₀; ≈ 94% coverage)
  uint64_t seed = 0x12345;                          ///< draws the rotation
};

/// A distance estimate and the half-width of its confidence interval: the true value lies in
/// [value − bound, value + bound] with probability about 94% at ε₀ = 1.9.
struct RabitqEstimate {
  float value;
  float bound;
};

/// Extended RaBitQ (Gao et al., SIGMOD 2025, arXiv 2409.09913), built on RaBitQ (Gao & Long, SIGMOD 2024,
/// arXiv 2405.12497). A vector o is coded against a centroid c (the training mean, or an IVF list's): its
/// residual r = P(o − c) in the rotated space gets the B-bit code of rabitq::quantize_exact (Algorithm 1;
/// x = code − (2^B − 1)/2 per coordinate, the top bit alone the 1-bit RaBitQ code, x₁ = ±½), plus per-code
/// factors. For a query q (q' = Pq), ⟨r, P(q − c)⟩ is estimated without bias by rescale·⟨x, P(q − c)⟩ with
/// rescale = ‖r‖²/⟨r, x⟩ (the papers' ‖r‖·⟨x̄, q⟩/⟨x̄, o⟩ for unit x̄, o, q), so that
///   L2:  ‖o − q‖² ≈ add + ‖q − c‖² + rescale′·⟨x, q'⟩   (add = ‖r‖² + 2·rescale·⟨x, Pc⟩, rescale′ = −2·rescale)
///   IP:  ⟨o, q⟩   ≈ add + ⟨q, c⟩  + rescale·⟨x, q'⟩     (add = ⟨r, Pc⟩ − rescale·⟨x, Pc⟩)
/// and the error is at most error·‖q − c‖, error = k·‖r‖·ε₀·√((1/cos² − 1)/(d − 1)) (k = 2 for L2, 1 for IP),
/// cos = ⟨r, x⟩/(‖r‖·‖x‖), with probability about 94% at ε₀ = 1.9. The query side depends on q' only, so one
/// prepared query serves every list. Both the 1-bit (top bit) and the full B-bit code carry such factors:
/// a search can estimate from the 1-bit code, prune by its bound, and refine the survivors.
///
/// Three query forms share the code:
///   - the float query (prepare_query / estimate): q' in float32;
///   - the scalar-quantised query (prepare_quantized_query, RaBitQ §3.3): q' rounded at random to B_q bits
///     (default 4) per coordinate, q' ≈ v_l + Δ·q_u with E[v_l + Δ·q_u] = q', so the estimator stays unbiased
///     (it is the float one applied to an unbiased copy of q'); integer ⟨code, q_u⟩ by popcounts;
///   - another code (estimate_between: data as query, for graph builds and deduplication), same centroid or
///     two different ones: ⟨r_x, r_y⟩ ≈ rescale_x·rescale_y·⟨x, y⟩.
///
/// Metrics: L2 estimates ‖o − q‖² (clamped at 0), inner_product ⟨o, q⟩, cosine ⟨o, q⟩/(‖o‖‖q‖): vectors and
/// queries are normalised first (training too: the centroid is the mean of the unit vectors), then it is the
/// inner product of unit vectors, clamped to [−1, 1]. A zero vector or zero query has cosine 0 with everything
/// by definition: its estimates are exactly {0, 0}. A zero data vector is marked in its code by ‖r‖ = −1 (no
/// other code has a negative norm); it decodes to the zero vector.
///
/// Packed code (code_size() bytes): ⌈d/8⌉ bytes of top bits, ⌈d·(B − 1)/8⌉ bytes of the lower B − 1 bits
/// (least significant bit first), then float32 ‖r‖, then (add, rescale, error) of the 1-bit code and, for
/// B > 1, of the B-bit code. A zero residual codes exactly (every factor 0, the estimate is the centroid's).
/// For cosine the factors are the inner product's (of the unit vectors).
class RaBitQuantizer : public Quantizer {
 public:
  explicit RaBitQuantizer(size_t d, RabitqParams params = {});

  std::string type_name() const override { return "rabitq"; }
  bool is_trained() const override { return trained_; }
  /// The centroid: the mean of x (n × d); the rotation is drawn from the seed.
  void train(MatrixView<const float> x) override;
  size_t code_size() const override { return code_size_; }
  /// Codes of x (n × d) against the trained centroid.
  void encode_packed(MatrixView<const float> x, uint8_t* codes) const override;
  /// c + Pᵀ(s·x), s = ⟨r, x⟩/‖x‖² (the least-squares point on the code's direction).
  void decode_packed(const uint8_t* codes, size_t n, float* out) const override;

  /// Codes of x against another centroid (d floats: an IVF list's).
  void encode_with_centroid(MatrixView<const float> x, const float* centroid, uint8_t* codes) const;
  void decode_with_centroid(const uint8_t* codes, size_t n, const float* centroid, float* out) const;

  /// What estimation needs of one query: q' = Pq, Σq', and the centroid terms (‖q − c‖², ⟨q, c⟩, ‖q − c‖).
  struct Query {
    std::vector<float> rotated;  ///< q' = Pq (d)
    float sum = 0;               ///< Σ q'_i
    float centroid_term = 0;     ///< L2: ‖q − c‖²; IP: ⟨q, c⟩
    float distance_to_centroid = 0;  ///< ‖q − c‖ (scales the error bound)
    bool zero = false;           ///< cosine: a zero query (every estimate is exactly {0, 0})
  };
  /// q (d floats) prepared against the trained centroid.
  Query prepare_query(const float* q) const;
  /// The centroid terms of query q against another centroid (for a prepared query's other lists).
  void set_centroid(Query& query, const float* q, const float* centroid) const;
  /// The estimate from a packed code: the full B-bit code, or its top bit only (msb_only).
  RabitqEstimate estimate(const Query& query, const uint8_t* code, bool msb_only = false) const;

  /// A query scalar-quantised to B_q bits per coordinate (RaBitQ, Gao & Long, SIGMOD 2024, §3.3): with
  /// v_l = min q'_i, Δ = (max q'_i − v_l)/(2^B_q − 1), q_u[i] = ⌊(q'_i − v_l)/Δ + u_i⌋, u_i uniform in [0, 1)
  /// (randomised rounding: E[v_l + Δ·q_u[i]] = q'_i exactly). Then, for a code x = u + c_B (c_B = −(2^B − 1)/2),
  ///   ⟨x, q'⟩ ≈ Δ·⟨u, q_u⟩ + v_l·Σu + c_B·(Δ·Σq_u + d·v_l)
  /// without bias, and the distance estimator on top stays unbiased. ⟨u, q_u⟩ = 2^(B−1)·⟨top bits, q_u⟩ +
  /// ⟨lower bits, q_u⟩, the first as Σ_j 2^j·popcount(top bits AND plane_j).
  struct QuantizedQuery {
    int bits = 4;                   ///< B_q (1..8)
    float lower = 0;                ///< v_l = min_i q'_i
    float delta = 0;                ///< Δ (0 when q' is constant: then q' = v_l exactly)
    uint32_t level_sum = 0;         ///< Σ q_u[i]
    std::vector<uint8_t> levels;    ///< q_u (d values in [0, 2^B_q))
    std::vector<uint64_t> planes;   ///< B_q bit planes of q_u, ⌈d/64⌉ words each (plane j first): bit i of word
                                    ///< i/64 of plane j = bit j of q_u[i]
    float centroid_term = 0;        ///< as Query's
    float distance_to_centroid = 0; ///< as Query's
    bool zero = false;              ///< as Query's
  };
  /// q (d floats) rotated and scalar-quantised to query_bits (1..8) bits, against the trained centroid. The
  /// random rounding is drawn from seed: the same seed gives the same levels.
  QuantizedQuery prepare_quantized_query(const float* q, int query_bits = 4, uint64_t seed = 0) const;
  /// The centroid terms of a quantised query against another centroid.
  void set_centroid(QuantizedQuery& query, const float* q, const float* centroid) const;
  /// The estimate with the quantised query: the float query's estimator on v_l + Δ·q_u. Its bound adds, in
  /// quadrature, ε₀ times the rounding's standard deviation (at most Δ/2 per coordinate, times |rescale|·‖x‖).
  RabitqEstimate estimate(const QuantizedQuery& query, const uint8_t* code, bool msb_only = false) const;

  /// Code × code (data as query): the metric's value between two coded vectors o_x, o_y — ‖o_x − o_y‖²,
  /// ⟨o_x, o_y⟩ or their cosine — from their codes alone. This overload: both coded against the same centroid
  /// (the trained one when centroid is null). In the rotated space, with r the residuals, s = ‖r‖²/⟨r, x⟩ the
  /// codes' rescale factors and Δ = P(c_x − c_y) (zero here):
  ///   L2: ‖Δ‖² + ‖r_x‖² + ‖r_y‖² + 2·s_x·⟨x, Δ⟩ − 2·s_y·⟨y, Δ⟩ − 2·s_x·s_y·⟨x, y⟩
  ///   IP: ⟨c_x, c_y⟩ + (add_x + s_x·⟨x, Pc_y⟩) + (add_y + s_y·⟨y, Pc_x⟩) + s_x·s_y·⟨x, y⟩
  /// (add: the IP factor, so ⟨r_x, Pc_x⟩ enters exactly). s_x·s_y·⟨x, y⟩ = ‖r_x‖‖r_y‖·⟨x̄, ȳ⟩/κ, κ = ⟨x̄, r̄_x⟩⟨ȳ, r̄_y⟩,
  /// is the symmetric form of the papers' estimator (each code's shrinkage divided out), unbiased for unrelated
  /// vectors; in the formulas ⟨x̄, ȳ⟩/κ is replaced by ρ: for B = 1 the inverse of the arcsine law
  /// ⟨x̄, ȳ⟩ ≈ κ·ρ + (1 − κ)(arcsin ρ − ρ)/(π/2 − 1) (unbiased for near pairs too: equal vectors give ρ = 1, not
  /// 1/κ); for B > 1 the linear ⟨x̄, ȳ⟩/κ clamped to [−1, 1] (near pairs keep a small bias: correlated rounding
  /// errors; about −6%, −1%, −0.2% of ‖r_x‖‖r_y‖ at B = 2, 3, 4 for correlation 0.93). The bound combines the two
  /// codes' error factors in quadrature, err_x·√(‖Δ‖² + ‖r_y‖²) and err_y·√(‖Δ‖² + ‖r_x‖²) (a heuristic: the
  /// papers bound one-sided estimates only). msb_only: both from their top bits.
  RabitqEstimate estimate_between(const uint8_t* code_x, const uint8_t* code_y, const float* centroid = nullptr,
                                  bool msb_only = false) const;
  /// The same for codes against different centroids (d floats each, e.g. two IVF lists'); rotates them
  /// (O(d log d) each for the Hadamard rotation).
  RabitqEstimate estimate_between(const uint8_t* code_x, const float* centroid_x, const uint8_t* code_y,
                                  const float* centroid_y, bool msb_only = false) const;

  /// A trained codec from stored parts (index files): the rotation (of this dimension and kind) and the
  /// centroid (d floats).
  void restore(RandomRotation rotation, std::vector<float> centroid);

  const RabitqParams& params() const { return params_; }
  const RandomRotation& rotation() const { return rotation_; }
  /// The trained centroid (d floats).
  const std::vector<float>& centroid() const { return centroid_; }

 private:
  void check_trained(const char* what) const;
  // A code's integers u (d values) and Σu, Σu² for the full code or its top bit.
  void unpack(const uint8_t* code, bool full, uint16_t* u) const;
  RabitqEstimate between(const uint8_t* cx, const float* pcx, const uint8_t* cy, const float* pcy, double cxcy,
                         bool msb_only) const;
  void encode_rows(MatrixView<const float> x, const float* centroid, const float* rotated_centroid,
                   uint8_t* codes) const;

  RabitqParams params_;
  bool trained_ = false;
  RandomRotation rotation_;
  std::vector<float> centroid_, rotated_centroid_;
  size_t sign_bytes_ = 0, ex_bytes_ = 0, code_size_ = 0;
  double fast_scale_ = 0;
};

}  // namespace tessera
