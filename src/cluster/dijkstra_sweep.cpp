#include "cluster/dijkstra_sweep.h"

#include "core/simd.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace tessera::detail {

namespace {

constexpr size_t W = 8;  // lanes per step: one AVX-512 register of doubles, two AVX2, four SSE2
using d8 = double __attribute__((vector_size(8 * W)));
using l8 = int64_t __attribute__((vector_size(8 * W)));
using f8 = float __attribute__((vector_size(4 * W)));
using i8 = int32_t __attribute__((vector_size(4 * W)));
constexpr double kInf = std::numeric_limits<double>::infinity();

// Pointer in, pointer out (no vectors passed by value, so no ABI differences between the clones).
template <class V, class T>
inline __attribute__((always_inline)) void load(V& v, const T* p) {
  std::memcpy(&v, p, sizeof v);
}
template <class V, class T>
inline __attribute__((always_inline)) void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// Lane-wise running minimum with its index; strict comparisons keep the first (lowest) index per lane.
struct LaneMin {
  d8 value = d8{} + kInf;
  l8 index = l8{} - 1;
  __attribute__((always_inline)) void take(const d8& v, const l8& idx) {
    const l8 lt = v < value;  // false for NaN: settled nodes never win
    value = lt ? v : value;
    index = lt ? idx : index;
  }
  Nearest reduce() const {
    Nearest out{kInf, -1};
    for (size_t l = 0; l < W; ++l)
      if (value[l] < out.key || (value[l] == out.key && value[l] < kInf && index[l] < out.index))
        out = {value[l], (int32_t)index[l]};
    return out;
  }
};

inline void take_scalar(Nearest& best, double v, size_t j) {
  if (v < best.key) best = {v, (int32_t)j};  // later indices win only when strictly smaller
}

constexpr l8 kFirstLanes = {0, 1, 2, 3, 4, 5, 6, 7};

}  // namespace

TESSERA_CLONE_PER_ISA Nearest relax_and_find_nearest(
    const float* move, const double* price, double pu, double du, int32_t u, size_t k, double* key, int32_t* pred,
    double* arc) {
  LaneMin lanes;
  size_t v = 0;
  const d8 zero = {};
  l8 idx = kFirstLanes;
  for (; v + W <= k; v += W, idx += int64_t(W)) {
    f8 mf;
    d8 p, old, a;
    i8 who;
    load(mf, move + v);
    load(p, price + v);
    load(old, key + v);
    load(a, arc + v);
    load(who, pred + v);
    const d8 m = __builtin_convertvector(mf, d8);
    d8 reduced = m + p - pu;
    reduced = reduced > zero ? reduced : zero;
    const d8 nd = du + reduced;
    const l8 lt = nd < old;  // false where old is NaN (settled)
    const d8 now = lt ? nd : old;
    store(key + v, now);
    const d8 a2 = lt ? m : a;
    store(arc + v, a2);
    const i8 who2 = __builtin_convertvector(lt, i8) ? (i8{} + u) : who;
    store(pred + v, who2);
    lanes.take(now, idx);
  }
  Nearest best = lanes.reduce();
  for (; v < k; ++v) {
    const double m = move[v];
    const double nd = du + std::max(0.0, m + price[v] - pu);
    if (nd < key[v]) key[v] = nd, pred[v] = u, arc[v] = m;
    take_scalar(best, key[v], v);
  }
  return best;
}

Nearest find_nearest(const double* key, size_t k) {
  LaneMin lanes;
  size_t v = 0;
  d8 kv;
  l8 idx = kFirstLanes;
  for (; v + W <= k; v += W, idx += int64_t(W)) {
    load(kv, key + v);
    lanes.take(kv, idx);
  }
  Nearest best = lanes.reduce();
  for (; v < k; ++v) take_scalar(best, key[v], v);
  return best;
}

}  // namespace tessera::detail
