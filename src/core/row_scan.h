// Vectorised scans of one row of a cost (distance) matrix, optionally against per-cluster prices: the
// inner loops of the nearest-centroid search and of the balanced assignment, which read the whole
// n × k matrix several times per call.
//
// GCC/Clang vector extensions: 4 float lanes, one SSE2 register on the portable x86-64 baseline (or
// NEON), so the shipped build needs no -march flag.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace tessera::detail {

using f4 = float __attribute__((vector_size(16)));
using i4 = int32_t __attribute__((vector_size(16)));

inline f4 load4(const float* p) {
  f4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, f4 v) { std::memcpy(p, &v, sizeof v); }
inline i4 load4i(const int32_t* p) {
  i4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4i(int32_t* p, i4 v) { std::memcpy(p, &v, sizeof v); }

inline bool any_lane(i4 mask) {
#if defined(__SSE2__)
  return _mm_movemask_ps((__m128)mask) != 0;
#else
  return (mask[0] | mask[1] | mask[2] | mask[3]) != 0;
#endif
}

struct BestTwo {
  int32_t best;  ///< argmin of r[j] + price[j], lowest index on ties
  float first;   ///< its value
  float second;  ///< the smallest value over the other clusters (+inf when k = 1)
};

/// Cheapest and second cheapest cluster for one row r (k costs) under prices (k floats).
inline BestTwo best_two(const float* r, const float* price, size_t k) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  size_t j = 0;
  BestTwo out{0, inf, inf};
  if (k >= 4) {
    f4 b1 = load4(r) + load4(price), b2 = f4{} + inf;
    i4 idx = {0, 1, 2, 3}, i1 = idx;
    for (j = 4; j + 4 <= k; j += 4) {
      idx += 4;
      const f4 v = load4(r + j) + load4(price + j);
      const auto lt = v < b1;
      b2 = lt ? b1 : (v < b2 ? v : b2);
      b1 = lt ? v : b1;
      i1 = lt ? idx : i1;
    }
    // Lanes hold increasing indices, so the lowest index among equal lane minima is the answer.
    int lane = 0;
    for (int l = 1; l < 4; ++l)
      if (b1[l] < b1[lane] || (b1[l] == b1[lane] && i1[l] < i1[lane])) lane = l;
    out = {i1[lane], b1[lane], b2[lane]};
    for (int l = 0; l < 4; ++l)
      if (l != lane) out.second = b1[l] < out.second ? b1[l] : out.second;
  }
  for (; j < k; ++j) {
    const float v = r[j] + price[j];
    if (v < out.first) {
      out.second = out.first;
      out.first = v;
      out.best = (int32_t)j;
    } else if (v < out.second) {
      out.second = v;
    }
  }
  return out;
}

/// Cheapest moves out of cluster a: for every b, m[b] = min(m[b], r[b] − r[a]) with who[b] = item when
/// strictly smaller (callers visit items in increasing index order, so ties keep the lowest index).
inline void lower_moves(const float* r, size_t a, size_t k, int32_t item, float* m, int32_t* who) {
  const float base = r[a];
  size_t b = 0;
  const i4 it = i4{} + item;
  for (; b + 4 <= k; b += 4) {
    const f4 v = load4(r + b) - base;
    const f4 old = load4(m + b);
    const auto lt = v < old;
    store4(m + b, lt ? v : old);
    store4i(who + b, lt ? it : load4i(who + b));
  }
  for (; b < k; ++b) {
    const float v = r[b] - base;
    if (v < m[b]) m[b] = v, who[b] = item;
  }
}

/// Calls f(j, join) for every j with join = r[j] + price[j] − base < admit[j]. admit may change inside
/// f (a lower threshold applies from the next block of 4 on, which only admits more than needed).
template <class F>
inline void below_threshold(const float* r, const float* price, const float* admit, size_t k, float base, F&& f) {
  size_t j = 0;
  for (; j + 4 <= k; j += 4) {
    const f4 join = load4(r + j) + load4(price + j) - base;
    const i4 hit = join < load4(admit + j);
    if (any_lane(hit))
      for (int l = 0; l < 4; ++l)
        if (hit[l]) f(j + l, join[l]);
  }
  for (; j < k; ++j) {
    const float join = r[j] + price[j] - base;
    if (join < admit[j]) f(j, join);
  }
}

}  // namespace tessera::detail
