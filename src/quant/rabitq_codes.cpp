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
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include "tessera/core/error.h"
#include "tessera/core/rng.h"

namespace tessera::rabitq {

namespace {

void check_bits(int bits) {
  TESSERA_CHECK_ARG(bits >= 1 && bits <= kMaxBits, "bits per coordinate must be 1.." << kMaxBits << ", got " << bits);
}

// Four doubles (two SSE2 registers on the baseline unit, one AVX register from AVX2 on; the operations are
// lane by lane, so every unit gives the same bits), and their integer companions.
typedef double V4d __attribute__((vector_size(32)));
typedef float V4f __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));
typedef int64_t V4l __attribute__((vector_size(32)));
typedef uint8_t V16b __attribute__((vector_size(16)));
typedef uint8_t V8b __attribute__((vector_size(8)));
#define TESSERA_CODES_INLINE inline __attribute__((always_inline))

// Magnitudes are kept in double, padded with zeros to a multiple of kPad coordinates (a zero magnitude has
// level 0 at every t and adds nothing to the sums below).
constexpr size_t kPad = 8;

// k = min(⌊t·a⌋, M) lane by lane: y = min(t·a, M) ∈ [0, 2^8], truncated to an integer (exact on every unit).
TESSERA_CODES_INLINE void levels4(V4d& k, V4i& ki, const V4d& a, double t, double m) {
  V4d y = a * t;
  y = y > m ? V4d{} + m : y;
  ki = __builtin_convertvector(y, V4i);
  k = __builtin_convertvector(ki, V4d);
}

// One pass over o: a_i = |o_i| in double (pads zeroed), and out = {max a, Σa, Σa², #(a > 0), #(non-finite)}, the
// sums in four lanes (coordinate i in lane i mod 4), added (l0 + l1) + (l2 + l3).
TESSERA_CLONE_PER_ISA void magnitudes(const float* o, size_t d, size_t dp, double* a, double* out) {
  V4d mx{}, sum{}, sq{}, nz{}, bad{};
  const V4l abs_mask = V4l{} + 0x7fffffffffffffffll;
  size_t i = 0;
  for (; i + 4 <= d; i += 4) {
    V4f f;
    std::memcpy(&f, o + i, sizeof f);
    const V4d x = __builtin_convertvector(f, V4d);
    const V4d v = (V4d)((V4l)x & abs_mask);
    std::memcpy(a + i, &v, sizeof v);
    mx = v > mx ? v : mx;
    sum += v, sq += v * v;
    nz += v > 0 ? V4d{} + 1.0 : V4d{};
    bad += x - x == 0 ? V4d{} : V4d{} + 1.0;  // NaN and ±inf give NaN
  }
  for (; i < d; ++i) {
    const double x = o[i], v = std::abs(x);
    a[i] = v;
    const size_t l = i & 3;
    mx[l] = v > mx[l] ? v : mx[l];
    sum[l] += v, sq[l] += v * v, nz[l] += v > 0 ? 1.0 : 0.0, bad[l] += x - x == 0 ? 0.0 : 1.0;
  }
  for (; i < dp; ++i) a[i] = 0.0;
  out[0] = std::max(std::max(mx[0], mx[1]), std::max(mx[2], mx[3]));
  out[1] = (sum[0] + sum[1]) + (sum[2] + sum[3]);
  out[2] = (sq[0] + sq[1]) + (sq[2] + sq[3]);
  out[3] = (nz[0] + nz[1]) + (nz[2] + nz[3]);
  out[4] = (bad[0] + bad[1]) + (bad[2] + bad[3]);
}

