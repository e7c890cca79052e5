// Random numbers: one seeded generator type, and seed derivation so that every level, restart and
// shard gets its own independent stream from one user seed (results never depend on thread count).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace tessera {

using Rng = std::mt19937_64;

/// SplitMix64 finaliser: a well-mixed 64-bit value from any input.
constexpr uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// The seed of sub-stream `stream` of `seed` (e.g. level l, restart r: derive_seed(derive_seed(s, l), r)).
constexpr uint64_t derive_seed(uint64_t seed, uint64_t stream) { return mix64(mix64(seed) ^ mix64(stream + 1)); }

/// n standard normal draws by Box–Muller from the generator's raw 64-bit words: the same numbers with every
/// standard library (std::normal_distribution's algorithm is implementation-defined).
template <class T>
void fill_standard_normal(T* out, size_t n, Rng& rng) {
  auto uniform_open = [&rng] { return (double(rng() >> 11) + 0.5) * 0x1.0p-53; };  // in (0, 1)
  for (size_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform_open())), a = 6.283185307179586 * uniform_open();
    out[i] = T(r * std::cos(a));
    if (i + 1 < n) out[i + 1] = T(r * std::sin(a));
  }
}

/// `count` distinct rows of [0, n), uniformly at random, in increasing order.
inline std::vector<size_t> sample_rows(size_t n, size_t count, uint64_t seed) {
  Rng rng(seed);
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t{0});
  for (size_t i = 0; i < count && i < n; ++i) std::swap(idx[i], idx[std::uniform_int_distribution<size_t>(i, n - 1)(rng)]);
  idx.resize(std::min(count, n));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace tessera
