// Vectorised scans of one row of a cost (distance) matrix, optionally against per-cluster prices: the
// inner loops of the nearest-centroid search and of the balanced assignment, which read the whole
// n × k matrix several times per call.
//
// GCC/Clang vector extensions of 16 float lanes: one AVX-512 register, two AVX2, four SSE2 (or NEON).
// The callers that scan whole matrices are cloned per instruction set (target_clones), so these inline
// kernels compile to the widest unit the CPU has while the shipped build needs no -march flag; every
// lane width computes the same values in the same order, so results do not depend on the CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>

#include "core/simd.h"
#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace tessera::detail {

constexpr int kLanes = 16;
using fv = float __attribute__((vector_size(4 * kLanes)));
using iv = int32_t __attribute__((vector_size(4 * kLanes)));

// Pointer in, pointer out (no vectors passed by value, so no ABI differences between the clones).
#define TESSERA_ROW_SCAN_INLINE inline __attribute__((always_inline))
TESSERA_ROW_SCAN_INLINE void loadv(fv& v, const float* p) { std::memcpy(&v, p, sizeof v); }
TESSERA_ROW_SCAN_INLINE void loadv(iv& v, const int32_t* p) { std::memcpy(&v, p, sizeof v); }
TESSERA_ROW_SCAN_INLINE void storev(float* p, const fv& v) { std::memcpy(p, &v, sizeof v); }
TESSERA_ROW_SCAN_INLINE void storev(int32_t* p, const iv& v) { std::memcpy(p, &v, sizeof v); }

TESSERA_ROW_SCAN_INLINE bool any_lane(const iv& mask) {
  // OR of the halves down to one SSE register, then one movemask.
  using i8v = int32_t __attribute__((vector_size(32)));
  using i4v = int32_t __attribute__((vector_size(16)));
  const i8v h = __builtin_shufflevector(mask, mask, 0, 1, 2, 3, 4, 5, 6, 7) |
                __builtin_shufflevector(mask, mask, 8, 9, 10, 11, 12, 13, 14, 15);
  const i4v q = __builtin_shufflevector(h, h, 0, 1, 2, 3) | __builtin_shufflevector(h, h, 4, 5, 6, 7);
#if defined(__SSE2__)
  return _mm_movemask_ps((__m128)q) != 0;
#else
  return (q[0] | q[1] | q[2] | q[3]) != 0;
#endif
}

TESSERA_ROW_SCAN_INLINE fv min_lanes(const fv& a, const fv& b) { return b < a ? b : a; }
TESSERA_ROW_SCAN_INLINE iv min_lanes(const iv& a, const iv& b) { return b < a ? b : a; }

struct Best {
  int32_t best;  ///< argmin of r[j] + offset[j], lowest index on ties
  float value;   ///< its value
};

