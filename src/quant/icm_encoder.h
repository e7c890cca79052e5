// The LSQ encoder: iterated local search (ILS) around iterated conditional modes (ICM) for additive codes,
// cache-blocked (see icm_encoder.cpp for why it is fast). Private to the library; LocalSearchQuantizer's
// public steps (icm_encode, icm_encode_step, perturb_codes, ...) call these.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/huge_pages.h"
#include "tessera/core/matrix.h"

namespace tessera::detail {

/// What encoding needs from M codebooks of K codewords each (all of dimension d).
struct IcmTables {
  size_t M = 0, K = 0, d = 0;
  FloatMatrix books;           ///< M·K × d, codeword (m, k) at row m·K + k
  std::vector<float> norms;    ///< M·K: ‖C_m[k]‖²
  std::vector<float> binaries; ///< (optional) M × M × K × K: 2⟨C_m1[k1], C_m2[k2]⟩ at ((m1·M + m2)·K + k1)·K + k2
  /// The same as int16 × qscales[m1·M + m2] (one scale per target position m2: the same for every m1), row
  /// ((m1·K + k1)·M + m2), K entries (when K is a multiple of
  /// 16, each 16 interleaved: entry j at 2j for j < 8, at 2(j − 8) + 1 otherwise).
  std::vector<int16_t, HugePageAllocator<int16_t>> qbinaries;
  std::vector<float> qscales;      ///< M × M
  /// K = 16 (small_k): the whole table as floats, MK × MK, row m1·K + k1 holding 2⟨C_m1[k1], C_m2[k2]⟩ at
  /// column m2·K + k2, with the diagonal blocks (m2 = m1) zero; qbinaries is not built then.
  std::vector<float> dense;
};

/// Codebooks of this many codewords are encoded with costs updated eagerly from the dense float table.
inline bool small_k(size_t K) { return K == 16; }

/// Tables for flat codebooks (M·K × d): the int16 table always, the float one (binaries: what the plain
/// formulation and compute_binary_terms read) if float_table.
IcmTables make_icm_tables(MatrixView<const float> books, size_t M, size_t K, bool float_table = true);

/// Where the unary terms U_m(k) = ‖C_m[k]‖² − 2⟨x_i, C_m[k]⟩ of vector i, codebook m lie:
/// base + i·vector_stride + m·codebook_stride, K contiguous floats.
struct UnaryLayout {
  const float* base;
  size_t vector_stride, codebook_stride;
  const float* row(size_t i, size_t m) const { return base + i * vector_stride + m * codebook_stride; }
};

/// `sweeps` ICM sweeps over codebooks 0..M−1 in order on n vectors' codes (n × M, in place): each code
/// in turn becomes argmin_k U_m(k) + Σ_{m'≠m} B_{m',m}(c_m', k) (ties: lowest k). A vector whose sweep
/// changed nothing is at a fixed point and skips the remaining sweeps (same codes as running them).
/// binaries: M × M × K × K as in IcmTables.
void icm_sweeps(const float* binaries, size_t M, size_t K, UnaryLayout u, int32_t* codes, size_t n, size_t sweeps);

/// Replace `nperts` random positions of every code (n × M) by random codewords (positions drawn with
/// replacement, as in LSQ). Vector i's draws depend only on (seed, first_row + i): results never depend
/// on blocking or threads.
void perturb_codes(int32_t* codes, size_t n, size_t M, size_t K, size_t nperts, uint64_t seed, size_t first_row);

/// Uniform random codes (n × M), keyed like perturb_codes.
void random_codes(int32_t* codes, size_t n, size_t M, size_t K, uint64_t seed, size_t first_row);

struct IlsParams {
  size_t ils_iters = 16, icm_iters = 4, nperts = 4;
  uint64_t seed = 0;
  /// ICM by icm_sweeps (the costs summed afresh for every position, as LSQ states it) instead of costs
  /// kept up to date as codes move. Both choose the same codes up to float rounding.
  bool exact = false;
  /// Start from greedy residual codes instead of the given ones (which are then only written): each position in
  /// turn takes the codeword of least energy given the positions before it, from the same tables (no
  /// nearest-neighbour search over the codebooks).
  bool greedy_start = false;
};

/// Iterated local search from the given codes (n × M, in place) of x (n × d): ils_iters times, perturb
/// the best codes so far, run ICM, and keep the result for the vectors whose squared error went down
/// (strictly). errors (optional, n): each vector's final ‖x − x'‖². Parallel over blocks of vectors;
/// checks for interrupts between chunks.
void ils_encode(const IcmTables& t, MatrixView<const float> x, int32_t* codes, const IlsParams& p,
                float* errors = nullptr);

/// ‖x_i − Σ_m C_m[c_im]‖² for every vector (n).
void reconstruction_errors(const IcmTables& t, MatrixView<const float> x, const int32_t* codes, float* errors);

}  // namespace tessera::detail
