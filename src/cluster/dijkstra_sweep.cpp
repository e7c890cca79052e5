#include "cluster/dijkstra_sweep.h"

#include "core/row_scan.h"
#include "core/simd.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace tessera::detail {

namespace {

// W doubles per step: one register of the clone's unit (8 on AVX-512, 4 on AVX2, 2 on SSE2; wider vectors
// than the registers compile to scalar comparisons, see row_scan.h). Every W gives the same result.
template <int W>
struct Sweep;
template <>
struct Sweep<2> {
  typedef double d __attribute__((vector_size(16)));
  typedef int64_t l __attribute__((vector_size(16)));
  typedef float f __attribute__((vector_size(8)));
  typedef int32_t i __attribute__((vector_size(8)));
};
template <>
struct Sweep<4> {
  typedef double d __attribute__((vector_size(32)));
  typedef int64_t l __attribute__((vector_size(32)));
  typedef float f __attribute__((vector_size(16)));
  typedef int32_t i __attribute__((vector_size(16)));
};
template <>
struct Sweep<8> {
  typedef double d __attribute__((vector_size(64)));
  typedef int64_t l __attribute__((vector_size(64)));
  typedef float f __attribute__((vector_size(32)));
  typedef int32_t i __attribute__((vector_size(32)));
};
constexpr double kInf = std::numeric_limits<double>::infinity();

// Lane-wise running minimum with its index; strict comparisons keep the first (lowest) index per lane.
template <int W>
struct LaneMin {
  using d = typename Sweep<W>::d;
  using l = typename Sweep<W>::l;
  d value = d{} + kInf;
  l index = l{} - 1;
  __attribute__((always_inline)) void take(const d& v, const l& idx) {
    const l lt = v < value;  // false for NaN: settled nodes never win
    value = lt ? v : value;
    index = lt ? idx : index;
  }
  __attribute__((always_inline)) Nearest reduce() const {
    Nearest out{kInf, -1};
    for (int j = 0; j < W; ++j)
      if (value[j] < out.key || (value[j] == out.key && value[j] < kInf && index[j] < out.index))
        out = {value[j], (int32_t)index[j]};
    return out;
  }
};

inline void take_scalar(Nearest& best, double v, size_t j) {
  if (v < best.key) best = {v, (int32_t)j};  // later indices win only when strictly smaller
}

template <int W>
inline __attribute__((always_inline)) Nearest relax_lanes(const float* move, const double* price, double pu,
                                                           double du, int32_t u, size_t k, double* key,
                                                           int32_t* pred, double* arc) {
  using S = Sweep<W>;
  LaneMin<W> lanes;
  size_t v = 0;
  const typename S::d zero = {};
  typename S::l idx;
  for (int j = 0; j < W; ++j) idx[j] = j;
  for (; v + W <= k; v += W, idx += int64_t(W)) {
    typename S::f mf;
    typename S::d p, old, a;
    typename S::i who;
    loadv(mf, move + v);
    loadv(p, price + v);
    loadv(old, key + v);
    loadv(a, arc + v);
    loadv(who, pred + v);
    const typename S::d m = __builtin_convertvector(mf, typename S::d);
    typename S::d reduced = m + p - pu;
    reduced = reduced > zero ? reduced : zero;
    const typename S::d nd = du + reduced;
    const typename S::l lt = nd < old;  // false where old is NaN (settled)
    const typename S::d now = lt ? nd : old;
    storev(key + v, now);
    const typename S::d a2 = lt ? m : a;
    storev(arc + v, a2);
    const typename S::i who2 = __builtin_convertvector(lt, typename S::i) ? (typename S::i{} + u) : who;
    storev(pred + v, who2);
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

template <int W>
inline __attribute__((always_inline)) Nearest nearest_lanes(const double* key, size_t k) {
  LaneMin<W> lanes;
  size_t v = 0;
  typename Sweep<W>::d kv;
  typename Sweep<W>::l idx;
  for (int j = 0; j < W; ++j) idx[j] = j;
  for (; v + W <= k; v += W, idx += int64_t(W)) {
    loadv(kv, key + v);
    lanes.take(kv, idx);
  }
  Nearest best = lanes.reduce();
  for (; v < k; ++v) take_scalar(best, key[v], v);
  return best;
}

// The same two with W counted in floats (the unit's register width), W / 2 doubles.
template <int W>
inline __attribute__((always_inline)) Nearest relax_lanes_by_floats(const float* move, const double* price, double pu,
                                                                     double du, int32_t u, size_t k, double* key,
                                                                     int32_t* pred, double* arc) {
  return relax_lanes<W / 2>(move, price, pu, du, u, k, key, pred, arc);
}
template <int W>
inline __attribute__((always_inline)) Nearest nearest_lanes_by_floats(const double* key, size_t k) {
  return nearest_lanes<W / 2>(key, k);
}

// Per cluster v: the tentative distance through u, du + max(0, move[v] + price[v] − pu), replaces key[v]
// when strictly smaller (recording u and the arc's cost); the smallest key is tracked in the same pass.
// The clones have internal linkage: Clang (14) does not clone a function whose header declaration lacks the
// attribute, and compiled it for the first listed unit alone (AVX-512 instructions on every CPU).
TESSERA_CLONE_PER_ISA Nearest relax_cloned(const float* move, const double* price, double pu, double du, int32_t u,
                                           size_t k, double* key, int32_t* pred, double* arc) {
  return TESSERA_NATIVE_LANES(relax_lanes_by_floats, move, price, pu, du, u, k, key, pred, arc);
}

TESSERA_CLONE_PER_ISA Nearest nearest_cloned(const double* key, size_t k) {
  return TESSERA_NATIVE_LANES(nearest_lanes_by_floats, key, k);
}

}  // namespace

Nearest relax_and_find_nearest(const float* move, const double* price, double pu, double du, int32_t u, size_t k,
                               double* key, int32_t* pred, double* arc) {
  return relax_cloned(move, price, pu, du, u, k, key, pred, arc);
}

Nearest find_nearest(const double* key, size_t k) { return nearest_cloned(key, k); }

}  // namespace tessera::detail