/// Cheapest cluster for one row r (k costs) plus a per-cluster offset (k floats). Two independent
/// chains of comparisons (even and odd blocks of lanes), merged at the end with the lowest index
/// winning ties: the same answer as a plain scan, at twice its instruction-level parallelism.
TESSERA_ROW_SCAN_INLINE Best best_of(const float* r, const float* offset, size_t k) {
  Best out{0, std::numeric_limits<float>::infinity()};
  size_t j = 0;
  if (k >= 2 * (size_t)kLanes) {
    fv a, b, p;
    iv ia, ib, idx;
    loadv(a, r);
    loadv(p, offset);
    a += p;
    loadv(b, r + kLanes);
    loadv(p, offset + kLanes);
    b += p;
    for (int l = 0; l < kLanes; ++l) idx[l] = l;
    ia = idx;
    ib = idx + kLanes;
    for (j = 2 * kLanes; j + 2 * kLanes <= k; j += 2 * kLanes) {
      idx += 2 * kLanes;
      fv v, w;
      loadv(v, r + j);
      loadv(p, offset + j);
      v += p;
      iv lt = v < a;
      a = lt ? v : a;
      ia = lt ? idx : ia;
      loadv(w, r + j + kLanes);
      loadv(p, offset + j + kLanes);
      w += p;
      lt = w < b;
      b = lt ? w : b;
      ib = lt ? idx + kLanes : ib;
    }
    // Across the lanes of both chains without leaving the registers: butterfly minima of the values, then
    // of the indices of the lanes that hold the minimum (plain selects only: GCC scalarises the vector
    // code when comparison masks are combined with & and |).
    fv m = min_lanes(a, b);
    m = min_lanes(m, __builtin_shufflevector(m, m, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
    m = min_lanes(m, __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
    m = min_lanes(m, __builtin_shufflevector(m, m, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
    m = min_lanes(m, __builtin_shufflevector(m, m, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    const iv none = iv{} + std::numeric_limits<int32_t>::max();
    iv c = min_lanes(a == m ? ia : none, b == m ? ib : none);
    c = min_lanes(c, __builtin_shufflevector(c, c, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
    c = min_lanes(c, __builtin_shufflevector(c, c, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
    c = min_lanes(c, __builtin_shufflevector(c, c, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
    c = min_lanes(c, __builtin_shufflevector(c, c, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    out = {c[0], m[0]};
  }
  // The remaining columns come after every vector one: a strict < keeps the lowest index on ties.
  for (; j < k; ++j) {
    const float v = r[j] + offset[j];
    if (v < out.value) out = {(int32_t)j, v};
  }
  return out;
}

struct BestTwo {
  int32_t best;  ///< argmin of r[j] + price[j], lowest index on ties
  float first;   ///< its value
  float second;  ///< the smallest value over the other clusters (+inf when k = 1)
};

/// Cheapest and second cheapest cluster for one row r (k costs) under prices (k floats).
TESSERA_ROW_SCAN_INLINE BestTwo best_two(const float* r, const float* price, size_t k) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  size_t j = 0;
  BestTwo out{0, inf, inf};
  if (k >= (size_t)kLanes) {
    fv b1, p, b2 = fv{} + inf;
    loadv(b1, r);
    loadv(p, price);
    b1 += p;
    iv idx, i1;
    for (int l = 0; l < kLanes; ++l) idx[l] = l;
    i1 = idx;
    for (j = kLanes; j + kLanes <= k; j += kLanes) {
      idx += kLanes;
      fv v;
      loadv(v, r + j);
      loadv(p, price + j);
      v += p;
      const iv lt = v < b1;
      b2 = lt ? b1 : (v < b2 ? v : b2);
      b1 = lt ? v : b1;
      i1 = lt ? idx : i1;
    }
    // Lanes hold increasing indices, so the lowest index among equal lane minima is the answer.
    int lane = 0;
    for (int l = 1; l < kLanes; ++l)
      if (b1[l] < b1[lane] || (b1[l] == b1[lane] && i1[l] < i1[lane])) lane = l;
    out = {i1[lane], b1[lane], b2[lane]};
    for (int l = 0; l < kLanes; ++l)
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
TESSERA_ROW_SCAN_INLINE void lower_moves(const float* r, size_t a, size_t k, int32_t item, float* m, int32_t* who) {
  const float base = r[a];
  size_t b = 0;
  const iv it = iv{} + item;
  for (; b + kLanes <= k; b += kLanes) {
    fv v, old;
    iv w;
    loadv(v, r + b);
    loadv(old, m + b);
    loadv(w, who + b);
    v -= base;
    const iv lt = v < old;
    storev(m + b, lt ? v : old);
    storev(who + b, lt ? it : w);
  }
  for (; b < k; ++b) {
    const float v = r[b] - base;
    if (v < m[b]) m[b] = v, who[b] = item;
  }
}

/// Calls f(j, join) for every j with join = r[j] + price[j] − base < admit[j]. admit may change inside
/// f (a lower threshold applies from the next block of 4 on, which only admits more than needed).
template <class F>
TESSERA_ROW_SCAN_INLINE void below_threshold(const float* r, const float* price, const float* admit, size_t k,
                                             float base, F&& f) {
  size_t j = 0;
  for (; j + kLanes <= k; j += kLanes) {
    fv join, p, lim;
    loadv(join, r + j);
    loadv(p, price + j);
    loadv(lim, admit + j);
    join = join + p - base;
    const iv hit = join < lim;
    if (any_lane(hit))
      for (int l = 0; l < kLanes; ++l)
        if (hit[l]) f(j + l, join[l]);
  }
  for (; j < k; ++j) {
    const float join = r[j] + price[j] - base;
    if (join < admit[j]) f(j, join);
  }
}

}  // namespace tessera::detail
