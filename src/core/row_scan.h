// Vectorised scans of one row of a cost (distance) matrix, optionally against per-cluster prices: the
// inner loops of the nearest-centroid search and of the balanced assignment, which read the whole
// n × k matrix several times per call.
//
// GCC/Clang vector extensions of W float lanes, W = the width of one register of the unit the clones run
// on: 16 (AVX-512), 8 (AVX2), 4 (SSE2 and anything else). The callers that scan whole matrices are cloned
// per instruction set (target_clones); each kernel below is instantiated for every W and picks the one
// matching the clone at run time (one predictable branch per row). Vectors wider than the unit's
// registers are not an option: GCC lowers their comparisons and selects to scalar code (on AVX2 the 16-lane
// argmin ran 3× slower than plain C). Every W computes the same values (each lane keeps the first minimum
// of its columns, ties across lanes go to the lowest index), so results do not depend on the CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>
#include <utility>

#include "core/simd.h"
#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace tessera::detail {

template <int W>
struct Lanes;
template <>
struct Lanes<4> {
  typedef float f __attribute__((vector_size(16)));
  typedef int32_t i __attribute__((vector_size(16)));
};
template <>
struct Lanes<8> {
  typedef float f __attribute__((vector_size(32)));
  typedef int32_t i __attribute__((vector_size(32)));
};
template <>
struct Lanes<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef int32_t i __attribute__((vector_size(64)));
};

/// Lanes of one register of the unit the clones run on (the resolvers' choice, see clone_unit()).
inline const int kNativeLanes = [] {
  const char* unit = clone_unit();
  return unit[0] == 'a' ? (unit[3] == '5' ? 16 : 8) : 4;
}();

// Pointer in, pointer out (no vectors passed by value, so no ABI differences between the clones).
#define TESSERA_ROW_SCAN_INLINE inline __attribute__((always_inline))
template <class V>
TESSERA_ROW_SCAN_INLINE void loadv(V& v, const void* p) { std::memcpy(&v, p, sizeof v); }
template <class V>
TESSERA_ROW_SCAN_INLINE void storev(void* p, const V& v) { std::memcpy(p, &v, sizeof v); }
template <class V>
TESSERA_ROW_SCAN_INLINE void min_lanes(V& out, const V& a, const V& b) { out = b < a ? b : a; }
template <class V>
TESSERA_ROW_SCAN_INLINE void iota_lanes(V& v) {
  for (size_t l = 0; l < sizeof v / 4; ++l) v[l] = (int32_t)l;
}
// out[l] = v[l ^ S]: one butterfly step.
template <int S, class V, size_t... L>
TESSERA_ROW_SCAN_INLINE void exchange(V& out, const V& v, std::index_sequence<L...>) {
  out = __builtin_shufflevector(v, v, (int(L) ^ S)...);
}
// Every lane of v set to the minimum over its lanes (butterfly: log2 W exchanges, no scalar code).
template <int W, class V>
TESSERA_ROW_SCAN_INLINE void all_min(V& v) {
  constexpr auto lanes = std::make_index_sequence<W>{};
  V t;
  if constexpr (W >= 16) exchange<8>(t, v, lanes), min_lanes(v, v, t);
  if constexpr (W >= 8) exchange<4>(t, v, lanes), min_lanes(v, v, t);
  exchange<2>(t, v, lanes), min_lanes(v, v, t);
  exchange<1>(t, v, lanes), min_lanes(v, v, t);
}

