#include "cluster/blocked_rows.h"

#include <algorithm>
#include <cstring>

#include "core/row_scan.h"
#include "core/simd.h"
#include "tessera/core/distances.h"
#include "tessera/core/threading.h"

namespace tessera::detail {

namespace {

constexpr size_t kBlock = 16;
constexpr size_t kGroup = 4;                        // candidates per pass over a block
// Multiply-adds below which one thread is quicker (waking the pool costs tens of µs; a k-means++ step over
// 10k rows × 3 candidates × 128 dims, 3.8M, took 15–25% less time on two threads).
constexpr size_t kParallelWork = size_t(1) << 20;

// One block against the candidates [t0, t0 + g) in vectors of W lanes (16 / W per block): W is the width
// of the clone's unit (see row_scan.h; wider vectors than the unit's registers compile to scalar code).
template <int W>
inline __attribute__((always_inline)) void block_distances(const float* xb, const float* xnorms, size_t d,
                                                           size_t lanes, MatrixView<const float> c,
                                                           const float* c_norms, size_t t0, size_t g,
                                                           size_t k, float* out) {
  using fv = typename Lanes<W>::f;
  constexpr size_t kParts = kBlock / W;
  fv acc[kGroup][kParts] = {};
  for (size_t l = 0; l < d; ++l) {
    fv xv[kParts];
    for (size_t h = 0; h < kParts; ++h) loadv(xv[h], xb + l * kBlock + h * W);
    for (size_t t = 0; t < kGroup; ++t)
      if (t < g)
        for (size_t h = 0; h < kParts; ++h) acc[t][h] += xv[h] * c(t0 + t, l);
  }
  for (size_t t = 0; t < g; ++t)
    for (size_t h = 0; h < kParts; ++h) {
      fv xn;
      loadv(xn, xnorms + h * W);
      const fv dist = xn + c_norms[t0 + t] - 2.0f * acc[t][h];
      for (size_t lane = h * W; lane < std::min(lanes, (h + 1) * W); ++lane)
        out[lane * k + t0 + t] = std::max(0.0f, dist[lane - h * W]);
    }
}

TESSERA_CLONE_PER_ISA void blocked_distances(const float* data, const float* norms, size_t n, size_t d,
                                             size_t blocks, MatrixView<const float> c, const float* c_norms,
                                             float* out) {
  const size_t k = c.rows;
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads()) if (n * k * d >= kParallelWork)
  for (ptrdiff_t b = 0; b < (ptrdiff_t)blocks; ++b) {
    const float* xb = data + size_t(b) * d * kBlock;
    const size_t lanes = std::min(kBlock, n - size_t(b) * kBlock);
    float* ob = out + size_t(b) * kBlock * k;
    for (size_t t0 = 0; t0 < k; t0 += kGroup) {
      const size_t g = std::min(kGroup, k - t0);
      TESSERA_NATIVE_LANES(block_distances, xb, norms + size_t(b) * kBlock, d, lanes, c, c_norms, t0, g, k, ob);
    }
  }
}

}  // namespace

BlockedRows::BlockedRows(MatrixView<const float> x)
    : n_(x.rows), d_(x.cols), blocks_((x.rows + kBlock - 1) / kBlock), data_(blocks_ * x.cols * kBlock, 0.0f),
      norms_(blocks_ * kBlock, 0.0f) {
  for (size_t i = 0; i < n_; ++i) {
    float* dst = &data_[(i / kBlock) * d_ * kBlock + i % kBlock];
    const float* r = x.row(i);
    for (size_t l = 0; l < d_; ++l) dst[l * kBlock] = r[l];
  }
  row_norms_sqr(x, norms_.data());
}

void BlockedRows::distances(MatrixView<const float> c, const float* c_norms, float* out) const {
  blocked_distances(data_.data(), norms_.data(), n_, d_, blocks_, c, c_norms, out);
}

}  // namespace tessera::detail
