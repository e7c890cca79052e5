#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/quant/rabitq_quantizer.h"

using namespace tessera;

namespace {

FloatMatrix gaussian(size_t n, size_t d, uint32_t seed, float shift = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  FloatMatrix x(n, d);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) x(i, j) = g(rng) * (1.0f + 0.02f * float(j % 17)) + shift;
  return x;
}

double exact(MetricType m, const float* a, const float* b, size_t d) {
  double s = 0;
  for (size_t j = 0; j < d; ++j) s += m == MetricType::L2 ? double(a[j] - b[j]) * (a[j] - b[j]) : double(a[j]) * b[j];
  return s;
}

struct Errors {
  double mean, sd, coverage;
  double near_mean;  // over the pairs (query a, vector a): queries are noisy copies of the first vectors
};

// Estimation errors over every (query, vector) pair, scaled by ‖o − c‖·‖q − c‖ (the bound's own scale).
Errors errors(const RaBitQuantizer& rq, const FloatMatrix& x, const FloatMatrix& q, bool msb_only) {
  const size_t d = x.cols();
  std::vector<uint8_t> codes(x.rows() * rq.code_size());
  rq.encode_packed(x.view(), codes.data());
  double sum = 0, sum2 = 0, near = 0;
  size_t covered = 0, count = 0;
  for (size_t a = 0; a < q.rows(); ++a) {
    const auto query = rq.prepare_query(q.row(a));
    for (size_t i = 0; i < x.rows(); ++i) {
      const RabitqEstimate e = rq.estimate(query, codes.data() + i * rq.code_size(), msb_only);
      const double truth = exact(rq.params().metric, x.row(i), q.row(a), d);
      double rn = 0;
      for (size_t j = 0; j < d; ++j) rn += double(x(i, j) - rq.centroid()[j]) * (x(i, j) - rq.centroid()[j]);
      const double scale = std::sqrt(rn) * query.distance_to_centroid;
      const double err = (e.value - truth) / scale;
      sum += err, sum2 += err * err, ++count;
      if (i == a) near += err;
      covered += std::abs(e.value - truth) <= e.bound;
    }
  }
  const double mean = sum / double(count);
  return {mean, std::sqrt(sum2 / double(count) - mean * mean), double(covered) / double(count),
          near / double(q.rows())};
}

}  // namespace

// Unbiased L2 and inner-product estimates, an error that about halves per bit, and the error bound holding
// for about 94% of pairs (ε₀ = 1.9), for the full code and for its top bit alone.
TEST(RaBitQuantizer, EstimatorsAreUnbiasedAndBoundsCoverAsTheory) {
  const size_t d = 128;
  const FloatMatrix x = gaussian(600, d, 1, 0.3f), noise = gaussian(60, d, 2);
  FloatMatrix q(60, d);  // near the first 60 vectors: where a biased estimator (⟨x̄, q⟩ alone) errs most
  for (size_t a = 0; a < 60; ++a)
    for (size_t j = 0; j < d; ++j) q(a, j) = x(a, j) + 0.5f * noise(a, j);
  for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
    double previous_sd = INFINITY;
    for (int bits : {1, 2, 3, 4, 6}) {
      RabitqParams p;
      p.bits = bits;
      p.metric = metric;
      RaBitQuantizer rq(d, p);
      rq.train(x.view());
      const Errors e = errors(rq, x, q, false);
      if (std::getenv("RABITQ_PRINT")) printf("%s B=%d mean %.5f near %.5f sd %.5f cover %.4f\n", metric_name(metric).c_str(), bits, e.mean, e.near_mean, e.sd, e.coverage);
      const double k = metric == MetricType::L2 ? 2.0 : 1.0;  // the L2 error is twice the inner product's
      EXPECT_LT(std::abs(e.mean), 0.1 * e.sd + 2e-3) << metric_name(metric) << " bits " << bits;
      EXPECT_LT(std::abs(e.near_mean), 4 * e.sd / std::sqrt(60.0)) << metric_name(metric) << " bits " << bits;
      EXPECT_LT(e.sd, previous_sd * 0.62) << "error about halves per extra bit: " << metric_name(metric) << " bits "
                                          << bits;
      EXPECT_GT(e.coverage, 0.88) << metric_name(metric) << " bits " << bits;
      EXPECT_LT(e.coverage, 0.995) << "the bound is not loose: " << metric_name(metric) << " bits " << bits;
      EXPECT_LT(e.sd, k * 1.2 / std::sqrt(double(d)) / (1 << (bits - 1))) << metric_name(metric) << " " << bits;
      previous_sd = e.sd;
      if (bits > 1) {
        const Errors top = errors(rq, x, q, true);
        EXPECT_LT(std::abs(top.mean), 0.1 * top.sd + 2e-3);
        EXPECT_LT(std::abs(top.near_mean), 4 * top.sd / std::sqrt(60.0));
        EXPECT_GT(top.sd, e.sd);
        EXPECT_GT(top.coverage, 0.88);
      }
    }
  }
}

