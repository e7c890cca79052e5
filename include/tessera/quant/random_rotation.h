// Random orthogonal transforms of R^d: RaBitQ's first step (its codes are made for rotated vectors).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

/// Which random orthogonal transform a RandomRotation is.
enum class RotationKind { dense, hadamard };
/// "dense" or "hadamard" → RotationKind; InvalidArgument otherwise.
RotationKind parse_rotation_kind(const std::string& name);
const char* rotation_kind_name(RotationKind kind);

/// A random orthogonal transform P of R^d, x ↦ Px. RaBitQ (Gao & Long, SIGMOD 2024, §3.1) quantizes
/// rotated vectors so that every coordinate carries about the same share of a vector's norm, whatever the
/// data's axes; Extended RaBitQ (Gao et al., SIGMOD 2025) keeps that step. Kinds:
///
/// - dense: Q of the QR decomposition of a d × d standard Gaussian matrix, the signs of R's diagonal moved
///   into Q (so P is Haar-distributed). d² floats; O(d²) per vector, one GEMM per batch.
/// - hadamard: three rounds of [random ±1 signs on all d coordinates, then the normalised Walsh–Hadamard
///   transform of a block of L = 2^⌊log₂ d⌋ coordinates] — the leading block [0, L) in rounds 1 and 3, the
///   trailing block [d − L, d) in round 2 (the same block when d is a power of two). Every step is orthogonal,
///   so P is for any d: no zero padding, the rotated space has d dimensions. 3·d signs; O(d log d) per vector.
///
/// The parameters (matrix or signs) are drawn from the seed and stored in model files, so a loaded rotation
/// is the saved one on any platform. Results do not depend on the thread count or the vector unit.
class RandomRotation {
 public:
  RandomRotation() = default;
  /// Draws P for dimension d (d ≥ 1) from seed.
  RandomRotation(size_t d, RotationKind kind, uint64_t seed);
  /// A rotation from stored parameters (see parameters()); FormatError-free checks: InvalidArgument when the
  /// sizes or values do not fit the kind (signs must be ±1, a matrix finite with unit rows).
  static RandomRotation from_parameters(size_t d, RotationKind kind, std::vector<float> parameters);

  size_t dim() const { return d_; }
  RotationKind kind() const { return kind_; }
  /// dense: P row-major (d × d); hadamard: the 3 × d signs (±1) of rounds 1, 2, 3.
  const std::vector<float>& parameters() const { return params_; }

  /// y = P x for n rows (x, y: n × d; y may be x).
  void apply(size_t n, const float* x, float* y) const;
  /// x = Pᵀ y = P⁻¹ y for n rows (y, x: n × d; x may be y).
  void apply_transpose(size_t n, const float* y, float* x) const;
  /// P as a d × d row-major matrix.
  std::vector<float> matrix() const;

 private:
  size_t d_ = 0;
  RotationKind kind_ = RotationKind::hadamard;
  std::vector<float> params_;
};

}  // namespace tessera
