#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/quant/rabitq_codes.h"

using namespace tessera;
using namespace tessera::rabitq;

namespace {

std::vector<float> gaussian(size_t d, std::mt19937& rng, bool unit = false) {
  std::normal_distribution<float> g;
  std::vector<float> o(d);
  double n = 0;
  for (float& v : o) v = g(rng), n += double(v) * v;
  if (unit)
    for (float& v : o) v = float(v / std::sqrt(n));
  return o;
}

// The cosine between o and the grid vector of codes (code − (2^B − 1)/2 per coordinate).
double cosine(const std::vector<float>& o, const std::vector<uint16_t>& codes, int bits) {
  const double c = ((1 << bits) - 1) / 2.0;
  double ip = 0, xx = 0, oo = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    const double x = codes[i] - c;
    ip += x * o[i], xx += x * x, oo += double(o[i]) * o[i];
  }
  return oo > 0 ? ip / std::sqrt(xx * oo) : 0.0;
}

// The best cosine over every code of the grid, signs included.
double brute_force(const std::vector<float>& o, int bits) {
  const size_t d = o.size(), levels = size_t(1) << bits;
  std::vector<uint16_t> u(d, 0);
  double best = -2;
  for (;;) {
    best = std::max(best, cosine(o, u, bits));
    size_t i = 0;
    while (i < d && ++u[i] == levels) u[i++] = 0;
    if (i == d) return best;
  }
}

// The plain exact sweep (the first implementation): every critical value (k + 1)/a_i sorted (ties: lower i first),
// all d·M states scored in order, the first best kept. quantize_exact prunes most of them and must agree.
double reference_sweep(const std::vector<float>& o, int bits, std::vector<uint16_t>& codes, double* best_t) {
  const size_t d = o.size();
  const uint32_t m = (1u << (bits - 1)) - 1;
  struct Event {
    double value;
    uint32_t i;
  };
  std::vector<double> a(d);
  std::vector<Event> events;
  for (size_t i = 0; i < d; ++i) {
    a[i] = std::abs(double(o[i]));
    if (a[i] > 0)
      for (uint32_t k = 1; k <= m; ++k) events.push_back({k / a[i], uint32_t(i)});
  }
  std::sort(events.begin(), events.end(),
            [](const Event& x, const Event& y) { return x.value != y.value ? x.value < y.value : x.i < y.i; });
  std::vector<uint16_t> k(d, 0);
  double ip = 0, n2 = 0.25 * double(d);
  for (size_t i = 0; i < d; ++i) ip += 0.5 * a[i];
  double best = ip / std::sqrt(n2);
  size_t best_step = 0;
  for (size_t s = 0; s < events.size(); ++s) {
    const uint32_t ki = ++k[events[s].i];
    ip += a[events[s].i];
    n2 += 2.0 * ki;
    if (ip / std::sqrt(n2) > best) best = ip / std::sqrt(n2), best_step = s + 1;
  }
  std::fill(k.begin(), k.end(), uint16_t(0));
  for (size_t s = 0; s < best_step; ++s) ++k[events[s].i];
  if (best_step == 0) *best_t = 0.0;
  else if (best_step < events.size()) *best_t = 0.5 * (events[best_step - 1].value + events[best_step].value);
  else *best_t = 2 * events.back().value;
  codes.resize(d);
  for (size_t i = 0; i < d; ++i) {
    const bool positive = o[i] >= 0;
    codes[i] = uint16_t((uint16_t(positive) << (bits - 1)) | (positive ? k[i] : uint16_t(m - k[i])));
  }
  return cosine(o, codes, bits);
}

}  // namespace

// Algorithm 1's sweep finds the best grid point: equal to exhaustive search over all 2^(B·d) codes.
TEST(RabitqCodes, ExactSweepMatchesBruteForce) {
  std::mt19937 rng(1);
  for (int bits = 1; bits <= kMaxBits; ++bits)
    for (size_t d = 1; d <= 4; ++d) {
      if (bits * d > 18) continue;
      for (int trial = 0; trial < 30; ++trial) {
        std::vector<float> o = gaussian(d, rng);
        if (trial % 5 == 0) o[trial % d] = 0.0f;                 // a zero coordinate
        if (trial % 7 == 0 && d > 1) o[1] = -o[0];               // equal magnitudes (tied critical values)
        std::vector<uint16_t> codes(d);
        const double got = quantize_exact(d, o.data(), bits, codes.data());
        EXPECT_NEAR(got, cosine(o, codes, bits), 1e-12) << "the returned cosine is the codes' own";
        EXPECT_NEAR(got, brute_force(o, bits), 1e-9) << "bits " << bits << ", d " << d << ", trial " << trial;
      }
    }
}

