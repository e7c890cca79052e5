#include "tessera/quant/rabitq_codes.h"

#include <cmath>
#include <map>
#include <mutex>
#include <algorithm>
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
  uint32_t i;
  bool operator<(const Event& e) const { return value != e.value ? value < e.value : i < e.i; }
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
  // Every critical value (k + 1)/a_i, k < M, in increasing order (ties: lower i first). Sorting them once is
  // several times quicker than a heap of each coordinate's next one.
  std::vector<Event> events;
  events.reserve(d * m);
  for (size_t i = 0; i < d; ++i)
    if (a[i] > 0)
      for (uint32_t k = 1; k <= m; ++k) events.push_back({k / a[i], uint32_t(i)});
  std::sort(events.begin(), events.end());
  // Sweep: after event s, Σ(k_i + ½)a_i and Σ(k_i + ½)² (the step from k to k + 1 adds a_i and 2(k + 1)).
  std::vector<uint16_t> k(d, 0);
  double ip = 0, n2 = 0.25 * double(d);
  for (size_t i = 0; i < d; ++i) ip += 0.5 * a[i];
  double best = ip / std::sqrt(n2);
  size_t best_step = 0;
  for (size_t s = 0; s < events.size(); ++s) {
    const uint32_t i = events[s].i, ki = ++k[i];
    ip += a[i];
    n2 += 2.0 * ki;
    const double score = ip / std::sqrt(n2);
    if (score > best) best = score, best_step = s + 1;
  }
  // The magnitudes at the best step: the events before it.
  std::fill(k.begin(), k.end(), uint16_t(0));
  for (size_t s = 0; s < best_step; ++s) ++k[events[s].i];
  if (best_t) {
    // A t strictly inside the best code's interval [t_s, t_{s+1}): it gives back this code by rounding.
    if (best_step == 0) *best_t = 0.0;
    else if (best_step < events.size()) *best_t = 0.5 * (events[best_step - 1].value + events[best_step].value);
    else *best_t = 2 * events.back().value;
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
