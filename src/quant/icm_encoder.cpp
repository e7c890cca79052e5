// Why this encoder is fast (LSQ's time goes into encoding; docs/lsq.md has the measurements):
//  - Lazily synced costs: for the vector being searched, T_m(k) = U_m(k) + Σ_{m'≠m} B_{m',m}(c_m', k) is kept
//    for every position m, together with the codes c_m' each row reflects. When position m is looked at,
//    its row is brought up to date by the codes that differ from those (one pass over the row for all of
//    them, the argmin taken on the way); a move undone before the position is looked at (a rejected ILS
//    step, a perturbation ICM reverts) costs nothing, and a row nothing changed keeps its argmin. This is
//    the ICM of LSQ with its order and its ties, up to float rounding of the maintained sums.
//  - The rows come from an int16 copy of the table (a scale per K × K block, stored by codeword): half the
//    bytes of the float table, which is far larger than L2; all rows of a look are requested at once so
//    that their cache misses overlap. One GEMM per pair of codebooks fills both transposed blocks.
//  - Unary terms by one GEMM per block of vectors; acceptance by the exact squared error, as LSQ does.
//  - Random draws are keyed on (seed, row): blocks run in parallel, results do not depend on threads.
//  - Vector code in 8-lane (32-byte) vectors: one AVX2 register (16-lane generic vectors spill on AVX2).
// icm_sweeps keeps the plain formulation (every position's sum afresh, float table) for the public
// icm_encode_step and for the `exact` option.
#include "quant/icm_encoder.h"

// The vector types below never cross a function boundary outside this file.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/blas.h"
#include "core/row_scan.h"
#include "core/simd.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"
#include "tessera/core/threading.h"

