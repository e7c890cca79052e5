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
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/blas.h"
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
  // Block (m1, m2) = 2·C_m1·C_m2ᵀ, K × K; then its int16 copy with its own scale (rounding error at most
  // 2^-16 of the block's largest entry), stored by codeword: everything codeword (m1, k1) adds to the other
  // positions' costs, M × K values, is one contiguous row. Block (m2, m1) is the transpose of (m1, m2): one
  // GEMM per pair m1 < m2 fills both (the diagonal blocks are never read by the encoder). The float table
  // (all M² blocks, one GEMM each) only for the plain formulation and compute_binary_terms.
  if (float_table) t.binaries.resize(MK * MK);
  t.qbinaries.assign(MK * MK, 0);
  t.qscales.assign(M * M, 1.0f);
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t m1 = 0; m1 < M; ++m1)
    for (size_t m2 = m1 + 1; m2 < M; ++m2) pairs.emplace_back(m1, m2);
#pragma omp parallel num_threads(::tessera::num_threads())
  {
    std::vector<float> own(float_table ? 0 : K * K);
#pragma omp for schedule(dynamic, 1)
    for (ptrdiff_t b = 0; b < (ptrdiff_t)pairs.size(); ++b) {
      const auto [m1, m2] = pairs[size_t(b)];
      float* blk = float_table ? t.binaries.data() + (m1 * M + m2) * K * K : own.data();
      gemm_abt(K, K, t.d, 2.0f, t.books.row(m1 * K), t.d, t.books.row(m2 * K), t.d, 0.0f, blk, K);
      float amax = 0;
      for (size_t e = 0; e < K * K; ++e) amax = std::max(amax, std::fabs(blk[e]));
      const float scale = amax > 0 ? amax / 32767.0f : 1.0f, inv = 1.0f / scale;
      t.qscales[m1 * M + m2] = t.qscales[m2 * M + m1] = scale;
      for (size_t k1 = 0; k1 < K; ++k1) {
        int16_t* q = t.qbinaries.data() + ((m1 * K + k1) * M + m2) * K;
        for (size_t k2 = 0; k2 < K; ++k2) {
          const float v = std::clamp(blk[k1 * K + k2] * inv, -32767.0f, 32767.0f);
          const int16_t e = (int16_t)(v + (v >= 0 ? 0.5f : -0.5f));
          q[k2] = e;
          t.qbinaries[((m2 * K + k2) * M + m1) * K + k1] = e;
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

// One source position's pending contribution to a cost row: + add − sub (sub may be null), in units of scale.
struct Pending {
  const int16_t* add;
  const int16_t* sub;
  float scale;
};

// row[k] += float(add_p[k] − sub_p[k]) · scale_p for p = 0..np−1 in turn (the difference of two int16
// entries is exact before it is scaled); returns argmin_k row[k], lowest k on ties. One pass over the row
// for all sources, the argmin tracked per lane on the way (strict <: a lane keeps its earliest minimum).
TESSERA_CLONE_PER_ISA int32_t sync_row(float* row, const Pending* pend, size_t np, size_t K) {
  v8 mn;
  i8 at, lane = {0, 1, 2, 3, 4, 5, 6, 7};
  for (size_t l = 0; l < 8; ++l) mn[l] = std::numeric_limits<float>::infinity(), at[l] = -1;
  // G chunks of 8 at a time: G independent chains of additions (one chain per chunk would wait on the
  // latency of every add).
  auto step = [&](size_t k, auto G) {
    v8 v[G];
    for (size_t g = 0; g < G; ++g) load8(v[g], row + k + 8 * g);
    for (size_t p = 0; p < np; ++p) {
      const float scale = pend[p].scale;
      for (size_t g = 0; g < G; ++g) {
        s8 a16;
        std::memcpy(&a16, pend[p].add + k + 8 * g, sizeof a16);
        i8 diff = __builtin_convertvector(a16, i8);
        if (pend[p].sub) {
          s8 b16;
          std::memcpy(&b16, pend[p].sub + k + 8 * g, sizeof b16);
          diff -= __builtin_convertvector(b16, i8);
        }
        v[g] += __builtin_convertvector(diff, v8) * scale;
      }
    }
    for (size_t g = 0; g < G; ++g) {
      std::memcpy(row + k + 8 * g, &v[g], sizeof v[g]);
      const i8 lt = v[g] < mn;
      mn = lt ? v[g] : mn;
      at = lt ? lane : at;
      lane += 8;
    }
  };
  size_t k = 0;
  for (; k + 32 <= K; k += 32) step(k, std::integral_constant<size_t, 4>{});
  for (; k < K; k += 8) step(k, std::integral_constant<size_t, 1>{});
  float best = mn[0];
  int32_t arg = at[0];
  for (size_t l = 1; l < 8; ++l)
    if (at[l] >= 0 && (arg < 0 || mn[l] < best || (mn[l] == best && at[l] < arg))) best = mn[l], arg = at[l];
  return arg;  // −1: all NaN
}

// The same for K not a multiple of 8 (K < 8 in practice): scalar, the same arithmetic.
int32_t sync_row_scalar(float* row, const Pending* pend, size_t np, size_t K) {
  float best = std::numeric_limits<float>::infinity();
  int32_t arg = -1;
  for (size_t k = 0; k < K; ++k) {
    float v = row[k];
    for (size_t p = 0; p < np; ++p)
      v += float(int32_t(pend[p].add[k]) - (pend[p].sub ? int32_t(pend[p].sub[k]) : 0)) * pend[p].scale;
    row[k] = v;
    if (v < best) best = v, arg = int32_t(k);
  }
  return arg;
}

// Scratch for one vector's ILS. T_m(k) = U_m(k) + Σ_{m'≠m} B_{m',m}(s_{m,m'}, k), where s_{m,m'} (syn) is the
// code of position m' that row m reflects: rows are brought up to date with the current codes lazily, when
// their position is looked at, and only by the codes that differ then (a move undone before the position is
// looked at, e.g. a rejected ILS step, costs nothing). arg caches the argmin of a row not changed since.
struct VectorSearch {
  std::vector<float> T, residual;
  std::vector<int32_t> cur, syn, arg;
  std::vector<uint8_t> fresh;
  std::vector<Pending> pend;
  VectorSearch(size_t M, size_t K, size_t d)
      : T(M * K), residual(d), cur(M), syn(M * M), arg(M), fresh(M), pend(M) {}
};

// argmin_k T_m(k) for the current codes (lowest k on ties), after syncing row m.
int32_t look(const IcmTables& t, VectorSearch& w, size_t m) {
  const size_t M = t.M, K = t.K;
  const int32_t* c = w.cur.data();
  int32_t* syn = w.syn.data() + m * M;
  const int16_t* q = t.qbinaries.data();
  size_t np = 0;
  for (size_t m2 = 0; m2 < M; ++m2) {
    if (m2 == m || syn[m2] == c[m2]) continue;
    // Rows of block (m2, m): everything codeword c of position m2 adds to position m's costs.
    const int16_t* add = q + ((m2 * K + (size_t)c[m2]) * M + m) * K;
    const int16_t* sub = syn[m2] >= 0 ? q + ((m2 * K + (size_t)syn[m2]) * M + m) * K : nullptr;
    for (size_t b = 0; b < K * sizeof(int16_t); b += 64) {
      __builtin_prefetch(reinterpret_cast<const char*>(add) + b);
      if (sub) __builtin_prefetch(reinterpret_cast<const char*>(sub) + b);
    }
    w.pend[np++] = Pending{add, sub, t.qscales[m2 * M + m]};
    syn[m2] = c[m2];
  }
  if (np == 0 && w.fresh[m]) return w.arg[m];
  float* row = w.T.data() + m * K;
  int32_t k = K % 8 == 0 ? sync_row(row, w.pend.data(), np, K) : sync_row_scalar(row, w.pend.data(), np, K);
  if (k < 0) k = c[m];  // NaN costs: stay
  w.arg[m] = k, w.fresh[m] = 1;
  return k;
}

// ILS for vector x (its unaries u: M × K, codes best: M, in place) as ils_encode describes, with the
// costs synced lazily. Returns the final squared error.
float ils_one_vector(const IcmTables& t, const float* x, const float* u, int32_t* best, const IlsParams& p,
                     size_t row, VectorSearch& w) {
  const size_t M = t.M, K = t.K, d = t.d;
  std::copy(u, u + M * K, w.T.data());
  std::fill(w.syn.begin(), w.syn.end(), -1);
  std::fill(w.fresh.begin(), w.fresh.end(), 0);
  float best_err = squared_error(x, t.books.data(), d, best, M, K, w.residual.data());
  int32_t* c = w.cur.data();
  for (size_t s = 0; s < p.ils_iters; ++s) {
    std::copy(best, best + M, c);
    KeyedDraws g{derive_seed(derive_seed(p.seed, s), row)};
    for (size_t q = 0; q < p.nperts; ++q) {
      const uint64_t z = g.next();
      c[below(uint32_t(z >> 32), M)] = (int32_t)below(uint32_t(z), K);
    }
    // ICM. A row is synced only when its position is looked at; a position none of whose others moved
    // since its last look keeps its cached argmin.
    for (size_t sweep = 0; sweep < p.icm_iters; ++sweep) {
      bool moved = false;
      for (size_t m = 0; m < M; ++m) {
        const int32_t k = look(t, w, m);
        if (k != c[m]) c[m] = k, moved = true;
      }
      if (!moved) break;
    }
    const float err = squared_error(x, t.books.data(), d, c, M, K, w.residual.data());
    if (err < best_err) {
      best_err = err;
      std::copy(c, c + M, best);
    }
  }
  return best_err;
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
      VectorSearch w(M, K, d);
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t b = 0; b < (ptrdiff_t)blocks; ++b) {
        const size_t r0 = c0 + size_t(b) * kBlockRows, nb = std::min(kBlockRows, n - r0);
        int32_t* best = codes + r0 * M;
        // U_m(k) = ‖C_m[k]‖² − 2⟨x, C_m[k]⟩ for the block, vector-major.
        gemm_abt(nb, MK, d, -2.0f, x.row(r0), x.stride, t.books.data(), d, 0.0f, unaries.data(), MK);
        for (size_t i = 0; i < nb; ++i)
          for (size_t k = 0; k < MK; ++k) unaries[i * MK + k] += t.norms[k];
        if (!p.exact) {
          for (size_t i = 0; i < nb; ++i) {
            const float e = ils_one_vector(t, x.row(r0 + i), unaries.data() + i * MK, best + i * M, p, r0 + i, w);
            if (errors) errors[r0 + i] = e;
          }
          continue;
        }
        const UnaryLayout u{unaries.data(), MK, K};
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
