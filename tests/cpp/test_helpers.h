// Shared test data: seeded Gaussian mixtures and the real datasets in shared/data.
#pragma once
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

inline std::string shared_data(const std::string& rel) { return std::string(TESSERA_SHARED_DATA) + "/" + rel; }

}  // namespace tessera::testing
