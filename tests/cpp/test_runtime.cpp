// The process computes with BLAS kernels that fit the CPU (src/core/blas_setup.cpp).
#include <gtest/gtest.h>

#include <string>

#include "tessera/core/runtime.h"

namespace {

TEST(Runtime, BlasKernelsFitTheCpu) {
  const std::string blas = tessera::blas_kernels();
  ASSERT_EQ(blas.rfind("OpenBLAS ", 0), 0u) << blas;
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    // A generic SSE kernel on an AVX2 machine costs 3-5x in every GEMM.
    EXPECT_EQ(blas.find("OpenBLAS Prescott"), std::string::npos) << blas;
    EXPECT_EQ(blas.find("OpenBLAS Core2"), std::string::npos) << blas;
    EXPECT_EQ(blas.find("OpenBLAS Nehalem"), std::string::npos) << blas;
  }
#endif
}

TEST(Runtime, SimdUnitIsKnown) {
  const std::string u = tessera::simd_unit();
  EXPECT_TRUE(u == "avx512f" || u == "avx2" || u == "default") << u;
}

}  // namespace