template <int W>
TESSERA_ROW_SCAN_INLINE bool any_lane(const typename Lanes<W>::i& mask) {
  // OR of the halves down to one 4-lane register, then one movemask.
  typename Lanes<4>::i q;
  if constexpr (W == 16) {
    const typename Lanes<8>::i h = __builtin_shufflevector(mask, mask, 0, 1, 2, 3, 4, 5, 6, 7) |
                                   __builtin_shufflevector(mask, mask, 8, 9, 10, 11, 12, 13, 14, 15);
    q = __builtin_shufflevector(h, h, 0, 1, 2, 3) | __builtin_shufflevector(h, h, 4, 5, 6, 7);
  } else if constexpr (W == 8) {
    q = __builtin_shufflevector(mask, mask, 0, 1, 2, 3) | __builtin_shufflevector(mask, mask, 4, 5, 6, 7);
  } else {
    q = mask;
  }
#if defined(__SSE2__)
  return _mm_movemask_ps((__m128)q) != 0;
#else
  return (q[0] | q[1] | q[2] | q[3]) != 0;
#endif
}

// The W = kNativeLanes instance of a kernel template: KERNEL<16>(args…), KERNEL<8>(…) or KERNEL<4>(…). A
// switch, not a generic lambda: Clang emits a lambda inside a target_clones function once, with one clone's
// instruction set, and calls it from the others (an illegal instruction on a CPU without that set).
#define TESSERA_NATIVE_LANES(KERNEL, ...)                                              \
  (::tessera::detail::kNativeLanes == 16  ? KERNEL<16>(__VA_ARGS__)                    \
   : ::tessera::detail::kNativeLanes == 8 ? KERNEL<8>(__VA_ARGS__)                     \
                                          : KERNEL<4>(__VA_ARGS__))

struct Best {
  int32_t best;  ///< argmin of r[j] + offset[j], lowest index on ties
  float value;   ///< its value
};

/// Cheapest cluster for one row r (k costs) plus a per-cluster offset (k floats), W lanes. Two independent
/// chains of comparisons (even and odd blocks of lanes), merged at the end with the lowest index
/// winning ties: the same answer as a plain scan, at twice its instruction-level parallelism.
template <int W>
TESSERA_ROW_SCAN_INLINE Best best_of_lanes(const float* r, const float* offset, size_t k) {
  using fv = typename Lanes<W>::f;
  using iv = typename Lanes<W>::i;
  Best out{0, std::numeric_limits<float>::infinity()};
  size_t j = 0;
  if (k >= 2 * (size_t)W) {
    fv a, b, p;
    iv ia, ib, idx;
    loadv(a, r);
    loadv(p, offset);
    a += p;
    loadv(b, r + W);
    loadv(p, offset + W);
    b += p;
    iota_lanes(idx);
    ia = idx;
    ib = idx + W;
    for (j = 2 * W; j + 2 * W <= k; j += 2 * W) {
      idx += 2 * W;
      fv v, w;
      loadv(v, r + j);
      loadv(p, offset + j);
      v += p;
      iv lt = v < a;
      a = lt ? v : a;
      ia = lt ? idx : ia;
      loadv(w, r + j + W);
      loadv(p, offset + j + W);
      w += p;
      lt = w < b;
      b = lt ? w : b;
      ib = lt ? idx + W : ib;
    }
    // Across the lanes of both chains without leaving the registers: the minimum value in every lane,
    // then the lowest index among the lanes that hold it (plain selects only: GCC scalarises vector code
    // when comparison masks are combined with & and |).
    fv m;
    min_lanes(m, a, b);
    all_min<W>(m);
    const iv none = iv{} + std::numeric_limits<int32_t>::max();
    iv c, cb;
    c = a == m ? ia : none;
    cb = b == m ? ib : none;
    min_lanes(c, c, cb);
    all_min<W>(c);
    out = {c[0], m[0]};
  }
  // The remaining columns come after every vector one: a strict < keeps the lowest index on ties.
  for (; j < k; ++j) {
    const float v = r[j] + offset[j];
    if (v < out.value) out = {(int32_t)j, v};
  }
  return out;
}

TESSERA_ROW_SCAN_INLINE Best best_of(const float* r, const float* offset, size_t k) {
  return TESSERA_NATIVE_LANES(best_of_lanes, r, offset, k);
}

struct BestTwo {
  int32_t best;  ///< argmin of r[j] + price[j], lowest index on ties
  float first;   ///< its value
  float second;  ///< the smallest value over the other clusters (+inf when k = 1)
};

