#include "core/blas.h"
#include "tessera/core/threading.h"

#include <cblas.h>
#include <omp.h>

namespace tessera::detail {

namespace {

// OpenBLAS runs single-threaded (prepare_blas); GEMMs are split into fixed row chunks over OpenMP instead.
// The chunking never depends on the thread count, so every output element is computed the same way with
// 1 or 32 threads.
constexpr size_t kChunkRows = 512;

template <class F>
void over_row_chunks(size_t m, F&& f) {
  prepare_blas();
  const size_t chunks = (m + kChunkRows - 1) / kChunkRows;
  // Inside a parallel region, even a team of one (where omp_in_parallel() is false), the caller's block is
  // computed whole: the chunking must not depend on the thread count.
  if (chunks <= 1 || omp_get_level() > 0) {
    f(0, m);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(::tessera::num_threads())
  for (ptrdiff_t c = 0; c < (ptrdiff_t)chunks; ++c) {
    const size_t b = size_t(c) * kChunkRows;
    f(b, std::min(kChunkRows, m - b));
  }
}

}  // namespace

void gemm_abt(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc, const RowBlockFn& then) {
  if (m == 0 || n == 0) return;
  over_row_chunks(m, [&](size_t r, size_t rows) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)k, alpha, a + r * lda, (int)lda, b,
                (int)ldb, beta, c + r * ldc, (int)ldc);
    if (then) then(r, rows);
  });
}

void gemm_ab(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
             float beta, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  over_row_chunks(m, [&](size_t r, size_t rows) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)k, alpha, a + r * lda, (int)lda, b,
                (int)ldb, beta, c + r * ldc, (int)ldc);
  });
}

void gemm_atb(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  over_row_chunks(m, [&](size_t r, size_t rows) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)n, (int)k, alpha, a + r, (int)lda, b,
                (int)ldb, beta, c + r * ldc, (int)ldc);
  });
}

}  // namespace tessera::detail