// At a finite t: out = {Σk·a, Σk² + Σk, Σk} over a (dp coordinates, dp a multiple of kPad), k = min(⌊t·a⌋, M),
// and the levels as bytes in k8; Σk·a in eight partial sums (coordinate i in sum i mod 8), added in a fixed
// order; the other two are sums of integers, exact.
TESSERA_CLONE_PER_ISA void state_sums(const double* a, size_t dp, double t, double m, uint8_t* k8, double* out) {
  V4d ip0{}, ip1{}, sq0{}, sq1{}, c0{}, c1{};
  for (size_t i = 0; i < dp; i += 8) {
    V4d x0, x1, k0, k1;
    V4i i0, i1;
    std::memcpy(&x0, a + i, sizeof x0);
    std::memcpy(&x1, a + i + 4, sizeof x1);
    levels4(k0, i0, x0, t, m);
    levels4(k1, i1, x1, t, m);
    const V8b b = __builtin_shufflevector((V16b)i0, (V16b)i1, 0, 4, 8, 12, 16, 20, 24, 28);  // the low bytes
    std::memcpy(k8 + i, &b, sizeof b);
    ip0 += k0 * x0, ip1 += k1 * x1;
    sq0 += k0 * k0, sq1 += k1 * k1;
    c0 += k0, c1 += k1;
  }
  const V4d ip = ip0 + ip1, sq = sq0 + sq1, c = c0 + c1;
  out[0] = (ip[0] + ip[1]) + (ip[2] + ip[3]);
  out[1] = ((sq[0] + sq[1]) + (sq[2] + sq[3])) + ((c[0] + c[1]) + (c[2] + c[3]));
  out[2] = (c[0] + c[1]) + (c[2] + c[3]);
}

#if defined(__x86_64__) && defined(__GNUC__)
// The same sums and levels with AVX2 instructions GCC's vector extensions do not reach (vminpd for the clamp,
// one vcvtdq2pd, packs for the bytes): the same operations lane by lane and the same order of additions, so the
// same bits as state_sums on every unit (the codes' tests run both: natively and under qemu without AVX).
__attribute__((target("avx2"))) void state_sums_avx2(const double* a, size_t dp, double t, double m, uint8_t* k8,
                                                     double* out) {
  const __m256d tv = _mm256_set1_pd(t), mv = _mm256_set1_pd(m);
  __m256d ip0 = _mm256_setzero_pd(), ip1 = ip0, sq0 = ip0, sq1 = ip0, c0 = ip0, c1 = ip0;
  for (size_t i = 0; i < dp; i += 8) {
    const __m256d x0 = _mm256_loadu_pd(a + i), x1 = _mm256_loadu_pd(a + i + 4);
    // min(t·a, M): t·a is never NaN, so vminpd's operand order does not matter.
    const __m128i i0 = _mm256_cvttpd_epi32(_mm256_min_pd(_mm256_mul_pd(x0, tv), mv));
    const __m128i i1 = _mm256_cvttpd_epi32(_mm256_min_pd(_mm256_mul_pd(x1, tv), mv));
    const __m256d k0 = _mm256_cvtepi32_pd(i0), k1 = _mm256_cvtepi32_pd(i1);
    const __m128i w = _mm_packus_epi32(i0, i1);  // levels ≤ 255: no saturation
    _mm_storel_epi64(reinterpret_cast<__m128i*>(k8 + i), _mm_packus_epi16(w, w));
    ip0 = _mm256_add_pd(ip0, _mm256_mul_pd(k0, x0)), ip1 = _mm256_add_pd(ip1, _mm256_mul_pd(k1, x1));
    sq0 = _mm256_add_pd(sq0, _mm256_mul_pd(k0, k0)), sq1 = _mm256_add_pd(sq1, _mm256_mul_pd(k1, k1));
    c0 = _mm256_add_pd(c0, k0), c1 = _mm256_add_pd(c1, k1);
  }
  double ip[4], sq[4], c[4];
  _mm256_storeu_pd(ip, _mm256_add_pd(ip0, ip1));
  _mm256_storeu_pd(sq, _mm256_add_pd(sq0, sq1));
  _mm256_storeu_pd(c, _mm256_add_pd(c0, c1));
  out[0] = (ip[0] + ip[1]) + (ip[2] + ip[3]);
  out[1] = ((sq[0] + sq[1]) + (sq[2] + sq[3])) + ((c[0] + c[1]) + (c[2] + c[3]));
  out[2] = (c[0] + c[1]) + (c[2] + c[3]);
}
using StateSums = void (*)(const double*, size_t, double, double, uint8_t*, double*);
// (__builtin_cpu_init first: this initialiser may run before the CPU-detection constructor.)
const StateSums kStateSums = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? state_sums_avx2 : state_sums;
}();
#else
const auto kStateSums = state_sums;
#endif