namespace tessera::detail {

namespace {

constexpr size_t kBlockRows = 256;     // vectors per unary GEMM (2 MB of unaries at M·K = 2048)
constexpr size_t kChunkRows = 8192;     // rows between interrupt checks
constexpr size_t kLanes = 16;
using v16 = float __attribute__((vector_size(4 * kLanes)));
// 8 lanes (32 bytes): one register on AVX2, two on the baseline, half of one on AVX-512. Wider generic
// vectors spill on AVX2 (the argmin's 16-lane select did: half of all encoding time).
using v8 = float __attribute__((vector_size(32)));
using i8 = int32_t __attribute__((vector_size(32)));
using s8 = int16_t __attribute__((vector_size(16)));

// By reference: a 64-byte vector returned by value crosses the ABI differently per clone (Clang refuses).
inline void load(v16& v, const float* p) { std::memcpy(&v, p, sizeof v); }
inline void load8(v8& v, const float* p) { std::memcpy(&v, p, sizeof v); }

// acc[k] += row[k] for k < K (K a multiple of 16).
TESSERA_CLONE_PER_ISA void add_row(float* acc, const float* row, size_t K) {
  for (size_t k = 0; k < K; k += kLanes) {
    v16 a, r;
    load(a, acc + k);
    load(r, row + k);
    const v16 v = a + r;
    std::memcpy(acc + k, &v, sizeof v);
  }
}

// min_k v[k] (K a multiple of 8). Exact, so the order of the comparisons does not matter.
TESSERA_CLONE_PER_ISA float min_vec(const float* v, size_t K) {
  v8 m0, m1;
  load8(m0, v);
  m1 = m0;
  size_t k = 8;
  for (; k + 16 <= K; k += 16) {
    v8 a, b;
    load8(a, v + k);
    load8(b, v + k + 8);
    m0 = a < m0 ? a : m0;
    m1 = b < m1 ? b : m1;
  }
  for (; k < K; k += 8) {
    v8 a;
    load8(a, v + k);
    m0 = a < m0 ? a : m0;
  }
  m0 = m1 < m0 ? m1 : m0;
  float mn = m0[0];
  for (size_t l = 1; l < 8; ++l) mn = m0[l] < mn ? m0[l] : mn;
  return mn;
}

// The lowest k with v[k] == mn (K a multiple of 8), or -1.
TESSERA_CLONE_PER_ISA int32_t first_equal(const float* v, size_t K, float mn) {
  v8 target;
  for (size_t l = 0; l < 8; ++l) target[l] = mn;
  for (size_t k = 0; k < K; k += 8) {
    v8 a;
    load8(a, v + k);
    const i8 eq = a == target;
    uint64_t w[4];
    std::memcpy(w, &eq, sizeof w);
    if ((w[0] | w[1]) | (w[2] | w[3]))
      for (size_t j = 0; j < 8; ++j)
        if (v[k + j] == mn) return int32_t(k + j);
  }
  return -1;
}

// argmin_k v[k], lowest k on ties: the minimum, then the first entry equal to it.
int32_t argmin_vec(const float* v, size_t K) {
  if (K % 8 != 0) return (int32_t)(std::min_element(v, v + K) - v);
  const int32_t k = first_equal(v, K, min_vec(v, K));
  return k >= 0 ? k : (int32_t)(std::min_element(v, v + K) - v);  // NaNs only
}

// Σ_j (x_j − Σ_m C_m[c_m]_j)².
TESSERA_CLONE_PER_ISA float squared_error(const float* x, const float* books, size_t d, const int32_t* code,
                                          size_t M, size_t K, float* residual) {
  std::copy(x, x + d, residual);
  for (size_t m = 0; m < M; ++m) {
    const float* c = books + (m * K + (size_t)code[m]) * d;
    for (size_t j = 0; j < d; ++j) residual[j] -= c[j];
  }
  v16 acc = {};
  size_t j = 0;
  for (; j + kLanes <= d; j += kLanes) {
    v16 r;
    load(r, residual + j);
    acc += r * r;
  }
  float s = 0;
  for (size_t l = 0; l < kLanes; ++l) s += acc[l];
  for (; j < d; ++j) s += residual[j] * residual[j];
  return s;
}

// Rows of the int16 table with K a multiple of 16 store each 16 entries interleaved, entry j of the 16 at
// 2j (j < 8) or 2(j − 8) + 1, so that sync_row widens them with shifts; otherwise in order.
inline bool quant_pairs(size_t K) { return K % 16 == 0; }
inline size_t quant_pos(size_t k, size_t K) {
  if (!quant_pairs(K)) return k;
  const size_t j = k & 15;
  return (k & ~size_t(15)) + (j < 8 ? 2 * j : 2 * (j - 8) + 1);
}

// Table entries are integers in [−kQuantMax, kQuantMax] units: 15 bits, so that the difference of two fits
// in an int16.
constexpr float kQuantMax = 16383.0f;
inline int16_t quantize(float v) {
  v = std::clamp(v, -kQuantMax, kQuantMax);
  return (int16_t)(v + (v >= 0 ? 0.5f : -0.5f));
}

// A keyed stream of 64-bit draws.
struct KeyedDraws {
  uint64_t state;
  uint64_t next() { return mix64(state += 0x9e3779b97f4a7c15ULL); }
};

// Uniform in [0, n) from 32 random bits (multiply-shift).
inline uint32_t below(uint32_t bits, size_t n) { return (uint32_t)(((uint64_t)bits * n) >> 32); }

}  // namespace

IcmTables make_icm_tables(MatrixView<const float> books, size_t M, size_t K, bool float_table) {
  IcmTables t;
  t.M = M, t.K = K, t.d = books.cols;
  t.books = FloatMatrix::copy_of(books);
  const size_t MK = M * K;
  t.norms.resize(MK);
  for (size_t r = 0; r < MK; ++r) {
    float s = 0;
    for (size_t j = 0; j < t.d; ++j) s += books(r, j) * books(r, j);
    t.norms[r] = s;
  }
  // Block (m1, m2) = 2·C_m1·C_m2ᵀ, K × K. Its int16 copy is stored by codeword: everything codeword (m1, k1)
  // adds to the other positions' costs, M × K values, is one contiguous row. All blocks that add to
  // position m's costs share one scale (the largest entry of the column over 16383): a row is then synced
  // by summing the int16 differences of all its sources as integers (exact; 15 bits, so add − sub fits in
  // int16) and scaling once, instead of converting and scaling every source. Rounding error: at most 2^-15
  // of the column's largest entry. Block (m2, m1) is the transpose of (m1, m2): one GEMM per pair m1 < m2
  // fills both (the diagonal blocks are never read by the encoder). The float table (all M² blocks, one
  // GEMM each) only for the plain formulation and compute_binary_terms.
  if (small_k(K)) {
    // One GEMM for the whole table (MK × MK, 256 KB at M = 16); the float table is a reordering of it.
    t.dense.resize(MK * MK);
    gemm_abt(MK, MK, t.d, 2.0f, t.books.data(), t.d, t.books.data(), t.d, 0.0f, t.dense.data(), MK);
    if (float_table) {
      t.binaries.resize(MK * MK);
      for (size_t m1 = 0; m1 < M; ++m1)
        for (size_t k1 = 0; k1 < K; ++k1)
          for (size_t m2 = 0; m2 < M; ++m2)
            std::copy_n(t.dense.data() + (m1 * K + k1) * MK + m2 * K, K,
                        t.binaries.data() + ((m1 * M + m2) * K + k1) * K);
    }
    for (size_t r = 0; r < MK; ++r) std::fill_n(t.dense.data() + r * MK + (r / K) * K, K, 0.0f);
    return t;
  }
  if (float_table) t.binaries.resize(MK * MK);
  t.qbinaries.assign(MK * MK, 0);
  t.qscales.assign(M * M, 1.0f);
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t m1 = 0; m1 < M; ++m1)
    for (size_t m2 = m1 + 1; m2 < M; ++m2) pairs.emplace_back(m1, m2);
  // The upper blocks in float until every column's scale is known: in the float table when there is one.
  std::vector<float> upper(float_table ? 0 : pairs.size() * K * K);
  auto block = [&](size_t b) {
    const auto [m1, m2] = pairs[b];
    return float_table ? t.binaries.data() + (m1 * M + m2) * K * K : upper.data() + b * K * K;
  };
  std::vector<float> amax(pairs.size());
#pragma omp parallel num_threads(::tessera::num_threads())
  {
#pragma omp for schedule(dynamic, 1)
    for (ptrdiff_t b = 0; b < (ptrdiff_t)pairs.size(); ++b) {
      const auto [m1, m2] = pairs[size_t(b)];
      float* blk = block(size_t(b));
      gemm_abt(K, K, t.d, 2.0f, t.books.row(m1 * K), t.d, t.books.row(m2 * K), t.d, 0.0f, blk, K);
      float a = 0;
      for (size_t e = 0; e < K * K; ++e) a = std::max(a, std::fabs(blk[e]));
      amax[size_t(b)] = a;
    }
#pragma omp single
    {
      std::vector<float> col(M, 0.0f);
      for (size_t b = 0; b < pairs.size(); ++b) {
        const auto [m1, m2] = pairs[b];
        col[m1] = std::max(col[m1], amax[b]);
        col[m2] = std::max(col[m2], amax[b]);
      }
      for (size_t m1 = 0; m1 < M; ++m1)
        for (size_t m2 = 0; m2 < M; ++m2) t.qscales[m1 * M + m2] = col[m2] > 0 ? col[m2] / kQuantMax : 1.0f;
    }
#pragma omp for schedule(dynamic, 1)
    for (ptrdiff_t b = 0; b < (ptrdiff_t)pairs.size(); ++b) {
      const auto [m1, m2] = pairs[size_t(b)];
      const float* blk = block(size_t(b));
      const float inv12 = 1.0f / t.qscales[m1 * M + m2], inv21 = 1.0f / t.qscales[m2 * M + m1];
      for (size_t k1 = 0; k1 < K; ++k1) {
        int16_t* q = t.qbinaries.data() + ((m1 * K + k1) * M + m2) * K;
        for (size_t k2 = 0; k2 < K; ++k2) {
          q[quant_pos(k2, K)] = quantize(blk[k1 * K + k2] * inv12);
          t.qbinaries[((m2 * K + k2) * M + m1) * K + quant_pos(k1, K)] = quantize(blk[k1 * K + k2] * inv21);
        }
      }
    }
    if (float_table) {
      // The rest of the float table: the transposed blocks and the diagonal ones.
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t b = 0; b < (ptrdiff_t)(M * M); ++b) {
        const size_t m1 = size_t(b) / M, m2 = size_t(b) % M;
        if (m1 < m2) continue;
        gemm_abt(K, K, t.d, 2.0f, t.books.row(m1 * K), t.d, t.books.row(m2 * K), t.d, 0.0f,
                 t.binaries.data() + size_t(b) * K * K, K);
      }
    }
  }
  return t;
}

