#include "core/blas.h"

#include <cblas.h>

namespace tessera::detail {

void gemm_abt(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
              beta, c, (int)ldc);
}

void gemm_atb(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
              beta, c, (int)ldc);
}

}  // namespace tessera::detail
