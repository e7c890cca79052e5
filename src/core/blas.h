// Private BLAS wrapper (OpenBLAS through the CBLAS interface).
#pragma once
#include <cstddef>
#include <functional>

namespace tessera::detail {

/// Sets OpenBLAS up for tessera (single-threaded, kernels that fit the CPU: blas_setup.cpp). Call before
/// any direct BLAS or LAPACK call; the wrappers below call it themselves.
void prepare_blas();

/// Called on each finished block of rows [begin, begin + rows) of C while it is still in cache.
using RowBlockFn = std::function<void(size_t begin, size_t rows)>;

/// C (m × n, ldc) = alpha · A (m × k, lda) · B (n × k, ldb)ᵀ + beta · C. Row-major. `then`, if set,
/// runs on every block of rows of C right after the block is computed (in the same thread).
void gemm_abt(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc, const RowBlockFn& then = {});

/// C (m × n, ldc) = alpha · A (m × k, lda) · B (k × n, ldb) + beta · C. Row-major.
void gemm_ab(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
             float beta, float* c, size_t ldc);

/// C (m × n, ldc) = alpha · A (k × m, lda)ᵀ · B (k × n, ldb) + beta · C. Row-major.
void gemm_atb(size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda, const float* b, size_t ldb,
              float beta, float* c, size_t ldc);

}  // namespace tessera::detail
