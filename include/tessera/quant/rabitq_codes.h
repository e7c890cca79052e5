// Extended RaBitQ's code search: the B-bit grid point closest in angle to a rotated vector.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tessera::rabitq {

/// Largest supported bits per coordinate.
constexpr int kMaxBits = 9;

/// The B-bit code of one rotated, centred vector o (d floats), by Algorithm 1 of Extended RaBitQ (Gao, Gou,
/// Xu, Yang, Long, Wong, "Practical and Asymptotically Optimal Quantization of High-Dimensional Vectors in
/// Euclidean Space for Approximate Nearest Neighbor Search", SIGMOD 2025): among the vectors x with
/// coordinates ±(k_i + ½), k_i ∈ {0, …, 2^(B−1) − 1}, the one of largest cosine with o.
///
/// The signs follow o (o_i ≥ 0: +). With a_i = |o_i|, the best magnitudes are k_i(t) = min(⌊t·a_i⌋, M) for some
/// t > 0 (M = 2^(B−1) − 1): the exact sweep raises t through every critical value (k_i + 1)/a_i, in increasing
/// order (ties: lower i first), keeping Σ(k_i + ½)a_i and Σ(k_i + ½)² up to date; the result is the best point
/// met — clamped at M from t = 0 on, so no unreachable code is ever scored. The sweep is not run in full: a
/// branch and bound over stretches of t (each bounded by the fact that a step at t_e adds a_i to ⟨x, a⟩ and
/// 2·t_e·a_i to ‖x‖²) drops the stretches that cannot hold a better point and sweeps the rest, returning the
/// full sweep's code (d ≥ 4; below, codes that are odd multiples of one another tie exactly and either may be
/// returned). About d·(20 + 2^B/2) operations at d = 128 instead of O(d·2^B·log d).
///
/// codes[i] = (sign_i ≪ (B − 1)) | ex_i, sign_i = 1 for +, ex_i = k_i for + and M − k_i for −; so that
/// codes[i] − (2^B − 1)/2 = ±(k_i + ½), and the top bit (codes[i] ≫ (B − 1)) is the 1-bit RaBitQ code.
/// Returns the cosine ⟨x, o⟩/(‖x‖·‖o‖) of the code found (0 when o = 0). bits: 1..kMaxBits.
double quantize_exact(size_t d, const float* o, int bits, uint16_t* codes, double* best_t = nullptr);

/// The same with a constant rescale factor t: k_i = min(⌊t·a_i⌋, M) in one pass, O(d), for unit-norm o
/// (callers normalise). With t = constant_scale(d, bits) the cosine is within about 1e-3 of the exact one
/// for rotated data, whose coordinates are spread like a random unit vector's.
double quantize_with_scale(size_t d, const float* o, int bits, double t, uint16_t* codes);

/// The mean best t of quantize_exact over 100 random unit vectors of dimension d (seeded): the factor for
/// quantize_with_scale. Deterministic; computed on first use per (d, bits) and cached.
double constant_scale(size_t d, int bits);

}  // namespace tessera::rabitq
