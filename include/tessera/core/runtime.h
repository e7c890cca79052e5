// What the running process computes with: the BLAS kernels and the vector unit of tessera's own clones.
// For diagnostics (`tessera version`, Python tessera.build_info()) and benchmark reports.
#pragma once
#include <string>

namespace tessera {

/// The BLAS kernel family in use, e.g. "OpenBLAS SkylakeX (selected by tessera: OpenBLAS chose Prescott)".
std::string blas_kernels();
/// The instruction-set unit tessera's cloned kernels run on here: "avx512f", "avx2" or "default".
std::string simd_unit();

}  // namespace tessera