// The pruned search (stretches of the sweep dropped by a bound on their best score, the rest swept) returns the
// same codes and the same t as the full sweep over every critical value, for every B, on random directions of
// several shapes: Gaussian, heavy-tailed, a few large coordinates, tiny and zero coordinates, tied magnitudes.
// (Below d = 4 two codes can be exact multiples of one another, (½, 3/2) and (3/2, 9/2), so of equal cosine; there
// only the cosine is compared.)
TEST(RabitqCodes, PrunedSearchEqualsTheFullSweep) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  size_t compared = 0;
  for (size_t d : {1, 2, 3, 5, 16, 64, 100, 128, 257, 784})
    for (int bits = 1; bits <= kMaxBits; ++bits) {
      const int trials = d >= 257 ? (bits >= 7 ? 2 : 6) : 24;
      for (int trial = 0; trial < trials; ++trial) {
        std::vector<float> o(d);
        for (float& v : o) v = g(rng);
        switch (trial % 6) {
          case 1: for (float& v : o) v = v * v * v; break;                            // heavy tails
          case 2: for (size_t i = 0; i < d; i += 7) o[i] *= 20; break;                 // a few large ones
          case 3: for (size_t i = 0; i < d; i += 3) o[i] *= 1e-6f; break;              // tiny ones
          case 4: for (size_t i = 0; i < d; i += 2) o[i] = 0; break;                   // zeros
          case 5: for (size_t i = 1; i < d; i += 2) o[i] = -o[i - 1]; break;           // tied magnitudes
          default: break;
        }
        std::vector<uint16_t> want, got(d);
        double want_t = 0, got_t = 0;
        const double want_cos = reference_sweep(o, bits, want, &want_t);
        const double got_cos = quantize_exact(d, o.data(), bits, got.data(), &got_t);
        ASSERT_NEAR(got_cos, want_cos, 1e-12) << "d " << d << ", bits " << bits << ", trial " << trial;
        if (d >= 4) {
          ASSERT_EQ(got, want) << "d " << d << ", bits " << bits << ", trial " << trial;
          ASSERT_EQ(got_t, want_t) << "d " << d << ", bits " << bits << ", trial " << trial;
          ++compared;
        }
      }
    }
  EXPECT_GT(compared, 1000u);
}

// Many exactly equal magnitudes (a ±1 vector with one larger coordinate, values on a half-integer lattice): a
// stretch of the sweep whose events all share one critical value cannot be split at a middle t and must be
// swept (before, a stretch of more than 16 such events was split forever: d = 31, B = 2 never returned). Codes
// that are odd multiples of one another tie exactly here, so the cosine is compared with the full sweep's.
TEST(RabitqCodes, TiedMagnitudesEndAndFindTheBestCosine) {
  std::mt19937 rng(17);
  std::normal_distribution<float> g;
  for (size_t d : {17, 31, 64, 128, 300})
    for (int bits = 2; bits <= kMaxBits; ++bits)
      for (int kind = 0; kind < 2; ++kind) {
        std::vector<float> o(d);
        for (size_t i = 0; i < d; ++i)
          o[i] = kind == 0 ? (i % 3 == 0 ? -1.0f : 1.0f) : std::round(g(rng) * 2) / 2;
        o[0] = 3.0f;
        std::vector<uint16_t> want, got(d);
        double want_t = 0, got_t = 0;
        const double want_cos = reference_sweep(o, bits, want, &want_t);
        const double got_cos = quantize_exact(d, o.data(), bits, got.data(), &got_t);
        ASSERT_NEAR(got_cos, want_cos, 1e-12) << "d " << d << ", bits " << bits << ", kind " << kind;
        EXPECT_NEAR(got_cos, cosine(o, got, bits), 1e-12);
      }
}

