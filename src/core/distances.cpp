#include "tessera/core/distances.h"
#include "tessera/core/threading.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "core/blas.h"
#include "core/row_scan.h"

namespace tessera {

namespace {

constexpr size_t kFewCentroids = 16;
constexpr size_t kParallelWork = size_t(1) << 23;  // multiply-adds

using f16 = float __attribute__((vector_size(64)));
using f8 = float __attribute__((vector_size(32)));
using f4 = float __attribute__((vector_size(16)));

inline float sum_lanes(const f16& v) {
  const f8 h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const f4 q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
  return (q[0] + q[1]) + (q[2] + q[3]);
}

// Dot products in 16-float steps, for the widest vector unit the CPU has (chosen at load time: the
// portable build targets SSE2); four centroids at a time, so that each chunk of the row is loaded once
// for four products; one horizontal sum per centroid.
TESSERA_CLONE_PER_ISA void few_centroid_distances(
    MatrixView<const float> x, MatrixView<const float> c, const float* c_norms, const float* x_norms, float* out) {
  constexpr size_t G = 4;
  const size_t k = c.rows, d = x.cols, body = d - d % 16;
  // Small products (k-means++ on a seeding sample calls this once per centre) run on the calling
  // thread: waking the pool costs more than the work.
  const bool parallel = x.rows * k * d >= kParallelWork;
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads()) if (parallel)
  for (ptrdiff_t i = 0; i < (ptrdiff_t)x.rows; ++i) {
    const float* r = x.row(i);
    for (size_t j0 = 0; j0 < k; j0 += G) {
      const size_t g = std::min(G, k - j0);
      f16 acc[G] = {};
      for (size_t l = 0; l < body; l += 16) {
        f16 xv;
        std::memcpy(&xv, r + l, sizeof xv);
        for (size_t t = 0; t < G; ++t) {
          if (t >= g) break;
          f16 cv;
          std::memcpy(&cv, c.row(j0 + t) + l, sizeof cv);
          acc[t] += xv * cv;
        }
      }
      for (size_t t = 0; t < g; ++t) {
        const float* cj = c.row(j0 + t);
        float s = sum_lanes(acc[t]);
        for (size_t l = body; l < d; ++l) s += r[l] * cj[l];
        out[i * k + j0 + t] = std::max(0.0f, x_norms[i] + c_norms[j0 + t] - 2.0f * s);
      }
    }
  }
}

}  // namespace

void row_norms_sqr(MatrixView<const float> x, float* out) {
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads())
  for (ptrdiff_t i = 0; i < (ptrdiff_t)x.rows; ++i) {
    const float* r = x.row(i);
    // Four partial sums in double: independent chains the compiler can vectorise without reassociating.
    double s[4] = {0, 0, 0, 0};
    size_t j = 0;
    for (; j + 4 <= x.cols; j += 4)
      for (size_t l = 0; l < 4; ++l) s[l] += (double)r[j + l] * r[j + l];
    for (; j < x.cols; ++j) s[0] += (double)r[j] * r[j];
    out[i] = (float)((s[0] + s[1]) + (s[2] + s[3]));
  }
}

void l2_sqr_distances(MatrixView<const float> x, MatrixView<const float> c, const float* c_norms, float* out,
                      const float* x_norms) {
  TESSERA_CHECK_ARG(x.cols == c.cols, "dimension mismatch: points have " << x.cols << " columns, centroids "
                                                                          << c.cols);
  std::vector<float> cn;
  if (!c_norms) {
    cn.resize(c.rows);
    row_norms_sqr(c, cn.data());
    c_norms = cn.data();
  }
  std::vector<float> own_xn;
  if (!x_norms) {
    own_xn.resize(x.rows);
    row_norms_sqr(x, own_xn.data());
    x_norms = own_xn.data();
  }
  const size_t k = c.rows;
  if (k <= kFewCentroids) {
    // A handful of centroids (k-means++ candidates): BLAS would repack all of x for every call, for a
    // product with a few columns; direct dot products read x once and keep c in L1.
    few_centroid_distances(x, c, c_norms, x_norms, out);
    return;
  }
  // The norms are added to each block of the product while it is still in cache.
  detail::gemm_abt(x.rows, k, x.cols, -2.0f, x.data, x.stride, c.data, c.stride, 0.0f, out, k,
                   [&](size_t begin, size_t rows) {
                     for (size_t i = begin; i < begin + rows; ++i) {
                       float* o = out + i * k;
                       const float xn = x_norms[i];
                       for (size_t j = 0; j < k; ++j) o[j] = std::max(0.0f, o[j] + xn + c_norms[j]);
                     }
                   });
}