// The sweep's state at t: k_i = min(⌊t·a_i⌋, M) (the events of value below t applied), with ip = Σ(k_i + ½)a_i,
// n2 = Σ(k_i + ½)² and count = Σk_i. t = ∞ is the end of the sweep (k_i = M where a_i > 0).
struct State {
  double t, ip, n2, count;
  size_t levels;  // offset of its levels (dp bytes) in the scratch pool
  double score() const { return ip / std::sqrt(n2); }
};

// One event of the sweep: coordinate i's magnitude goes up to level k at t = value.
struct Event {
  double value;
  uint32_t i;
  uint32_t k;
  bool operator<(const Event& e) const { return value != e.value ? value < e.value : i < e.i; }
};

// A stretch [lo.t, hi.t) of the sweep (the events between the two states), and an upper bound on the score of
// every state inside it.
struct Bucket {
  State lo, hi;
  double bound;
};

// Every event at t_e adds a_i to ip and 2(k_i + 1) = 2·t_e·a_i to n2. Inside [t1, t2) then, after events worth
// X = ip − ip(t1), n2 ≥ max(n2(t1) + 2·t1·X, n2(t2) − 2·t2·(ip(t2) − ip)); (ip(t1) + X)/√(that) is largest at
// X = 0, at X = Δip or where the two lines cross (on each line it has no interior maximum), so the largest of the
// three bounds every state's ⟨x, a⟩/‖x‖ in the bucket. With t2 = ∞ only the first line holds.
double bucket_bound(const State& lo, const State& hi) {
  const double dip = hi.ip - lo.ip;
  if (!(dip > 0)) return std::max(lo.score(), hi.score());
  const bool finite = !std::isinf(hi.t);
  auto at = [&](double x) {
    double n2 = lo.n2 + 2 * lo.t * x;
    if (finite) n2 = std::max(n2, hi.n2 - 2 * hi.t * (dip - x));
    return (lo.ip + x) / std::sqrt(std::max(n2, lo.n2));
  };
  double b = std::max(at(0), at(dip));
  if (finite && hi.t > lo.t) {
    const double xc = (lo.n2 + 2 * hi.t * dip - hi.n2) / (2 * (hi.t - lo.t));
    if (xc > 0 && xc < dip) b = std::max(b, at(xc));
  }
  return b;
}

// Scratch space per thread (encoders call quantize_exact from parallel loops).
struct Scratch {
  std::vector<double> a;
  std::vector<uint8_t> levels;  // the levels of every state met, dp bytes each
  std::vector<Event> events, best_events;
  std::vector<Bucket> open;
};

// This thread's scratch, fetched once per call: in a shared library every access to a thread_local is a call
// to __tls_get_addr, which GCC repeats at each use (38 in quantize_exact, 3% of the encoding's time).
__attribute__((noinline)) Scratch& thread_scratch() {
  thread_local Scratch scratch;
  return scratch;
}

// The events of [lo.t, hi.t) from the two states' levels, sorted by (value, i): the coordinates whose levels
// differ found eight at a time.
void list_events(size_t dp, const double* a, const uint8_t* k1, const uint8_t* k2, std::vector<Event>& events) {
  events.clear();
  for (size_t w = 0; w < dp; w += 8) {
    uint64_t x, y;
    std::memcpy(&x, k1 + w, 8);
    std::memcpy(&y, k2 + w, 8);
    for (uint64_t diff = x ^ y; diff != 0;) {
      const size_t byte = size_t(__builtin_ctzll(diff)) >> 3, i = w + byte;
      diff &= ~(uint64_t(0xff) << (8 * byte));
      for (uint32_t k = k1[i] + 1u; k <= k2[i]; ++k) events.push_back({k / a[i], uint32_t(i), k});
    }
  }
  if (events.size() <= 24) {
    for (size_t j = 1; j < events.size(); ++j) {
      const Event e = events[j];
      size_t p = j;
      for (; p > 0 && e < events[p - 1]; --p) events[p] = events[p - 1];
      events[p] = e;
    }
  } else {
    std::sort(events.begin(), events.end());
  }
}