/// Cheapest and second cheapest cluster for one row r (k costs) under prices (k floats), W lanes.
template <int W>
TESSERA_ROW_SCAN_INLINE BestTwo best_two_lanes(const float* r, const float* price, size_t k) {
  using fv = typename Lanes<W>::f;
  using iv = typename Lanes<W>::i;
  constexpr float inf = std::numeric_limits<float>::infinity();
  size_t j = 0;
  BestTwo out{0, inf, inf};
  if (k >= (size_t)W) {
    fv b1, p, b2 = fv{} + inf;
    loadv(b1, r);
    loadv(p, price);
    b1 += p;
    iv idx, i1;
    iota_lanes(idx);
    i1 = idx;
    for (j = W; j + W <= k; j += W) {
      idx += W;
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
    for (int l = 1; l < W; ++l)
      if (b1[l] < b1[lane] || (b1[l] == b1[lane] && i1[l] < i1[lane])) lane = l;
    out = {i1[lane], b1[lane], b2[lane]};
    for (int l = 0; l < W; ++l)
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

TESSERA_ROW_SCAN_INLINE BestTwo best_two(const float* r, const float* price, size_t k) {
  return TESSERA_NATIVE_LANES(best_two_lanes, r, price, k);
}

/// Cheapest moves out of cluster a: for every b, m[b] = min(m[b], r[b] − r[a]) with who[b] = item when
/// strictly smaller (callers visit items in increasing index order, so ties keep the lowest index).
template <int W>
TESSERA_ROW_SCAN_INLINE void lower_moves_lanes(const float* r, size_t a, size_t k, int32_t item, float* m,
                                               int32_t* who) {
  using fv = typename Lanes<W>::f;
  using iv = typename Lanes<W>::i;
  const float base = r[a];
  size_t b = 0;
  const iv it = iv{} + item;
  for (; b + W <= k; b += W) {
    fv v, old;
    iv w;
    loadv(v, r + b);
    loadv(old, m + b);
    loadv(w, who + b);
    v -= base;
    const iv lt = v < old;
    const fv lower = lt ? v : old;
    const iv by = lt ? it : w;
    storev(m + b, lower);
    storev(who + b, by);
  }
  for (; b < k; ++b) {
    const float v = r[b] - base;
    if (v < m[b]) m[b] = v, who[b] = item;
  }
}

TESSERA_ROW_SCAN_INLINE void lower_moves(const float* r, size_t a, size_t k, int32_t item, float* m, int32_t* who) {
  TESSERA_NATIVE_LANES(lower_moves_lanes, r, a, k, item, m, who);
}

/// Calls f(j, join) for every j with join = r[j] + price[j] − base < admit[j]. admit may change inside
/// f (a lower threshold applies from the next block of lanes on, which only admits more than needed).
template <int W, class F>
TESSERA_ROW_SCAN_INLINE void below_threshold_lanes(const float* r, const float* price, const float* admit, size_t k,
                                                   float base, F& f) {
  using fv = typename Lanes<W>::f;
  using iv = typename Lanes<W>::i;
  size_t j = 0;
  for (; j + W <= k; j += W) {
    fv join, p, lim;
    loadv(join, r + j);
    loadv(p, price + j);
    loadv(lim, admit + j);
    join = join + p - base;
    const iv hit = join < lim;
    if (any_lane<W>(hit))
      for (int l = 0; l < W; ++l)
        if (hit[l]) f(j + l, join[l]);
  }
  for (; j < k; ++j) {
    const float join = r[j] + price[j] - base;
    if (join < admit[j]) f(j, join);
  }
}

template <class F>
TESSERA_ROW_SCAN_INLINE void below_threshold(const float* r, const float* price, const float* admit, size_t k,
                                             float base, F&& f) {
  TESSERA_NATIVE_LANES(below_threshold_lanes, r, price, admit, k, base, f);
}

}  // namespace tessera::detail