namespace {

// Calls f(block_begin, block_rows, distances) for consecutive blocks of x.
template <class F>
void for_each_distance_block(MatrixView<const float> x, MatrixView<const float> c, const float* x_norms, F&& f) {
  TESSERA_CHECK_ARG(c.rows > 0, "no centroids to compare with");
  std::vector<float> cn(c.rows);
  row_norms_sqr(c, cn.data());
  const size_t block = std::min(kDistanceBlockRows, std::max<size_t>(x.rows, 1));
  std::vector<float> d(block * c.rows);
  for (size_t b = 0; b < x.rows; b += block) {
    const size_t nb = std::min(block, x.rows - b);
    l2_sqr_distances(x.rows_slice(b, nb), c, cn.data(), d.data(), x_norms ? x_norms + b : nullptr);
    f(b, nb, d.data());
  }
}

// Nearest of k for each of nb rows of distances d (rows of k, plus `offset` per column).
TESSERA_CLONE_PER_ISA void nearest_in_rows(const float* d, size_t nb, size_t k, const float* offset, int32_t* assign,
                                           float* best) {
  for (size_t i = 0; i < nb; ++i) {
    const detail::Best b = detail::best_of(d + i * k, offset, k);
    assign[i] = b.best;
    best[i] = b.value;
  }
}

}  // namespace

void nearest_centroids(MatrixView<const float> x, MatrixView<const float> c, int32_t* assign, float* dist,
                       const float* x_norms) {
  TESSERA_CHECK_ARG(c.rows > 0, "no centroids to compare with");
  TESSERA_CHECK_ARG(x.cols == c.cols, "dimension mismatch: points have " << x.cols << " columns, centroids "
                                                                          << c.cols);
  const size_t n = x.rows, k = c.rows;
  std::vector<float> xn;
  if (dist && !x_norms) {
    xn.resize(n);
    row_norms_sqr(x, xn.data());
    x_norms = xn.data();
  }
  // argmin_j ‖x − c_j‖² = argmin_j (‖c_j‖² − 2 x·c_j): each block of the product −2 x·cᵀ is scanned with
  // the centroid norms as an offset while still in cache, and ‖x‖² is added to the winner only.
  std::vector<float> cn(k);
  row_norms_sqr(c, cn.data());
  const size_t block = std::min(kDistanceBlockRows, std::max<size_t>(n, 1));
  std::unique_ptr<float[]> d(new float[block * k]);
  std::unique_ptr<float[]> best(new float[block]);
  for (size_t b = 0; b < n; b += block) {
    const size_t nb = std::min(block, n - b);
    detail::gemm_abt(nb, k, x.cols, -2.0f, x.row(b), x.stride, c.data, c.stride, 0.0f, d.get(), k,
                     [&](size_t r0, size_t rows) {
                       nearest_in_rows(d.get() + r0 * k, rows, k, cn.data(), assign + b + r0, best.get() + r0);
                       if (dist)
                         for (size_t i = r0; i < r0 + rows; ++i) dist[b + i] = std::max(0.0f, best[i] + x_norms[b + i]);
                     });
  }
}

void nearest_centroids_topm(MatrixView<const float> x, MatrixView<const float> c, size_t m, int32_t* idx,
                            float* dist) {
  const size_t k = c.rows;
  TESSERA_CHECK_ARG(m >= 1 && m <= k, "asked for the " << m << " nearest of " << k << " centroids");
  for_each_distance_block(x, c, nullptr, [&](size_t b, size_t nb, const float* d) {
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<int32_t> order(k);
#pragma omp for schedule(static)
      for (ptrdiff_t i = 0; i < (ptrdiff_t)nb; ++i) {
        const float* r = d + i * k;
        std::iota(order.begin(), order.end(), 0);
        auto less = [r](int32_t a, int32_t bb) { return r[a] < r[bb] || (r[a] == r[bb] && a < bb); };
        std::partial_sort(order.begin(), order.begin() + m, order.end(), less);
        for (size_t j = 0; j < m; ++j) {
          if (idx) idx[(b + i) * m + j] = order[j];
          if (dist) dist[(b + i) * m + j] = r[order[j]];
        }
      }
    }
  });
}

}  // namespace tessera
