// The c cheapest clusters of one cost row under prices: the selection behind every candidate list (the
// bounded engine's first lists, the distributed assignment's chunk lists).
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>

namespace tessera::detail {

/// bv[0..len), bj[0..len): the len = min(c1, k) smallest row[j] + pf[j], ascending, ties to the lower j.
/// Most values fail one comparison against the current c1-th: 16 columns at a time, a loop that vectorises.
inline size_t cheapest_priced(const float* row, const float* pf, size_t k, size_t c1, float* bv, int32_t* bj) {
  constexpr size_t kChunk = 16;
  size_t len = 0;
  float thr = std::numeric_limits<float>::infinity();  // values at or above it cannot enter (later j lose ties)
  for (size_t j0 = 0; j0 < k; j0 += kChunk) {
    const size_t w = k - j0 < kChunk ? k - j0 : kChunk;
    float v[kChunk];
    bool any = false;
    if (w == kChunk) {
      for (size_t t = 0; t < kChunk; ++t) v[t] = row[j0 + t] + pf[j0 + t];
      for (size_t t = 0; t < kChunk; ++t) any |= v[t] < thr;
    } else {
      for (size_t t = 0; t < w; ++t) v[t] = row[j0 + t] + pf[j0 + t], any |= v[t] < thr;
    }
    if (!any) continue;
    for (size_t t = 0; t < w; ++t) {
      if (!(v[t] < thr)) continue;
      size_t at = len < c1 ? len++ : c1 - 1;
      for (; at > 0 && v[t] < bv[at - 1]; --at) bv[at] = bv[at - 1], bj[at] = bj[at - 1];
      bv[at] = v[t], bj[at] = int32_t(j0 + t);
      if (len == c1) thr = bv[c1 - 1];
    }
  }
  return len;
}

}  // namespace tessera::detail
