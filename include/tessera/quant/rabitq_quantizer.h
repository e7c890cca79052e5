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
  MetricType metric = MetricType::L2;               ///< what the estimators estimate (see RaBitQuantizer)
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
/// Packed code (code_size() bytes): ⌈d/8⌉ bytes of top bits, ⌈d·(B − 1)/8⌉ bytes of the lower B − 1 bits
/// (least significant bit first), then float32 ‖r‖, then (add, rescale, error) of the 1-bit code and, for
/// B > 1, of the B-bit code. A zero residual codes exactly (every factor 0, the estimate is the centroid's).
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
  };
  /// q (d floats) prepared against the trained centroid.
  Query prepare_query(const float* q) const;
  /// The centroid terms of query q against another centroid (for a prepared query's other lists).
  void set_centroid(Query& query, const float* q, const float* centroid) const;
  /// The estimate from a packed code: the full B-bit code, or its top bit only (msb_only).
  RabitqEstimate estimate(const Query& query, const uint8_t* code, bool msb_only = false) const;

  /// A trained codec from stored parts (index files): the rotation (of this dimension and kind) and the
  /// centroid (d floats).
  void restore(RandomRotation rotation, std::vector<float> centroid);

  const RabitqParams& params() const { return params_; }
  const RandomRotation& rotation() const { return rotation_; }
  /// The trained centroid (d floats).
  const std::vector<float>& centroid() const { return centroid_; }

 private:
  void check_trained(const char* what) const;
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