void icm_sweeps(const float* binaries, size_t M, size_t K, UnaryLayout u, int32_t* codes, size_t n,
                size_t sweeps) {
  // Position m of every vector at once: the sums U_m + Σ_{m'≠m} B_{m',m}(c_m', ·) are built in a buffer
  // one m' at a time, so only the K × K block B_{m',m} (256 KB at K = 256) is read meanwhile and stays
  // in L2 for all the vectors. Per vector, the terms are added in the order a scalar loop adds them.
  std::vector<uint8_t> active(n, 1), changed(n);
  std::vector<size_t> live;
  std::vector<float> acc(n * K);
  const bool vec = K % kLanes == 0;
  for (size_t s = 0; s < sweeps; ++s) {
    live.clear();
    for (size_t i = 0; i < n; ++i)
      if (active[i]) live.push_back(i);
    if (live.empty()) break;
    std::fill(changed.begin(), changed.end(), 0);
    for (size_t m = 0; m < M; ++m) {
      for (size_t i : live) std::copy(u.row(i, m), u.row(i, m) + K, acc.data() + i * K);
      for (size_t m2 = 0; m2 < M; ++m2) {
        if (m2 == m) continue;
        const float* block = binaries + (m2 * M + m) * K * K;
        for (size_t i : live) {
          const float* row = block + (size_t)codes[i * M + m2] * K;
          float* a = acc.data() + i * K;
          if (vec) {
            add_row(a, row, K);
          } else {
            for (size_t k = 0; k < K; ++k) a[k] += row[k];
          }
        }
      }
      for (size_t i : live) {
        const float* a = acc.data() + i * K;
        const int32_t k = vec ? argmin_vec(a, K) : (int32_t)(std::min_element(a, a + K) - a);
        if (k != codes[i * M + m]) codes[i * M + m] = k, changed[i] = 1;
      }
    }
    for (size_t i = 0; i < n; ++i) active[i] = active[i] && changed[i];
  }
}

namespace {

// Greedy residual codes from the float table: position m in turn takes argmin_k U_m(k) + Σ_{m'<m} B_{m',m}(c_m', k)
// (ties: lowest k), the codeword nearest to what the positions before it leave of the vector.
void greedy_plain(const float* binaries, size_t M, size_t K, UnaryLayout u, int32_t* codes, size_t n) {
  std::vector<float> acc(K);
  for (size_t i = 0; i < n; ++i)
    for (size_t m = 0; m < M; ++m) {
      std::copy(u.row(i, m), u.row(i, m) + K, acc.data());
      for (size_t m2 = 0; m2 < m; ++m2) {
        const float* row = binaries + ((m2 * M + m) * K + (size_t)codes[i * M + m2]) * K;
        for (size_t k = 0; k < K; ++k) acc[k] += row[k];
      }
      codes[i * M + m] = (int32_t)(std::min_element(acc.begin(), acc.end()) - acc.begin());
    }
}

}  // namespace

void perturb_codes(int32_t* codes, size_t n, size_t M, size_t K, size_t nperts, uint64_t seed, size_t first_row) {
  for (size_t i = 0; i < n; ++i) {
    KeyedDraws g{derive_seed(seed, first_row + i)};
    for (size_t p = 0; p < nperts; ++p) {
      const uint64_t z = g.next();
      codes[i * M + below(uint32_t(z >> 32), M)] = (int32_t)below(uint32_t(z), K);
    }
  }
}

void random_codes(int32_t* codes, size_t n, size_t M, size_t K, uint64_t seed, size_t first_row) {
  for (size_t i = 0; i < n; ++i) {
    KeyedDraws g{derive_seed(seed, first_row + i)};
    for (size_t m = 0; m < M; ++m) codes[i * M + m] = (int32_t)below(uint32_t(g.next() >> 32), K);
  }
}

void reconstruction_errors(const IcmTables& t, MatrixView<const float> x, const int32_t* codes, float* errors) {
#pragma omp parallel num_threads(::tessera::num_threads())
  {
    std::vector<float> residual(t.d);
#pragma omp for schedule(static)
    for (ptrdiff_t i = 0; i < (ptrdiff_t)x.rows; ++i)
      errors[i] = squared_error(x.row(i), t.books.data(), t.d, codes + i * t.M, t.M, t.K, residual.data());
  }
}

