// Shared test data: seeded Gaussian mixtures, and where the real data sets are found.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <random>
#include <string>

#include "tessera/core/matrix.h"

namespace tessera::testing {

/// n points in d dimensions around `centres` random centres (spread 1, noise sigma), fixed seed.
inline FloatMatrix gaussian_mixture(size_t n, size_t d, size_t centres, uint64_t seed, float sigma = 0.3f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  FloatMatrix c(centres, d), x(n, d);
  for (size_t i = 0; i < c.size(); ++i) c.data()[i] = g(rng);
  std::uniform_int_distribution<size_t> pick(0, centres - 1);
  for (size_t i = 0; i < n; ++i) {
    const size_t k = pick(rng);
    for (size_t j = 0; j < d; ++j) x(i, j) = c(k, j) + sigma * g(rng);
  }
  return x;
}

/// The folder of the real data sets (siftsmall/, bigann10k/, debian-packages/, ...): the environment variable
/// TESSERA_DATA when it is set and not empty, else the build-time default TESSERA_SHARED_DATA, which CMake
/// sets to <repository root>/../shared/data. The Python tests and bench/datasets.py follow the same rule.
inline std::string shared_data_dir() {
  const char* env = std::getenv("TESSERA_DATA");
  return env && *env ? std::string(env) : std::string(TESSERA_SHARED_DATA);
}

/// A file of the real data sets, e.g. shared_data("siftsmall/siftsmall_base.fvecs").
inline std::string shared_data(const std::string& rel) { return shared_data_dir() + "/" + rel; }

/// Why a test that reads these files cannot run: "" when they all exist, else a message naming the first
/// missing one, for GTEST_SKIP. Call it with every file the test reads, before reading any:
///   if (const std::string why = missing_shared_data({base, query}); !why.empty()) GTEST_SKIP() << why;
inline std::string missing_shared_data(std::initializer_list<std::string> paths) {
  const char* env = std::getenv("TESSERA_DATA");
  for (const std::string& p : paths) {
    if (std::filesystem::exists(p)) continue;
    if (env && *env)
      return p + " is absent (TESSERA_DATA=" + env +
             "): point TESSERA_DATA at the folder holding the real data sets, or unset it to use " +
             TESSERA_SHARED_DATA;
    return p + " is absent: put the real data sets at " + TESSERA_SHARED_DATA +
           ", or set TESSERA_DATA to the folder holding them";
  }
  return {};
}

}  // namespace tessera::testing
