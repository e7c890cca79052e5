// Run-time choice of instruction set for the hot loops: the shipped build targets the portable x86-64
// baseline (no -march flag), and each function marked TESSERA_CLONE_PER_ISA is compiled once per listed
// unit, the widest one the CPU has being chosen when the library loads (GNU ifunc). Kernels written with
// vector extensions compute the same values on every unit (the library is built with -ffp-contract=off, so
// no clone fuses multiply-adds the others do not), so their results never depend on the CPU.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)  // GCC, and Clang (which defines __GNUC__ too)
#define TESSERA_CLONE_PER_ISA __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TESSERA_CLONE_PER_ISA
#endif

namespace tessera::detail {

/// The unit the clones run on here, as the load-time resolvers pick it: "avx512f", "avx2" or "default".
inline const char* clone_unit() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "default";
}

}  // namespace tessera::detail