namespace {

// One source position's pending contribution to a cost row: + add − sub (sub may be null), in the row's
// column units.
struct Pending {
  const int16_t* add;
  const int16_t* sub;
};

using w16 = int16_t __attribute__((vector_size(32)));

// Every lane of v becomes the least of its 8 lanes: butterflies of lane swaps. (In place: a 32-byte vector
// passed by value changes the ABI between clones, which Clang refuses.)
template <class V>
TESSERA_ROW_SCAN_INLINE void min_of_8_lanes(V& v) {
  V s = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
  v = s < v ? s : v;
  s = __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
  v = s < v ? s : v;
  s = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
  v = s < v ? s : v;
}

// row[k] = src[k] + scale · Σ_p (add_p[k] − sub_p[k]); returns argmin_k row[k], lowest k on ties. The sum is
// taken in integers (exact: every difference fits in an int16, the sum of up to 2^16 of them in an int32)
// and converted and scaled once; one pass over the row for all sources, the argmin tracked per lane on
// the way (strict <: a lane keeps its earliest minimum).
TESSERA_CLONE_PER_ISA int32_t sync_row(const float* src, float* row, const Pending* pend, size_t np, size_t K,
                                       float scale) {
  v8 mn;
  i8 at, lane = {0, 1, 2, 3, 4, 5, 6, 7};
  for (size_t l = 0; l < 8; ++l) mn[l] = std::numeric_limits<float>::infinity(), at[l] = -1;
  auto track = [&](const v8& v) {
    const i8 lt = v < mn;
    mn = lt ? v : mn;
    at = lt ? lane : at;
    lane += 8;
  };
  // 16 entries at a time, stored interleaved (quant_pairs): as 8 int32 lanes, the low halves are entries
  // 0..7 and the high halves entries 8..15, widened by shifts (generic vectors' int16 → int32 conversion
  // compiles to a pair of half-width conversions and an insert on AVX2). 32 entries per pass when K
  // allows (half the per-source loop overhead), else 16.
  size_t k = 0;
  for (; k + 32 <= K; k += 32) {
    i8 s0 = {}, s1 = {}, s2 = {}, s3 = {};
    for (size_t p = 0; p < np; ++p) {
      w16 a, a2;
      std::memcpy(&a, pend[p].add + k, sizeof a);
      std::memcpy(&a2, pend[p].add + k + 16, sizeof a2);
      if (const int16_t* sub = pend[p].sub) {
        w16 b, b2;
        std::memcpy(&b, sub + k, sizeof b);
        std::memcpy(&b2, sub + k + 16, sizeof b2);
        a -= b;
        a2 -= b2;
      }
      i8 d, d2;
      std::memcpy(&d, &a, sizeof d);
      std::memcpy(&d2, &a2, sizeof d2);
      s0 += (d << 16) >> 16;
      s1 += d >> 16;
      s2 += (d2 << 16) >> 16;
      s3 += d2 >> 16;
    }
    v8 v0, v1, v2, v3;
    load8(v0, src + k);
    load8(v1, src + k + 8);
    load8(v2, src + k + 16);
    load8(v3, src + k + 24);
    v0 += __builtin_convertvector(s0, v8) * scale;
    v1 += __builtin_convertvector(s1, v8) * scale;
    v2 += __builtin_convertvector(s2, v8) * scale;
    v3 += __builtin_convertvector(s3, v8) * scale;
    std::memcpy(row + k, &v0, sizeof v0);
    std::memcpy(row + k + 8, &v1, sizeof v1);
    std::memcpy(row + k + 16, &v2, sizeof v2);
    std::memcpy(row + k + 24, &v3, sizeof v3);
    track(v0);
    track(v1);
    track(v2);
    track(v3);
  }
  for (; k < K; k += 16) {
    i8 s0 = {}, s1 = {};
    for (size_t p = 0; p < np; ++p) {
      w16 a;
      std::memcpy(&a, pend[p].add + k, sizeof a);
      if (const int16_t* sub = pend[p].sub) {
        w16 b;
        std::memcpy(&b, sub + k, sizeof b);
        a -= b;
      }
      i8 d;
      std::memcpy(&d, &a, sizeof d);
      s0 += (d << 16) >> 16;
      s1 += d >> 16;
    }
    v8 v0, v1;
    load8(v0, src + k);
    load8(v1, src + k + 8);
    v0 += __builtin_convertvector(s0, v8) * scale;
    v1 += __builtin_convertvector(s1, v8) * scale;
    std::memcpy(row + k, &v0, sizeof v0);
    std::memcpy(row + k + 8, &v1, sizeof v1);
    track(v0);
    track(v1);
  }
  // Across lanes: the least value, then the lowest index among the lanes holding it (a lane that never took
  // a value holds +inf and −1). Butterflies of lane swaps instead of a loop with a branch per lane.
  v8 lo = mn;
  min_of_8_lanes(lo);
  constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  i8 cand = ((mn == lo) & (at >= 0)) ? at : i8{} + kNone;
  min_of_8_lanes(cand);
  return cand[0] == kNone ? -1 : cand[0];  // −1: all NaN
}

// The same for K not a multiple of 16 (K < 16 in practice): scalar, the same arithmetic.
int32_t sync_row_scalar(const float* src, float* row, const Pending* pend, size_t np, size_t K, float scale) {
  float best = std::numeric_limits<float>::infinity();
  int32_t arg = -1;
  for (size_t k = 0; k < K; ++k) {
    int32_t sum = 0;
    for (size_t p = 0; p < np; ++p) sum += int32_t(pend[p].add[k]) - (pend[p].sub ? int32_t(pend[p].sub[k]) : 0);
    const float v = src[k] + float(sum) * scale;
    row[k] = v;
    if (v < best) best = v, arg = int32_t(k);
  }
  return arg;
}

// Scratch for one vector's ILS. T_m(k) = U_m(k) + Σ_{m'≠m} B_{m',m}(s_{m,m'}, k), where s_{m,m'} (syn) is the
// code of position m' that row m reflects: rows are brought up to date with the current codes lazily, when
// their position is looked at, and only by the codes that differ then (a move undone before the position is
// looked at, e.g. a rejected ILS step, costs nothing). arg caches the argmin of a row not changed since.
// The state of the rows at the best codes so far is kept too, without copying rows: every row has two
// slots, and the first sync of a row in an ILS step reads the best state's slot and writes the other one.
// A rejected step goes back by taking the best slots again (and copies of the small syn, arg, fresh); an
// accepted one makes the working slots the best ones.
struct VectorSearch {
  std::vector<float> T, residual;  // T: 2 slots of K floats per row
  std::vector<int32_t> cur, syn, arg, syn_best, arg_best;
  std::vector<uint8_t> fresh, fresh_best, slot, slot_best;
  std::vector<Pending> pend;
  size_t K;
  VectorSearch(size_t M, size_t K_, size_t d)
      : T(2 * M * K_), residual(d), cur(M), syn(M * M), arg(M), syn_best(M * M), arg_best(M), fresh(M),
        fresh_best(M), slot(M), slot_best(M), pend(M), K(K_) {}
  float* row(size_t m, size_t s) { return T.data() + (2 * m + s) * K; }
  void save() {
    std::copy(syn.begin(), syn.end(), syn_best.begin());
    std::copy(arg.begin(), arg.end(), arg_best.begin());
    std::copy(fresh.begin(), fresh.end(), fresh_best.begin());
    std::copy(slot.begin(), slot.end(), slot_best.begin());
  }
  void restore() {
    std::copy(syn_best.begin(), syn_best.end(), syn.begin());
    std::copy(arg_best.begin(), arg_best.end(), arg.begin());
    std::copy(fresh_best.begin(), fresh_best.end(), fresh.begin());
    std::copy(slot_best.begin(), slot_best.end(), slot.begin());
  }
};

// Collect the sources of row m whose codes differ from the ones it reflects (and mark them synced);
// returns their count.
size_t gather(const IcmTables& t, VectorSearch& w, size_t m, bool prefetch) {
  const size_t M = t.M, K = t.K;
  const int32_t* c = w.cur.data();
  int32_t* syn = w.syn.data() + m * M;
  const int16_t* q = t.qbinaries.data();
  size_t np = 0;
  auto take = [&](size_t m2) {
    // Rows of block (m2, m): everything codeword c of position m2 adds to position m's costs.
    const int16_t* add = q + ((m2 * K + (size_t)c[m2]) * M + m) * K;
    const int16_t* sub = syn[m2] >= 0 ? q + ((m2 * K + (size_t)syn[m2]) * M + m) * K : nullptr;
    // The row to add is usually cold (a perturbation's or a move's new codeword); the one to take out
    // was read at this row's last sync.
    if (prefetch)
      for (size_t b = 0; b < K * sizeof(int16_t); b += 64) __builtin_prefetch(reinterpret_cast<const char*>(add) + b);
    w.pend[np++] = Pending{add, sub};
    syn[m2] = c[m2];
  };
  if (M <= 64) {
    // Which sources differ, without a branch per position (they are unpredictable), then only those.
    uint64_t differ = 0;
    for (size_t m2 = 0; m2 < M; ++m2) differ |= uint64_t(syn[m2] != c[m2]) << m2;
    differ &= ~(uint64_t(1) << m);
    for (; differ; differ &= differ - 1) take((size_t)__builtin_ctzll(differ));
    return np;
  }
  for (size_t m2 = 0; m2 < M; ++m2)
    if (m2 != m && syn[m2] != c[m2]) take(m2);
  return np;
}

// Sync row m now (np sources gathered) and cache its argmin.
// src: the row's current state (null: its working slot); the result goes to its working slot, which is
// the other slot than the best state's.
int32_t sync_now(const IcmTables& t, VectorSearch& w, size_t m, size_t np, const float* src = nullptr) {
  const size_t K = t.K;
  if (!src) {
    src = w.row(m, w.slot[m]);
    if (w.slot[m] == w.slot_best[m]) w.slot[m] ^= 1;
  }
  float* row = w.row(m, w.slot[m]);
  // Every block adding to position m has the column's scale (qscales[m' · M + m] for any m').
  const float scale = t.qscales[m];
  int32_t k = quant_pairs(K) ? sync_row(src, row, w.pend.data(), np, K, scale)
                             : sync_row_scalar(src, row, w.pend.data(), np, K, scale);
  if (k < 0) k = w.cur[m];  // NaN costs: stay
  w.arg[m] = k, w.fresh[m] = 1;
  return k;
}

// One vector's ILS as a sequence of looks, so that several vectors' searches can be interleaved: the rows
// a look needs are requested (prepare) one look of another vector ahead of their use (execute), and the
// cache misses of one search overlap the work of the others. Each vector's sequence of looks, and so its
// codes, is the same as if it ran alone.
struct Search {
  VectorSearch w;
  const float* x = nullptr;
  const float* u = nullptr;
  int32_t* best = nullptr;
  float* error_out = nullptr;
  size_t row = 0, s = 0, sweep = 0, m = 0, np = 0;
  size_t ndiff = 0;         // positions whose code differs from the best codes'
  bool best_fixed = false;  // the best codes are a fixed point of ICM (an ICM that converged found them)
  float best_err = 0, best_energy = 0, margin = 0;
  bool in_step = false, moved = false, rejected = false;
  Search(size_t M, size_t K, size_t d) : w(M, K, d) {}
};

// E(c) − ‖x‖² from the unary terms and the int16 table: Σ_m U_m(c_m) + Σ_{m<m'} B_{m,m'}(c_m, c_m'), each
// table entry within half a unit (qscales / 2) of the float value.
float table_energy(const IcmTables& t, const float* u, const int32_t* c) {
  const size_t M = t.M, K = t.K;
  const int16_t* q = t.qbinaries.data();
  float e = 0;
  for (size_t m = 0; m < M; ++m) e += u[m * K + (size_t)c[m]];
  for (size_t m = 0; m < M; ++m) {
    const int16_t* r = q + (m * K + (size_t)c[m]) * M * K;
    for (size_t m2 = m + 1; m2 < M; ++m2) e += t.qscales[m * M + m2] * float(r[m2 * K + quant_pos((size_t)c[m2], K)]);
  }
  return e;
}

void start_vector(const IcmTables& t, Search& v, const float* x, const float* u, int32_t* best, size_t row,
                  float* error_out, bool greedy) {
  const size_t M = t.M, K = t.K;
  v.x = x, v.best = best, v.row = row, v.error_out = error_out;
  std::fill(v.w.syn.begin(), v.w.syn.end(), -1);
  std::fill(v.w.fresh.begin(), v.w.fresh.end(), 0);
  std::fill(v.w.slot.begin(), v.w.slot.end(), 0);
  std::fill(v.w.slot_best.begin(), v.w.slot_best.end(), 1);  // slot 0 is the working one
  int32_t* c = v.w.cur.data();
  bool fixed = true;
  if (greedy) {
    // Greedy residual codes from the same rows: position m takes the argmin of its costs given the positions
    // before it (the undecided ones, at −1, equal their rows' −1 and are not gathered); then every row
    // takes in the positions after it.
    std::fill(c, c + M, -1);
    for (size_t m = 0; m < M; ++m) best[m] = c[m] = std::max(sync_now(t, v.w, m, gather(t, v.w, m, false), u + m * K), 0);
    for (size_t m = 0; m < M; ++m) fixed = sync_now(t, v.w, m, gather(t, v.w, m, false)) == best[m] && fixed;
  } else {
    // Every row synced to the starting codes: they are a fixed point of ICM if every row's argmin is its code.
    std::copy(best, best + M, c);
    for (size_t m = 0; m < M; ++m) fixed = sync_now(t, v.w, m, gather(t, v.w, m, false), u + m * K) == best[m] && fixed;
  }
  v.w.save();
  v.best_err = squared_error(x, t.books.data(), t.d, best, M, K, v.w.residual.data());
  v.u = u;
  v.best_energy = table_energy(t, u, best);
  // Two energies from the table differ from the exact ones by at most Σ_{m<m'} qscales / 2 each, plus the
  // float rounding of the sums (far below 1e-5 · (‖x‖² + |E|)).
  float slack = 0, xx = 0;
  for (size_t m = 0; m < M; ++m)
    for (size_t m2 = m + 1; m2 < M; ++m2) slack += 0.5f * t.qscales[m * M + m2];
  for (size_t j = 0; j < t.d; ++j) xx += x[j] * x[j];
  v.margin = 2 * slack + 1e-5f * (xx + std::fabs(v.best_energy));
  v.s = 0, v.in_step = false, v.rejected = false, v.best_fixed = fixed;
}

// Position v.m's look with the new argmin k: move, next position, end of sweep, end of ILS step.
void advance(const IcmTables& t, const IlsParams& p, Search& v, int32_t k) {
  int32_t* c = v.w.cur.data();
  if (k != c[v.m]) {
    v.ndiff += size_t(c[v.m] == v.best[v.m]) - size_t(k == v.best[v.m]);
    c[v.m] = k, v.moved = true;
    // Back at the best codes, which ICM cannot leave: the step would end there and be rejected.
    if (v.ndiff == 0 && v.best_fixed) {
      v.rejected = true, ++v.s, v.in_step = false;
      return;
    }
  }
  if (++v.m < t.M) return;
  v.m = 0;
  if (v.moved && ++v.sweep < p.icm_iters) {
    v.moved = false;
    return;
  }
  // End of the ICM of this ILS step: keep the codes if their exact squared error went down. The same codes
  // cannot have; codes whose energy from the table is above the best's by more than the table's rounding
  // allows cannot either, and are rejected without their exact error.
  v.rejected = true;
  if (!std::equal(c, c + t.M, v.best)) {
    const float energy = table_energy(t, v.u, c);
    if (energy <= v.best_energy + v.margin) {
      const float err = squared_error(v.x, t.books.data(), t.d, c, t.M, t.K, v.w.residual.data());
      v.rejected = !(err < v.best_err);
      if (!v.rejected) v.best_err = err, v.best_energy = energy;
    }
  }
  if (!v.rejected) {
    std::copy(c, c + t.M, v.best);
    v.w.save();
    v.best_fixed = !v.moved;  // the last sweep moved nothing
  }
  ++v.s, v.in_step = false;
}

// Advance v to its next look that needs a row synced (its rows requested; true), or to its end (false).
// Looks at rows nothing changed are answered from the cached argmin on the way.
bool prepare(const IcmTables& t, const IlsParams& p, Search& v) {
  const size_t M = t.M, K = t.K;
  int32_t* c = v.w.cur.data();
  for (;;) {
    if (!v.in_step) {
      if (v.s == p.ils_iters) return false;
      if (v.rejected) v.w.restore(), v.rejected = false;
      std::copy(v.best, v.best + M, c);
      KeyedDraws g{derive_seed(derive_seed(p.seed, v.s), v.row)};
      for (size_t i = 0; i < p.nperts; ++i) {
        const uint64_t z = g.next();
        c[below(uint32_t(z >> 32), M)] = (int32_t)below(uint32_t(z), K);
      }
      v.ndiff = 0;
      for (size_t m = 0; m < M; ++m) v.ndiff += size_t(c[m] != v.best[m]);
      if (v.ndiff == 0 && v.best_fixed) {  // a perturbation that changed nothing: ICM stays at the best codes
        ++v.s;
        continue;
      }
      v.in_step = true, v.sweep = 0, v.m = 0, v.moved = false;
    }
    const size_t np = gather(t, v.w, v.m, true);
    if (np > 0 || !v.w.fresh[v.m]) {
      v.np = np;
      return true;
    }
    advance(t, p, v, v.w.arg[v.m]);
  }
}

// The prepared look of v: sync its row, take the argmin, advance.
void execute(const IcmTables& t, const IlsParams& p, Search& v) { advance(t, p, v, sync_now(t, v.w, v.m, v.np)); }

constexpr size_t kInterleave = 2;  // vectors searched at once per thread

// ILS of vectors [0, nb) of a block (x: their rows, u: their unaries, M·K each; best: their codes, in place;
// errors: optional, their final squared errors), kInterleave at a time.
void ils_block(const IcmTables& t, const IlsParams& p, MatrixView<const float> x, size_t first_row, size_t nb,
               const float* u, int32_t* best, float* errors, std::vector<Search>& lanes) {
  const size_t M = t.M, MK = t.M * t.K;
  size_t next = 0;
  std::array<bool, kInterleave> active{};
  auto feed = [&](size_t l) {  // the lane's next vector that has a look to make
    active[l] = false;
    while (next < nb) {
      const size_t i = next++;
      Search& v = lanes[l];
      start_vector(t, v, x.row(i), u + i * MK, best + i * M, first_row + i, errors ? errors + i : nullptr,
                   p.greedy_start);
      if (prepare(t, p, v)) {
        active[l] = true;
        return;
      }
      if (v.error_out) *v.error_out = v.best_err;
    }
  };
  for (size_t l = 0; l < kInterleave; ++l) feed(l);
  for (bool any = true; any;) {
    any = false;
    for (size_t l = 0; l < kInterleave; ++l) {
      if (!active[l]) continue;
      Search& v = lanes[l];
      execute(t, p, v);
      if (!prepare(t, p, v)) {
        if (v.error_out) *v.error_out = v.best_err;
        feed(l);
      }
      any = any || active[l];
    }
  }
}

// ---- K = 16: eager costs from the dense float table ----
// With 16 codewords a position's costs are 16 floats (one to four registers) and everything a codeword adds
// to the other positions' costs, M·K floats, is one row of the dense table (256 KB at M = 16: it stays in
// L2). Updating all rows at every move (T += row(new) − row(old), the diagonal block being zero leaves the
// moving position's own row alone) then costs less than deciding which rows to sync: no bookkeeping, the
// argmin of a position is always up to date, and a step starts from the best codes' costs with one copy.
// Kernels over W lanes (one register of the unit), K / W registers per row; every W computes the same values.

// argmin_k row[k] over K floats, lowest k on ties; −1 if every entry is NaN.
template <int W, int K>
TESSERA_ROW_SCAN_INLINE int32_t small_argmin(const float* row) {
  using fv = typename Lanes<W>::f;
  using iv = typename Lanes<W>::i;
  constexpr int R = K / W;
  fv v[R], m;
  for (int r = 0; r < R; ++r) loadv(v[r], row + r * W);
  m = v[0];
  for (int r = 1; r < R; ++r) min_lanes(m, m, v[r]);
  all_min<W>(m);
  const iv none = iv{} + K;
  iv idx, c, cr;
  iota_lanes(idx);
  c = v[0] == m ? idx : none;
  for (int r = 1; r < R; ++r) {
    cr = v[r] == m ? idx + r * W : none;
    min_lanes(c, c, cr);
  }
  all_min<W>(c);
  return c[0] < K ? c[0] : -1;
}

// T[j] += add[j] − sub[j] for j < n (n a multiple of W).
template <int W>
TESSERA_ROW_SCAN_INLINE void small_move(float* T, const float* add, const float* sub, size_t n) {
  using fv = typename Lanes<W>::f;
  for (size_t j = 0; j < n; j += W) {
    fv t, a, b;
    loadv(t, T + j);
    loadv(a, add + j);
    loadv(b, sub + j);
    t += a - b;
    storev(T + j, t);
  }
}

template <int W>
TESSERA_ROW_SCAN_INLINE void small_copy(float* dst, const float* src, size_t n) {
  using fv = typename Lanes<W>::f;
  for (size_t j = 0; j < n; j += W) {
    fv a;
    loadv(a, src + j);
    storev(dst + j, a);
  }
}

// Σ_m (T_m(c_m) + U_m(c_m)) / 2 = E(c) − ‖x‖², from the maintained costs (float rounding aside).
inline float small_energy(const float* T, const float* u, const int32_t* c, size_t M, size_t K) {
  float e = 0;
  for (size_t m = 0; m < M; ++m) e += T[m * K + (size_t)c[m]] + u[m * K + (size_t)c[m]];
  return 0.5f * e;
}

// One vector's ILS (K = 16). T, Tb: M·K scratch each; residual: d.
template <int W, int K>
TESSERA_ROW_SCAN_INLINE void small_ils_lanes(const IcmTables& t, const IlsParams& p, const float* x, const float* u,
                                             int32_t* best, size_t row, float* error_out, float* T, float* Tb,
                                             int32_t* cur, float* residual) {
  const size_t M = t.M, MK = M * K;
  const float* F = t.dense.data();
  // Costs at the best codes: U plus every position's codeword row.
  small_copy<W>(Tb, u, MK);
  for (size_t m = 0; m < M; ++m) {
    // Greedy start: position m's costs hold the positions before it only, when it takes their argmin.
    if (p.greedy_start) best[m] = std::max(small_argmin<W, K>(Tb + m * K), 0);
    const float* add = F + (m * K + (size_t)best[m]) * MK;
    using fv = typename Lanes<W>::f;
    for (size_t j = 0; j < MK; j += W) {
      fv a, b;
      loadv(a, Tb + j);
      loadv(b, add + j);
      a += b;
      storev(Tb + j, a);
    }
  }
  float best_err = squared_error(x, t.books.data(), t.d, best, M, K, residual);
  float best_energy = small_energy(Tb, u, best, M, K);
  float xx = 0;
  for (size_t j = 0; j < t.d; ++j) xx += x[j] * x[j];
  // The energy from the maintained costs only screens candidates: a step whose energy is above the best's by
  // more than this margin is rejected without its exact error. The rounding of the sums stayed below
  // 3e-7 · (‖x‖² + |E|) over a 16 × 4 training on siftsmall: the margin is 300 times that.
  const float margin = 1e-4f * (xx + std::fabs(best_energy));
  for (size_t s = 0; s < p.ils_iters; ++s) {
    std::copy(best, best + M, cur);
    small_copy<W>(T, Tb, MK);
    KeyedDraws g{derive_seed(derive_seed(p.seed, s), row)};
    for (size_t i = 0; i < p.nperts; ++i) {
      const uint64_t z = g.next();
      const size_t m = below(uint32_t(z >> 32), M);
      const int32_t k = (int32_t)below(uint32_t(z), K);
      if (k == cur[m]) continue;
      small_move<W>(T, F + (m * K + (size_t)k) * MK, F + (m * K + (size_t)cur[m]) * MK, MK);
      cur[m] = k;
    }
    for (size_t sweep = 0; sweep < p.icm_iters; ++sweep) {
      bool moved = false;
      for (size_t m = 0; m < M; ++m) {
        const int32_t k = small_argmin<W, K>(T + m * K);
        if (k < 0 || k == cur[m]) continue;
        small_move<W>(T, F + (m * K + (size_t)k) * MK, F + (m * K + (size_t)cur[m]) * MK, MK);
        cur[m] = k, moved = true;
      }
      if (!moved) break;
    }
    // Keep the codes if their exact squared error went down (the same codes cannot have).
    if (std::equal(cur, cur + M, best)) continue;
    const float energy = small_energy(T, u, cur, M, K);
    if (energy > best_energy + margin) continue;
    const float err = squared_error(x, t.books.data(), t.d, cur, M, K, residual);
    if (err < best_err) {
      best_err = err, best_energy = energy;
      std::copy(cur, cur + M, best);
      small_copy<W>(Tb, T, MK);
    }
  }
  if (error_out) *error_out = best_err;
}

template <int W>
TESSERA_ROW_SCAN_INLINE void small_ils16(const IcmTables& t, const IlsParams& p, const float* x, const float* u,
                                         int32_t* best, size_t row, float* error_out, float* T, float* Tb,
                                         int32_t* cur, float* residual) {
  small_ils_lanes<W, 16>(t, p, x, u, best, row, error_out, T, Tb, cur, residual);
}

// The ILS of vectors [0, nb) of a block (as ils_block), K = 16.
TESSERA_CLONE_PER_ISA void small_ils_block(const IcmTables& t, const IlsParams& p, MatrixView<const float> x,
                                           size_t first_row, size_t nb, const float* u, int32_t* best,
                                           float* errors, float* T, float* Tb, int32_t* cur, float* residual) {
  const size_t MK = t.M * t.K;
  for (size_t i = 0; i < nb; ++i)
    TESSERA_NATIVE_LANES(small_ils16, t, p, x.row(i), u + i * MK, best + i * t.M, first_row + i,
                         errors ? errors + i : nullptr, T, Tb, cur, residual);
}

}  // namespace