// The top bit of a B-bit code with its factors is exactly the 1-bit code: same estimate to the bit.
TEST(RaBitQuantizer, TopBitEstimateEqualsTheOneBitCodec) {
  const size_t d = 100;
  const FloatMatrix x = gaussian(50, d, 3), q = gaussian(5, d, 4);
  RabitqParams p1, p5;
  p1.bits = 1, p5.bits = 5;
  RaBitQuantizer one(d, p1), five(d, p5);
  one.train(x.view()), five.train(x.view());
  std::vector<uint8_t> c1(50 * one.code_size()), c5(50 * five.code_size());
  one.encode_packed(x.view(), c1.data());
  five.encode_packed(x.view(), c5.data());
  for (size_t a = 0; a < 5; ++a) {
    const auto q1 = one.prepare_query(q.row(a)), q5 = five.prepare_query(q.row(a));
    for (size_t i = 0; i < 50; ++i) {
      const auto e1 = one.estimate(q1, c1.data() + i * one.code_size());
      const auto e5 = five.estimate(q5, c5.data() + i * five.code_size(), true);
      EXPECT_EQ(e1.value, e5.value);
      EXPECT_EQ(e1.bound, e5.bound);
    }
  }
}

// Decoding: the error is ‖r‖²(1 − cos²) per vector, shrinking with every bit; a vector at the centroid is exact.
TEST(RaBitQuantizer, DecodeAndZeroResiduals) {
  const size_t d = 64;
  FloatMatrix x = gaussian(200, d, 5, 1.0f);
  double previous = INFINITY;
  for (int bits = 1; bits <= 8; ++bits) {
    RabitqParams p;
    p.bits = bits;
    RaBitQuantizer rq(d, p);
    rq.train(x.view());
    std::vector<uint8_t> codes(x.rows() * rq.code_size());
    rq.encode_packed(x.view(), codes.data());
    FloatMatrix y(x.rows(), d);
    rq.decode_packed(codes.data(), x.rows(), y.data());
    double err = 0, total = 0;
    for (size_t i = 0; i < x.rows(); ++i)
      for (size_t j = 0; j < d; ++j) {
        err += double(x(i, j) - y(i, j)) * (x(i, j) - y(i, j));
        total += double(x(i, j) - rq.centroid()[j]) * (x(i, j) - rq.centroid()[j]);
      }
    EXPECT_LT(err, previous * 0.6) << "bits " << bits;
    previous = err;
    if (bits == 4) EXPECT_LT(err / total, 0.012);
    // A vector at the centroid: every factor 0, the estimate is ‖q − c‖² exactly.
    FloatMatrix c(1, d);
    std::copy(rq.centroid().begin(), rq.centroid().end(), c.data());
    std::vector<uint8_t> code(rq.code_size());
    rq.encode_packed(c.view(), code.data());
    const auto query = rq.prepare_query(x.row(0));
    const auto e = rq.estimate(query, code.data());
    EXPECT_FLOAT_EQ(e.value, query.centroid_term);
    EXPECT_EQ(e.bound, 0.0f);
  }
}