// Stretches with at most this many events are swept event by event; longer ones are split in two.
constexpr double kSweepEvents = 16;
// Relative slack on the pruning test: a stretch is dropped only when its bound is below the best score met by
// more than rounding can explain.
constexpr double kPruneSlack = 1e-12;

// codes_i = (sign ≪ (B − 1)) | ex from the levels k and the signs of o.
void emit_codes(size_t d, const float* o, uint32_t mi, int bits, const uint8_t* k, uint16_t* codes) {
  const uint16_t top = uint16_t(1u << (bits - 1));
  for (size_t i = 0; i < d; ++i) codes[i] = o[i] >= 0 ? uint16_t(top | k[i]) : uint16_t(mi - k[i]);
}

}  // namespace

double quantize_exact(size_t d, const float* o, int bits, uint16_t* codes, double* best_t) {
  check_bits(bits);
  const uint32_t mi = (1u << (bits - 1)) - 1;
  const double m = double(mi);
  Scratch& scratch = thread_scratch();
  const size_t dp = (d + kPad - 1) / kPad * kPad;
  scratch.a.resize(dp);
  double* a = scratch.a.data();
  std::vector<uint8_t>& pool = scratch.levels;
  if (pool.size() < 64 * dp) pool.resize(64 * dp);
  double pre[5];
  magnitudes(o, d, dp, a, pre);
  if (pre[4] != 0)
    for (size_t i = 0; i < d; ++i)
      TESSERA_CHECK_ARG(std::isfinite(o[i]), "coordinate " << i << " of the vector to quantize is not finite");
  const double a_max = pre[0], a_sum = pre[1], a2 = pre[2], nonzero = pre[3];
  const double half_sum = 0.5 * a_sum, quarter_d = 0.25 * double(d);
  // States 0 and ∞ first in the pool: every level 0, and M where a_i > 0.
  std::memset(pool.data(), 0, dp);
  for (size_t i = 0; i < dp; ++i) pool[dp + i] = a[i] > 0 ? uint8_t(mi) : 0;
  size_t used = 2 * dp;
  const State start{0.0, half_sum, quarter_d, 0.0, 0};
  if (mi == 0 || a_max == 0) {
    if (best_t) *best_t = 0.0;
    emit_codes(d, o, mi, bits, pool.data(), codes);
    return a2 > 0 ? half_sum / std::sqrt(quarter_d * a2) : 0.0;
  }
  // Branch and bound over stretches of the exact sweep (quantize_exact's contract: the best of all the states the
  // full sweep visits, levels clamped at M throughout). The states at a few values of t around the usual optimum
  // (t·max a_i ≈ 0.6 … 3 × (M + 1)) give a good score early; a stretch whose bound cannot beat it is dropped,
  // a short one is swept, a long one is split at its middle t.
  auto state_at = [&](double t) {
    if (used + dp > pool.size()) pool.resize(2 * pool.size());
    State s{t, 0, 0, 0, used};
    double sums[3];
    kStateSums(a, dp, t, m, pool.data() + used, sums);
    used += dp;
    s.ip = sums[0] + half_sum, s.n2 = sums[1] + quarter_d, s.count = sums[2];
    return s;
  };
  // The best state met: best_lo, or the first best_steps events of best_events after it.
  State best_lo = start;
  size_t best_steps = 0;
  double best = start.score(), best_ip = start.ip, best_n2 = start.n2;
  auto consider = [&](const State& s) {
    if (s.score() > best) best = s.score(), best_lo = s, best_steps = 0, best_ip = s.ip, best_n2 = s.n2;
  };
  // Open stretches, a max-heap by bound.
  std::vector<Bucket>& open = scratch.open;
  open.clear();
  const auto by_bound = [](const Bucket& x, const Bucket& y) { return x.bound < y.bound; };
  const auto push = [&](const State& lo, const State& hi) {
    if (!(hi.count > lo.count)) return;
    const double bound = bucket_bound(lo, hi);
    if (bound * (1 + kPruneSlack) >= best) {
      open.push_back({lo, hi, bound});
      std::push_heap(open.begin(), open.end(), by_bound);
    }
  };
  const State end{INFINITY, m * a_sum + half_sum, nonzero * (m * m + m) + quarter_d, nonzero * m, dp};
  consider(end);
  {
    static constexpr double kGrid[] = {0.6, 0.75, 0.85, 0.92, 1.0, 1.08, 1.17, 1.3, 1.5, 1.8, 2.2, 3.0};
    State prev = start;
    if (end.count > kSweepEvents)
      for (double g : kGrid) {
        const State s = state_at(g * (m + 1) / a_max);
        consider(s);
        push(prev, s);
        prev = s;
      }
    push(prev, end);
  }
  std::vector<Event>& events = scratch.events;
  while (!open.empty()) {
    std::pop_heap(open.begin(), open.end(), by_bound);
    const Bucket b = open.back();
    open.pop_back();
    if (b.bound * (1 + kPruneSlack) < best) break;  // no stretch left can beat the best
    const double mid = std::isinf(b.hi.t) ? 2 * b.lo.t : 0.5 * (b.lo.t + b.hi.t);
    if (b.hi.count - b.lo.count <= kSweepEvents || !(mid > b.lo.t && mid < b.hi.t)) {
      // Sweep: the events in order, scoring every state.
      list_events(dp, a, pool.data() + b.lo.levels, pool.data() + b.hi.levels, events);
      double ip = b.lo.ip, n2 = b.lo.n2;
      size_t steps = 0;
      for (size_t s = 0; s < events.size(); ++s) {
        const Event& e = events[s];
        ip += a[e.i];
        n2 += 2.0 * e.k;  // (k + ½)² − (k − ½)²
        const double score = ip / std::sqrt(n2);
        if (score > best) best = score, steps = s + 1, best_ip = ip, best_n2 = n2;
      }
      if (steps > 0) best_lo = b.lo, best_steps = steps, std::swap(events, scratch.best_events);
      continue;
    }
    const State s = state_at(mid);
    consider(s);
    push(b.lo, s);
    push(s, b.hi);
  }
  // The levels of the best state: best_lo's, plus its first best_steps events.
  uint8_t* k = pool.data() + best_lo.levels;
  for (size_t s = 0; s < best_steps; ++s) ++k[scratch.best_events[s].i];
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
  emit_codes(d, o, mi, bits, k, codes);
  return best_ip / std::sqrt(best_n2 * a2);
}

double quantize_with_scale(size_t d, const float* o, int bits, double t, uint16_t* codes) {
  check_bits(bits);
  TESSERA_CHECK_ARG(t >= 0 && std::isfinite(t), "the rescale factor must be finite and non-negative, got " << t);
  const uint32_t mi = (1u << (bits - 1)) - 1;
  const double m = double(mi);
  // The levels and Σ(k + ½)a, Σ(k + ½)² by the vectorised kernels of the exact search (same floor, same clamp).
  Scratch& scratch = thread_scratch();
  std::vector<double>& a = scratch.a;
  std::vector<uint8_t>& k = scratch.levels;
  const size_t dp = (d + kPad - 1) / kPad * kPad;
  a.resize(dp);
  if (k.size() < dp) k.resize(dp);
  double pre[5];
  magnitudes(o, d, dp, a.data(), pre);
  double sums[3];
  kStateSums(a.data(), dp, t, m, k.data(), sums);
  emit_codes(d, o, mi, bits, k.data(), codes);
  const double ip = sums[0] + 0.5 * pre[1], n2 = sums[1] + 0.25 * double(d);
  return pre[2] > 0 ? ip / std::sqrt(n2 * pre[2]) : 0.0;
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
