#include "quant/codebook_cg.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

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

constexpr size_t kGroup = 8;  // columns solved together: one cache line of doubles per codeword
using Lanes = std::array<double, kGroup>;

using v4d = double __attribute__((vector_size(32)));

// out = (BᵀB + λI)·P for one group of columns (MK × kGroup each): B·P row by row (the sum of a vector's M
// codewords), added back to each of those codewords. Lane-wise adds in row order: every clone computes
// the same values.
TESSERA_CLONE_PER_ISA void apply_system(const uint32_t* rows, size_t n, size_t M, size_t MK, double lambd,
                                        const double* P, double* out) {
  static_assert(kGroup == 8);
  std::fill(out, out + MK * kGroup, 0.0);
  auto gather = [&](const uint32_t* r, v4d& y0, v4d& y1) {
    for (size_t m = 0; m < M; ++m) {
      const double* p = P + size_t(r[m]) * kGroup;
      v4d a, b;
      std::memcpy(&a, p, sizeof a);
      std::memcpy(&b, p + 4, sizeof b);
      y0 += a, y1 += b;
    }
  };
  auto scatter = [&](const uint32_t* r, const v4d& y0, const v4d& y1) {
    for (size_t m = 0; m < M; ++m) {
      double* o = out + size_t(r[m]) * kGroup;
      v4d a, b;
      std::memcpy(&a, o, sizeof a);
      std::memcpy(&b, o + 4, sizeof b);
      a += y0, b += y1;
      std::memcpy(o, &a, sizeof a);
      std::memcpy(o + 4, &b, sizeof b);
    }
  };
  // Two vectors at a time: their sums are independent chains of adds (the scatter order is unchanged).
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    v4d y0 = {}, y1 = {}, z0 = {}, z1 = {};
    gather(rows + i * M, y0, y1);
    gather(rows + (i + 1) * M, z0, z1);
    scatter(rows + i * M, y0, y1);
    scatter(rows + (i + 1) * M, z0, z1);
  }
  for (; i < n; ++i) {
    v4d y0 = {}, y1 = {};
    gather(rows + i * M, y0, y1);
    scatter(rows + i * M, y0, y1);
  }
  for (size_t e = 0; e < MK * kGroup; ++e) out[e] += lambd * P[e];
}

}  // namespace

bool ridge_codebooks_cg(MatrixView<const float> x, const int32_t* codes, size_t M, size_t K, double lambd,
                        double tol, size_t max_iters, MatrixView<float> books) {
  const size_t n = x.rows, d = x.cols, MK = M * K;
  std::vector<uint32_t> rows(n * M);
  std::vector<double> diag(MK, lambd);
  for (size_t i = 0; i < n; ++i)
    for (size_t m = 0; m < M; ++m) {
      rows[i * M + m] = uint32_t(m * K + (size_t)codes[i * M + m]);
      diag[rows[i * M + m]] += 1.0;
    }
  const std::vector<double> sums = codeword_sums(x, codes, M, K);
  double total = 0;
  for (double v : sums) total += v * v;
  const size_t groups = (d + kGroup - 1) / kGroup;
  std::vector<float> result(MK * d);
  std::atomic<bool> converged{true};
#pragma omp parallel num_threads(::tessera::num_threads())
  {
    std::vector<double> C(MK * kGroup), R(MK * kGroup), r(MK * kGroup), p(MK * kGroup), Ap(MK * kGroup);
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
      apply_system(rows.data(), n, M, MK, lambd, C.data(), Ap.data());
      Lanes rz{};
      double rr = 0;
      for (size_t k = 0; k < MK; ++k)
        for (size_t j = 0; j < kGroup; ++j) {
          const size_t e = k * kGroup + j;
          r[e] = R[e] - Ap[e];
          p[e] = r[e] / diag[k];
          rz[j] += r[e] * p[e];
          rr += r[e] * r[e];
        }
      size_t it = 0;
      for (; rr > threshold && it < max_iters; ++it) {
        apply_system(rows.data(), n, M, MK, lambd, p.data(), Ap.data());
        Lanes pap{}, alpha{}, beta{}, rz_next{};
        for (size_t e = 0; e < MK * kGroup; ++e) pap[e % kGroup] += p[e] * Ap[e];
        for (size_t j = 0; j < kGroup; ++j) alpha[j] = pap[j] > 0 ? rz[j] / pap[j] : 0.0;
        rr = 0;
        for (size_t k = 0; k < MK; ++k)
          for (size_t j = 0; j < kGroup; ++j) {
            const size_t e = k * kGroup + j;
            C[e] += alpha[j] * p[e];
            r[e] -= alpha[j] * Ap[e];
            rz_next[j] += r[e] * r[e] / diag[k];
            rr += r[e] * r[e];
          }
        for (size_t j = 0; j < kGroup; ++j) beta[j] = rz[j] > 0 ? rz_next[j] / rz[j] : 0.0;
        rz = rz_next;
        for (size_t k = 0; k < MK; ++k)
          for (size_t j = 0; j < kGroup; ++j) {
            const size_t e = k * kGroup + j;
            p[e] = r[e] / diag[k] + beta[j] * p[e];
          }
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
