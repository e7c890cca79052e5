// Private BLAS wrapper (OpenBLAS through the CBLAS interface).
#pragma once
#include <cstddef>

namespace tessera::detail {

/// C (m × n, ldc) = alpha · A (m × k, lda) · B (n × k, ldb)ᵀ + beta · C. Row-major.
void gemm_abt(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc);

/// C (m × n, ldc) = alpha · A (k × m, lda)ᵀ · B (k × n, ldb) + beta · C. Row-major.
void gemm_atb(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc);

}  // namespace tessera::detail