// Random directions (the rotated residuals the codec sees) at the dimensions and widths of the benchmarks:
// the same codes and t as the full sweep, vector by vector.
TEST(RabitqCodes, PrunedSearchEqualsTheFullSweepOnRandomDirections) {
  std::mt19937 rng(23);
  for (size_t d : {128, 960})
    for (int bits : {2, 4, 7}) {
      const int n = d == 128 ? 150 : 12;
      for (int s = 0; s < n; ++s) {
        const auto o = gaussian(d, rng, true);
        std::vector<uint16_t> want, got(d);
        double want_t = 0, got_t = 0;
        reference_sweep(o, bits, want, &want_t);
        quantize_exact(d, o.data(), bits, got.data(), &got_t);
        ASSERT_EQ(got, want) << "d " << d << ", bits " << bits << ", vector " << s;
        ASSERT_EQ(got_t, want_t) << "d " << d << ", bits " << bits << ", vector " << s;
      }
    }
}

// The code layout: top bit = sign (the 1-bit RaBitQ code), and the value minus (2^B − 1)/2 is ±(k + ½).
TEST(RabitqCodes, TopBitIsTheSignAndOneBitIsTheSignCode) {
  std::mt19937 rng(2);
  const auto o = gaussian(100, rng);
  std::vector<uint16_t> one(100), four(100);
  quantize_exact(100, o.data(), 1, one.data());
  quantize_exact(100, o.data(), 4, four.data());
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(one[i], o[i] >= 0 ? 1 : 0);
    EXPECT_EQ(four[i] >> 3, one[i]);
    EXPECT_LT(four[i], 16);
    EXPECT_EQ((four[i] - 7.5) > 0, o[i] >= 0);
  }
}

// ⟨ō, o⟩ of random 128-d directions: about 0.80, 0.94, 0.98, 0.995 for B = 1..4 (the paper's figures).
TEST(RabitqCodes, CosinePerBitMatchesThePaper) {
  std::mt19937 rng(3);
  const double expected[] = {0.800, 0.939, 0.9826, 0.9950};
  const double tolerance[] = {0.01, 0.005, 0.002, 0.001};
  for (int bits = 1; bits <= 4; ++bits) {
    double sum = 0;
    std::vector<uint16_t> codes(128);
    for (int s = 0; s < 200; ++s) sum += quantize_exact(128, gaussian(128, rng).data(), bits, codes.data());
    EXPECT_NEAR(sum / 200, expected[bits - 1], tolerance[bits - 1]) << "bits " << bits;
  }
}

// A best t strictly inside the winning interval gives the same code by plain rounding; the constant factor
// of the fast mode loses little.
TEST(RabitqCodes, BestScaleReproducesTheCodeAndConstantScaleIsClose) {
  std::mt19937 rng(4);
  for (int bits = 2; bits <= 8; ++bits) {
    const double t_const = constant_scale(128, bits);
    EXPECT_GT(t_const, 0);
    EXPECT_EQ(constant_scale(128, bits), t_const) << "cached and deterministic";
    double loss = 0;
    for (int s = 0; s < 50; ++s) {
      const auto o = gaussian(128, rng, true);
      std::vector<uint16_t> exact(128), again(128), fast(128);
      double t = 0;
      const double best = quantize_exact(128, o.data(), bits, exact.data(), &t);
      quantize_with_scale(128, o.data(), bits, t, again.data());
      EXPECT_EQ(again, exact) << "bits " << bits;
      const double c = quantize_with_scale(128, o.data(), bits, t_const, fast.data());
      EXPECT_LE(c, best + 1e-12);
      loss += best - c;
    }
    EXPECT_LT(loss / 50, 2e-3) << "bits " << bits;
  }
}

TEST(RabitqCodes, BadInputAndZeroVectors) {
  std::vector<float> o(8, 0.0f);
  std::vector<uint16_t> codes(8);
  EXPECT_EQ(quantize_exact(8, o.data(), 4, codes.data()), 0.0);
  for (uint16_t c : codes) EXPECT_EQ(c, 8) << "+½ for zero coordinates";
  EXPECT_THROW(quantize_exact(8, o.data(), 0, codes.data()), InvalidArgument);
  EXPECT_THROW(quantize_exact(8, o.data(), kMaxBits + 1, codes.data()), InvalidArgument);
  o[3] = NAN;
  EXPECT_THROW(quantize_exact(8, o.data(), 3, codes.data()), InvalidArgument);
  EXPECT_THROW(quantize_with_scale(8, o.data(), 3, -1.0, codes.data()), InvalidArgument);
  EXPECT_THROW(constant_scale(0, 3), InvalidArgument);
}