// Codes against another centroid (an IVF list's) estimate as well; codes do not depend on the thread count.
TEST(RaBitQuantizer, OtherCentroidsAndThreadCounts) {
  const size_t d = 96;
  const FloatMatrix x = gaussian(300, d, 6), q = gaussian(20, d, 7);
  RabitqParams p;
  p.bits = 3;
  RaBitQuantizer rq(d, p);
  rq.train(x.view());
  std::vector<float> c(d, 0.5f);
  std::vector<uint8_t> codes(300 * rq.code_size()), again(codes.size());
  const int threads = num_threads();
  set_num_threads(1);
  rq.encode_with_centroid(x.view(), c.data(), codes.data());
  set_num_threads(2);
  rq.encode_with_centroid(x.view(), c.data(), again.data());
  set_num_threads(threads);
  EXPECT_EQ(codes, again);
  double sum = 0, sum2 = 0;
  for (size_t a = 0; a < 20; ++a) {
    auto query = rq.prepare_query(q.row(a));
    rq.set_centroid(query, q.row(a), c.data());
    for (size_t i = 0; i < 300; ++i) {
      const double err = rq.estimate(query, codes.data() + i * rq.code_size()).value - exact(MetricType::L2, x.row(i), q.row(a), d);
      sum += err, sum2 += err * err;
    }
  }
  const double mean = sum / 6000, sd = std::sqrt(sum2 / 6000 - mean * mean);
  EXPECT_LT(std::abs(mean), 0.1 * sd);
}

TEST(RaBitQuantizer, BadInputIsRefused) {
  RabitqParams p;
  p.bits = 0;
  EXPECT_THROW(RaBitQuantizer(8, p), InvalidArgument);
  p.bits = 10;
  EXPECT_THROW(RaBitQuantizer(8, p), InvalidArgument);
  p.bits = 4;
  p.epsilon0 = NAN;
  EXPECT_THROW(RaBitQuantizer(8, p), InvalidArgument);
  RaBitQuantizer rq(8);
  FloatMatrix x = gaussian(10, 8, 8);
  std::vector<uint8_t> codes(10 * rq.code_size());
  EXPECT_THROW(rq.encode_packed(x.view(), codes.data()), InvalidArgument);  // not trained
  EXPECT_THROW(rq.prepare_query(x.row(0)), InvalidArgument);
  FloatMatrix wrong = gaussian(10, 9, 8);
  EXPECT_THROW(rq.train(wrong.view()), InvalidArgument);
  x(3, 2) = NAN;
  EXPECT_THROW(rq.train(x.view()), InvalidArgument);
}

namespace {

struct Stats {
  double mean = 0, sd = 0, coverage = 0;
};
template <class F>
Stats stats_of(size_t n, F&& sample) {  // sample(k, &err, &covered)
  double sum = 0, sum2 = 0, covered = 0;
  for (size_t k = 0; k < n; ++k) {
    double err = 0;
    bool c = false;
    sample(k, &err, &c);
    sum += err, sum2 += err * err, covered += c;
  }
  const double mean = sum / double(n);
  return {mean, std::sqrt(std::max(0.0, sum2 / double(n) - mean * mean)), covered / double(n)};
}

double norm_of(const float* a, size_t d) {
  double s = 0;
  for (size_t j = 0; j < d; ++j) s += double(a[j]) * a[j];
  return std::sqrt(s);
}

double dist_of(const float* a, const float* b, size_t d) {
  double s = 0;
  for (size_t j = 0; j < d; ++j) s += double(a[j] - b[j]) * (a[j] - b[j]);
  return std::sqrt(s);
}

}  // namespace

