// The codec's per-vector sums (RaBitQuantizer::encode_rows), exposed for the tests that compare every
// instruction-set clone with a scalar reference.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tessera::detail {

/// Sums in double over d coordinates in four partial sums, coordinate j going to sum j mod 4, then
/// (s0 + s1) + (s2 + s3); the same bits on every unit.
/// out = {‖r‖², ⟨r, pc⟩}  (r, pc: d floats).
void rabitq_residual_sums(const float* r, const float* pc, size_t d, double* out);
/// With x₁_j = ±½ by the top bit of u_j (bit bits − 1) and x_j = u_j + cb:
/// out = {⟨r, x₁⟩, ⟨x₁, pc⟩, ⟨r, x⟩, ⟨x, pc⟩, ‖x‖²}.
void rabitq_level_sums(const float* r, const float* pc, const uint16_t* u, size_t d, int bits, double cb,
                       double* out);

}  // namespace tessera::detail
