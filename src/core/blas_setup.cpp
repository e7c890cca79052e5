// OpenBLAS set up for tessera before its first BLAS or LAPACK call.
//
// Single-threaded: OpenBLAS's own thread pool fights OpenMP's workers on small machines (measured: half the
// time of a k-means run in libgomp spin-waits); tessera splits GEMMs over OpenMP itself (blas.cpp).
//
// Kernels that match the CPU: a DYNAMIC_ARCH OpenBLAS picks its kernels by CPU model number, and a release
// older than the CPU (Debian 12 ships 0.3.21) falls back to its generic SSE3 "Prescott" kernels, 3–5× slower
// (measured: k-means on 10,000 × 128 SIFT vectors, K = 256, 0.54 s → 0.10 s on an AVX-512 Xeon, model
// 207). When OpenBLAS fell back to a generic kernel and the CPU (and OS) support AVX-512 or AVX2, tessera
// asks OpenBLAS to select again as if OPENBLAS_CORETYPE had been given. A user's own OPENBLAS_CORETYPE is
// always respected.
#include "core/blas.h"
#include "tessera/core/runtime.h"
#include "core/simd.h"

#include <cblas.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

// OpenBLAS's run-time kernel selection (exported by DYNAMIC_ARCH builds only; weak so that any other build
// or BLAS links too, and then nothing is changed).
extern "C" void gotoblas_dynamic_init(void) __attribute__((weak));
extern "C" void gotoblas_dynamic_quit(void) __attribute__((weak));

namespace tessera {

namespace {

std::string g_selection_note;

bool generic_kernel(const char* name) {
  for (const char* g : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Banias", "Katmai",
                        "Coppermine", "Northwood", "Unknown"})
    if (std::strcmp(name, g) == 0) return true;
  return false;
}

// The widest OpenBLAS kernel family this CPU runs, or nullptr.
const char* fitting_kernel() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

void select_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return;
  const std::string chosen = openblas_get_corename();
  const char* better = fitting_kernel();
  if (!better || !generic_kernel(chosen.c_str())) return;
  // OpenBLAS reads the variable during selection only; it is removed again so child processes see the
  // environment they were given.
  setenv("OPENBLAS_CORETYPE", better, 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  g_selection_note = " (selected by tessera: OpenBLAS chose " + chosen + ")";
}

}  // namespace

namespace detail {

void prepare_blas() {
  static std::once_flag once;
  std::call_once(once, [] {
    select_kernels();
    openblas_set_num_threads(1);
  });
}

}  // namespace detail

std::string blas_kernels() {
  detail::prepare_blas();
  return std::string("OpenBLAS ") + openblas_get_corename() + g_selection_note;
}

std::string simd_unit() { return detail::clone_unit(); }

}  // namespace tessera