// The scalar-quantised query (B_q bits, randomised rounding): averaged over the rounding's draws it gives the
// float query's estimate (unbiased given the code); over pairs its error is the float query's plus a little
// (4 bits: a few percent of the spread), and with 8 bits it is the float estimate within a hair.
TEST(RaBitQuantizer, QuantizedQueryIsUnbiasedAndCloseToTheFloatQuery) {
  const size_t d = 128;
  const FloatMatrix x = gaussian(300, d, 21, 0.3f), q = gaussian(30, d, 22);
  for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
    for (int bits : {1, 4}) {
      RabitqParams p;
      p.bits = bits, p.metric = metric;
      RaBitQuantizer rq(d, p);
      rq.train(x.view());
      std::vector<uint8_t> codes(x.rows() * rq.code_size());
      rq.encode_packed(x.view(), codes.data());
      // Unbiased given the code: the mean over 600 roundings against the float estimate.
      const auto fq = rq.prepare_query(q.row(0));
      for (size_t i : {0, 7, 42}) {
        const uint8_t* code = codes.data() + i * rq.code_size();
        const double want = rq.estimate(fq, code).value;
        double sum = 0, sum2 = 0;
        for (uint64_t seed = 0; seed < 600; ++seed) {
          const double v = rq.estimate(rq.prepare_quantized_query(q.row(0), 4, seed), code).value;
          sum += v, sum2 += v * v;
        }
        const double mean = sum / 600, sd = std::sqrt(std::max(1e-30, sum2 / 600 - mean * mean));
        EXPECT_LT(std::abs(mean - want), 4.5 * sd / std::sqrt(600.0) + 1e-5 * std::abs(want))
            << metric_name(metric) << " bits " << bits << " vector " << i;
      }
      // Over pairs: errors against the truth, float vs 4-bit vs 8-bit query.
      Stats by[3];
      const int qbits[3] = {0, 4, 8};
      for (int v = 0; v < 3; ++v)
        by[v] = stats_of(q.rows() * x.rows(), [&](size_t k, double* err, bool* covered) {
          const size_t a = k / x.rows(), i = k % x.rows();
          const uint8_t* code = codes.data() + i * rq.code_size();
          const RabitqEstimate e = qbits[v] == 0 ? rq.estimate(rq.prepare_query(q.row(a)), code)
                                                 : rq.estimate(rq.prepare_quantized_query(q.row(a), qbits[v], a), code);
          const double truth = exact(metric, x.row(i), q.row(a), d);
          const double scale = dist_of(x.row(i), rq.centroid().data(), d) * dist_of(q.row(a), rq.centroid().data(), d);
          *err = (e.value - truth) / scale;
          *covered = std::abs(e.value - truth) <= e.bound;
        });
      if (std::getenv("RABITQ_PRINT"))
        for (int v = 0; v < 3; ++v)
          printf("%s B=%d qbits %d: mean %.5f sd %.5f cover %.4f\n", metric_name(metric).c_str(), bits, qbits[v],
                 by[v].mean, by[v].sd, by[v].coverage);
      for (int v = 0; v < 3; ++v) {
        EXPECT_LT(std::abs(by[v].mean), 0.1 * by[v].sd + 2e-3) << metric_name(metric) << " " << bits << " " << qbits[v];
        EXPECT_GT(by[v].coverage, 0.88) << metric_name(metric) << " " << bits << " " << qbits[v];
      }
      // 4 query bits: close to the float query for 1-bit codes (RaBitQ's setting); for 4-bit codes the query's
      // rounding is of the codes' own order (use more query bits there).
      EXPECT_LT(by[1].sd, by[0].sd * (bits == 1 ? 1.05 : 1.8)) << "4-bit query close to the float query";
      EXPECT_LT(by[2].sd, by[0].sd * 1.01) << "8-bit query ≈ the float query";
      EXPECT_GE(by[1].sd, by[2].sd * 0.99);
    }
  }
}

