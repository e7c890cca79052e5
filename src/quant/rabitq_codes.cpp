#include "tessera/quant/rabitq_codes.h"

#include <cmath>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <utility>
#include <vector>

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
  size_t i;
  bool operator>(const Event& e) const { return value != e.value ? value > e.value : i > e.i; }
};

}  // namespace

double quantize_exact(size_t d, const float* o, int bits, uint16_t* codes, double* best_t) {
  check_bits(bits);
  const uint32_t m = (1u << (bits - 1)) - 1;
  std::vector<double> a(d);
  for (size_t i = 0; i < d; ++i) {
    TESSERA_CHECK_ARG(std::isfinite(o[i]), "coordinate " << i << " of the vector to quantize is not finite");
    a[i] = std::abs(double(o[i]));
  }
  // Sweep once for the best step, then replay to it (ties between equal critical values are popped in the
  // same order both times).
  using Heap = std::priority_queue<Event, std::vector<Event>, std::greater<Event>>;
  std::vector<uint16_t> k(d, 0);
  auto start = [&](Heap& heap) {
    std::fill(k.begin(), k.end(), uint16_t(0));
    heap = Heap();
    if (m > 0)
      for (size_t i = 0; i < d; ++i)
        if (a[i] > 0) heap.push({1.0 / a[i], i});
  };
  Heap heap;
  start(heap);
  double ip = 0, n2 = 0.25 * double(d);
  for (size_t i = 0; i < d; ++i) ip += 0.5 * a[i];
  double best = n2 > 0 ? ip / std::sqrt(n2) : 0;
  size_t best_step = 0, step = 0;
  double t_at_best = 0, t_after_best = INFINITY;
  bool after_pending = false;
  while (!heap.empty()) {
    const Event e = heap.top();
    heap.pop();
    if (after_pending) t_after_best = e.value, after_pending = false;
    const uint32_t ki = ++k[e.i];
    ++step;
    ip += a[e.i];
    n2 += 2.0 * ki;  // (k + 1.5)² − (k + 0.5)² = 2k + 2 with k the old value, i.e. 2·ki
    if (ki < m) heap.push({(ki + 1) / a[e.i], e.i});
    const double score = ip / std::sqrt(n2);
    if (score > best) best = score, best_step = step, t_at_best = e.value, after_pending = true, t_after_best = INFINITY;
  }
  start(heap);
  for (size_t s = 0; s < best_step; ++s) {
    const Event e = heap.top();
    heap.pop();
    const uint32_t ki = ++k[e.i];
    if (ki < m) heap.push({(ki + 1) / a[e.i], e.i});
  }
  if (best_t) {
    // A t strictly inside the best code's interval [t_at_best, t_after_best): it gives back this code.
    *best_t = best_step == 0 ? 0.0 : std::isfinite(t_after_best) ? 0.5 * (t_at_best + t_after_best) : 2 * t_at_best;
  }
  return emit(d, o, bits, k, codes);
}

double quantize_with_scale(size_t d, const float* o, int bits, double t, uint16_t* codes) {
  check_bits(bits);
  TESSERA_CHECK_ARG(t >= 0 && std::isfinite(t), "the rescale factor must be finite and non-negative, got " << t);
  const double m = double((1u << (bits - 1)) - 1);
  std::vector<uint16_t> k(d);
  for (size_t i = 0; i < d; ++i) k[i] = uint16_t(std::min(std::floor(t * std::abs(double(o[i]))), m));
  return emit(d, o, bits, k, codes);
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
