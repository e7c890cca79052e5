#include "tessera/quant/rabitq_codes.h"

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "core/simd.h"
#include "tessera/core/error.h"
#include "tessera/core/rng.h"

namespace tessera::rabitq {

namespace {

void check_bits(int bits) {
  TESSERA_CHECK_ARG(bits >= 1 && bits <= kMaxBits, "bits per coordinate must be 1.." << kMaxBits << ", got " << bits);
}

// Codes from the magnitudes k_i and the signs of o; returns the cosine.
double emit(size_t d, const float* o, int bits, const std::vector<uint16_t>& k, uint16_t* codes) {
  const uint16_t m = uint16_t((1u << (bits - 1)) - 1);
  double ip = 0, n2 = 0, on2 = 0;
  for (size_t i = 0; i < d; ++i) {
    const bool positive = o[i] >= 0;
    codes[i] = uint16_t((uint16_t(positive) << (bits - 1)) | (positive ? k[i] : uint16_t(m - k[i])));
    const double x = k[i] + 0.5;
    ip += x * std::abs(double(o[i]));
    n2 += x * x;
    on2 += double(o[i]) * o[i];
  }
  return on2 > 0 ? ip / std::sqrt(n2 * on2) : 0.0;
}

// One event of the sweep: coordinate i's magnitude goes up by one at t = value.
struct Event {
  double value;
  uint32_t i;
  uint32_t k;  // the level it reaches
  bool operator<(const Event& e) const { return value != e.value ? value < e.value : i < e.i; }
};

// The sweep's state at t: k_i = min(⌊t·a_i⌋, M) (the events of value below t applied), with ip = Σ(k_i + ½)a_i,
// n2 = Σ(k_i + ½)² and count = Σk_i. t = ∞ is the end of the sweep (k_i = M where a_i > 0).
struct State {
  double t, ip, n2, count;
  double score() const { return ip / std::sqrt(n2); }
};

// Vectors of W doubles (W = 2: one SSE2 register; W = 4: one AVX2 register), for the clones' kernels below.
template <int W>
struct DoubleLanes {
  typedef double v __attribute__((vector_size(8 * W)));
};
#define TESSERA_CODES_INLINE inline __attribute__((always_inline))

// k = min(⌊t·a⌋, M) lane by lane, without a rounding instruction (SSE2 has none): y = min(t·a, M) ≤ 2^9, then
// r = (y + 2^52) − 2^52 rounds y to the nearest integer exactly, and k = r − (r > y). Exact on every unit.
template <class V>
TESSERA_CODES_INLINE void floor_levels(V& k, const V& a, double t, double m) {
  const V big = V{} + 4503599627370496.0, one = V{} + 1.0, zero = V{};
  V y = a * t;
  y = y > m ? V{} + m : y;
  const V r = (y + big) - big;
  k = r - (r > y ? one : zero);
}

// Σ(k + ½)a, Σ(k + ½)², Σk at a finite t over a (d padded to a multiple of 4 with zeros: each adds ¼ to Σ(k + ½)²,
// taken off by the caller), in four partial sums per quantity, element i going to sum i mod 4 whatever W: the
// same bits on every unit.
template <int W>
TESSERA_CODES_INLINE void state_sums_lanes(const double* a, size_t d4, double t, double m, double* out) {
  using V = typename DoubleLanes<W>::v;
  constexpr int H = 4 / W;
  V ip[H], n2[H], cnt[H];
  for (int h = 0; h < H; ++h) ip[h] = n2[h] = cnt[h] = V{};
  for (size_t i = 0; i < d4; i += 4)
    for (int h = 0; h < H; ++h) {
      V x, k;
      std::memcpy(&x, a + i + h * W, sizeof x);
      floor_levels(k, x, t, m);
      const V c = k + 0.5;
      ip[h] += c * x;
      n2[h] += c * c;
      cnt[h] += k;
    }
  double lane[3][4];
  for (int h = 0; h < H; ++h)
    for (int l = 0; l < W; ++l) lane[0][h * W + l] = ip[h][l], lane[1][h * W + l] = n2[h][l], lane[2][h * W + l] = cnt[h][l];
  for (int q = 0; q < 3; ++q) out[q] = (lane[q][0] + lane[q][1]) + (lane[q][2] + lane[q][3]);
}

// 4 doubles per register from AVX2 on (the AVX-512 clone too), 2 on the baseline.
const bool kWideDoubles = detail::clone_unit()[0] == 'a';

TESSERA_CLONE_PER_ISA void state_sums(const double* a, size_t d4, double t, double m, double* out) {
  if (kWideDoubles) state_sums_lanes<4>(a, d4, t, m, out);
  else state_sums_lanes<2>(a, d4, t, m, out);
}

// The levels at t of coordinates [0, d4) as doubles (the same floor_levels as state_sums).
template <int W>
TESSERA_CODES_INLINE void levels_lanes(const double* a, size_t d4, double t, double m, double* k) {
  using V = typename DoubleLanes<W>::v;
  for (size_t i = 0; i < d4; i += W) {
    V x, kv;
    std::memcpy(&x, a + i, sizeof x);
    floor_levels(kv, x, t, m);
    std::memcpy(k + i, &kv, sizeof kv);
  }
}

TESSERA_CLONE_PER_ISA void levels_at(const double* a, size_t d4, double t, double m, double* k) {
  if (kWideDoubles) levels_lanes<4>(a, d4, t, m, k);
  else levels_lanes<2>(a, d4, t, m, k);
}

// A stretch [lo.t, hi.t) of the sweep (the events between the two states), and an upper bound on the score of
// every state inside it.
struct Bucket {
  State lo, hi;
  double bound;
  size_t begin, end;  // its events in the pool, once listed
  bool listed;
};

// Every event at t_e adds a_i to ip and 2(k_i + 1) = 2·t_e·a_i to n2. Inside [t1, t2) then, after events worth
// X = ip − ip(t1), n2 ≥ max(n2(t1) + 2·t1·X, n2(t2) − 2·t2·(ip(t2) − ip)); (ip(t1) + X)/√(that) is largest at
// X = 0, at X = Δip or where the two lines cross (on each line it has no interior maximum), so the largest of the
// three bounds every state's ⟨x, a⟩/‖x‖ in the bucket. With t2 = ∞ only the first line holds.
double bucket_bound(const State& lo, const State& hi) {
  const double dip = hi.ip - lo.ip;
  if (!(dip > 0)) return std::max(lo.score(), hi.score());
  auto at = [&](double x) {
    double n2 = lo.n2 + 2 * lo.t * x;
    if (!std::isinf(hi.t)) n2 = std::max(n2, hi.n2 - 2 * hi.t * (dip - x));
    return (lo.ip + x) / std::sqrt(std::max(n2, lo.n2));
  };
  double b = std::max(at(0), at(dip));
  if (!std::isinf(hi.t) && hi.t > lo.t) {
    const double xc = (lo.n2 + 2 * hi.t * dip - hi.n2) / (2 * (hi.t - lo.t));
    if (xc > 0 && xc < dip) b = std::max(b, at(xc));
  }
  return b;
}

// Scratch space per thread (encoders call quantize_exact from parallel loops).
struct Scratch {
  std::vector<double> a, k1, k2;
  std::vector<uint16_t> k;
  std::vector<Event> events, pool;
  std::vector<Bucket> open;
};

// Appends the events of [lo.t, hi.t) to events, unsorted (value not set). a: d4 magnitudes (zero-padded); k1,
// k2: d4 doubles of scratch.
void list_events(size_t d, size_t d4, const double* a, double m, const State& lo, const State& hi, double* k1,
                 double* k2, std::vector<Event>& events) {
  levels_at(a, d4, lo.t, m, k1);
  if (std::isinf(hi.t))
    for (size_t i = 0; i < d4; ++i) k2[i] = a[i] > 0 ? m : 0.0;
  else
    levels_at(a, d4, hi.t, m, k2);
  for (size_t i = 0; i < d; ++i)
    for (uint32_t k = uint32_t(k1[i]) + 1; k <= uint32_t(k2[i]); ++k) events.push_back({0.0, uint32_t(i), k});
}

// Stretches with at most this many events are swept event by event; longer ones are split in two.
constexpr double kSweepEvents = 16;
// Stretches with at most this many events get them listed (split by partitioning them from then on); longer
// ones are split by computing the state at their middle, O(d).
// (Measured: listing earlier, at 64..256 events, and partitioning costs more instructions than O(d) states at
// d = 128 and 784.)
constexpr double kListEvents = 16;
// Relative slack on the pruning test: a stretch is dropped only when its bound is below the best score met by
// more than rounding can explain.
constexpr double kPruneSlack = 1e-12;

}  // namespace

double quantize_exact(size_t d, const float* o, int bits, uint16_t* codes, double* best_t) {
  check_bits(bits);
  const uint32_t mi = (1u << (bits - 1)) - 1;
  const double m = double(mi);
  thread_local Scratch scratch;
  std::vector<double>& a = scratch.a;
  std::vector<uint16_t>& k = scratch.k;
  const size_t d4 = (d + 3) / 4 * 4;
  a.assign(d4, 0.0);
  scratch.k1.resize(d4);
  scratch.k2.resize(d4);
  k.assign(d, 0);
  double a_max = 0, a_sum = 0, nonzero = 0;
  bool finite = true;
  for (size_t i = 0; i < d; ++i) {
    finite &= std::isfinite(o[i]);
    a[i] = std::abs(double(o[i]));
    a_max = std::max(a_max, a[i]);
    a_sum += a[i];
    nonzero += a[i] > 0;
  }
  if (!finite)
    for (size_t i = 0; i < d; ++i)
      TESSERA_CHECK_ARG(std::isfinite(o[i]), "coordinate " << i << " of the vector to quantize is not finite");
  if (mi == 0 || a_max == 0) {
    if (best_t) *best_t = 0.0;
    return emit(d, o, bits, k, codes);
  }
  // Branch and bound over stretches of the exact sweep (quantize_exact's contract: the best of all the states the
  // full sweep visits, levels clamped at M throughout). The states at a few values of t around the usual optimum
  // (t·max a_i ≈ 0.7 … 2.2 × (M + 1)) give a good score early; a stretch whose bound cannot beat it is dropped,
  // a short one is swept, a long one is split at its middle t.
  auto state_at = [&](double t) {
    State s{t, 0, 0, 0};
    if (std::isinf(t)) {
      s.ip = (m + 0.5) * a_sum, s.n2 = nonzero * (m + 0.5) * (m + 0.5) + 0.25 * (double(d) - nonzero);
      s.count = nonzero * m;
    } else {
      double sums[3];
      state_sums(a.data(), d4, t, m, sums);
      s.ip = sums[0], s.n2 = sums[1] - 0.25 * double(d4 - d), s.count = sums[2];
    }
    return s;
  };
  // The best state met: the events of [best_lo, best_hi) up to best_steps applied on top of best_lo's levels.
  const State start = state_at(0.0);
  State best_lo = start, best_hi = start;
  size_t best_steps = 0;
  double best = best_lo.score();
  auto consider = [&](const State& s) {
    if (s.score() > best) best = s.score(), best_lo = s, best_hi = s, best_steps = 0;
  };
  // Open stretches, a max-heap by bound. A stretch's events are listed (in pool[begin, end), unsorted) once it
  // holds few enough; a listed stretch is split by partitioning its events, an unlisted one by a new state.
  std::vector<Bucket>& open = scratch.open;
  std::vector<Event>& pool = scratch.pool;
  open.clear();
  pool.clear();
  const auto by_bound = [](const Bucket& x, const Bucket& y) { return x.bound < y.bound; };
  const auto push = [&](const Bucket& b) {
    if (b.hi.count > b.lo.count && b.bound * (1 + kPruneSlack) >= best) {
      open.push_back(b);
      std::push_heap(open.begin(), open.end(), by_bound);
    }
  };
  const State end = state_at(INFINITY);
  consider(end);
  {
    static constexpr double kGrid[] = {0.6, 0.75, 0.85, 0.92, 1.0, 1.08, 1.17, 1.3, 1.5, 1.8, 2.2, 3.0};
    State prev = start;
    if (end.count > kListEvents)
      for (double g : kGrid) {
        const State s = state_at(g * (m + 1) / a_max);
        consider(s);
        push({prev, s, bucket_bound(prev, s), 0, 0, false});
        prev = s;
      }
    push({prev, end, bucket_bound(prev, end), 0, 0, false});
  }
  std::vector<Event>& events = scratch.events;
  while (!open.empty()) {
    std::pop_heap(open.begin(), open.end(), by_bound);
    Bucket b = open.back();
    open.pop_back();
    if (b.bound * (1 + kPruneSlack) < best) break;  // no stretch left can beat the best
    const double events_in = b.hi.count - b.lo.count;
    if (!b.listed && events_in <= kListEvents) {
      b.begin = pool.size();
      list_events(d, d4, a.data(), m, b.lo, b.hi, scratch.k1.data(), scratch.k2.data(), pool);
      b.end = pool.size();
      b.listed = true;
    }
    const double mid = std::isinf(b.hi.t) ? 2 * b.lo.t : 0.5 * (b.lo.t + b.hi.t);
    if (b.listed && (events_in <= kSweepEvents || !(mid > b.lo.t && mid < b.hi.t))) {
      // Sweep: the events in order, scoring every state.
      events.assign(pool.begin() + b.begin, pool.begin() + b.end);
      for (Event& e : events) e.value = e.k / a[e.i];
      std::sort(events.begin(), events.end());
      double ip = b.lo.ip, n2 = b.lo.n2;
      for (size_t s = 0; s < events.size(); ++s) {
        const Event& e = events[s];
        ip += a[e.i];
        n2 += 2.0 * e.k;  // (k + ½)² − (k − ½)²
        const double score = ip / std::sqrt(n2);
        if (score > best) best = score, best_lo = b.lo, best_hi = b.hi, best_steps = s + 1;
      }
      continue;
    }
    State s{mid, 0, 0, 0};
    size_t split = 0;
    if (b.listed) {
      // The events below mid (those with mid·a_i ≥ k, as floor_levels counts them) first; the state at mid from
      // their sums.
      double ip = 0, k2 = 0;
      size_t lo_i = b.begin, hi_i = b.end;
      while (lo_i < hi_i) {
        const Event e = pool[lo_i];
        if (mid * a[e.i] >= double(e.k)) ip += a[e.i], k2 += e.k, ++lo_i;
        else pool[lo_i] = pool[--hi_i], pool[hi_i] = e;
      }
      split = lo_i;
      s.ip = b.lo.ip + ip, s.n2 = b.lo.n2 + 2 * k2, s.count = b.lo.count + double(split - b.begin);
    } else {
      s = state_at(mid);
    }
    consider(s);
    push({b.lo, s, bucket_bound(b.lo, s), b.begin, split, b.listed});
    push({s, b.hi, bucket_bound(s, b.hi), split, b.end, b.listed});
  }
  // The levels of the best state: best_lo's, plus the first best_steps events after it.
  if (std::isinf(best_lo.t)) {
    for (size_t i = 0; i < d; ++i) k[i] = uint16_t(a[i] > 0 ? mi : 0);
  } else {
    levels_at(a.data(), d4, best_lo.t, m, scratch.k1.data());
    for (size_t i = 0; i < d; ++i) k[i] = uint16_t(scratch.k1[i]);
  }
  if (best_steps > 0) {
    events.clear();
    list_events(d, d4, a.data(), m, best_lo, best_hi, scratch.k1.data(), scratch.k2.data(), events);
    for (Event& e : events) e.value = e.k / a[e.i];
    std::sort(events.begin(), events.end());
    for (size_t s = 0; s < best_steps; ++s) ++k[events[s].i];
  }
  if (best_t) {
    // A t strictly inside the best code's interval [t_s, t_{s+1}): the last event applied and the next one.
    double last = 0, next = INFINITY;
    for (size_t i = 0; i < d; ++i) {
      if (k[i] > 0) last = std::max(last, k[i] / a[i]);
      if (k[i] < mi && a[i] > 0) next = std::min(next, (k[i] + 1) / a[i]);
    }
    if (last == 0) *best_t = 0.0;
    else if (std::isinf(next)) *best_t = 2 * last;
    else *best_t = 0.5 * (last + next);
  }
  return emit(d, o, bits, k, codes);
}

double quantize_with_scale(size_t d, const float* o, int bits, double t, uint16_t* codes) {
  check_bits(bits);
  TESSERA_CHECK_ARG(t >= 0 && std::isfinite(t), "the rescale factor must be finite and non-negative, got " << t);
  const uint32_t mi = (1u << (bits - 1)) - 1;
  const double m = double(mi);
  // The levels and Σ(k + ½)a, Σ(k + ½)² by the vectorised kernels of the exact search (same floor, same clamp).
  thread_local std::vector<double> a, k;
  const size_t d4 = (d + 3) / 4 * 4;
  a.assign(d4, 0.0);
  k.resize(d4);
  double on2 = 0;
  for (size_t i = 0; i < d; ++i) a[i] = std::abs(double(o[i])), on2 += a[i] * a[i];
  levels_at(a.data(), d4, t, m, k.data());
  double sums[3];
  state_sums(a.data(), d4, t, m, sums);
  const uint16_t top = uint16_t(1u << (bits - 1));
  for (size_t i = 0; i < d; ++i) {
    const uint16_t ki = uint16_t(k[i]);
    codes[i] = o[i] >= 0 ? uint16_t(top | ki) : uint16_t(mi - ki);
  }
  const double n2 = sums[1] - 0.25 * double(d4 - d);
  return on2 > 0 ? sums[0] / std::sqrt(n2 * on2) : 0.0;
}

double constant_scale(size_t d, int bits) {
  check_bits(bits);
  TESSERA_CHECK_ARG(d >= 1, "dimension must be at least 1");
  static std::mutex lock;
  static std::map<std::pair<size_t, int>, double> cache;
  {
    std::lock_guard<std::mutex> guard(lock);
    if (auto it = cache.find({d, bits}); it != cache.end()) return it->second;
  }
  constexpr int kSamples = 100;
  Rng rng(derive_seed(0x5ca1e, d * 16 + size_t(bits)));
  std::vector<float> o(d);
  std::vector<uint16_t> codes(d);
  double sum = 0;
  for (int s = 0; s < kSamples; ++s) {
    double norm = 0;
    fill_standard_normal(o.data(), d, rng);
    for (float v : o) norm += double(v) * v;
    for (float& v : o) v = float(v / std::sqrt(norm));
    double t = 0;
    quantize_exact(d, o.data(), bits, codes.data(), &t);
    sum += t;
  }
  const double t = sum / kSamples;
  std::lock_guard<std::mutex> guard(lock);
  cache[{d, bits}] = t;
  return t;
}

}  // namespace tessera::rabitq