// A quantised query: levels in range, planes consistent with them, a constant query exact (Δ = 0), bad bits refused.
TEST(RaBitQuantizer, QuantizedQueryLayout) {
  const size_t d = 70;
  const FloatMatrix x = gaussian(50, d, 23);
  RabitqParams p;
  p.bits = 3;
  RaBitQuantizer rq(d, p);
  rq.train(x.view());
  for (int qb : {1, 4, 8}) {
    const auto qq = rq.prepare_quantized_query(x.row(1), qb, 5);
    ASSERT_EQ(qq.levels.size(), d);
    ASSERT_EQ(qq.planes.size(), size_t(qb) * 2);
    uint32_t sum = 0;
    for (size_t j = 0; j < d; ++j) {
      EXPECT_LT(qq.levels[j], 1u << qb);
      sum += qq.levels[j];
      for (int b = 0; b < qb; ++b) EXPECT_EQ((qq.planes[size_t(b) * 2 + j / 64] >> (j % 64)) & 1, (qq.levels[j] >> b) & 1u);
    }
    EXPECT_EQ(sum, qq.level_sum);
    const auto again = rq.prepare_quantized_query(x.row(1), qb, 5);
    EXPECT_EQ(again.levels, qq.levels) << "seeded";
  }
  std::vector<float> zero(d, 0.0f);
  const auto zq = rq.prepare_quantized_query(zero.data(), 4, 1);
  EXPECT_EQ(zq.delta, 0.0f);
  std::vector<uint8_t> code(rq.code_size());
  rq.encode_packed(MatrixView<const float>(x.row(0), 1, d), code.data());
  EXPECT_FLOAT_EQ(rq.estimate(zq, code.data()).value, rq.estimate(rq.prepare_query(zero.data()), code.data()).value);
  EXPECT_THROW(rq.prepare_quantized_query(x.row(0), 0), InvalidArgument);
  EXPECT_THROW(rq.prepare_quantized_query(x.row(0), 9), InvalidArgument);
}

