#include "quant/codebook_cg.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "core/row_scan.h"
#include "core/simd.h"

#include "tessera/core/threading.h"

namespace tessera::detail {

std::vector<double> codeword_sums(MatrixView<const float> x, const int32_t* codes, size_t M, size_t K) {
  const size_t n = x.rows, d = x.cols;
  std::vector<double> sums(M * K * d, 0.0);
  // Each thread owns the rows of its codebooks: the same sums in the same order whatever the thread count.
#pragma omp parallel for schedule(dynamic, 1) num_threads(::tessera::num_threads())
  for (ptrdiff_t m = 0; m < (ptrdiff_t)M; ++m)
    for (size_t i = 0; i < n; ++i) {
      double* row = sums.data() + (size_t(m) * K + (size_t)codes[i * M + size_t(m)]) * d;
      const float* xi = x.row(i);
      for (size_t j = 0; j < d; ++j) row[j] += xi[j];
    }
  return sums;
}

namespace {

constexpr size_t kGroup = 16;  // columns solved together: one cache line of floats per codeword
using ColumnSums = std::array<double, kGroup>;
using v4d = double __attribute__((vector_size(32)));
using v8f = float __attribute__((vector_size(32)));

// out = BᵀB·P for one group of columns (MK × kGroup, rows 64-byte aligned for floats): B·P vector by vector
// (the sum of its M codewords), added back to each of those codewords. V: the vector type of T used;
// lane-wise adds in row order, so every clone computes the same values.
template <class V, class T>
TESSERA_ROW_SCAN_INLINE void apply_gram(const uint32_t* rows, size_t n, size_t M, size_t MK, const T* P, T* out) {
  constexpr size_t L = sizeof(V) / sizeof(T), R = kGroup / L;
  std::fill(out, out + MK * kGroup, T(0));
  for (size_t i = 0; i < n; ++i) {
    const uint32_t* r = rows + i * M;
    V y[R] = {};
    for (size_t m = 0; m < M; ++m)
      for (size_t q = 0; q < R; ++q) {
        V a;
        std::memcpy(&a, P + size_t(r[m]) * kGroup + q * L, sizeof a);
        y[q] += a;
      }
    for (size_t m = 0; m < M; ++m)
      for (size_t q = 0; q < R; ++q) {
        T* o = out + size_t(r[m]) * kGroup + q * L;
        V a;
        std::memcpy(&a, o, sizeof a);
        a += y[q];
        std::memcpy(o, &a, sizeof a);
      }
  }
}

// In float for the iterations (half the memory traffic of double; the rounding, a few 1e-7 of the result,
// is far below the tolerances used), in double for the residuals the result is judged by.
TESSERA_CLONE_PER_ISA void gram_float(const uint32_t* rows, size_t n, size_t M, size_t MK, const float* P,
                                      float* out) {
  apply_gram<v8f>(rows, n, M, MK, P, out);
}
TESSERA_CLONE_PER_ISA void gram_double(const uint32_t* rows, size_t n, size_t M, size_t MK, const double* P,
                                       double* out) {
  apply_gram<v4d>(rows, n, M, MK, P, out);
}

// 64-byte aligned storage.
template <class T>
struct Aligned {
  std::vector<T> buf;
  T* data;
  explicit Aligned(size_t n) : buf(n + 64 / sizeof(T)) {
    auto a = reinterpret_cast<uintptr_t>(buf.data());
    data = buf.data() + ((64 - a % 64) % 64) / sizeof(T);
  }
};

}  // namespace

bool ridge_codebooks_cg(MatrixView<const float> x, const int32_t* codes, size_t M, size_t K, double lambd,
                        double tol, size_t max_iters, MatrixView<float> books) {
  const size_t n = x.rows, d = x.cols, MK = M * K, G = MK * kGroup;
  std::vector<uint32_t> rows(n * M);
  std::vector<double> diag(MK, lambd);
  for (size_t i = 0; i < n; ++i)
    for (size_t m = 0; m < M; ++m) {
      rows[i * M + m] = uint32_t(m * K + (size_t)codes[i * M + m]);
      diag[rows[i * M + m]] += 1.0;
    }
  std::vector<double> inv_diag(MK);  // the preconditioner
  for (size_t k = 0; k < MK; ++k) inv_diag[k] = 1.0 / diag[k];
  const std::vector<double> sums = codeword_sums(x, codes, M, K);
  double total = 0;
  for (double v : sums) total += v * v;
  const size_t groups = (d + kGroup - 1) / kGroup;
  std::vector<float> result(MK * d);
  std::atomic<bool> converged{true};
#pragma omp parallel num_threads(::tessera::num_threads())
  {
    std::vector<double> C(G), R(G), r(G), p(G), Ap(G);
    Aligned<float> pf(G), apf(G);
    // r = R − (BᵀB + λI)·C, BᵀB·C in double (exact) or float products; returns ‖r‖².
    auto residual = [&](bool exact) {
      if (exact) {
        gram_double(rows.data(), n, M, MK, C.data(), Ap.data());
      } else {
        for (size_t e = 0; e < G; ++e) pf.data[e] = float(C[e]);
        gram_float(rows.data(), n, M, MK, pf.data, apf.data);
        for (size_t e = 0; e < G; ++e) Ap[e] = double(apf.data[e]);
      }
      double rr = 0;
      for (size_t e = 0; e < G; ++e) {
        r[e] = R[e] - (Ap[e] + lambd * C[e]);
        rr += r[e] * r[e];
      }
      return rr;
    };
#pragma omp for schedule(dynamic, 1)
    for (ptrdiff_t g = 0; g < (ptrdiff_t)groups; ++g) {
      const size_t j0 = size_t(g) * kGroup, w = std::min(kGroup, d - j0);
      // Columns past d (the last group) stay zero throughout.
      std::fill(C.begin(), C.end(), 0.0);
      std::fill(R.begin(), R.end(), 0.0);
      for (size_t k = 0; k < MK; ++k)
        for (size_t j = 0; j < w; ++j) {
          C[k * kGroup + j] = books(k, j0 + j);
          R[k * kGroup + j] = sums[k * d + j0 + j];
        }
      const double threshold = tol * tol * total * double(w) / double(d);
      // CG from the residual in r (the start's from float products); when the recurrence says converged, the
      // residual is computed afresh in double, and CG restarts from it if it is not (rare; bounded by
      // max_iters).
      double rr = residual(false);
      size_t it = 0;
      for (;;) {
        ColumnSums rz{};
        for (size_t k = 0; k < MK; ++k)
          for (size_t j = 0; j < kGroup; ++j) {
            const size_t e = k * kGroup + j;
            p[e] = r[e] * inv_diag[k];
            rz[j] += r[e] * p[e];
          }
        for (; rr > threshold && it < max_iters; ++it) {
          for (size_t e = 0; e < G; ++e) pf.data[e] = float(p[e]);
          gram_float(rows.data(), n, M, MK, pf.data, apf.data);
          ColumnSums pap{}, alpha{}, beta{}, rz_next{};
          for (size_t e = 0; e < G; ++e) {
            Ap[e] = double(apf.data[e]) + lambd * p[e];
            pap[e % kGroup] += p[e] * Ap[e];
          }
          for (size_t j = 0; j < kGroup; ++j) alpha[j] = pap[j] > 0 ? rz[j] / pap[j] : 0.0;
          rr = 0;
          for (size_t k = 0; k < MK; ++k)
            for (size_t j = 0; j < kGroup; ++j) {
              const size_t e = k * kGroup + j;
              C[e] += alpha[j] * p[e];
              r[e] -= alpha[j] * Ap[e];
              rz_next[j] += r[e] * r[e] * inv_diag[k];
              rr += r[e] * r[e];
            }
          for (size_t j = 0; j < kGroup; ++j) beta[j] = rz[j] > 0 ? rz_next[j] / rz[j] : 0.0;
          rz = rz_next;
          for (size_t k = 0; k < MK; ++k)
            for (size_t j = 0; j < kGroup; ++j) {
              const size_t e = k * kGroup + j;
              p[e] = r[e] * inv_diag[k] + beta[j] * p[e];
            }
        }
        rr = residual(true);
        if (rr <= threshold || it >= max_iters) break;
      }
      if (rr > threshold) converged = false;
      for (size_t k = 0; k < MK; ++k)
        for (size_t j = 0; j < w; ++j) result[k * d + j0 + j] = float(C[k * kGroup + j]);
    }
  }
  if (!converged) return false;
  for (size_t k = 0; k < MK; ++k) std::copy_n(result.data() + k * d, d, books.row(k));
  return true;
}

}  // namespace tessera::detail