void ils_encode(const IcmTables& t, MatrixView<const float> x, int32_t* codes, const IlsParams& p, float* errors) {
  const size_t n = x.rows, M = t.M, K = t.K, MK = M * K, d = t.d;
  TESSERA_CHECK_ARG(!p.exact || t.binaries.size() == MK * MK, "the plain ICM needs the float table");
  for (size_t c0 = 0; c0 < n; c0 += kChunkRows) {
    check_interrupt();
    const size_t chunk = std::min(kChunkRows, n - c0);
    const size_t blocks = (chunk + kBlockRows - 1) / kBlockRows;
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<float> unaries(kBlockRows * MK), best_err(kBlockRows), err(kBlockRows), residual(d);
      std::vector<int32_t> cur(kBlockRows * M);
      std::vector<Search> lanes(small_k(K) ? 0 : kInterleave, Search(M, K, d));
      std::vector<float> T(small_k(K) ? MK : 0), Tb(T.size());
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t b = 0; b < (ptrdiff_t)blocks; ++b) {
        const size_t r0 = c0 + size_t(b) * kBlockRows, nb = std::min(kBlockRows, n - r0);
        int32_t* best = codes + r0 * M;
        // U_m(k) = ‖C_m[k]‖² − 2⟨x, C_m[k]⟩ for the block, vector-major.
        // (The norms first, and the GEMM adding to them: no separate pass to clear or to add.)
        for (size_t i = 0; i < nb; ++i) std::copy(t.norms.begin(), t.norms.end(), unaries.begin() + i * MK);
        gemm_abt(nb, MK, d, -2.0f, x.row(r0), x.stride, t.books.data(), d, 1.0f, unaries.data(), MK);
        if (!p.exact && small_k(K)) {
          small_ils_block(t, p, MatrixView<const float>(x.row(r0), nb, d, x.stride), r0, nb, unaries.data(), best,
                          errors ? errors + r0 : nullptr, T.data(), Tb.data(), cur.data(), residual.data());
          continue;
        }
        if (!p.exact) {
          ils_block(t, p, MatrixView<const float>(x.row(r0), nb, d, x.stride), r0, nb, unaries.data(), best,
                    errors ? errors + r0 : nullptr, lanes);
          continue;
        }
        const UnaryLayout u{unaries.data(), MK, K};
        if (p.greedy_start) greedy_plain(t.binaries.data(), M, K, u, best, nb);
        for (size_t i = 0; i < nb; ++i)
          best_err[i] = squared_error(x.row(r0 + i), t.books.data(), d, best + i * M, M, K, residual.data());
        for (size_t s = 0; s < p.ils_iters; ++s) {
          std::copy(best, best + nb * M, cur.data());
          perturb_codes(cur.data(), nb, M, K, p.nperts, derive_seed(p.seed, s), r0);
          icm_sweeps(t.binaries.data(), M, K, u, cur.data(), nb, p.icm_iters);
          for (size_t i = 0; i < nb; ++i) {
            err[i] = squared_error(x.row(r0 + i), t.books.data(), d, cur.data() + i * M, M, K, residual.data());
            if (err[i] < best_err[i]) {
              best_err[i] = err[i];
              std::copy(cur.data() + i * M, cur.data() + (i + 1) * M, best + i * M);
            }
          }
        }
        if (errors) std::copy(best_err.begin(), best_err.begin() + nb, errors + r0);
      }
    }
  }
}

}  // namespace tessera::detail