// Code × code: ‖o_x − o_y‖² and ⟨o_x, o_y⟩ from two codes, same centroid or two different ones: mean relative
// error → 0 over many pairs (also for near pairs, where a biased estimator errs most), error about halving per
// extra bit, the bound covering most pairs; symmetric in its arguments.
TEST(RaBitQuantizer, CodeByCodeEstimates) {
  const size_t d = 128, n = 240;
  FloatMatrix x = gaussian(n, d, 31, 0.3f);
  const FloatMatrix noise = gaussian(n, d, 32);
  for (size_t i = 1; i < n; i += 2)  // odd rows: noisy copies of the even ones
    for (size_t j = 0; j < d; ++j) x(i, j) = x(i - 1, j) + 0.4f * noise(i, j);
  std::vector<float> c1(d), c2(d);
  for (size_t j = 0; j < d; ++j) c1[j] = 0.3f + 0.2f * float(j % 5), c2[j] = 0.3f - 0.1f * float(j % 3);
  for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
    double previous_sd[2] = {INFINITY, INFINITY};
    for (int bits : {1, 2, 3, 4}) {
      RabitqParams p;
      p.bits = bits, p.metric = metric;
      RaBitQuantizer rq(d, p);
      rq.train(x.view());
      const size_t cs = rq.code_size();
      std::vector<uint8_t> same(n * cs), a(n * cs), b(n * cs);
      rq.encode_packed(x.view(), same.data());
      rq.encode_with_centroid(x.view(), c1.data(), a.data());
      rq.encode_with_centroid(x.view(), c2.data(), b.data());
      for (int mixed = 0; mixed < 2; ++mixed) {
        std::vector<std::pair<size_t, size_t>> pairs;
        for (size_t i = 0; i < n; ++i)
          for (size_t j = i + 1; j < n; j += 3) pairs.push_back({i, j});
        const Stats s = stats_of(pairs.size(), [&](size_t k, double* err, bool* covered) {
          const auto [i, j] = pairs[k];
          const RabitqEstimate e = mixed ? rq.estimate_between(a.data() + i * cs, c1.data(), b.data() + j * cs, c2.data())
                                         : rq.estimate_between(same.data() + i * cs, same.data() + j * cs);
          const double truth = exact(metric, x.row(i), x.row(j), d);
          const float* cx = mixed ? c1.data() : rq.centroid().data();
          const float* cy = mixed ? c2.data() : rq.centroid().data();
          const double scale = dist_of(x.row(i), cx, d) * dist_of(x.row(j), cy, d);
          *err = (e.value - truth) / scale;
          *covered = std::abs(e.value - truth) <= e.bound;
        });
        // Near pairs only (i even, j = i + 1).
        const Stats near = stats_of(n / 2, [&](size_t k, double* err, bool*) {
          const size_t i = 2 * k, j = i + 1;
          const RabitqEstimate e = mixed ? rq.estimate_between(a.data() + i * cs, c1.data(), b.data() + j * cs, c2.data())
                                         : rq.estimate_between(same.data() + i * cs, same.data() + j * cs);
          const float* cx = mixed ? c1.data() : rq.centroid().data();
          const float* cy = mixed ? c2.data() : rq.centroid().data();
          *err = (e.value - exact(metric, x.row(i), x.row(j), d)) / (dist_of(x.row(i), cx, d) * dist_of(x.row(j), cy, d));
        });
        if (std::getenv("RABITQ_PRINT"))
          printf("%s B=%d %s: mean %.5f sd %.5f cover %.4f near mean %.5f sd %.5f\n", metric_name(metric).c_str(), bits,
                 mixed ? "two centroids" : "one centroid", s.mean, s.sd, s.coverage, near.mean, near.sd);
        EXPECT_LT(std::abs(s.mean), 0.1 * s.sd + 2e-3) << metric_name(metric) << " bits " << bits << " mixed " << mixed;
        // Near pairs (correlation ≈ 0.93): unbiased for 1-bit codes (arcsine law); for B > 1 the linear inversion
        // keeps a small bias there (codes' rounding errors are correlated for near vectors), shrinking per bit.
        if (bits == 1)
          EXPECT_LT(std::abs(near.mean), 4 * near.sd / std::sqrt(double(n / 2)) + 2e-3)
              << metric_name(metric) << " bits " << bits << " mixed " << mixed;
        else
          EXPECT_LT(std::abs(near.mean), (metric == MetricType::L2 ? 0.5 : 0.25) / (1 << (2 * bits - 2)) + 2e-3)
              << metric_name(metric) << " bits " << bits << " mixed " << mixed;
        EXPECT_LT(s.sd, previous_sd[mixed] * 0.62) << "halving per bit: " << metric_name(metric) << " bits " << bits;
        EXPECT_GT(s.coverage, 0.85) << metric_name(metric) << " bits " << bits << " mixed " << mixed;
        previous_sd[mixed] = s.sd;
      }
      // Symmetric; the top bits alone estimate too.
      const auto xy = rq.estimate_between(same.data(), same.data() + 5 * cs);
      const auto yx = rq.estimate_between(same.data() + 5 * cs, same.data());
      EXPECT_NEAR(xy.value, yx.value, 1e-5 * (1 + std::abs(xy.value)));
      EXPECT_FLOAT_EQ(xy.bound, yx.bound);
      EXPECT_TRUE(std::isfinite(rq.estimate_between(same.data(), same.data() + cs, nullptr, true).value));
    }
  }
}

// Cosine: estimates of cos(o, q) are unbiased and sharpen per bit, also from a quantised query and between codes;
// zero vectors and zero queries give exactly {0, 0}, never NaN; the scale of a vector does not matter.
TEST(RaBitQuantizer, CosineMetric) {
  const size_t d = 96;
  FloatMatrix x = gaussian(300, d, 41, 0.5f), q = gaussian(25, d, 42, 0.5f);
  for (size_t j = 0; j < d; ++j) x(7, j) = 0.0f;  // a zero vector
  auto cosine = [&](const float* a, const float* b) {
    const double na = norm_of(a, d), nb = norm_of(b, d);
    return na > 0 && nb > 0 ? exact(MetricType::inner_product, a, b, d) / (na * nb) : 0.0;
  };
  double previous_sd = INFINITY;
  for (int bits : {1, 2, 3, 4}) {
    RabitqParams p;
    p.bits = bits, p.metric = MetricType::cosine;
    RaBitQuantizer rq(d, p);
    rq.train(x.view());
    const size_t cs = rq.code_size();
    std::vector<uint8_t> codes(x.rows() * cs);
    rq.encode_packed(x.view(), codes.data());
    const Stats s = stats_of(q.rows() * x.rows(), [&](size_t k, double* err, bool* covered) {
      const size_t a = k / x.rows(), i = k % x.rows();
      const RabitqEstimate e = rq.estimate(rq.prepare_query(q.row(a)), codes.data() + i * cs);
      ASSERT_TRUE(std::isfinite(e.value) && std::isfinite(e.bound));
      *err = e.value - cosine(x.row(i), q.row(a));
      *covered = std::abs(*err) <= e.bound + 1e-6;
    });
    const Stats sq = stats_of(q.rows() * x.rows(), [&](size_t k, double* err, bool*) {
      const size_t a = k / x.rows(), i = k % x.rows();
      *err = rq.estimate(rq.prepare_quantized_query(q.row(a), 4, a), codes.data() + i * cs).value -
             cosine(x.row(i), q.row(a));
    });
    const Stats sb = stats_of(x.rows() * 10, [&](size_t k, double* err, bool*) {
      const size_t i = k / 10, j = (i + 1 + 29 * (k % 10)) % x.rows();
      *err = rq.estimate_between(codes.data() + i * cs, codes.data() + j * cs).value - cosine(x.row(i), x.row(j));
    });
    if (std::getenv("RABITQ_PRINT"))
      printf("cosine B=%d: mean %.5f sd %.5f cover %.4f | 4-bit query mean %.5f sd %.5f | between mean %.5f sd %.5f\n",
             bits, s.mean, s.sd, s.coverage, sq.mean, sq.sd, sb.mean, sb.sd);
    EXPECT_LT(std::abs(s.mean), 0.1 * s.sd + 2e-3) << bits;
    EXPECT_LT(std::abs(sq.mean), 0.1 * sq.sd + 2e-3) << bits;
    EXPECT_LT(std::abs(sb.mean), 0.1 * sb.sd + 3e-3) << bits;
    EXPECT_LT(s.sd, previous_sd * 0.62) << bits;
    EXPECT_LT(sq.sd, s.sd * (bits <= 2 ? 1.15 : 1.9)) << bits;
    EXPECT_GT(s.coverage, 0.85) << bits;
    previous_sd = s.sd;
    // Zero vectors and queries: exactly 0, no NaN; the zero vector decodes to 0.
    std::vector<float> zero(d, 0.0f);
    const auto zq = rq.prepare_query(zero.data());
    EXPECT_TRUE(zq.zero);
    for (size_t i : {0, 7}) {
      const RabitqEstimate e = rq.estimate(zq, codes.data() + i * cs);
      EXPECT_EQ(e.value, 0.0f);
      EXPECT_EQ(e.bound, 0.0f);
      EXPECT_EQ(rq.estimate(rq.prepare_quantized_query(zero.data()), codes.data() + i * cs).value, 0.0f);
    }
    const RabitqEstimate e7 = rq.estimate(rq.prepare_query(q.row(0)), codes.data() + 7 * cs);
    EXPECT_EQ(e7.value, 0.0f);
    EXPECT_EQ(e7.bound, 0.0f);
    EXPECT_EQ(rq.estimate_between(codes.data() + 7 * cs, codes.data()).value, 0.0f);
    FloatMatrix y(x.rows(), d);
    rq.decode_packed(codes.data(), x.rows(), y.data());
    for (size_t j = 0; j < d; ++j) EXPECT_EQ(y(7, j), 0.0f);
    // Scale invariance: 5·o codes as o.
    FloatMatrix scaled(1, d);
    for (size_t j = 0; j < d; ++j) scaled(0, j) = 5.0f * x(3, j);
    std::vector<uint8_t> c5(cs);
    rq.encode_packed(scaled.view(), c5.data());
    const auto q0 = rq.prepare_query(q.row(0));
    EXPECT_NEAR(rq.estimate(q0, c5.data()).value, rq.estimate(q0, codes.data() + 3 * cs).value, 1e-5);
  }
  EXPECT_THROW(parse_metric("cosine"), InvalidArgument);  // indexes do not take it
  EXPECT_EQ(parse_metric("cosine", true), MetricType::cosine);
  EXPECT_EQ(metric_name(MetricType::cosine), "cosine");
}
